//! Resolve defaults, `irisctl.yaml`, `.env`, `IRISCTL_*` variables and flags into one validated
//! [`Settings`] value. Nothing past this module sees clap types or raw strings from the user.
//!
//! Precedence: built-in defaults < settings file < `.env` < environment < flags. Every layer after
//! the file is a list of `KEY=value` pairs applied through [`Settings::apply`], so a key means the
//! same thing and fails the same way wherever it comes from.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::hinted;

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
    let mib = bytes / MIB;
    if mib % 1024 == 0 {
        s.serialize_str(&format!("{}g", mib / 1024))
    } else {
        s.serialize_str(&format!("{mib}m"))
    }
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
    /// Where Alertmanager delivers alerts; `None`: no Alertmanager, the rules only evaluate.
    pub alerting: Alerting,
    /// From `.env`; `None` until the first `up` generates it.
    #[serde(skip)]
    pub grafana_admin_password: Option<String>,
    /// Where each value came from, for `--print-settings` and error messages.
    pub sources: Vec<String>,
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

/// A validated `http(s)://` URL that is never printed whole.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Validate `value`: an absolute `http` or `https` URL with a host. The error names what is
    /// wrong without repeating the value (it may hold a token).
    pub fn parse(value: &str) -> std::result::Result<WebhookUrl, &'static str> {
        let v = value.trim();
        let url = reqwest::Url::parse(v).map_err(|_| "not an absolute URL")?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("its scheme is not http or https");
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("it has no host");
        }
        Ok(WebhookUrl(v.to_string()))
    }

    /// The URL as Alertmanager gets it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Scheme, host and port only: a webhook's userinfo, path and query often carry its token.
    pub fn shown(&self) -> String {
        match reqwest::Url::parse(&self.0) {
            Ok(u) => {
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                let rest = if u.path() == "/" && u.query().is_none() {
                    "/"
                } else {
                    "/…"
                };
                let who = if u.username().is_empty() && u.password().is_none() {
                    ""
                } else {
                    "***@"
                };
                format!(
                    "{}://{who}{}{port}{rest}",
                    u.scheme(),
                    u.host_str().unwrap_or("")
                )
            }
            Err(_) => "(not shown)".into(),
        }
    }
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
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
            alerting: Alerting::default(),
            grafana_admin_password: None,
            sources: vec!["built-in defaults".into()],
        }
    }

    /// Apply one `KEY=value` setting (KEY without the `IRISCTL_` prefix). `origin` names the
    /// source in errors, e.g. "`.env` line 3" or "flag --api-port".
    pub fn apply(&mut self, key: &str, value: &str, origin: &str) -> Result<()> {
        // Name the input as the user wrote it: a flag or a file key is in `origin` already; in
        // `.env` the variable is `IRISCTL_<KEY>`.
        let wrote = if origin.contains("` line ") {
            format!("IRISCTL_{key}=")
        } else {
            String::new()
        };
        let bad = |what: &str, hint: &str| {
            hinted(
                format!("{origin}: {wrote}{value:?} is not {what}"),
                hint.to_string(),
            )
        };
        match key {
            "PROJECT_NAME" => {
                validate_project(value).map_err(|why| bad(&format!("a valid project name ({why})"), "use lowercase letters, digits, '-' and '_', starting with a letter or digit, e.g. `iris-test`"))?;
                self.project = value.to_string();
            }
            "BIND" if value.trim() == "localhost" => {
                self.bind = IpAddr::from([127, 0, 0, 1]);
            }
            "BIND" => {
                self.bind = value.trim().parse().map_err(|_| {
                    bad("an IP address", "give an address like 127.0.0.1 (the default, this host only) or 0.0.0.0 (every interface)")
                })?;
            }
            "API_PORT" | "FRONTEND_PORT" | "PROMETHEUS_PORT" | "GRAFANA_PORT"
            | "ALERTMANAGER_PORT" => {
                let port = parse_port(value)
                    .ok_or_else(|| bad("a port number", "give a whole number from 1 to 65535"))?;
                match key {
                    "API_PORT" => self.ports.api = port,
                    "FRONTEND_PORT" => self.ports.frontend = port,
                    "PROMETHEUS_PORT" => self.ports.prometheus = port,
                    "ALERTMANAGER_PORT" => self.ports.alertmanager = port,
                    _ => self.ports.grafana = port,
                }
            }
            "ALERTING_WEBHOOK_URL" if value.trim().is_empty() => {
                self.alerting.webhook_url = None;
            }
            "ALERTING_WEBHOOK_URL" => {
                let url = WebhookUrl::parse(value).map_err(|why| {
                    // The value is not repeated: a webhook URL often carries a token.
                    hinted(
                        format!("{origin}: {wrote}the webhook URL (not shown) is not an http or https URL: {why}"),
                        "give the full address Alertmanager posts to, e.g. http://receiver:8080/alerts or https://hooks.example.com/T0K3N; an empty value turns delivery off",
                    )
                })?;
                self.alerting.webhook_url = Some(url);
            }
            "ALERTING_DRIFT_WINDOW" | "ALERTING_DRIFT_FOR" => {
                let window = key == "ALERTING_DRIFT_WINDOW";
                let (min, shown_min) = if window { (30_000, "30s") } else { (0, "0s") };
                parse_prometheus_duration(value)
                    .filter(|ms| (min..=MAX_DURATION_SECS * 1000).contains(ms))
                    .ok_or_else(|| {
                        bad(
                            &format!("a Prometheus duration from {shown_min} to 24h"),
                            if window {
                                "give a number and a unit (ms, s, m, h, d), e.g. 30m or 1h30m; the window needs a few scrapes (5 s apart)"
                            } else {
                                "give a number and a unit (ms, s, m, h, d), e.g. 15m; 0s fires as soon as the drift is seen"
                            },
                        )
                    })?;
                let v = value.trim().to_string();
                if window {
                    self.alerting.drift_window = v;
                } else {
                    self.alerting.drift_for = v;
                }
            }
            "ALERTING_DRIFT_STDDEVS" => {
                let k: f64 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|k: &f64| k.is_finite() && *k > 0.0 && *k <= 100.0)
                    .ok_or_else(|| {
                        bad(
                            "a number of standard deviations above 0 and at most 100",
                            "give a number like 1 (the default), 0.5 or 2.5",
                        )
                    })?;
                self.alerting.drift_stddevs = k.to_string();
            }
            "PYTHON_IMAGE" | "NODE_IMAGE" | "NGINX_IMAGE" | "PROMETHEUS_IMAGE"
            | "GRAFANA_IMAGE" | "ALERTMANAGER_IMAGE" => {
                validate_image(value).map_err(|why| {
                    bad(&format!("an image reference ({why})"), "write it as NAME[:TAG], e.g. python:3.11-slim or irisctl-offline/python:3.11")
                })?;
                let slot = match key {
                    "PYTHON_IMAGE" => &mut self.images.python,
                    "NODE_IMAGE" => &mut self.images.node,
                    "NGINX_IMAGE" => &mut self.images.nginx,
                    "PROMETHEUS_IMAGE" => &mut self.images.prometheus,
                    "ALERTMANAGER_IMAGE" => &mut self.images.alertmanager,
                    _ => &mut self.images.grafana,
                };
                *slot = value.to_string();
            }
            "API_MEMORY" | "FRONTEND_MEMORY" => {
                let bytes = parse_memory(value).ok_or_else(|| {
                    bad(
                        "a memory limit from 16m to 256g",
                        "give a whole number of MiB or GiB, e.g. 512m or 2g",
                    )
                })?;
                if key == "API_MEMORY" {
                    self.memory.api = bytes;
                } else {
                    self.memory.frontend = bytes;
                }
            }
            "HEALTH_TIMEOUT" | "WAIT_TIMEOUT" => {
                self.health_timeout = parse_duration_secs(&format!("{origin}: {wrote}"), value)?;
            }
            "API_REPLICAS" => {
                self.api_replicas = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| {
                        bad("a number of replicas", "give a whole number from 1 to 100")
                    })?;
            }
            "REGISTRY" => {
                let v = value.trim().trim_end_matches('/');
                if v.is_empty() || v.contains(char::is_whitespace) || v.contains("://") {
                    return Err(bad(
                        "a registry address",
                        "give HOST[:PORT][/PATH] without a scheme, e.g. registry.example.com:5000/iris",
                    ));
                }
                self.registry = Some(v.to_string());
            }
            "GRAFANA_ADMIN_USER" => {
                if value.trim().is_empty() {
                    return Err(bad("a user name", "give a non-empty user name"));
                }
                self.grafana_admin_user = value.to_string();
            }
            _ => {
                return Err(hinted(
                    format!("{origin}: unknown setting `IRISCTL_{key}`"),
                    format!(
                        "known settings: {}",
                        KNOWN_KEYS
                            .iter()
                            .map(|k| format!("IRISCTL_{k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        }
        Ok(())
    }

    /// Apply a settings file's content (YAML). `path` is only used in messages and to resolve
    /// relative build contexts.
    pub fn apply_file(&mut self, text: &str, path: &Path) -> Result<()> {
        let shown = path.display();
        let file: FileLayer = if text.trim().is_empty() {
            FileLayer::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                // serde names the Rust types; say what the user wrote instead.
                let mut why = e.to_string();
                for layer in [
                    "File", "Ports", "Images", "Memory", "Build", "Timeouts", "Grafana", "Swarm", "Alerting",
                ] {
                    why = why.replace(&format!("struct {layer}Layer"), "a mapping of keys");
                }
                hinted(
                    format!("settings file `{shown}` is not valid: {why}"),
                    "templates/irisctl.yaml (written by `irisctl init`) documents every key; remove or fix the one named above",
                )
            })?
        };
        let origin = |key: &str| format!("settings file `{shown}`, key `{key}`");
        if let Some(v) = file.project {
            self.apply("PROJECT_NAME", &v, &origin("project"))?;
        }
        if let Some(v) = file.bind {
            self.apply("BIND", &v, &origin("bind"))?;
        }
        if let Some(p) = file.ports {
            for (key, v) in [
                ("API_PORT", p.api),
                ("FRONTEND_PORT", p.frontend),
                ("PROMETHEUS_PORT", p.prometheus),
                ("GRAFANA_PORT", p.grafana),
                ("ALERTMANAGER_PORT", p.alertmanager),
            ] {
                if let Some(v) = v {
                    let name = key.trim_end_matches("_PORT").to_lowercase();
                    self.apply(key, &yaml_scalar(&v), &origin(&format!("ports.{name}")))?;
                }
            }
        }
        if let Some(i) = file.images {
            for (key, v) in [
                ("PYTHON_IMAGE", i.python),
                ("NODE_IMAGE", i.node),
                ("NGINX_IMAGE", i.nginx),
                ("PROMETHEUS_IMAGE", i.prometheus),
                ("GRAFANA_IMAGE", i.grafana),
                ("ALERTMANAGER_IMAGE", i.alertmanager),
            ] {
                if let Some(v) = v {
                    let name = key.trim_end_matches("_IMAGE").to_lowercase();
                    self.apply(key, &v, &origin(&format!("images.{name}")))?;
                }
            }
        }
        if let Some(m) = file.memory {
            for (key, v) in [("API_MEMORY", m.api), ("FRONTEND_MEMORY", m.frontend)] {
                if let Some(v) = v {
                    let name = key.trim_end_matches("_MEMORY").to_lowercase();
                    self.apply(key, &yaml_scalar(&v), &origin(&format!("memory.{name}")))?;
                }
            }
        }
        if let Some(t) = file.timeouts.and_then(|t| t.health) {
            self.apply(
                "HEALTH_TIMEOUT",
                &yaml_scalar(&t),
                &origin("timeouts.health"),
            )?;
        }
        if let Some(u) = file.grafana.and_then(|g| g.admin_user) {
            self.apply("GRAFANA_ADMIN_USER", &u, &origin("grafana.admin_user"))?;
        }
        if let Some(a) = file.alerting {
            for (key, v) in [
                ("ALERTING_WEBHOOK_URL", a.webhook_url),
                ("ALERTING_DRIFT_WINDOW", a.drift_window),
                ("ALERTING_DRIFT_FOR", a.drift_for),
                ("ALERTING_DRIFT_STDDEVS", a.drift_stddevs),
            ] {
                if let Some(v) = v {
                    let name = key.trim_start_matches("ALERTING_").to_lowercase();
                    self.apply(key, &yaml_scalar(&v), &origin(&format!("alerting.{name}")))?;
                }
            }
        }
        if let Some(sw) = file.swarm {
            if let Some(n) = sw.api_replicas {
                self.apply(
                    "API_REPLICAS",
                    &yaml_scalar(&n),
                    &origin("swarm.api_replicas"),
                )?;
            }
            if let Some(r) = sw.registry {
                self.apply("REGISTRY", &r, &origin("swarm.registry"))?;
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for (service, build) in file.build.unwrap_or_default() {
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
        self.sources.push(format!("settings file {shown}"));
        Ok(())
    }

    /// Apply `IRISCTL_*` pairs (from `.env` or the environment); other keys are ignored.
    pub fn apply_vars<'a>(
        &mut self,
        vars: impl IntoIterator<Item = (&'a str, &'a str, String)>,
    ) -> Result<()> {
        for (key, value, origin) in vars {
            if let Some(short) = key.strip_prefix("IRISCTL_") {
                if matches!(short, "CONFIG" | "PROJECT_DIR") {
                    continue; // consumed before settings are read
                }
                if short == "TEST_HOLD_AT" {
                    continue; // a test hook of the printer (output.rs), not a setting
                }
                if crate::commands::grafana::ENV_KEYS.contains(&short) {
                    continue; // read by `grafana provision` (commands::grafana::apply_env_precedence)
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
                        "give each service its own port (flags --api-port, --frontend-port, --prometheus-port, --grafana-port, IRISCTL_ALERTMANAGER_PORT, or `ports:` in irisctl.yaml)",
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

pub const KNOWN_KEYS: &[&str] = &[
    "PROJECT_NAME",
    "BIND",
    "API_PORT",
    "FRONTEND_PORT",
    "PROMETHEUS_PORT",
    "GRAFANA_PORT",
    "ALERTMANAGER_PORT",
    "PYTHON_IMAGE",
    "NODE_IMAGE",
    "NGINX_IMAGE",
    "PROMETHEUS_IMAGE",
    "GRAFANA_IMAGE",
    "ALERTMANAGER_IMAGE",
    "API_MEMORY",
    "FRONTEND_MEMORY",
    "HEALTH_TIMEOUT",
    "GRAFANA_ADMIN_USER",
    "API_REPLICAS",
    "REGISTRY",
    "ALERTING_WEBHOOK_URL",
    "ALERTING_DRIFT_WINDOW",
    "ALERTING_DRIFT_FOR",
    "ALERTING_DRIFT_STDDEVS",
];
const BUILDABLE: &[&str] = &["prometheus", "grafana"];

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(deny_unknown_fields)]
struct FileLayer {
    project: Option<String>,
    bind: Option<String>,
    ports: Option<PortsLayer>,
    images: Option<ImagesLayer>,
    memory: Option<MemoryLayer>,
    build: Option<BTreeMap<String, BuildLayer>>,
    timeouts: Option<TimeoutsLayer>,
    grafana: Option<GrafanaLayer>,
    swarm: Option<SwarmLayer>,
    alerting: Option<AlertingLayer>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(deny_unknown_fields)]
struct AlertingLayer {
    webhook_url: Option<serde_yaml::Value>,
    drift_window: Option<serde_yaml::Value>,
    drift_for: Option<serde_yaml::Value>,
    drift_stddevs: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(deny_unknown_fields)]
struct SwarmLayer {
    api_replicas: Option<serde_yaml::Value>,
    registry: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(deny_unknown_fields)]
struct PortsLayer {
    api: Option<serde_yaml::Value>,
    frontend: Option<serde_yaml::Value>,
    prometheus: Option<serde_yaml::Value>,
    grafana: Option<serde_yaml::Value>,
    alertmanager: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(deny_unknown_fields)]
struct ImagesLayer {
    python: Option<String>,
    node: Option<String>,
    nginx: Option<String>,
    prometheus: Option<String>,
    grafana: Option<String>,
    alertmanager: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(deny_unknown_fields)]
struct MemoryLayer {
    api: Option<serde_yaml::Value>,
    frontend: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(deny_unknown_fields)]
struct BuildLayer {
    context: PathBuf,
    dockerfile: Option<String>,
    args: Option<BTreeMap<String, serde_yaml::Value>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(deny_unknown_fields)]
struct TimeoutsLayer {
    health: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(deny_unknown_fields)]
struct GrafanaLayer {
    admin_user: Option<String>,
}

/// A YAML scalar as the string a user would have typed (`8000`, `true`, `abc`).
fn yaml_scalar(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

const MIB: u64 = 1024 * 1024;

/// A memory limit as `<n>m` or `<n>g` (MiB or GiB; `mb`, `mib`, `gb`, `gib` and upper case
/// too), from 16 MiB to 256 GiB, in bytes.
fn parse_memory(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let digits = v.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = v.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let mib = match unit.trim() {
        "m" | "mb" | "mib" => n,
        "g" | "gb" | "gib" => n.checked_mul(1024)?,
        _ => return None,
    };
    (16..=256 * 1024).contains(&mib).then(|| mib * MIB)
}

/// The longest duration any setting or flag accepts: 24 hours. It keeps every deadline
/// (`Instant::now() + duration`) far from overflowing.
pub const MAX_DURATION_SECS: u64 = 24 * 60 * 60;

/// Parse a duration given in whole seconds, from 1 to [`MAX_DURATION_SECS`]. `what` names the
/// input in the error, e.g. "flag --wait-timeout: " or "`.env` line 3: IRISCTL_HEALTH_TIMEOUT=".
pub fn parse_duration_secs(what: &str, value: &str) -> Result<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=MAX_DURATION_SECS).contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            hinted(
                format!("{what}{value:?} is not a number of seconds from 1 to {MAX_DURATION_SECS} (24 hours)"),
                format!("give a whole number of seconds from 1 to {MAX_DURATION_SECS}, e.g. 180"),
            )
        })
}

/// A Prometheus duration (`90s`, `1h30m`, `0s`; units ms, s, m, h, d, w, largest first) in
/// milliseconds; `None` if it is not one.
pub fn parse_prometheus_duration(value: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 6] = [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = value.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut last_unit = 0; // index into UNITS: each unit must come after the previous one
    let mut first = true;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // `ms` before `m`, so that `5ms` is not read as 5 minutes and an `s`.
        let (i, len, scale) = if rest.starts_with("ms") {
            (5, 2, 1)
        } else {
            let i = UNITS[..5].iter().position(|(u, _)| rest.starts_with(u))?;
            (i, 1, UNITS[i].1)
        };
        if !first && i <= last_unit {
            return None;
        }
        first = false;
        last_unit = i;
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(scale)?)?;
    }
    Some(total)
}

fn parse_port(value: &str) -> Option<u16> {
    value.trim().parse::<u16>().ok().filter(|p| *p != 0)
}

/// Docker Compose's project-name rule.
pub fn validate_project(name: &str) -> std::result::Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("it is empty"),
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
            return Err("it must start with a lowercase letter or digit")
        }
        _ => {}
    }
    if name.len() > 48 {
        return Err("it is longer than 48 characters");
    }
    if chars.any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')) {
        return Err("only lowercase letters, digits, '-' and '_' are allowed");
    }
    Ok(())
}

