//! The HTTP side: a client with basic or bearer auth, Grafana's answers mapped to [`GrafanaError`]
//! (each with a hint), and URL helpers that keep credentials out of messages.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

#[derive(Debug, Clone)]
pub enum Auth {
    Basic { user: String, password: String },
    Token(String),
}

impl Auth {
    fn describe(&self) -> String {
        match self {
            Auth::Basic { user, .. } => format!("basic auth as user `{user}`"),
            Auth::Token(_) => "a service-account token".to_string(),
        }
    }
}

/// What can go wrong talking to Grafana, each with the next step in [`GrafanaError::hint`].
#[derive(Debug, thiserror::Error)]
pub enum GrafanaError {
    #[error("cannot reach Grafana at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("Grafana at {url} did not become ready within {secs} s (last answer: {last})")]
    NotReady {
        url: String,
        secs: u64,
        last: String,
    },
    #[error("Grafana refused the credentials ({credential}): {message}")]
    Unauthorized { credential: String, message: String },
    #[error("Grafana denied `{call}` ({credential}): {message}")]
    Forbidden {
        call: String,
        credential: String,
        message: String,
    },
    #[error("datasource `{name}` already exists with uid `{uid}`, but the dashboards refer to uid `{wanted}`")]
    NameTaken {
        name: String,
        uid: String,
        wanted: String,
    },
    #[error("datasource `{uid}` is read-only (file-provisioned) and differs from what irisctl would set: {diff}")]
    ReadOnlyDatasource { uid: String, diff: String },
    #[error("dashboard `{uid}` is provisioned from the file `{external}` in Grafana (its provider does not set allowUiUpdates), and it differs from `{path}`: Grafana refuses to save over it")]
    ProvisionedDashboard {
        uid: String,
        path: String,
        external: String,
    },
    #[error("dashboard `{uid}` (file `{path}`) changed in Grafana twice while irisctl was saving it (HTTP 412 version-mismatch each time): {message}")]
    DashboardRace {
        uid: String,
        path: String,
        message: String,
    },
    #[error("`{call}` was refused because the object changed meanwhile ({status}): {message}")]
    Changed {
        call: String,
        status: u16,
        message: String,
    },
    #[error("dashboard file `{path}` is not valid JSON: {detail}")]
    InvalidDashboard { path: String, detail: String },
    #[error("cannot read dashboards folder `{path}`: {detail}")]
    DashboardsDir { path: String, detail: String },
    #[error("`{call}` failed with HTTP {status}: {message}")]
    Unexpected {
        call: String,
        status: u16,
        message: String,
    },
}

