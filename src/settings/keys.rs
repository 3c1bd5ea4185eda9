//! The one table of settings keys. Each [`Key`] declares, once, its `irisctl.yaml` key, its
//! `IRISCTL_*` variable, its flag, how its value is parsed and checked, and its documentation
//! line. Resolution, `--print-settings` and templates/irisctl.yaml (checked by a test against
//! [`template`]) all read this table.

use std::net::IpAddr;

use super::parse::{
    parse_duration_secs, parse_memory, parse_port, parse_prometheus_duration, validate_image,
    validate_project, webhook_refusal, WebhookUrl, MAX_DURATION_SECS,
};
use super::Settings;

/// Why a value was refused: what it is not, and the next step. The caller adds where it came from.
#[derive(Debug)]
pub struct Refusal {
    /// Completes "`<value>` is not …".
    pub is_not: String,
    pub hint: String,
    /// The value may hold a secret (a webhook token): the message does not repeat it.
    pub hide_value: bool,
}

impl Refusal {
    fn new(is_not: impl Into<String>, hint: impl Into<String>) -> Self {
        Refusal {
            is_not: is_not.into(),
            hint: hint.into(),
            hide_value: false,
        }
    }
}

/// Parses, checks and stores a value.
pub type Setter = fn(&mut Settings, &str) -> Result<(), Refusal>;
/// The value as shown (`None`: unset).
pub type Getter = fn(&Settings) -> Option<String>;

/// Store a parsed value.
fn store<T>(slot: &mut T, value: Result<T, Refusal>) -> Result<(), Refusal> {
    *slot = value?;
    Ok(())
}

/// One setting.
pub struct Key {
    /// Its path in irisctl.yaml, e.g. `ports.api`.
    pub file: &'static str,
    /// Its variable without the `IRISCTL_` prefix (in `.env` or the environment).
    pub var: &'static str,
    /// The flag that sets it, if any (`--api-port`).
    pub flag: Option<&'static str>,
    /// The documentation line (templates/irisctl.yaml, `irisctl init --print-template`).
    pub doc: &'static str,
    /// A value the template shows where the key has no default (`None` shows the default).
    pub example: Option<&'static str>,
    /// Parse, check and store a value.
    pub set: Setter,
    /// The value as shown (`None`: unset); never a secret whole.
    pub get: Getter,
}

impl Key {
    /// `IRISCTL_<var>`.
    pub fn variable(&self) -> String {
        format!("IRISCTL_{}", self.var)
    }
}

/// Groups of irisctl.yaml (mappings of keys), with the comment the template gives them.
pub const GROUPS: &[(&str, &str)] = &[
    ("ports", ""),
    (
        "images",
        "base images (Dockerfile build args) and third-party images",
    ),
    (
        "memory",
        "memory limit of each built service's container (a release carries it; rollback restores it)",
    ),
    ("timeouts", ""),
    ("grafana", ""),
    (
        "alerting",
        "alert delivery; without a webhook the rules still evaluate in Prometheus",
    ),
    (
        "release",
        "how a changed API is released: `swap` (health-gated) or `canary` (up --canary for one run)",
    ),
    (
        "release.canary",
        "a canary's steps and its gates, each comparing the canary with the stable container over the step",
    ),
    ("swarm", "used with --target swarm only"),
    (
        "shadow",
        "shadow traffic: `irisctl shadow start` runs the project's API as a challenger on copies of live requests",
    ),
];

/// Variables `irisctl grafana provision` reads (`IRISCTL_GRAFANA_URL`, …): not settings, so the
/// settings layers pass over them.
pub const GRAFANA_PROVISION_VARS: [&str; 4] = [
    "GRAFANA_URL",
    "GRAFANA_USER",
    "GRAFANA_PASSWORD",
    "GRAFANA_TOKEN",
];

/// Variables read before the settings (`--config`, `--project-dir`), by the SSH connection to
/// a remote engine (`IRISCTL_SSH_COMMAND`) or by a test hook of the printer; the settings
/// layers pass over them too.
pub const NOT_SETTINGS: [&str; 4] = ["CONFIG", "PROJECT_DIR", "SSH_COMMAND", "TEST_HOLD_AT"];