/// A light check of an image reference; the engine has the final word.
pub fn validate_image(reference: &str) -> std::result::Result<(), &'static str> {
    if reference.is_empty() {
        return Err("it is empty");
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("it contains white space");
    }
    if reference.chars().any(|c| c.is_ascii_uppercase()) && !reference.contains('@') {
        let name = reference.rsplit_once(':').map_or(reference, |(n, t)| {
            if t.contains('/') {
                reference
            } else {
                n
            }
        });
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("repository names must be lowercase");
        }
    }
    if reference.starts_with([':', '/', '@', '-', '.']) || reference.ends_with([':', '/', '@']) {
        return Err("it is malformed");
    }
    Ok(())
}

/// Parse a `.env` file: `KEY=value` lines, `#` comments, optional `export `, quotes stripped.
pub fn parse_dotenv(text: &str, path: &Path) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(hinted(
                // The line itself is not shown: it may be a pasted secret.
                format!(
                    "`{}` line {}: expected KEY=value (the line is not shown, as it may hold a secret)",
                    path.display(),
                    i + 1,
                ),
                "fix or remove that line; comments start with #",
            ));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(hinted(
                // Not shown either: what stands before `=` may be part of a pasted secret.
                format!(
                    "`{}` line {}: the text before `=` is not a variable name",
                    path.display(),
                    i + 1
                ),
                "variable names use letters, digits and '_'; fix or remove that line",
            ));
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        out.push((
            key.to_string(),
            value.to_string(),
            format!("`{}` line {}", path.display(), i + 1),
        ));
    }
    Ok(out)
}