impl GrafanaError {
    pub fn hint(&self) -> String {
        match self {
            GrafanaError::Unreachable { .. } | GrafanaError::NotReady { .. } => {
                "check the URL (--url, IRISCTL_GRAFANA_URL or GRAFANA_URL) and that Grafana runs (`irisctl status`)".into()
            }
            GrafanaError::Unauthorized { .. } => "check --user/--password or --token (IRISCTL_GRAFANA_USER, IRISCTL_GRAFANA_PASSWORD, IRISCTL_GRAFANA_TOKEN, or the same without IRISCTL_); note that GF_SECURITY_ADMIN_PASSWORD only applies on Grafana's first start: a Grafana data volume older than the password in .env keeps its old one".into(),
            GrafanaError::Forbidden { .. } => "use an admin user or a service-account token with the Admin role".into(),
            GrafanaError::NameTaken { .. } => "rename or delete that datasource in Grafana (Connections → Data sources), then run `irisctl grafana provision` again".into(),
            GrafanaError::ReadOnlyDatasource { .. } | GrafanaError::ProvisionedDashboard { .. } => {
                "change the provisioning file mounted into Grafana (monitoring/grafana/provisioning, or the dashboard file it loads) instead, and restart Grafana".into()
            }
            GrafanaError::DashboardRace { .. } => "something else keeps saving that dashboard (a file provisioner polling a changed file, or a person in the UI); wait a minute and run `irisctl grafana provision` again".into(),
            GrafanaError::Changed { .. } => "someone changed it at the same time; run `irisctl grafana provision` again".into(),
            GrafanaError::InvalidDashboard { .. } => "fix the JSON at the position named, or remove the file from the dashboards folder".into(),
            GrafanaError::DashboardsDir { .. } => "pass an existing folder with --dashboards".into(),
            GrafanaError::Unexpected { .. } => "see Grafana's log for the cause".into(),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, GrafanaError>;

/// A Grafana HTTP API client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    auth: Auth,
    http: reqwest::Client,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

fn message_of(body: &Value) -> String {
    body.get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string())
}

impl Client {
    /// A client for `base`. Credentials embedded in `base` (`https://user:pw@host`) are dropped
    /// (pass them as `auth`, see [`split_userinfo`]), so no message or table ever shows them.
    pub fn new(base: &str, auth: Auth) -> Client {
        let (base, _) = split_userinfo(base);
        let base = base.as_str();
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5));
        // A Grafana on this host is never reached through a proxy (nor are its credentials
        // sent to one); a remote one follows the environment's proxy settings.
        if is_loopback_url(base) {
            builder = builder.no_proxy();
        }
        let http = builder.build().unwrap_or_default();
        Client {
            base: base.trim_end_matches('/').to_string(),
            auth,
            http,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        req = match &self.auth {
            Auth::Basic { user, password } => req.basic_auth(user, Some(password)),
            Auth::Token(t) => req.bearer_auth(t),
        };
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| GrafanaError::Unreachable {
            url: self.base.clone(),
            detail: error_text(&e),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let call = format!("{method} {path}");
        match status {
            StatusCode::UNAUTHORIZED => Err(GrafanaError::Unauthorized {
                credential: self.auth.describe(),
                message: message_of(&body),
            }),
            StatusCode::FORBIDDEN => Err(GrafanaError::Forbidden {
                call,
                credential: self.auth.describe(),
                message: message_of(&body),
            }),
            _ => Ok(Answer { status, body }),
        }
    }

    fn unexpected(call: &str, a: &Answer) -> GrafanaError {
        GrafanaError::Unexpected {
            call: call.to_string(),
            status: a.status.as_u16(),
            message: message_of(&a.body),
        }
    }

    /// Wait until `/api/health` says the database is ok. Connection refused and 503 mean
    /// "not yet" (Grafana does not listen while it migrates).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/api/health", self.base);
        loop {
            let last = match self.http.get(&url).send().await {
                Ok(r) => {
                    let status = r.status();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if status.is_success()
                        && body.get("database").and_then(Value::as_str) == Some("ok")
                    {
                        return Ok(body);
                    }
                    format!("HTTP {} {}", status.as_u16(), body)
                }
                Err(e) => error_text(&e),
            };
            if Instant::now() >= deadline {
                return Err(GrafanaError::NotReady {
                    url: self.base.clone(),
                    secs: timeout.as_secs(),
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub(crate) async fn get_optional(&self, path: &str) -> Result<Option<Value>> {
        let a = self.call(Method::GET, path, None).await?;
        match a.status {
            s if s.is_success() => Ok(Some(a.body)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Self::unexpected(&format!("GET {path}"), &a)),
        }
    }

    pub async fn datasource_by_uid(&self, uid: &str) -> Result<Option<Value>> {
        self.get_optional(&format!("/api/datasources/uid/{}", encode(uid)))
            .await
    }

    pub async fn datasource_by_name(&self, name: &str) -> Result<Option<Value>> {
        self.get_optional(&format!("/api/datasources/name/{}", encode(name)))
            .await
    }

    pub async fn dashboard_by_uid(&self, uid: &str) -> Result<Option<Value>> {
        self.get_optional(&format!("/api/dashboards/uid/{}", encode(uid)))
            .await
    }

    pub async fn folder(&self, uid: &str) -> Result<Option<Value>> {
        self.get_optional(&format!("/api/folders/{}", encode(uid)))
            .await
    }

    /// Write an organisation annotation (`POST /api/annotations`): at `time_ms` (epoch
    /// milliseconds), with `tags` and `text`; Grafana's ID for it. Any dashboard that queries
    /// the built-in "Grafana" annotations by these tags shows it.
    pub async fn annotate(&self, time_ms: i64, tags: &[&str], text: &str) -> Result<i64> {
        let body = serde_json::json!({ "time": time_ms, "tags": tags, "text": text });
        let a = self.write(Method::POST, "/api/annotations", &body).await?;
        a.body
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| GrafanaError::Unexpected {
                call: "POST /api/annotations".into(),
                status: a.status.as_u16(),
                message: format!("no annotation id in {}", a.body),
            })
    }

    /// Annotations carrying every one of `tags` (`GET /api/annotations?tags=…`), newest first.
    pub async fn annotations(&self, tags: &[&str], limit: u32) -> Result<Vec<Value>> {
        let mut path = format!("/api/annotations?type=annotation&limit={limit}");
        for t in tags {
            path.push_str(&format!("&tags={}", encode(t)));
        }
        let a = self.call(Method::GET, &path, None).await?;
        if !a.status.is_success() {
            return Err(Self::unexpected(&format!("GET {path}"), &a));
        }
        Ok(a.body.as_array().cloned().unwrap_or_default())
    }

    pub(crate) async fn write(&self, method: Method, path: &str, body: &Value) -> Result<Answer> {
        let a = self.call(method.clone(), path, Some(body)).await?;
        let call = format!("{method} {path}");
        match a.status {
            s if s.is_success() => Ok(a),
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => Err(GrafanaError::Changed {
                call,
                status: a.status.as_u16(),
                message: message_of(&a.body),
            }),
            _ => Err(Self::unexpected(&call, &a)),
        }
    }
}

/// `http://localhost:3000`, `http://127.0.0.1`, `http://[::1]:3000/`…
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `https://user:pw@host/x` → (`https://host/x`, Some((user, pw))), percent-decoded; a URL
/// without userinfo comes back unchanged with None.
pub fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_string(), None);
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    (
        format!("{scheme}://{host}{path}"),
        Some((percent_decode(user), percent_decode(password))),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every `scheme://user:pw@host` in `text` with the userinfo replaced by `***`, for messages.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                c == '/'
                    || c == '?'
                    || c == '#'
                    || c.is_whitespace()
                    || c == '"'
                    || c == '\''
                    || c == ')'
            })
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at_sign) => {
                out.push_str("***");
                out.push_str(&tail[at_sign..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

pub(crate) fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn error_text(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    let msg = redact_urls(&msg);
    if e.is_connect() {
        format!("connection refused or unreachable ({msg})")
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_bypass_proxies() {
        for url in [
            "http://localhost:3000",
            "http://127.0.0.1:3000/",
            "http://[::1]:3000",
            "https://u:p@127.0.0.2",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "http://grafana.example.com",
            "http://10.0.0.1:3000",
            "https://[2001:db8::1]/",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn userinfo_is_split_off_and_redacted() {
        assert_eq!(
            split_userinfo("https://admin:p%40ss@grafana.example.com:3000/sub?x=1"),
            (
                "https://grafana.example.com:3000/sub?x=1".to_string(),
                Some(("admin".to_string(), "p@ss".to_string()))
            )
        );
        assert_eq!(
            split_userinfo("http://h:3000"),
            ("http://h:3000".into(), None)
        );
        let text = "cannot reach https://admin:hunter2@h/api (and http://u@x:1) nor http://plain/";
        let red = redact_urls(text);
        assert!(
            !red.contains("hunter2") && !red.contains("admin") && !red.contains("u@"),
            "{red}"
        );
        assert!(
            red.contains("https://***@h/api") && red.contains("http://plain/"),
            "{red}"
        );
        let c = Client::new(
            "http://admin:hunter2@127.0.0.1:3000/",
            Auth::Token("t".into()),
        );
        assert_eq!(c.base(), "http://127.0.0.1:3000");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("iris-prometheus"), "iris-prometheus");
    }
}