/// Old names still accepted: (old, current).
pub const ALIASES: &[(&str, &str)] = &[("WAIT_TIMEOUT", "HEALTH_TIMEOUT")];

/// The key named by its variable (without `IRISCTL_`), aliases included.
pub fn by_var(var: &str) -> Option<&'static Key> {
    let var = ALIASES
        .iter()
        .find(|(old, _)| *old == var)
        .map_or(var, |(_, new)| new);
    KEYS.iter().find(|k| k.var == var)
}

/// The key at `path` in irisctl.yaml.
pub fn by_file(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.file == path)
}

fn port_key(
    file: &'static str,
    var: &'static str,
    flag: Option<&'static str>,
    doc: &'static str,
) -> Key {
    fn refuse() -> Refusal {
        Refusal::new("a port number", "give a whole number from 1 to 65535")
    }
    let (set, get): (Setter, Getter) = match var {
        "API_PORT" => (
            |s, v| store(&mut s.ports.api, parse_port(v).ok_or_else(refuse)),
            |s| Some(s.ports.api.to_string()),
        ),
        "FRONTEND_PORT" => (
            |s, v| store(&mut s.ports.frontend, parse_port(v).ok_or_else(refuse)),
            |s| Some(s.ports.frontend.to_string()),
        ),
        "PROMETHEUS_PORT" => (
            |s, v| store(&mut s.ports.prometheus, parse_port(v).ok_or_else(refuse)),
            |s| Some(s.ports.prometheus.to_string()),
        ),
        "GRAFANA_PORT" => (
            |s, v| store(&mut s.ports.grafana, parse_port(v).ok_or_else(refuse)),
            |s| Some(s.ports.grafana.to_string()),
        ),
        _ => (
            |s, v| store(&mut s.ports.alertmanager, parse_port(v).ok_or_else(refuse)),
            |s| Some(s.ports.alertmanager.to_string()),
        ),
    };
    Key {
        file,
        var,
        flag,
        doc,
        example: None,
        set,
        get,
    }
}

fn image(value: &str) -> Result<String, Refusal> {
    validate_image(value).map_err(|why| {
        Refusal::new(
            format!("an image reference ({why})"),
            "write it as NAME[:TAG], e.g. python:3.11-slim or irisctl-offline/python:3.11",
        )
    })?;
    Ok(value.to_string())
}

fn memory(value: &str) -> Result<u64, Refusal> {
    parse_memory(value).ok_or_else(|| {
        Refusal::new(
            "a memory limit from 16m to 256g",
            "give a whole number of MiB or GiB, e.g. 512m or 2g",
        )
    })
}

/// A memory limit as written: `512m`, `1g`.
pub fn shown_size(bytes: u64) -> String {
    let mib = bytes / super::MIB;
    if mib % 1024 == 0 {
        format!("{}g", mib / 1024)
    } else {
        format!("{mib}m")
    }
}

fn drift_duration(value: &str, window: bool) -> Result<String, Refusal> {
    let (min, shown_min) = if window { (30_000, "30s") } else { (0, "0s") };
    parse_prometheus_duration(value)
        .filter(|ms| (min..=MAX_DURATION_SECS * 1000).contains(ms))
        .map(|_| value.trim().to_string())
        .ok_or_else(|| {
            Refusal::new(
                format!("a Prometheus duration from {shown_min} to 24h"),
                if window {
                    "give a number and a unit (ms, s, m, h, d), e.g. 30m or 1h30m; the window needs a few scrapes (5 s apart)"
                } else {
                    "give a number and a unit (ms, s, m, h, d), e.g. 15m; 0s fires as soon as the drift is seen"
                },
            )
        })
}

/// A share from 0 to 1.
fn fraction(value: &str) -> Result<f64, Refusal> {
    value
        .trim()
        .parse()
        .ok()
        .filter(|x: &f64| (0.0..=1.0).contains(x))
        .ok_or_else(|| {
            Refusal::new(
                "a share from 0 to 1",
                "give a number like 0.02 (2 %) or 0.3",
            )
        })
}

