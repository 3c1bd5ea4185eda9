//! Parsers and checks of single values: ports, sizes, durations, image references, project
//! names, webhook URLs, `.env` lines, YAML scalars. Pure; the key table ([`super::keys`]) calls them.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::keys::Refusal;
use crate::error::hinted;

/// A validated `http(s)://` URL that is never printed whole.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Validate `value`: an absolute `http` or `https` URL with a host that is not loopback
    /// (Alertmanager posts from its container: loopback there is the container itself). The
    /// error names what is wrong without repeating the value (it may hold a token).
    pub fn parse(value: &str) -> std::result::Result<WebhookUrl, BadWebhook> {
        let v = value.trim();
        let url =
            reqwest::Url::parse(v).map_err(|_| BadWebhook::Malformed("not an absolute URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BadWebhook::Malformed("its scheme is not http or https"));
        }
        let host = url.host_str().unwrap_or("");
        if host.is_empty() {
            return Err(BadWebhook::Malformed("it has no host"));
        }
        // The URL parser has normalised the host (`127.1` is `127.0.0.1`, IPv6 is bracketed).
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = match bare.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_unspecified(),
            Ok(std::net::IpAddr::V6(ip)) => {
                ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Err(_) => {
                let d = bare.trim_end_matches('.').to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
        };
        if loopback {
            return Err(BadWebhook::Loopback);
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

/// Why a webhook URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadWebhook {
    /// Not an http(s) URL with a host: why.
    Malformed(&'static str),
    /// Its host is loopback (`127.0.0.1`, `localhost`, `::1`): Alertmanager's own container.
    Loopback,
}

/// The refusal a settings layer reports for a bad webhook URL (the value is never repeated).
pub fn webhook_refusal(bad: BadWebhook) -> Refusal {
    let (is_not, hint) = match bad {
        BadWebhook::Malformed(why) => (
            format!("an http or https URL: {why}"),
            "give the full address Alertmanager posts to, e.g. http://receiver:8080/alerts or https://hooks.example.com/T0K3N; an empty value turns delivery off".to_string(),
        ),
        BadWebhook::Loopback => (
            "a webhook address Alertmanager can reach: its host is loopback, which inside the Alertmanager container is the container itself".to_string(),
            "give a receiver on the stack's network by its container name (e.g. http://receiver:8080/alerts, a container attached to network `<project>-network`), or this host's address on that network, its gateway (`docker network inspect <project>-network --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}'`, e.g. http://172.18.0.1:8080/alerts) with the receiver listening on that address".to_string(),
        ),
    };
    Refusal {
        is_not,
        hint,
        hide_value: true,
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

/// A YAML scalar as the string a user would have typed (`8000`, `true`, `abc`).
pub(super) fn yaml_scalar(v: &serde_yaml::Value) -> String {
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

pub(super) const MIB: u64 = 1024 * 1024;

/// A memory limit as `<n>m` or `<n>g` (MiB or GiB; `mb`, `mib`, `gb`, `gib` and upper case
/// too), from 16 MiB to 256 GiB, in bytes.
pub(super) fn parse_memory(value: &str) -> Option<u64> {
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

pub(super) fn parse_port(value: &str) -> Option<u16> {
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