/// Flag values, already named by their setting key.
pub type FlagPairs = Vec<(&'static str, String, &'static str)>;

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

/// irisctl's data folder from the values of `XDG_DATA_HOME` and `HOME`:
/// `$XDG_DATA_HOME/irisctl`, else `$HOME/.local/share/irisctl`. Empty or relative values count
/// as unset (as the XDG spec says). With neither there is no data folder: there is deliberately
/// no fallback into a shared folder such as `/tmp`, where another local user could create the
/// project folder first and plant a `.env` or links in it.
pub fn data_home(
    xdg_data_home: Option<&std::ffi::OsStr>,
    home: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    let usable = |v: Option<&std::ffi::OsStr>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    usable(xdg_data_home)
        .or_else(|| usable(home).map(|h| h.join(".local/share")))
        .map(|base| base.join("irisctl"))
}

/// The effective user ID of this process.
fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuse a folder that another user could have prepared: if it exists it must be a real
/// folder (not a link), owned by `uid`, and writable by nobody else.
pub fn check_private_dir(dir: &Path, uid: u32) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(hinted(
                format!(
                    "cannot inspect irisctl's data folder `{}`: {e}",
                    dir.display()
                ),
                "make it readable by this user, or pass --project-dir DIR",
            ))
        }
    };
    let shown = dir.display();
    let why = if !meta.file_type().is_dir() {
        Some("it is not a folder (a link or a file)".to_string())
    } else if meta.uid() != uid {
        Some(format!(
            "it belongs to user ID {}, not to you (user ID {uid})",
            meta.uid()
        ))
    } else if meta.permissions().mode() & 0o022 != 0 {
        Some(format!(
            "other users can write to it (mode {:03o})",
            meta.permissions().mode() & 0o777
        ))
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(hinted(
            format!("irisctl's data folder `{shown}` is not safe to use: {why}; another user could have planted files in it"),
            format!("check what is in it, then remove it (or `chmod go-w {shown}` if it is yours), or pass --project-dir DIR"),
        )),
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
        .find(|(k, _, _)| *k == "PROJECT_NAME")
        .map(|(_, v, o)| (v.clone(), *o));
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
    if let Some((v, origin)) = &flag_project {
        settings.apply("PROJECT_NAME", v, origin)?;
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
                check_private_dir(d, current_uid())?;
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
    for (key, value, origin) in &inputs.flags {
        settings.apply(key, value, origin)?;
    }
    settings.validate()?;
    Ok(settings)
}

/// The YAML `--print-settings` shows.
pub fn to_yaml(settings: &Settings) -> Result<String> {
    serde_yaml::to_string(settings).context("cannot render settings as YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(cwd: &'a Path, env: &'a [(String, String)], flags: FlagPairs) -> Inputs<'a> {
        Inputs {
            cwd,
            config: None,
            project_dir: Some(cwd),
            env,
            flags,
            data_home: Some(cwd.join("data")),
        }
    }

    fn err_text(e: anyhow::Error) -> String {
        let hint = crate::error::hint_of(&e).map(str::to_string);
        format!("{e:#} / hint: {}", hint.unwrap_or_default())
    }

    #[test]
    fn defaults_are_pinned_and_loopback() {
        let s = Settings::defaults(PathBuf::from("/x"));
        assert_eq!(s.bind.to_string(), "127.0.0.1");
        for image in [
            &s.images.python,
            &s.images.node,
            &s.images.nginx,
            &s.images.prometheus,
            &s.images.grafana,
            &s.images.alertmanager,
        ] {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(!tag.is_empty() && tag != "latest", "{image} must be pinned");
        }
        assert_eq!(
            (
                s.ports.api,
                s.ports.frontend,
                s.ports.prometheus,
                s.ports.grafana
            ),
            (8000, 5174, 9090, 3000)
        );
    }

    #[test]
    fn precedence_file_dotenv_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("irisctl.yaml"),
            "ports:\n  api: 8100\n  frontend: 5100\n  prometheus: 9100\n  grafana: 3100\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".env"), "IRISCTL_FRONTEND_PORT=5200\nIRISCTL_PROMETHEUS_PORT=9200\nIRISCTL_GRAFANA_PORT=3200\nGRAFANA_ADMIN_PASSWORD=s3cret\nOTHER=ignored\n").unwrap();
        let env = vec![
            ("IRISCTL_PROMETHEUS_PORT".to_string(), "9300".to_string()),
            ("IRISCTL_GRAFANA_PORT".to_string(), "3300".to_string()),
        ];
        let flags = vec![("GRAFANA_PORT", "3400".to_string(), "flag --grafana-port")];
        let s = resolve(inputs(dir.path(), &env, flags)).unwrap();
        assert_eq!(
            (
                s.ports.api,
                s.ports.frontend,
                s.ports.prometheus,
                s.ports.grafana
            ),
            (8100, 5200, 9300, 3400)
        );
        assert_eq!(s.grafana_admin_password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn unknown_file_key_names_file_and_key() {
        let mut s = Settings::defaults(PathBuf::new());
        let e = err_text(
            s.apply_file("ports:\n  apy: 1\n", Path::new("/etc/irisctl.yaml"))
                .unwrap_err(),
        );
        assert!(e.contains("/etc/irisctl.yaml") && e.contains("apy"), "{e}");
        let e = err_text(
            s.apply_file("colour: red\n", Path::new("a.yaml"))
                .unwrap_err(),
        );
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn bad_values_name_origin_and_hint() {
        let cases = [
            ("API_PORT", "0", "a port number"),
            ("API_PORT", "65536", "a port number"),
            ("API_PORT", "http", "a port number"),
            ("BIND", "localhost:80", "an IP address"),
            ("PROJECT_NAME", "Iris", "a valid project name"),
            ("PROJECT_NAME", "", "a valid project name"),
            ("PROJECT_NAME", "a b", "a valid project name"),
            ("PYTHON_IMAGE", "", "an image reference"),
            ("PYTHON_IMAGE", "python 3", "an image reference"),
            ("NGINX_IMAGE", "Nginx:1", "an image reference"),
            ("HEALTH_TIMEOUT", "-1", "a number of seconds"),
            ("HEALTH_TIMEOUT", "0", "a number of seconds"),
            ("NOPE", "1", "unknown setting `IRISCTL_NOPE`"),
        ];
        for (key, value, want) in cases {
            let mut s = Settings::defaults(PathBuf::new());
            let e = err_text(s.apply(key, value, "flag --x").unwrap_err());
            assert!(
                e.contains(want)
                    && e.contains("flag --x")
                    && e.contains("hint: ")
                    && !e.ends_with("hint: "),
                "{key}={value}: {e}"
            );
        }
    }

    #[test]
    fn duplicate_ports_are_rejected() {
        let mut s = Settings::defaults(PathBuf::new());
        s.apply("GRAFANA_PORT", "8000", "flag").unwrap();
        let e = err_text(s.validate().unwrap_err());
        assert!(e.contains("api and grafana") && e.contains("8000"), "{e}");
    }

    #[test]
    fn dotenv_parsing() {
        let got = parse_dotenv(
            "# c\n\nexport A=1\nB=\"two words\"\nC='x'\n",
            Path::new(".env"),
        )
        .unwrap();
        let kv: Vec<_> = got
            .iter()
            .map(|(k, v, _)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(kv, vec![("A", "1"), ("B", "two words"), ("C", "x")]);
        let e = err_text(parse_dotenv("A=1\njunk\n", Path::new("/p/.env")).unwrap_err());
        assert!(e.contains("/p/.env` line 2"), "{e}");
    }

    #[test]
    fn dotenv_errors_never_show_the_line() {
        for text in [
            "A=1\nhunter2-SECRET\n",
            "A=1\nhunter2 SECRET=x\n",
            "A=1\nexport hunter2-SECRET\n",
        ] {
            let e = err_text(parse_dotenv(text, Path::new("/p/.env")).unwrap_err());
            assert!(e.contains("/p/.env` line 2"), "{e}");
            assert!(!e.contains("SECRET"), "the line is shown: {e}");
        }
    }

    #[test]
    fn an_empty_grafana_password_is_refused() {
        for line in [
            "GRAFANA_ADMIN_PASSWORD=",
            "GRAFANA_ADMIN_PASSWORD=   ",
            "GRAFANA_ADMIN_PASSWORD=\"  \"",
            "GRAFANA_ADMIN_PASSWORD=s3cret\nGRAFANA_ADMIN_PASSWORD=",
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(".env"), format!("# x\n{line}\n")).unwrap();
            let e = err_text(resolve(inputs(dir.path(), &[], vec![])).unwrap_err());
            assert!(
                e.contains("GRAFANA_ADMIN_PASSWORD is empty")
                    && e.contains(".env` line")
                    && e.contains("remove the line"),
                "{line}: {e}"
            );
            assert!(!e.contains("s3cret"), "{e}");
        }
        // The last line wins, as in the generated `.env`.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "GRAFANA_ADMIN_PASSWORD=\nGRAFANA_ADMIN_PASSWORD=s3cret\n",
        )
        .unwrap();
        let s = resolve(inputs(dir.path(), &[], vec![])).unwrap();
        assert_eq!(s.grafana_admin_password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn durations_are_bounded() {
        for bad in [
            "0",
            "-1",
            "",
            " ",
            "1.5",
            "86401",
            "18446744073709551615",
            "99999999999999999999999",
            "5m",
        ] {
            let e = err_text(parse_duration_secs("flag --wait-timeout: ", bad).unwrap_err());
            assert!(
                e.contains("flag --wait-timeout: ")
                    && e.contains("is not a number of seconds")
                    && e.contains("hint: give"),
                "{bad:?}: {e}"
            );
        }
        assert_eq!(
            parse_duration_secs("", " 60 ").unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            parse_duration_secs("", "86400").unwrap(),
            Duration::from_secs(86400)
        );
        let mut s = Settings::defaults(PathBuf::new());
        let e = err_text(
            s.apply(
                "HEALTH_TIMEOUT",
                "18446744073709551615",
                "flag --wait-timeout",
            )
            .unwrap_err(),
        );
        assert!(
            e.contains("flag --wait-timeout: \"18446744073709551615\"") && e.contains("24 hours"),
            "{e}"
        );
        s.apply("HEALTH_TIMEOUT", "7200", "t").unwrap();
        assert_eq!(s.health_timeout, Duration::from_secs(7200));
    }

    #[test]
    fn data_home_never_falls_back_to_a_shared_folder() {
        use std::ffi::OsStr;
        let some = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            data_home(some("/x"), some("/h")),
            Some(PathBuf::from("/x/irisctl"))
        );
        assert_eq!(
            data_home(None, some("/h")),
            Some(PathBuf::from("/h/.local/share/irisctl"))
        );
        assert_eq!(
            data_home(some(""), some("/h")),
            Some(PathBuf::from("/h/.local/share/irisctl"))
        );
        // A relative XDG_DATA_HOME is invalid (XDG spec) and ignored.
        assert_eq!(
            data_home(some("rel"), some("/h")),
            Some(PathBuf::from("/h/.local/share/irisctl"))
        );
        assert_eq!(data_home(None, None), None);
        assert_eq!(data_home(some(""), some("")), None);
        assert_eq!(data_home(None, some("relative")), None);
    }

    #[test]
    fn resolve_without_a_data_home_needs_a_project_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = inputs(dir.path(), &[], vec![]);
        i.project_dir = None;
        i.data_home = None;
        let e = err_text(resolve(i).unwrap_err());
        assert!(
            e.contains("neither HOME nor XDG_DATA_HOME is set") && e.contains("--project-dir"),
            "{e}"
        );
        // With a project directory, no data folder is needed.
        let mut i = inputs(dir.path(), &[], vec![]);
        i.data_home = None;
        resolve(i).unwrap();
    }

    #[test]
    fn data_folders_others_could_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("irisctl");
        let uid = current_uid();
        // Missing is fine: irisctl creates it.
        check_private_dir(&data, uid).unwrap();
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_private_dir(&data, uid).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = err_text(check_private_dir(&data, uid).unwrap_err());
        assert!(
            e.contains("other users can write to it (mode 777)") && e.contains("hint: "),
            "{e}"
        );
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = err_text(check_private_dir(&data, uid + 1).unwrap_err());
        assert!(e.contains("belongs to user ID"), "{e}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        let e = err_text(check_private_dir(&link, uid).unwrap_err());
        assert!(e.contains("not a folder"), "{e}");
        // resolve checks the data folder and the project folder below it.
        let mut i = inputs(dir.path(), &[], vec![]);
        i.project_dir = None;
        i.data_home = Some(data.clone());
        std::fs::create_dir_all(data.join("projects/iris")).unwrap();
        std::fs::set_permissions(
            data.join("projects/iris"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let e = err_text(resolve(i).unwrap_err());
        assert!(e.contains("projects/iris` is not safe"), "{e}");
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = inputs(dir.path(), &[], vec![]);
        let missing = dir.path().join("nope.yaml");
        i.config = Some(&missing);
        let e = err_text(resolve(i).unwrap_err());
        assert!(e.contains("nope.yaml") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn build_context_is_relative_to_the_file_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("g")).unwrap();
        std::fs::write(dir.path().join("g/Dockerfile"), "FROM x\n").unwrap();
        let mut s = Settings::defaults(PathBuf::new());
        s.apply_file(
            "build:\n  grafana:\n    context: g\n    args: {A: 1}\n",
            &dir.path().join("c.yaml"),
        )
        .unwrap();
        assert_eq!(s.builds["grafana"].context, dir.path().join("g"));
        assert_eq!(s.builds["grafana"].args["A"], "1");
        let e = err_text(
            s.apply_file(
                "build:\n  grafana:\n    context: nowhere\n",
                &dir.path().join("c.yaml"),
            )
            .unwrap_err(),
        );
        assert!(e.contains("no Dockerfile"), "{e}");
        let e = err_text(
            s.apply_file(
                "build:\n  api:\n    context: g\n",
                &dir.path().join("c.yaml"),
            )
            .unwrap_err(),
        );
        assert!(e.contains("cannot be built"), "{e}");
    }

    #[test]
    fn the_webhook_url_is_validated_and_never_shown_whole() {
        let mut s = Settings::defaults(PathBuf::new());
        assert!(s.alerting.webhook_url.is_none());
        s.apply_file(
            "alerting:\n  webhook_url: https://bob:hunter2@hooks.example.com:8443/T0K3N?x=SECRET\n",
            Path::new("/p/irisctl.yaml"),
        )
        .unwrap();
        let url = s.alerting.webhook_url.clone().unwrap();
        assert_eq!(
            url.expose(),
            "https://bob:hunter2@hooks.example.com:8443/T0K3N?x=SECRET"
        );
        assert_eq!(url.shown(), "https://***@hooks.example.com:8443/…");
        let printed = to_yaml(&s).unwrap() + &format!("{s:?}");
        for secret in ["hunter2", "bob", "T0K3N", "SECRET"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        // Empty turns delivery off again (a variable overriding the file).
        s.apply(
            "ALERTING_WEBHOOK_URL",
            "",
            "environment variable IRISCTL_ALERTING_WEBHOOK_URL",
        )
        .unwrap();
        assert!(s.alerting.webhook_url.is_none());
        for bad in [
            "ftp://u:hunter2@host/x",
            "file:///etc/passwd",
            "hooks.example.com/hunter2",
            "http://",
            "not a url hunter2",
        ] {
            let e = err_text(
                s.apply_file(
                    &format!("alerting:\n  webhook_url: \"{bad}\"\n"),
                    Path::new("/p/irisctl.yaml"),
                )
                .unwrap_err(),
            );
            assert!(
                e.contains("key `alerting.webhook_url`")
                    && e.contains("is not an http or https URL")
                    && e.contains("hint: give the full address"),
                "{bad}: {e}"
            );
            assert!(!e.contains("hunter2"), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "IRISCTL_ALERTING_WEBHOOK_URL=smtp://x:hunter2@y\n",
        )
        .unwrap();
        let e = err_text(resolve(inputs(dir.path(), &[], vec![])).unwrap_err());
        assert!(
            e.contains(".env` line 1: IRISCTL_ALERTING_WEBHOOK_URL=") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn prometheus_durations() {
        for (text, ms) in [
            ("30m", 1_800_000),
            ("0s", 0),
            ("1h30m", 5_400_000),
            ("90s", 90_000),
            ("500ms", 500),
            ("1m30s500ms", 90_500),
            (" 2d ", 172_800_000),
        ] {
            assert_eq!(parse_prometheus_duration(text), Some(ms), "{text}");
        }
        for bad in [
            "",
            "30",
            "m",
            "1.5m",
            "-1m",
            "30m1h",
            "1m1m",
            "5 m",
            "1y",
            "1M",
            "ms5",
            "99999999999999w",
        ] {
            assert_eq!(parse_prometheus_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn drift_settings_are_validated() {
        let mut s = Settings::defaults(PathBuf::new());
        assert_eq!(
            (
                s.alerting.drift_window.as_str(),
                s.alerting.drift_for.as_str(),
                s.alerting.drift_stddevs.as_str()
            ),
            ("30m", "15m", "1")
        );
        s.apply_file(
            "alerting:\n  drift_window: 1m\n  drift_for: 0s\n  drift_stddevs: 2.50\n",
            Path::new("/p/c.yaml"),
        )
        .unwrap();
        assert_eq!(
            (
                s.alerting.drift_window.as_str(),
                s.alerting.drift_for.as_str(),
                s.alerting.drift_stddevs.as_str()
            ),
            ("1m", "0s", "2.5")
        );
        for (yaml, needle) in [
            (
                "drift_window: 10s",
                "key `alerting.drift_window`: \"10s\" is not a Prometheus duration from 30s to 24h",
            ),
            ("drift_window: 30", "is not a Prometheus duration"),
            (
                "drift_for: 2d",
                "key `alerting.drift_for`: \"2d\" is not a Prometheus duration from 0s to 24h",
            ),
            (
                "drift_stddevs: 0",
                "key `alerting.drift_stddevs`: \"0\" is not a number of standard deviations",
            ),
            (
                "drift_stddevs: .nan",
                "is not a number of standard deviations",
            ),
            (
                "drift_stddevs: 1e9",
                "is not a number of standard deviations",
            ),
        ] {
            let e = err_text(
                s.apply_file(&format!("alerting:\n  {yaml}\n"), Path::new("/p/c.yaml"))
                    .unwrap_err(),
            );
            assert!(
                e.contains(needle) && e.contains("hint: give"),
                "{yaml}: {e}"
            );
        }
        let e = err_text(
            s.apply(
                "ALERTING_DRIFT_FOR",
                "soon",
                "environment variable IRISCTL_ALERTING_DRIFT_FOR",
            )
            .unwrap_err(),
        );
        assert!(
            e.starts_with("environment variable IRISCTL_ALERTING_DRIFT_FOR: \"soon\""),
            "{e}"
        );
    }

    /// monitoring/test-rules tests the rules rendered with these defaults.
    #[test]
    fn test_rules_renders_the_default_drift_settings() {
        let script = include_str!("../monitoring/test-rules");
        let d = Settings::defaults(PathBuf::new()).alerting;
        for (name, value) in [
            ("drift_window", &d.drift_window),
            ("drift_for", &d.drift_for),
            ("drift_stddevs", &d.drift_stddevs),
        ] {
            let sed = format!("'s/\\${{{name}}}/{value}/g'");
            assert!(script.contains(&sed), "monitoring/test-rules lacks {sed}");
        }
    }

    #[test]
    fn memory_limits_take_mib_or_gib_within_bounds() {
        let mut s = Settings::defaults(PathBuf::new());
        assert_eq!(s.memory.api, 512 * MIB);
        s.apply_file(
            "memory:\n  api: 1g\n  frontend: 96M\n",
            Path::new("/p/c.yaml"),
        )
        .unwrap();
        assert_eq!((s.memory.api, s.memory.frontend), (1024 * MIB, 96 * MIB));
        let shown = serde_json::to_value(&s.memory).unwrap();
        assert_eq!(shown, serde_json::json!({"api": "1g", "frontend": "96m"}));
        s.apply("API_MEMORY", " 768MiB ", "t").unwrap();
        assert_eq!(s.memory.api, 768 * MIB);
        for bad in [
            "",
            "512",
            "0m",
            "15m",
            "257g",
            "1.5g",
            "-1m",
            "1t",
            "m",
            "99999999999999999999g",
        ] {
            let e = s.apply("API_MEMORY", bad, "flag").unwrap_err();
            assert!(crate::error::hint_of(&e).is_some(), "{bad:?}");
            assert!(
                err_text(e).contains("is not a memory limit from 16m to 256g"),
                "{bad:?}"
            );
        }
        let e = err_text(
            s.apply_file("memory:\n  api: lots\n", Path::new("/p/c.yaml"))
                .unwrap_err(),
        );
        assert!(
            e.contains("key `memory.api`: \"lots\" is not a memory limit"),
            "{e}"
        );
    }

    #[test]
    fn the_alertmanager_port_conflicts_only_when_it_runs() {
        let mut s = Settings::defaults(PathBuf::new());
        s.apply("ALERTMANAGER_PORT", "9090", "t").unwrap();
        s.validate().unwrap();
        s.apply("ALERTING_WEBHOOK_URL", "http://r:8080/", "t")
            .unwrap();
        let e = err_text(s.validate().unwrap_err());
        assert!(
            e.contains("the prometheus and alertmanager services are both set to host port 9090"),
            "{e}"
        );
        s.apply_file(
            "ports:\n  alertmanager: 9193\nimages:\n  alertmanager: irisctl-offline/alertmanager:0.25\n",
            Path::new("/p/c.yaml"),
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.images.alertmanager, "irisctl-offline/alertmanager:0.25");
    }

    #[test]
    fn client_host_for_wildcard_binds() {
        let mut s = Settings::defaults(PathBuf::new());
        s.apply("BIND", "0.0.0.0", "t").unwrap();
        assert_eq!(s.client_host(), "127.0.0.1");
        s.apply("BIND", "::", "t").unwrap();
        assert_eq!(s.client_host(), "[::1]");
    }

    /// Fuzz: random documents built from real keys, wrong keys, odd values and raw bytes. The
    /// parser must never panic, and every refusal must carry a hint.
    #[test]
    fn fuzz_settings_parsers_never_panic() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let keys = [
            "project",
            "bind",
            "ports",
            "api",
            "frontend",
            "prometheus",
            "grafana",
            "images",
            "python",
            "node",
            "nginx",
            "build",
            "context",
            "args",
            "timeouts",
            "health",
            "admin_user",
            "alerting",
            "webhook_url",
            "alertmanager",
            "x",
            "",
        ];
        let values = [
            "8000",
            "-1",
            "0",
            "65536",
            "1e9",
            "~",
            "null",
            "true",
            "[1, 2]",
            "{a: b}",
            "\"\"",
            "'",
            "\"",
            "127.0.0.1",
            "::1",
            "http://u:p@h:1/x",
            "ftp://h",
            "iris",
            "Iris!",
            "python:3.11",
            "a b",
            "&anchor",
            "*alias",
            "!!binary x",
            "|",
            ">",
            "- item",
            "\t",
            "🙂",
            "%",
            "@",
            ":",
        ];
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..4000 {
            let mut doc = String::new();
            for _ in 0..(next() % 8) {
                let depth = (next() % 3) as usize;
                let key = keys[(next() % keys.len() as u64) as usize];
                let value = values[(next() % values.len() as u64) as usize];
                match next() % 4 {
                    0 => doc.push_str(&format!("{}{key}:\n", "  ".repeat(depth))),
                    1 => doc.push_str(&format!("{}{key}: {value}\n", "  ".repeat(depth))),
                    2 => doc.push_str(&format!("{}- {value}\n", "  ".repeat(depth))),
                    _ => {
                        doc.extend((0..(next() % 12)).map(|_| char::from((next() % 95 + 32) as u8)))
                    }
                }
            }
            let mut s = Settings::defaults(PathBuf::new());
            if let Err(e) = s.apply_file(&doc, &dir.path().join("f.yaml")) {
                assert!(
                    crate::error::hint_of(&e).is_some(),
                    "no hint for {doc:?}: {e:#}"
                );
            }
            if let Err(e) = parse_dotenv(&doc, Path::new(".env")) {
                assert!(
                    crate::error::hint_of(&e).is_some(),
                    "no hint for {doc:?}: {e:#}"
                );
            }
            for key in KNOWN_KEYS {
                let value = values[(next() % values.len() as u64) as usize];
                if let Err(e) = s.apply(key, value, "fuzz") {
                    assert!(
                        crate::error::hint_of(&e).is_some(),
                        "no hint for {key}={value:?}"
                    );
                }
            }
        }
    }

    /// Every key a settings file accepts is documented (as a commented line) in
    /// templates/irisctl.yaml, and the template names no key the parser refuses.
    #[test]
    fn the_template_documents_every_key() {
        let template = include_str!("../templates/irisctl.yaml");
        let start = template.find("# project:").expect("a `project:` line");
        let uncommented: String = template[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed: FileLayer = serde_yaml::from_str(&uncommented).expect("the template parses");
        let documented = serde_yaml::to_value(&parsed).unwrap();
        let v = |s: &str| Some(serde_yaml::Value::String(s.into()));
        let full = FileLayer {
            project: Some("p".into()),
            bind: Some("b".into()),
            ports: Some(PortsLayer {
                api: v("1"),
                frontend: v("1"),
                prometheus: v("1"),
                grafana: v("1"),
                alertmanager: v("1"),
            }),
            images: Some(ImagesLayer {
                python: Some("i".into()),
                node: Some("i".into()),
                nginx: Some("i".into()),
                prometheus: Some("i".into()),
                grafana: Some("i".into()),
                alertmanager: Some("i".into()),
            }),
            build: Some(BTreeMap::from([(
                "grafana".to_string(),
                BuildLayer {
                    context: "c".into(),
                    dockerfile: Some("d".into()),
                    args: Some(BTreeMap::new()),
                },
            )])),
            memory: Some(MemoryLayer {
                api: v("1"),
                frontend: v("1"),
            }),
            timeouts: Some(TimeoutsLayer { health: v("1") }),
            grafana: Some(GrafanaLayer {
                admin_user: Some("a".into()),
            }),
            swarm: Some(SwarmLayer {
                api_replicas: v("1"),
                registry: Some("r".into()),
            }),
            alerting: Some(AlertingLayer {
                webhook_url: v("u"),
                drift_window: v("1m"),
                drift_for: v("1m"),
                drift_stddevs: v("1"),
            }),
        };
        fn paths(v: &serde_yaml::Value, prefix: &str, out: &mut Vec<String>) {
            if let serde_yaml::Value::Mapping(m) = v {
                for (k, v) in m {
                    if v.is_null() {
                        continue; // a key the template leaves out parses as null
                    }
                    let key = format!("{prefix}{}", k.as_str().unwrap_or("?"));
                    if v.is_mapping() && !v.as_mapping().is_some_and(|m| m.is_empty()) {
                        paths(v, &format!("{key}."), out);
                    } else {
                        out.push(key);
                    }
                }
            }
        }
        let (mut want, mut have) = (Vec::new(), Vec::new());
        paths(&serde_yaml::to_value(&full).unwrap(), "", &mut want);
        paths(&documented, "", &mut have);
        for key in &want {
            assert!(
                have.contains(key),
                "templates/irisctl.yaml does not document `{key}`"
            );
        }
        // And every IRISCTL_ variable is named beside its key.
        for key in KNOWN_KEYS {
            let var = format!("IRISCTL_{key}");
            assert!(template.contains(&var), "{var} is not documented");
        }
    }
}