/// `10,50`: percentages from 1 to 99, increasing.
fn canary_steps(value: &str) -> Result<Vec<u8>, Refusal> {
    let refuse = || {
        Refusal::new(
            "a list of increasing percentages from 1 to 99",
            "write the canary's share at each step separated by commas, e.g. 10,50 or 5,25,50 (100 follows the last step)",
        )
    };
    let steps: Vec<u8> = value
        .split(',')
        .map(|p| p.trim().trim_end_matches('%').parse().ok())
        .collect::<Option<_>>()
        .ok_or_else(refuse)?;
    if steps.is_empty()
        || steps.iter().any(|p| !(1..=99).contains(p))
        || steps.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(refuse());
    }
    Ok(steps)
}

/// Every setting, in the order the template and `--print-settings` show them.
pub static KEYS: std::sync::LazyLock<Vec<Key>> = std::sync::LazyLock::new(|| {
    vec![
        Key {
            file: "project",
            var: "PROJECT_NAME",
            flag: Some("--project-name"),
            doc: "prefixes containers, network, volumes, built images",
            example: None,
            set: |s, v| {
                validate_project(v).map_err(|why| {
                    Refusal::new(
                        format!("a valid project name ({why})"),
                        "use lowercase letters, digits, '-' and '_', starting with a letter or digit, e.g. `iris-test`",
                    )
                })?;
                s.project = v.to_string();
                Ok(())
            },
            get: |s| Some(s.project.clone()),
        },
        Key {
            file: "bind",
            var: "BIND",
            flag: Some("--bind"),
            doc: "host address of the published ports; 0.0.0.0 = every interface",
            example: None,
            set: |s, v| {
                s.bind = if v.trim() == "localhost" {
                    IpAddr::from([127, 0, 0, 1])
                } else {
                    v.trim().parse().map_err(|_| {
                        Refusal::new("an IP address", "give an address like 127.0.0.1 (the default, this host only) or 0.0.0.0 (every interface)")
                    })?
                };
                Ok(())
            },
            get: |s| Some(s.bind.to_string()),
        },
        port_key("ports.api", "API_PORT", Some("--api-port"), ""),
        port_key("ports.frontend", "FRONTEND_PORT", Some("--frontend-port"), ""),
        port_key("ports.prometheus", "PROMETHEUS_PORT", Some("--prometheus-port"), ""),
        port_key("ports.grafana", "GRAFANA_PORT", Some("--grafana-port"), ""),
        port_key(
            "ports.alertmanager",
            "ALERTMANAGER_PORT",
            None,
            "published only when alerting.webhook_url is set",
        ),
        Key {
            file: "images.python",
            var: "PYTHON_IMAGE",
            flag: None,
            doc: "",
            example: None,
            set: |s, v| store(&mut s.images.python, image(v)),
            get: |s| Some(s.images.python.clone()),
        },
        Key {
            file: "images.node",
            var: "NODE_IMAGE",
            flag: None,
            doc: "",
            example: None,
            set: |s, v| store(&mut s.images.node, image(v)),
            get: |s| Some(s.images.node.clone()),
        },
        Key {
            file: "images.nginx",
            var: "NGINX_IMAGE",
            flag: None,
            doc: "",
            example: None,
            set: |s, v| store(&mut s.images.nginx, image(v)),
            get: |s| Some(s.images.nginx.clone()),
        },
        Key {
            file: "images.prometheus",
            var: "PROMETHEUS_IMAGE",
            flag: None,
            doc: "",
            example: None,
            set: |s, v| store(&mut s.images.prometheus, image(v)),
            get: |s| Some(s.images.prometheus.clone()),
        },
        Key {
            file: "images.grafana",
            var: "GRAFANA_IMAGE",
            flag: None,
            doc: "",
            example: None,
            set: |s, v| store(&mut s.images.grafana, image(v)),
            get: |s| Some(s.images.grafana.clone()),
        },
        Key {
            file: "images.alertmanager",
            var: "ALERTMANAGER_IMAGE",
            flag: None,
            doc: "",
            example: None,
            set: |s, v| store(&mut s.images.alertmanager, image(v)),
            get: |s| Some(s.images.alertmanager.clone()),
        },
        Key {
            file: "memory.api",
            var: "API_MEMORY",
            flag: None,
            doc: "16m to 256g, in m or g",
            example: None,
            set: |s, v| store(&mut s.memory.api, memory(v)),
            get: |s| Some(shown_size(s.memory.api)),
        },
        Key {
            file: "memory.frontend",
            var: "FRONTEND_MEMORY",
            flag: None,
            doc: "",
            example: None,
            set: |s, v| store(&mut s.memory.frontend, memory(v)),
            get: |s| Some(shown_size(s.memory.frontend)),
        },
        Key {
            file: "timeouts.health",
            var: "HEALTH_TIMEOUT",
            flag: Some("--wait-timeout"),
            doc: "seconds `up` waits for health (1 to 86400)",
            example: None,
            set: |s, v| {
                s.health_timeout = parse_duration_secs("", v).map_err(|_| {
                    Refusal::new(
                        format!("a number of seconds from 1 to {MAX_DURATION_SECS} (24 hours)"),
                        format!("give a whole number of seconds from 1 to {MAX_DURATION_SECS}, e.g. 180"),
                    )
                })?;
                Ok(())
            },
            get: |s| Some(s.health_timeout.as_secs().to_string()),
        },
        Key {
            file: "grafana.admin_user",
            var: "GRAFANA_ADMIN_USER",
            flag: None,
            doc: "the password is generated into .env on the first `up`",
            example: None,
            set: |s, v| {
                if v.trim().is_empty() {
                    return Err(Refusal::new("a user name", "give a non-empty user name"));
                }
                s.grafana_admin_user = v.to_string();
                Ok(())
            },
            get: |s| Some(s.grafana_admin_user.clone()),
        },
        Key {
            file: "alerting.webhook_url",
            var: "ALERTING_WEBHOOK_URL",
            flag: None,
            doc: "http(s) URL Alertmanager posts firing and resolved alerts to (runs an Alertmanager; empty = off); never printed whole",
            example: Some("http://receiver:8080/alerts"),
            set: |s, v| {
                s.alerting.webhook_url = if v.trim().is_empty() {
                    None
                } else {
                    Some(WebhookUrl::parse(v).map_err(webhook_refusal)?)
                };
                Ok(())
            },
            get: |s| s.alerting.webhook_url.as_ref().map(WebhookUrl::shown),
        },
        Key {
            file: "alerting.drift_window",
            var: "ALERTING_DRIFT_WINDOW",
            flag: None,
            doc: "IrisInputDrift compares the mean input of this window (30s to 24h)",
            example: None,
            set: |s, v| store(&mut s.alerting.drift_window, drift_duration(v, true)),
            get: |s| Some(s.alerting.drift_window.clone()),
        },
        Key {
            file: "alerting.drift_for",
            var: "ALERTING_DRIFT_FOR",
            flag: None,
            doc: "how long the drift lasts before the alert fires (0s to 24h)",
            example: None,
            set: |s, v| store(&mut s.alerting.drift_for, drift_duration(v, false)),
            get: |s| Some(s.alerting.drift_for.clone()),
        },
        Key {
            file: "alerting.drift_stddevs",
            var: "ALERTING_DRIFT_STDDEVS",
            flag: None,
            doc: "threshold, in training standard deviations from the training mean",
            example: None,
            set: |s, v| {
                let k: f64 = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|k: &f64| k.is_finite() && *k > 0.0 && *k <= 100.0)
                    .ok_or_else(|| {
                        Refusal::new(
                            "a number of standard deviations above 0 and at most 100",
                            "give a number like 1 (the default), 0.5 or 2.5",
                        )
                    })?;
                s.alerting.drift_stddevs = k.to_string();
                Ok(())
            },
            get: |s| Some(s.alerting.drift_stddevs.clone()),
        },
        Key {
            file: "release.strategy",
            var: "RELEASE_STRATEGY",
            flag: None,
            doc: "swap: the new API takes all traffic once healthy; canary: a growing share, judged step by step",
            example: None,
            set: |s, v| {
                s.release.canary_strategy = match v.trim() {
                    "swap" => false,
                    "canary" => true,
                    _ => {
                        return Err(Refusal::new(
                            "a release strategy",
                            "write `swap` (the default) or `canary`",
                        ))
                    }
                };
                Ok(())
            },
            get: |s| Some(if s.release.canary_strategy { "canary" } else { "swap" }.into()),
        },
        Key {
            file: "release.canary.steps",
            var: "RELEASE_CANARY_STEPS",
            flag: None,
            doc: "the canary's share of requests at each step, in percent, increasing (then 100)",
            example: None,
            set: |s, v| store(&mut s.release.canary.steps, canary_steps(v)),
            get: |s| {
                Some(
                    s.release
                        .canary
                        .steps
                        .iter()
                        .map(u8::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                )
            },
        },
        Key {
            file: "release.canary.step_duration",
            var: "RELEASE_CANARY_STEP_DURATION",
            flag: None,
            doc: "how long each step lasts and the window its gates judge (10s to 24h)",
            example: None,
            set: |s, v| {
                let ms = parse_prometheus_duration(v)
                    .filter(|ms| (10_000..=MAX_DURATION_SECS * 1000).contains(ms))
                    .ok_or_else(|| {
                        Refusal::new(
                            "a duration from 10s to 24h",
                            "give a number and a unit (s, m, h), e.g. 60s or 5m; a step needs a few scrapes (5 s apart)",
                        )
                    })?;
                s.release.canary.step_duration = std::time::Duration::from_millis(ms);
                Ok(())
            },
            get: |s| Some(format!("{}s", s.release.canary.step_duration.as_secs())),
        },
        Key {
            file: "release.canary.min_requests",
            var: "RELEASE_CANARY_MIN_REQUESTS",
            flag: None,
            doc: "/predict requests the canary answers in a step before its gates judge (fewer: it waits)",
            example: None,
            set: |s, v| {
                s.release.canary.min_requests = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| {
                        Refusal::new(
                            "a number of requests",
                            "give a whole number from 1 to 1000000, e.g. 20",
                        )
                    })?;
                Ok(())
            },
            get: |s| Some(s.release.canary.min_requests.to_string()),
        },
        Key {
            file: "release.canary.max_5xx_increase",
            var: "RELEASE_CANARY_MAX_5XX_INCREASE",
            flag: None,
            doc: "gate: the canary's 5xx ratio minus the stable one's, at most (0 to 1)",
            example: None,
            set: |s, v| store(&mut s.release.canary.max_5xx_increase, fraction(v)),
            get: |s| Some(s.release.canary.max_5xx_increase.to_string()),
        },
        Key {
            file: "release.canary.max_p95_increase",
            var: "RELEASE_CANARY_MAX_P95_INCREASE",
            flag: None,
            doc: "gate: the canary's /predict p95 minus the stable one's, at most (1ms to 1h)",
            example: None,
            set: |s, v| {
                let ms = parse_prometheus_duration(v)
                    .filter(|ms| (1..=3_600_000).contains(ms))
                    .ok_or_else(|| {
                        Refusal::new(
                            "a duration from 1ms to 1h",
                            "give a number and a unit (ms, s), e.g. 100ms or 1s",
                        )
                    })?;
                s.release.canary.max_p95_increase = std::time::Duration::from_millis(ms);
                Ok(())
            },
            get: |s| Some(format!("{}ms", s.release.canary.max_p95_increase.as_millis())),
        },
        Key {
            file: "release.canary.max_low_confidence_increase",
            var: "RELEASE_CANARY_MAX_LOW_CONFIDENCE_INCREASE",
            flag: None,
            doc: "gate: the canary's share of predictions below 0.6 confidence minus the stable one's (0 to 1)",
            example: None,
            set: |s, v| store(&mut s.release.canary.max_low_confidence_increase, fraction(v)),
            get: |s| Some(s.release.canary.max_low_confidence_increase.to_string()),
        },
        Key {
            file: "release.canary.max_species_distance",
            var: "RELEASE_CANARY_MAX_SPECIES_DISTANCE",
            flag: None,
            doc: "gate: distance between the two distributions of predicted species (0 same, 1 disjoint)",
            example: None,
            set: |s, v| store(&mut s.release.canary.max_species_distance, fraction(v)),
            get: |s| Some(s.release.canary.max_species_distance.to_string()),
        },
        Key {
            file: "swarm.api_replicas",
            var: "API_REPLICAS",
            flag: Some("--api-replicas"),
            doc: "",
            example: None,
            set: |s, v| {
                s.api_replicas = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| {
                        Refusal::new("a number of replicas", "give a whole number from 1 to 100")
                    })?;
                Ok(())
            },
            get: |s| Some(s.api_replicas.to_string()),
        },
        Key {
            file: "swarm.registry",
            var: "REGISTRY",
            flag: None,
            doc: "built images are pushed there",
            example: Some("registry.example.com:5000/iris"),
            set: |s, v| {
                let v = v.trim().trim_end_matches('/');
                if v.is_empty() || v.contains(char::is_whitespace) || v.contains("://") {
                    return Err(Refusal::new(
                        "a registry address",
                        "give HOST[:PORT][/PATH] without a scheme, e.g. registry.example.com:5000/iris",
                    ));
                }
                s.registry = Some(v.to_string());
                Ok(())
            },
            get: |s| s.registry.clone(),
        },
        Key {
            file: "swarm.nodes",
            var: "SWARM_NODES",
            flag: None,
            doc: "without a registry: the other nodes' engines over SSH, comma-separated; built images are sent to each",
            example: Some("ssh://deploy@node2,ssh://deploy@node3:2222"),
            set: |s, v| {
                let mut nodes = Vec::new();
                for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    match crate::engine::endpoint::endpoint(n) {
                        Ok(crate::engine::endpoint::Endpoint::Ssh(_)) => nodes.push(n.to_string()),
                        _ => {
                            return Err(Refusal::new(
                                "a comma-separated list of ssh:// engine addresses",
                                "give each node as ssh://[USER@]HOST[:PORT], e.g. ssh://deploy@node2,ssh://deploy@node3:2222",
                            ))
                        }
                    }
                }
                s.swarm_nodes = nodes;
                Ok(())
            },
            get: |s| (!s.swarm_nodes.is_empty()).then(|| s.swarm_nodes.join(",")),
        },
        Key {
            file: "shadow.sample",
            var: "SHADOW_SAMPLE",
            flag: None,
            doc: "the share of /predict requests `irisctl shadow start` copies to the challenger, in percent (1 to 100)",
            example: None,
            set: |s, v| {
                s.shadow.sample = v
                    .trim()
                    .trim_end_matches('%')
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| {
                        Refusal::new(
                            "a percentage",
                            "give a whole number from 1 to 100, e.g. 100 (every request) or 25",
                        )
                    })?;
                Ok(())
            },
            get: |s| Some(s.shadow.sample.to_string()),
        },
    ]
});

