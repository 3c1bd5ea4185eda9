//! Resolve defaults, `irisctl.yaml`, `.env`, `IRISCTL_*` variables and flags into one validated
//! [`Settings`] value. Nothing past this module sees clap types or raw strings from the user.
//!
//! Precedence: built-in defaults < settings file < `.env` < environment < flags. Every key is
//! declared once, in [`keys::KEYS`]; every layer (the file too, walked key by key) goes through
//! [`Settings::apply`] and that table, so a key means the same thing and fails the same way
//! wherever it comes from, and each value remembers its source for `--print-settings`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::error::hinted;

mod dirs;
mod file;
pub mod keys;
mod parse;
#[cfg(test)]
mod tests;

pub use dirs::{check_private_dir, data_home};
pub use keys::GRAFANA_PROVISION_VARS;
use parse::MIB;
pub use parse::{
    parse_dotenv, parse_duration_secs, parse_prometheus_duration, validate_image, validate_project,
    WebhookUrl, MAX_DURATION_SECS,
};

pub const DEFAULT_PROJECT: &str = "iris";
pub const SETTINGS_FILE: &str = "irisctl.yaml";
/// The `.env` key that holds Grafana's generated admin password.
pub const GRAFANA_PASSWORD_KEY: &str = "GRAFANA_ADMIN_PASSWORD";

/// Host ports the stack publishes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ports {
    pub api: u16,
    pub frontend: u16,
    pub prometheus: u16,
    pub grafana: u16,
    /// Published only when alert delivery is on (`alerting.webhook_url`).
    pub alertmanager: u16,
}

/// Base images (passed to the Dockerfiles as build args) and third-party service images.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Images {
    pub python: String,
    pub node: String,
    pub nginx: String,
    pub prometheus: String,
    pub grafana: String,
    pub alertmanager: String,
}

/// Memory limits of the built services' containers, in bytes (whole MiB); shown as written
/// (`512m`, `1g`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Memory {
    #[serde(serialize_with = "as_size")]
    pub api: u64,
    #[serde(serialize_with = "as_size")]
    pub frontend: u64,
}

fn as_size<S: serde::Serializer>(bytes: &u64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&keys::shown_size(*bytes))
}

/// Build a service from a context instead of using an image reference.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BuildSpec {
    pub context: PathBuf,
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub project: String,
    pub project_dir: PathBuf,
    pub bind: IpAddr,
    pub ports: Ports,
    pub images: Images,
    /// Memory limits of `api` and `frontend` (a release carries its own; rollback restores it).
    pub memory: Memory,
    /// Services (`prometheus`, `grafana`) built from a context rather than pulled.
    pub builds: BTreeMap<String, BuildSpec>,
    #[serde(with = "secs")]
    pub health_timeout: Duration,
    pub grafana_admin_user: String,
    /// Swarm target: API replicas (the other services run one task each).
    pub api_replicas: u32,
    /// Swarm target: a registry every node can pull from; built images are pushed there.
    pub registry: Option<String>,
    /// Swarm target without a registry: the other nodes' engines (`ssh://` URLs); built
    /// images are sent to each over SSH.
    pub swarm_nodes: Vec<String>,
    /// Where Alertmanager delivers alerts; `None`: no Alertmanager, the rules only evaluate.
    pub alerting: Alerting,
    /// How a changed API is released: a swap, or a canary judged by the models' metrics.
    pub release: Release,
    /// Shadow traffic to a challenger (`irisctl shadow`).
    pub shadow: Shadow,
    /// From `.env`; `None` until the first `up` generates it.
    #[serde(skip)]
    pub grafana_admin_password: Option<String>,
    /// The layers that set something (built-in defaults, the settings file, `.env`), for the
    /// header of a generated compose file.
    pub sources: Vec<String>,
    /// Where each key's value came from (by variable name without `IRISCTL_`), for
    /// `--print-settings`; a key not here has its default.
    #[serde(skip)]
    pub origins: BTreeMap<&'static str, String>,
}

/// Alert delivery and the drift rule's tuning.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alerting {
    /// The webhook Alertmanager posts to. Shown only as [`WebhookUrl::shown`]: its userinfo,
    /// path and query may hold credentials.
    pub webhook_url: Option<WebhookUrl>,
    /// `IrisInputDrift`: the window of the live mean (a Prometheus duration, e.g. `30m`).
    pub drift_window: String,
    /// `IrisInputDrift`: how long the drift must last before it fires (`for:`).
    pub drift_for: String,
    /// `IrisInputDrift`: the distance from the training mean, in training standard deviations.
    pub drift_stddevs: String,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            webhook_url: None,
            drift_window: "30m".into(),
            drift_for: "15m".into(),
            drift_stddevs: "1".into(),
        }
    }
}

