//! The settings file (irisctl.yaml): walked key by key against the key table, so a file key
//! means what its variable means and fails the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::keys::{self, KEYS};
use super::parse::yaml_scalar;
use super::{BuildSpec, Settings};
use crate::error::hinted;

/// Services that may be built from a context instead of pulled.
const BUILDABLE: &[&str] = &["prometheus", "grafana"];

/// Where a user reads every key: printed by any irisctl, written by `irisctl init`.
pub const KEYS_HINT: &str =
    "`irisctl init --print-template` prints every key with its variable, flag and default (the irisctl.yaml `irisctl init` writes holds the same)";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildLayer {
    context: PathBuf,
    dockerfile: Option<String>,
    args: Option<BTreeMap<String, Value>>,
}

impl Settings {
    /// Apply a settings file's content (YAML). `path` is only used in messages and to resolve
    /// relative build contexts.
    pub fn apply_file(&mut self, text: &str, path: &Path) -> Result<()> {
        let shown = path.display();
        let doc: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                hinted(
                    format!("settings file `{shown}` is not valid YAML: {e}"),
                    format!("fix the line named above; {KEYS_HINT}"),
                )
            })?
        };
        let top = match doc {
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m,
            _ => {
                return Err(hinted(
                    format!("settings file `{shown}` is not valid: expected a mapping of keys (`key: value` lines)"),
                    KEYS_HINT,
                ))
            }
        };
        self.walk(&top, "", path)?;
        self.sources.push(format!("settings file {shown}"));
        Ok(())
    }

    fn walk(&mut self, map: &Mapping, prefix: &str, path: &Path) -> Result<()> {
        let shown = path.display();
        for (k, v) in map {
            let name = yaml_scalar(k);
            let full = format!("{prefix}{name}");
            let origin = format!("settings file `{shown}`, key `{full}`");
            if full == "build" {
                self.apply_builds(v, path)?;
            } else if full == CANARY_GATES {
                self.apply_canary_gates(v, &origin)?;
            } else if let Some(key) = keys::by_file(&full) {
                if !v.is_null() {
                    self.apply(key.var, &yaml_scalar(v), &origin)?;
                }
            } else if keys::GROUPS.iter().any(|(g, _)| *g == full) {
                match v {
                    Value::Null => {}
                    Value::Mapping(m) => self.walk(m, &format!("{full}."), path)?,
                    _ => {
                        return Err(hinted(
                            format!("{origin}: expected a mapping of keys, as in `{full}:` followed by indented `key: value` lines"),
                            format!(
                                "keys under `{full}`: {}; {KEYS_HINT}",
                                known_under(&format!("{full}."))
                            ),
                        ))
                    }
                }
            } else {
                let known = if prefix.is_empty() {
                    let mut top: Vec<&str> = KEYS
                        .iter()
                        .map(|k| k.file.split('.').next().unwrap_or(k.file))
                        .collect();
                    top.push("build");
                    top.dedup();
                    top.join(", ")
                } else {
                    known_under(prefix)
                };
                return Err(hinted(
                    format!("{origin}: unknown key `{name}`"),
                    format!("known keys here: {known}; {KEYS_HINT}"),
                ));
            }
        }
        Ok(())
    }

    fn apply_canary_gates(&mut self, v: &Value, origin: &str) -> Result<()> {
        let hint = "write a list of `{name: TEXT, query: PROMQL, max_increase: NUMBER}`; the query reads one number and names `$track` (stable or canary) and may name `$window`, e.g. `histogram_quantile(0.99, sum by (le) (rate(iris_http_request_duration_seconds_bucket{track=\"$track\"}[$window])))`";
        let gates: Vec<GateLayer> = if v.is_null() {
            Vec::new()
        } else {
            serde_yaml::from_value(v.clone()).map_err(|e| hinted(format!("{origin}: {e}"), hint))?
        };
        let mut out = Vec::new();
        for (i, g) in gates.into_iter().enumerate() {
            let at = format!("{origin}, gate {}", i + 1);
            let name = g.name.trim();
            if name.is_empty() || name.len() > 80 || name.contains(char::is_control) {
                return Err(hinted(
                    format!("{at}: `name` must be a short line of text"),
                    hint,
                ));
            }
            if !g.query.contains("$track") {
                return Err(hinted(
                    format!("{at} (`{name}`): the query does not name `$track`, so it cannot read the canary and the stable container apart"),
                    hint,
                ));
            }
            if !g.max_increase.is_finite() {
                return Err(hinted(
                    format!("{at} (`{name}`): `max_increase` must be a number"),
                    hint,
                ));
            }
            out.push(super::UserGate {
                name: name.to_string(),
                query: g.query.trim().to_string(),
                max_increase: g.max_increase,
            });
        }
        if out.len() > 10 {
            return Err(hinted(
                format!("{origin}: {} gates; at most 10", out.len()),
                hint,
            ));
        }
        self.release.canary.gates = out;
        Ok(())
    }

    fn apply_builds(&mut self, v: &Value, path: &Path) -> Result<()> {
        let shown = path.display();
        let origin = |key: &str| format!("settings file `{shown}`, key `{key}`");
        let builds: BTreeMap<String, BuildLayer> = if v.is_null() {
            BTreeMap::new()
        } else {
            serde_yaml::from_value(v.clone()).map_err(|e| {
                hinted(
                    format!("{}: {e}", origin("build")),
                    "write `build: {SERVICE: {context: DIR, dockerfile: FILE, args: {NAME: VALUE}}}`; only `context` is required",
                )
            })?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        for (service, build) in builds {
            if !BUILDABLE.contains(&service.as_str()) {
                return Err(hinted(
                    format!(
                        "{}: `{service}` cannot be built from a context",
                        origin(&format!("build.{service}"))
                    ),
                    format!(
                        "services that take a build context: {}",
                        BUILDABLE.join(", ")
                    ),
                ));
            }
            let context = base.join(&build.context);
            if !context
                .join(build.dockerfile.as_deref().unwrap_or("Dockerfile"))
                .is_file()
            {
                return Err(hinted(
                    format!(
                        "{}: no Dockerfile in build context `{}`",
                        origin(&format!("build.{service}.context")),
                        context.display()
                    ),
                    "a relative context is resolved from the settings file's folder",
                ));
            }
            self.builds.insert(
                service,
                BuildSpec {
                    context,
                    dockerfile: build.dockerfile.unwrap_or_else(|| "Dockerfile".into()),
                    args: build
                        .args
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, yaml_scalar(&v)))
                        .collect(),
                },
            );
        }
        Ok(())
    }
}

/// The keys below `prefix` (`ports.`), comma-separated.
fn known_under(prefix: &str) -> String {
    let mut keys: Vec<&str> = KEYS
        .iter()
        .filter_map(|k| k.file.strip_prefix(prefix))
        .collect();
    keys.extend(CANARY_GATES.strip_prefix(prefix));
    keys.join(", ")
}

/// User-defined canary gates: a list, not a key of the table.
const CANARY_GATES: &str = "release.canary.gates";

/// One user-defined canary gate as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GateLayer {
    name: String,
    query: String,
    max_increase: f64,
}