/// The column where the template's and `--print-settings`' comments start.
const COMMENT_COLUMN: usize = 32;

/// A line `<indent><leaf>: <value>` padded to the comment column, then `# <comment>`.
pub fn commented_line(prefix: &str, path: &str, value: &str, comment: &str) -> String {
    let depth = path.matches('.').count();
    let leaf = path.rsplit('.').next().unwrap_or(path);
    let mut line = format!("{prefix}{}{leaf}:", "  ".repeat(depth));
    if !value.is_empty() {
        line.push(' ');
        line.push_str(value);
    }
    if comment.is_empty() {
        return line;
    }
    let width = COMMENT_COLUMN.max(line.len() + 1);
    format!("{line:<width$}# {comment}")
}

/// The header lines of a key's groups (`release:`, then `  canary:`), each once, before the
/// group's first key.
fn group_header(prefix: &str, path: &str, last: &mut String, out: &mut String, with_doc: bool) {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((_, groups)) = parts.split_last() else {
        return;
    };
    let group = groups.join(".");
    if groups.is_empty() || *last == group {
        return;
    }
    let before: Vec<&str> = last.split('.').filter(|p| !p.is_empty()).collect();
    for depth in 1..=groups.len() {
        if before.len() >= depth && before[..depth] == groups[..depth] {
            continue;
        }
        let g = groups[..depth].join(".");
        let doc = GROUPS
            .iter()
            .find(|(name, _)| *name == g && with_doc)
            .map_or("", |(_, d)| *d);
        out.push_str(&commented_line(prefix, &g, "", doc));
        out.push('\n');
    }
    *last = group;
}