/// Shadow traffic (`shadow.*`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Shadow {
    /// Percent of `/predict` requests copied to the challenger.
    pub sample: u8,
}

/// How a changed API is released (`release.*`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Release {
    /// `canary`: every API release is a canary (`up --canary` does it for one run).
    pub canary_strategy: bool,
    pub canary: Canary,
}

/// A canary release's steps and gates (`release.canary.*`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Canary {
    /// The canary's share of the requests at each step, in percent, increasing, each below 100.
    pub steps: Vec<u8>,
    /// How long each step lasts (and the window its gates are judged over).
    #[serde(with = "secs")]
    pub step_duration: Duration,
    /// `/predict` requests the canary must have answered in a step before its gates judge.
    pub min_requests: u32,
    /// Gate: the canary's 5xx ratio may exceed the stable one's by at most this (0–1).
    pub max_5xx_increase: f64,
    /// Gate: the canary's `/predict` p95 may exceed the stable one's by at most this.
    #[serde(with = "millis")]
    pub max_p95_increase: Duration,
    /// Gate: the canary's share of low-confidence predictions (top probability below 0.6) may
    /// exceed the stable one's by at most this (0–1).
    pub max_low_confidence_increase: f64,
    /// Gate: the total variation distance between the two distributions of predicted species
    /// (0: the same, 1: disjoint) may be at most this.
    pub max_species_distance: f64,
    /// User-defined gates (`release.canary.gates`, settings file only).
    pub gates: Vec<UserGate>,
}

/// A user-defined canary gate: `query` with `$track` (and `$window`) read for both tracks;
/// it passes while the canary's value exceeds the stable one's by at most `max_increase`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UserGate {
    pub name: String,
    pub query: String,
    pub max_increase: f64,
}

impl Default for Release {
    fn default() -> Self {
        Release {
            canary_strategy: false,
            canary: Canary {
                steps: vec![10, 50],
                step_duration: Duration::from_secs(60),
                min_requests: 20,
                max_5xx_increase: 0.02,
                max_p95_increase: Duration::from_millis(100),
                max_low_confidence_increase: 0.2,
                max_species_distance: 0.3,
                gates: Vec::new(),
            },
        }
    }
}

mod millis {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

impl Settings {
    /// The built-in defaults: official images pinned to a version, loopback ports.
    pub fn defaults(project_dir: PathBuf) -> Self {
        Settings {
            project: DEFAULT_PROJECT.to_string(),
            project_dir,
            bind: IpAddr::from([127, 0, 0, 1]),
            ports: Ports {
                api: 8000,
                frontend: 5174,
                prometheus: 9090,
                grafana: 3000,
                alertmanager: 9093,
            },
            images: Images {
                python: "python:3.11-slim".into(),
                node: "node:24-alpine".into(),
                nginx: "nginx:1.27-alpine".into(),
                prometheus: "prom/prometheus:v2.53.2".into(),
                grafana: "grafana/grafana:11.4.0".into(),
                alertmanager: "prom/alertmanager:v0.27.0".into(),
            },
            memory: Memory {
                api: 512 * MIB,
                frontend: 128 * MIB,
            },
            builds: BTreeMap::new(),
            health_timeout: Duration::from_secs(180),
            grafana_admin_user: "admin".into(),
            api_replicas: 1,
            registry: None,
            swarm_nodes: Vec::new(),
            alerting: Alerting::default(),
            release: Release::default(),
            shadow: Shadow { sample: 100 },
            grafana_admin_password: None,
            sources: vec!["built-in defaults".into()],
            origins: BTreeMap::new(),
        }
    }