/// templates/irisctl.yaml: every key commented out with its default (or an example), its
/// variable, its flag and its documentation.
pub fn template() -> String {
    let defaults = Settings::defaults(Default::default());
    let mut out = String::from(
        "# irisctl settings (written by `irisctl init`). Every key is optional; the values shown are the\n\
         # built-in defaults. Precedence: defaults < this file < .env < IRISCTL_* variables < flags.\n\
         # Each key's variable (in .env or the environment) and flag are named beside it.\n#\n",
    );
    let mut group = String::new();
    for key in KEYS.iter() {
        if key.file == "timeouts.health" {
            // `build:` is not a key of the table (a mapping per service): documented here.
            out.push_str(BUILD_DOC);
        }
        if key.file == "swarm.api_replicas" {
            // Nor is `release.canary.gates` (a list).
            out.push_str(GATES_DOC);
        }
        group_header("# ", key.file, &mut group, &mut out, true);
        let value = key
            .example
            .map(str::to_string)
            .or_else(|| (key.get)(&defaults))
            .unwrap_or_default();
        let mut names = vec![key.variable()];
        names.extend(key.flag.map(str::to_string));
        let mut comment = names.join(", ");
        if !key.doc.is_empty() {
            comment.push_str(": ");
            comment.push_str(key.doc);
        }
        out.push_str(&commented_line("# ", key.file, &value, &comment));
        out.push('\n');
    }
    out
}