    /// Apply one `KEY=value` setting (KEY without the `IRISCTL_` prefix). `origin` names the
    /// source in errors and in `--print-settings`, e.g. "`.env` line 3" or "flag --api-port".
    pub fn apply(&mut self, key: &str, value: &str, origin: &str) -> Result<()> {
        let Some(k) = keys::by_var(key) else {
            return Err(hinted(
                format!("{origin}: unknown setting `IRISCTL_{key}`"),
                format!(
                    "known settings: {}",
                    keys::KEYS
                        .iter()
                        .map(keys::Key::variable)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if let Err(refusal) = (k.set)(self, value) {
            // Name the input as the user wrote it: a flag or a file key is in `origin` already;
            // in `.env` the variable is `IRISCTL_<KEY>`.
            let wrote = if origin.contains("` line ") {
                format!("IRISCTL_{key}=")
            } else {
                String::new()
            };
            let what = if refusal.hide_value {
                // The value is not repeated: it may carry a token.
                "the value (not shown)".to_string()
            } else {
                format!("{value:?}")
            };
            return Err(hinted(
                format!("{origin}: {wrote}{what} is not {}", refusal.is_not),
                refusal.hint,
            ));
        }
        // A file key's origin ends with ", key `…`": the file is what `--print-settings` shows.
        let source = origin.split(", key `").next().unwrap_or(origin);
        self.origins.insert(k.var, source.to_string());
        Ok(())
    }

    /// Apply `IRISCTL_*` pairs (from `.env` or the environment); other keys are ignored.
    pub fn apply_vars<'a>(
        &mut self,
        vars: impl IntoIterator<Item = (&'a str, &'a str, String)>,
    ) -> Result<()> {
        for (key, value, origin) in vars {
            if let Some(short) = key.strip_prefix("IRISCTL_") {
                if keys::NOT_SETTINGS.contains(&short)
                    || keys::GRAFANA_PROVISION_VARS.contains(&short)
                {
                    continue;
                }
                self.apply(short, value, &origin)?;
            }
        }
        Ok(())
    }
    /// Checks that need every layer applied.
    pub fn validate(&self) -> Result<()> {
        let ports = [
            ("api", self.ports.api),
            ("frontend", self.ports.frontend),
            ("prometheus", self.ports.prometheus),
            ("grafana", self.ports.grafana),
        ];
        // Alertmanager publishes its port only when it runs.
        let alertmanager = [("alertmanager", self.ports.alertmanager)];
        let ports: Vec<_> = if self.alerting.webhook_url.is_some() {
            ports.iter().chain(&alertmanager).copied().collect()
        } else {
            ports.to_vec()
        };
        for (i, (a, pa)) in ports.iter().enumerate() {
            for (b, pb) in &ports[i + 1..] {
                if pa == pb {
                    return Err(hinted(
                        format!("the {a} and {b} services are both set to host port {pa}"),
                        format!(
                            "give each service its own port ({}, or `ports:` in irisctl.yaml)",
                            keys::KEYS
                                .iter()
                                .filter(|k| k.file.starts_with("ports."))
                                .map(|k| k.flag.map_or_else(|| k.variable(), str::to_string))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Built image tag for a service, e.g. `iris-api:dev`.
    pub fn built_tag(&self, service: &str) -> String {
        format!("{}-{service}:dev", self.project)
    }

    /// `http://HOST:PORT`: how this machine reaches a published port — directly, or through
    /// the SSH connection when the engine is remote (its ports are on its own loopback).
    pub async fn http_base(&self, port: u16) -> anyhow::Result<String> {
        crate::engine::ssh::http_base(&self.client_host(), port).await
    }

    /// The address clients on this host use to reach a published port.
    pub fn client_host(&self) -> String {
        match self.bind {
            IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".into(),
            IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".into(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        }
    }
}

/// Flag values, named by their setting's variable (without `IRISCTL_`); the key table names the
/// flag in messages.
pub type FlagPairs = Vec<(&'static str, String)>;

/// Everything `resolve` needs from the outside world, so tests can pass it in.
pub struct Inputs<'a> {
    pub cwd: &'a Path,
    pub config: Option<&'a Path>,
    pub project_dir: Option<&'a Path>,
    pub env: &'a [(String, String)],
    pub flags: FlagPairs,
    /// irisctl's data folder (see [`data_home`]), where the built-in stack is written when no
    /// project directory holds one; `None` when neither `XDG_DATA_HOME` nor `HOME` is set.
    pub data_home: Option<PathBuf>,
}

/// "flag --api-port", as messages and `--print-settings` name a flag.
fn flag_origin(var: &str) -> String {
    match keys::by_var(var).and_then(|k| k.flag) {
        Some(flag) => format!("flag {flag}"),
        None => format!("flag setting IRISCTL_{var}"),
    }
}

/// Resolve every layer into validated settings.
pub fn resolve(inputs: Inputs<'_>) -> Result<Settings> {
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            inputs.cwd.join(p)
        }
    };

    // The settings file: explicit (must exist) or irisctl.yaml in the current directory.
    let config_path = match inputs.config {
        Some(p) => Some(abs(p)),
        None => Some(inputs.cwd.join(SETTINGS_FILE)).filter(|p| p.is_file()),
    };
    let mut settings = Settings::defaults(PathBuf::new());
    if let Some(path) = &config_path {
        let text = std::fs::read_to_string(path).map_err(|e| {
            hinted(
                format!("cannot read settings file `{}`: {e}", path.display()),
                "check the path given with --config or IRISCTL_CONFIG",
            )
        })?;
        settings.apply_file(&text, path)?;
    }

    // The project name decides where an embedded stack goes, so resolve it before the directory.
    let flag_project = inputs
        .flags
        .iter()
        .find(|(k, _)| *k == "PROJECT_NAME")
        .map(|(_, v)| v.clone());
    let env_project = inputs
        .env
        .iter()
        .find(|(k, _)| k == "IRISCTL_PROJECT_NAME")
        .map(|(_, v)| v.clone());
    if let Some(v) = &env_project {
        settings.apply(
            "PROJECT_NAME",
            v,
            "environment variable IRISCTL_PROJECT_NAME",
        )?;
    }
    if let Some(v) = &flag_project {
        settings.apply("PROJECT_NAME", v, &flag_origin("PROJECT_NAME"))?;
    }

    settings.project_dir = match inputs.project_dir {
        Some(dir) => {
            let dir = abs(dir);
            if !dir.is_dir() {
                return Err(hinted(
                    format!("project directory `{}` does not exist", dir.display()),
                    format!("create it with `irisctl init {}`, or leave --project-dir out to use the built-in stack", dir.display()),
                ));
            }
            dir
        }
        None if crate::assets::holds_stack(inputs.cwd) => inputs.cwd.to_path_buf(),
        None => {
            let Some(data) = &inputs.data_home else {
                return Err(hinted(
                    "no folder for the built-in stack's project files: neither HOME nor XDG_DATA_HOME is set (irisctl does not fall back to a shared folder such as /tmp)",
                    "set HOME or XDG_DATA_HOME, or pass --project-dir DIR (a folder written by `irisctl init DIR`)",
                ));
            };
            let projects = data.join("projects");
            let dir = projects.join(&settings.project);
            for d in [data, &projects, &dir] {
                check_private_dir(d, dirs::current_uid())?;
            }
            dir
        }
    };

    let dotenv_path = settings.project_dir.join(".env");
    let dotenv = match std::fs::read_to_string(&dotenv_path) {
        Ok(text) => parse_dotenv(&text, &dotenv_path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(hinted(
                format!("cannot read `{}`: {e}", dotenv_path.display()),
                "make the file readable by this user, or remove it",
            ))
        }
    };
    settings.apply_vars(
        dotenv
            .iter()
            .map(|(k, v, o)| (k.as_str(), v.as_str(), o.clone())),
    )?;
    settings.grafana_admin_password = match dotenv
        .iter()
        .rev()
        .find(|(k, _, _)| k == GRAFANA_PASSWORD_KEY)
    {
        // An empty password would become an empty secret file (and an open Grafana).
        Some((_, v, origin)) if v.trim().is_empty() => {
            return Err(hinted(
                format!("{origin}: {GRAFANA_PASSWORD_KEY} is empty"),
                format!(
                "set a password there, or remove the line and `irisctl up` generates one into `{}`",
                dotenv_path.display()
            ),
            ))
        }
        found => found.map(|(_, v, _)| v.clone()),
    };
    // Listed only when it set something (not when it only holds the Grafana password).
    if dotenv.iter().any(|(k, _, _)| k.starts_with("IRISCTL_")) {
        settings.sources.push(format!("{}", dotenv_path.display()));
    }

    settings.apply_vars(
        inputs
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str(), format!("environment variable {k}"))),
    )?;
    for (key, value) in &inputs.flags {
        settings.apply(key, value, &flag_origin(key))?;
    }
    settings.validate()?;
    Ok(settings)
}

/// What `--print-settings` shows: every key's value in irisctl.yaml's shape, each with where it
/// came from.
pub fn to_yaml(settings: &Settings) -> String {
    keys::print(settings)
}