const GATES_DOC: &str = "\
#     gates:                    # your own gates (settings file only): one number per track, `$track` is stable or canary
#       - name: p99 /predict
#         query: histogram_quantile(0.99, sum by (le) (rate(iris_http_request_duration_seconds_bucket{track=\"$track\",handler=\"/predict\"}[$window])))
#         max_increase: 0.2     # the canary's value minus the stable one's, at most
";

const BUILD_DOC: &str = "\
# build:                        # build prometheus or grafana from a context instead
#   grafana:
#     context: ./my-grafana     # relative to this file; needs a Dockerfile with a HEALTHCHECK
#     dockerfile: Dockerfile    # relative to the context
#     args: {}
";

/// `--print-settings`: every key's value in irisctl.yaml's shape, each with where it came from.
pub fn print(settings: &Settings) -> String {
    let mut out = String::from(
        "# resolved settings, each with where its value came from (default, settings file, .env, environment variable or flag)\n",
    );
    // Not a setting (the flag --project-dir or the current directory decides it): a comment, so
    // that the output reads back as a settings file.
    out.push_str(&format!(
        "# project directory: {}\n",
        settings.project_dir.display()
    ));
    let mut group = String::new();
    for key in KEYS.iter() {
        group_header("", key.file, &mut group, &mut out, false);
        let value = (key.get)(settings)
            .map(|v| yaml_value(&v))
            .unwrap_or_default();
        let from = settings
            .origins
            .get(key.var)
            .map_or("default", String::as_str);
        out.push_str(&commented_line("", key.file, &value, from));
        out.push('\n');
    }
    if !settings.builds.is_empty() {
        out.push_str("build:\n");
        for (service, b) in &settings.builds {
            out.push_str(&format!(
                "  {service}:\n    context: {}\n    dockerfile: {}\n",
                yaml_value(&b.context.display().to_string()),
                yaml_value(&b.dockerfile)
            ));
            if !b.args.is_empty() {
                out.push_str("    args:\n");
                for (k, v) in &b.args {
                    out.push_str(&format!("      {}: {}\n", yaml_value(k), yaml_value(v)));
                }
            }
        }
    }
    out
}

/// A scalar as YAML reads it back as the same text: plain when safe, quoted otherwise.
fn yaml_value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@*…[]".contains(c))
        && !v.starts_with(['-', ':', '@', '*', '[', ']'])
        && !v.contains(": ");
    if plain {
        v.to_string()
    } else {
        serde_yaml::to_string(v)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|_| format!("{v:?}"))
    }
}
