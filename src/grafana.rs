//! Grafana HTTP API client and the idempotent provisioning built on it: upsert the Prometheus
//! datasource by a fixed uid, import dashboards into a folder, skip what is already current.
//!
//! Supported: Grafana 11.x and 12.x. Endpoints used: `GET /api/health`, `GET /api/datasources/uid/:uid`,
//! `GET /api/datasources/name/:name`, `POST /api/datasources`, `PUT /api/datasources/uid/:uid`,
//! `GET /api/dashboards/uid/:uid`, `POST /api/dashboards/db`, `GET /api/search`,
//! `GET /api/folders`, `GET /api/folders/:uid`, `POST /api/folders`.
//!
//! One truth for where the dashboards live: the file provider in
//! `monitoring/grafana/provisioning/dashboards/iris.yaml` and this importer both use folder uid
//! [`FOLDER_UID`] titled [`FOLDER_TITLE`] (a unit test reads the YAML to keep them agreeing).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

/// The datasource uid every dashboard panel refers to (also in the file provisioning).
pub const DATASOURCE_UID: &str = "iris-prometheus";
pub const DATASOURCE_NAME: &str = "Prometheus";
pub const FOLDER_UID: &str = "iris";
pub const FOLDER_TITLE: &str = "Iris";
/// Where, under the project directory, the resolved copy of the dashboards for Grafana's file
/// provider is written ([`write_resolved_dashboards`]); mounted at `/etc/grafana/dashboards`.
pub const RESOLVED_DASHBOARDS_DIR: &str = ".irisctl/grafana-dashboards";

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

type Result<T> = std::result::Result<T, GrafanaError>;

/// A Grafana HTTP API client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    auth: Auth,
    http: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    body: Value,
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

    async fn get_optional(&self, path: &str) -> Result<Option<Value>> {
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

    async fn write(&self, method: Method, path: &str, body: &Value) -> Result<Answer> {
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

fn encode(segment: &str) -> String {
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

/// What a provisioning step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub object: String,
    pub action: Action,
    pub url: String,
}

/// The datasource irisctl wants.
#[derive(Debug, Clone)]
pub struct DatasourceSpec {
    pub uid: String,
    pub name: String,
    pub url: String,
}

impl DatasourceSpec {
    pub fn body(&self) -> Value {
        json!({
            "uid": self.uid,
            "name": self.name,
            "type": "prometheus",
            "access": "proxy",
            "url": self.url,
            "isDefault": true,
            // As in monitoring/grafana/provisioning/datasources/prometheus.yaml: the two paths agree.
            "jsonData": {"timeInterval": "5s"},
        })
    }

    /// The `PUT /api/datasources/uid/:uid` body: what Grafana holds with irisctl's fields set over
    /// it. The PUT replaces the whole datasource (pkg/api/datasources.go UpdateDataSourceByUID), so
    /// fields irisctl does not manage (`jsonData.httpMethod`, `basicAuth`, …) are sent back as they
    /// are; secrets are not in the answer and Grafana keeps the stored ones when none are sent.
    pub fn merged_body(&self, current: &Value) -> Value {
        let want = self.body();
        let mut body = match current {
            Value::Object(o) => o.clone(),
            _ => serde_json::Map::new(),
        };
        // Fields of the answer only (not part of the update command).
        for key in [
            "id",
            "orgId",
            "readOnly",
            "secureJsonFields",
            "typeLogoUrl",
            "typeName",
        ] {
            body.remove(key);
        }
        let mut json_data = match body.remove("jsonData") {
            Some(Value::Object(o)) => o,
            _ => serde_json::Map::new(),
        };
        if let Some(Value::Object(ours)) = want.get("jsonData") {
            for (k, v) in ours {
                json_data.insert(k.clone(), v.clone());
            }
        }
        if let Value::Object(ours) = want {
            for (k, v) in ours {
                if k != "jsonData" {
                    body.insert(k, v);
                }
            }
        }
        body.insert("jsonData".into(), Value::Object(json_data));
        body.insert(
            "version".into(),
            current.get("version").cloned().unwrap_or(json!(1)),
        );
        Value::Object(body)
    }

    /// Fields that differ between what Grafana has and what we want (empty: identical).
    pub fn diff(&self, current: &Value) -> Vec<String> {
        let want = self.body();
        let mut diffs = Vec::new();
        for key in ["name", "type", "access", "url", "isDefault"] {
            if current.get(key) != want.get(key) {
                diffs.push(format!(
                    "{key}: {} → {}",
                    current.get(key).unwrap_or(&Value::Null),
                    want[key]
                ));
            }
        }
        if let Some(Value::Object(wanted)) = want.get("jsonData") {
            for (k, v) in wanted {
                let have = current.pointer(&format!("/jsonData/{k}"));
                if have != Some(v) {
                    diffs.push(format!(
                        "jsonData.{k}: {} → {v}",
                        have.unwrap_or(&Value::Null)
                    ));
                }
            }
        }
        diffs
    }
}

/// Create or update the datasource by uid; no write when it is already as wanted.
pub async fn upsert_datasource(client: &Client, spec: &DatasourceSpec) -> Result<Outcome> {
    let url = format!(
        "{}/connections/datasources/edit/{}",
        client.base(),
        spec.uid
    );
    let outcome = |action| Outcome {
        object: format!("datasource {}", spec.name),
        action,
        url: url.clone(),
    };
    // One retry covers a concurrent create or update between our read and our write.
    for attempt in 0..2 {
        let current = client.datasource_by_uid(&spec.uid).await?;
        let result = match current {
            None => {
                if let Some(other) = client.datasource_by_name(&spec.name).await? {
                    let uid = other
                        .get("uid")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string();
                    return Err(GrafanaError::NameTaken {
                        name: spec.name.clone(),
                        uid,
                        wanted: spec.uid.clone(),
                    });
                }
                client
                    .write(Method::POST, "/api/datasources", &spec.body())
                    .await
                    .map(|_| outcome(Action::Created))
            }
            Some(cur) => {
                let diff = spec.diff(&cur);
                if diff.is_empty() {
                    return Ok(outcome(Action::Unchanged));
                }
                if cur.get("readOnly").and_then(Value::as_bool) == Some(true) {
                    return Err(GrafanaError::ReadOnlyDatasource {
                        uid: spec.uid.clone(),
                        diff: diff.join(", "),
                    });
                }
                let body = spec.merged_body(&cur);
                client
                    .write(
                        Method::PUT,
                        &format!("/api/datasources/uid/{}", encode(&spec.uid)),
                        &body,
                    )
                    .await
                    .map(|_| outcome(Action::Updated))
            }
        };
        match result {
            Err(GrafanaError::Changed { .. }) if attempt == 0 => continue,
            other => return other,
        }
    }
    unreachable!("the loop returns on its second pass")
}

/// A dashboard read from a file, ready to send.
#[derive(Debug, Clone)]
pub struct DashboardFile {
    pub path: PathBuf,
    pub dashboard: Value,
}

impl DashboardFile {
    pub fn uid(&self) -> &str {
        self.dashboard
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn title(&self) -> &str {
        self.dashboard
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Parse one dashboard file: `${DS_...}` inputs resolved to the datasource uid (the
/// `/api/dashboards/db` endpoint does not do it), export-only keys dropped, a uid ensured.
pub fn load_dashboard(path: &Path, text: &str, datasource_uid: &str) -> Result<DashboardFile> {
    let invalid = |detail: String| GrafanaError::InvalidDashboard {
        path: path.display().to_string(),
        detail,
    };
    let mut value: Value = serde_json::from_str(text)
        .map_err(|e| invalid(format!("line {}, column {}: {e}", e.line(), e.column())))?;
    let Some(obj) = value.as_object_mut() else {
        return Err(invalid("the top level is not an object".into()));
    };
    // An export wrapper `{"dashboard": {...}}` is accepted too.
    if let Some(inner) = obj.get("dashboard").filter(|d| d.is_object()).cloned() {
        value = inner;
    }
    let obj = value
        .as_object_mut()
        .ok_or_else(|| invalid("the dashboard is not an object".into()))?;
    if obj
        .get("title")
        .and_then(Value::as_str)
        .is_none_or(|t| t.trim().is_empty())
    {
        return Err(invalid("it has no `title`".into()));
    }
    obj.remove("__inputs");
    obj.remove("__requires");
    obj.remove("__elements");
    obj.insert("id".into(), Value::Null);
    if obj
        .get("uid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("dashboard");
        let uid: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        obj.insert("uid".into(), Value::String(uid));
    }
    resolve_inputs(&mut value, datasource_uid);
    Ok(DashboardFile {
        path: path.to_path_buf(),
        dashboard: value,
    })
}

fn resolve_inputs(v: &mut Value, uid: &str) {
    match v {
        Value::String(s) if s.starts_with("${DS_") && s.ends_with('}') => *s = uid.to_string(),
        Value::Array(a) => a.iter_mut().for_each(|x| resolve_inputs(x, uid)),
        Value::Object(o) => o.values_mut().for_each(|x| resolve_inputs(x, uid)),
        _ => {}
    }
}

/// Every `*.json` file in `dir`, sorted by name.
pub fn load_dashboards(dir: &Path, datasource_uid: &str) -> Result<Vec<DashboardFile>> {
    let unreadable = |e: std::io::Error| GrafanaError::DashboardsDir {
        path: dir.display().to_string(),
        detail: e.to_string(),
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| GrafanaError::InvalidDashboard {
                path: p.display().to_string(),
                detail: e.to_string(),
            })?;
            load_dashboard(p, &text, datasource_uid)
        })
        .collect()
}

/// The dashboards of `dir` as Grafana's *file* provider should read them: each file's
/// dashboard with the same resolution the API path applies ([`load_dashboard`]: `${DS_*}` inputs
/// resolved to `datasource_uid`, `__inputs`/`__requires`/`__elements` dropped, export wrapper
/// unwrapped, a uid ensured). File provisioning resolves none of this itself (grafana/grafana#10786).
/// Returns (file name, JSON bytes) sorted by name; pure apart from reading `dir`.
pub fn resolved_dashboards(dir: &Path, datasource_uid: &str) -> Result<Vec<(String, Vec<u8>)>> {
    load_dashboards(dir, datasource_uid)?
        .into_iter()
        .map(|d| {
            let name = d
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("{}.json", d.uid()));
            let mut bytes = serde_json::to_vec_pretty(&d.dashboard).map_err(|e| {
                GrafanaError::InvalidDashboard {
                    path: d.path.display().to_string(),
                    detail: e.to_string(),
                }
            })?;
            bytes.push(b'\n');
            Ok((name, bytes))
        })
        .collect()
}

/// Write [`resolved_dashboards`] of `dir` into `out` (created if needed): a file is only rewritten
/// when its content changes (Grafana's provider then skips it, and a config hash over the folder
/// stays put), and `*.json` files of `out` no longer in `dir` are removed. Returns the files written.
pub fn write_resolved_dashboards(
    dir: &Path,
    out: &Path,
    datasource_uid: &str,
) -> Result<Vec<PathBuf>> {
    let resolved = resolved_dashboards(dir, datasource_uid)?;
    let failed = |e: std::io::Error| GrafanaError::DashboardsDir {
        path: out.display().to_string(),
        detail: e.to_string(),
    };
    std::fs::create_dir_all(out).map_err(failed)?;
    let mut written = Vec::new();
    for (name, bytes) in &resolved {
        let target = out.join(name);
        if std::fs::read(&target).ok().as_deref() != Some(bytes.as_slice()) {
            let tmp = out.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes).map_err(failed)?;
            std::fs::rename(&tmp, &target).map_err(failed)?;
            written.push(target);
        }
    }
    for entry in std::fs::read_dir(out).map_err(failed)?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "json")
            && !resolved.iter().any(|(n, _)| *n == name)
        {
            std::fs::remove_file(&path).map_err(failed)?;
        }
    }
    Ok(written)
}

/// Whether a `GET /api/dashboards/uid/:uid` answer is a dashboard loaded from a provisioning file.
/// `meta.provisioned` alone is not it: Grafana sets it only when the provider does not allow UI
/// updates, while `meta.provisionedExternalId` names the file for every file-provisioned dashboard
/// (pkg/api/dashboard.go `GetDashboard`).
pub fn is_file_provisioned(answer: &Value) -> bool {
    answer
        .pointer("/meta/provisionedExternalId")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
        || refuses_api_saves(answer)
}

/// Whether Grafana refuses API saves of this dashboard (file-provisioned without `allowUiUpdates`).
fn refuses_api_saves(answer: &Value) -> bool {
    answer.pointer("/meta/provisioned").and_then(Value::as_bool) == Some(true)
}

/// Top-level keys Grafana sets or rewrites on every save, never compared: `id`, `uid` (compared
/// separately), `version` (bumped; GetDashboard syncs it), `iteration` (the UI's timestamp).
const SERVER_KEYS: [&str; 4] = ["id", "uid", "version", "iteration"];

/// Seconds of a Grafana duration like `5s`, `1m`, `2h`, `1d`, `500ms` (gtime's plain forms).
fn duration_secs(text: &str) -> Option<f64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(digits);
    let n: f64 = n.parse().ok()?;
    let unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 604_800.0,
        "M" => 2_592_000.0,
        "y" => 31_536_000.0,
        _ => return None,
    };
    Some(n * unit)
}

/// Does `stored` (what `GET /api/dashboards/uid/:uid` answers) equal `wanted` (the file)?
/// Grafana's legacy API stores a dashboard's JSON as sent and returns it as stored, in 12.x too
/// (it goes through the `v0alpha1` dashboard API, which migrates neither on write nor on read);
/// the file provisioner saves the file as it is. So the two must be equal, except for
/// [`SERVER_KEYS`] and a `refresh` Grafana raised to its `min_refresh_interval` on save. A key
/// added or removed on either side is a difference.
pub fn dashboard_is_current(stored: &Value, wanted: &Value) -> bool {
    let (Some(stored_obj), Some(wanted_obj)) = (stored.as_object(), wanted.as_object()) else {
        return false;
    };
    if stored.get("uid") != wanted.get("uid") {
        return false;
    }
    let keys = stored_obj.keys().chain(wanted_obj.keys());
    keys.filter(|k| !SERVER_KEYS.contains(&k.as_str()))
        .all(|key| {
            let (have, want) = (stored_obj.get(key), wanted_obj.get(key));
            match (key.as_str(), want) {
                ("refresh", Some(want)) => refresh_is_current(have, want),
                _ => same(have, want),
            }
        })
}

fn refresh_is_current(have: Option<&Value>, want: &Value) -> bool {
    match (have, want) {
        (h, w) if same(h, Some(w)) => true,
        // Raised to min_refresh_interval on save (or an unparsable one replaced by it).
        (Some(Value::String(h)), Value::String(w)) if w != "auto" && !w.is_empty() => {
            match (duration_secs(h), duration_secs(w)) {
                (Some(h), Some(w)) => h > w,
                (Some(_), None) => true,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Equal JSON: numbers by value (`8` and `8.0` alike), objects with the same keys, arrays of the
/// same length, element by element.
fn same(have: Option<&Value>, want: Option<&Value>) -> bool {
    match (have, want) {
        (None, None) => true,
        (Some(Value::Number(a)), Some(Value::Number(b))) => a.as_f64() == b.as_f64(),
        (Some(Value::Object(h)), Some(Value::Object(w))) => {
            h.len() == w.len() && w.iter().all(|(k, v)| same(h.get(k), Some(v)))
        }
        (Some(Value::Array(h)), Some(Value::Array(w))) => {
            h.len() == w.len() && h.iter().zip(w).all(|(a, b)| same(Some(a), Some(b)))
        }
        (h, w) => h == w,
    }
}

/// Make sure the folder of `uid` exists, creating it with `title` when missing, as the stack's
/// file provisioner does (file_reader.go `getOrCreateFolder` looks the folder up by uid). Another
/// folder of the same title is no obstacle: since Grafana 11.3 titles need not be unique.
pub async fn ensure_folder(client: &Client, uid: &str, title: &str) -> Result<Option<Outcome>> {
    if client.folder(uid).await?.is_some() {
        return Ok(None);
    }
    match client
        .write(
            Method::POST,
            "/api/folders",
            &json!({"uid": uid, "title": title}),
        )
        .await
    {
        Ok(_) => Ok(Some(Outcome {
            object: format!("folder {title}"),
            action: Action::Created,
            url: format!("{}/dashboards/f/{uid}/", client.base()),
        })),
        // Created meanwhile (or a dashboard holds that uid): the save below will say which.
        Err(GrafanaError::Changed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What importing a dashboard needs.
#[derive(Debug)]
pub enum Plan {
    /// Grafana holds it already.
    Current(Outcome),
    /// Save it (`action` Created or Updated) into `folder_uid`; `version` is the stored version
    /// read for an update (the save says it, so that Grafana refuses it with 412 if the
    /// dashboard changed since), `None` for a dashboard that does not exist yet.
    Save {
        action: Action,
        folder_uid: String,
        version: Option<i64>,
    },
}

/// What importing a dashboard would do: nothing (it is current), create it or update it, and
/// where. A file-provisioned dashboard is compared wherever its provider put it and updated in
/// place (never moved: its provider would move it back); one whose provider refuses UI updates is
/// an error when it differs.
pub async fn dashboard_plan(
    client: &Client,
    file: &DashboardFile,
    folder_uid: &str,
) -> Result<Plan> {
    let Some(cur) = client.dashboard_by_uid(file.uid()).await? else {
        return Ok(Plan::Save {
            action: Action::Created,
            folder_uid: folder_uid.to_string(),
            version: None,
        });
    };
    let stored = cur.get("dashboard").cloned().unwrap_or(Value::Null);
    let where_now = cur
        .pointer("/meta/folderUid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let file_provisioned = is_file_provisioned(&cur);
    if dashboard_is_current(&stored, &file.dashboard)
        && (file_provisioned || where_now == folder_uid)
    {
        let url = cur
            .pointer("/meta/url")
            .and_then(Value::as_str)
            .map(|u| format!("{}{u}", client.base()))
            .unwrap_or_default();
        return Ok(Plan::Current(Outcome {
            object: format!("dashboard {}", file.title()),
            action: Action::Unchanged,
            url,
        }));
    }
    if refuses_api_saves(&cur) {
        return Err(GrafanaError::ProvisionedDashboard {
            uid: file.uid().to_string(),
            path: file.path.display().to_string(),
            external: cur
                .pointer("/meta/provisionedExternalId")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
        });
    }
    // GetDashboard answers the stored version in meta (and syncs it into the JSON).
    let version = cur
        .pointer("/meta/version")
        .or_else(|| stored.get("version"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    Ok(Plan::Save {
        action: Action::Updated,
        folder_uid: if file_provisioned {
            where_now
        } else {
            folder_uid.to_string()
        },
        version: Some(version),
    })
}

/// Save a dashboard without `overwrite`: an update carries the `version` it was planned on, a
/// creation none, so Grafana answers 412 version-mismatch (a [`GrafanaError::Changed`] of status
/// 412) when someone else saved that uid in between, e.g. the file provisioner that had not run
/// yet when irisctl read it (pkg/services/dashboards/database/database.go
/// `getExistingDashboardByIDOrUIDForUpdate`). Grafana bumps the version on every save.
pub async fn save_dashboard(
    client: &Client,
    file: &DashboardFile,
    folder_uid: &str,
    action: Action,
    version: Option<i64>,
) -> Result<Outcome> {
    let mut dashboard = file.dashboard.clone();
    if let Some(obj) = dashboard.as_object_mut() {
        obj.insert("id".into(), Value::Null);
        match version {
            Some(v) => obj.insert("version".into(), json!(v)),
            None => obj.remove("version"),
        };
    }
    let body = json!({
        "dashboard": dashboard,
        "folderUid": folder_uid,
        "overwrite": false,
        "message": "provisioned by irisctl",
    });
    let a = match client
        .write(Method::POST, "/api/dashboards/db", &body)
        .await
    {
        Err(GrafanaError::Unexpected {
            status: 400,
            message,
            ..
        }) if message.contains("provisioned") => {
            return Err(GrafanaError::ProvisionedDashboard {
                uid: file.uid().to_string(),
                path: file.path.display().to_string(),
                external: "?".into(),
            });
        }
        other => other?,
    };
    let url = a
        .body
        .get("url")
        .and_then(Value::as_str)
        .map(|u| format!("{}{u}", client.base()))
        .unwrap_or_default();
    Ok(Outcome {
        object: format!("dashboard {}", file.title()),
        action,
        url,
    })
}

/// Import one dashboard: plan, save; on a 412 (it changed between the read and the save) read it
/// again and plan anew once, which may find it current now. `folder_ready` says whether the
/// folder is known to exist; a folder created here is added to `out`.
pub async fn import_dashboard(
    client: &Client,
    file: &DashboardFile,
    folder_ready: &mut bool,
    out: &mut Vec<Outcome>,
) -> Result<()> {
    let mut retried = false;
    loop {
        let (action, folder_uid, version) = match dashboard_plan(client, file, FOLDER_UID).await? {
            Plan::Current(unchanged) => {
                out.push(unchanged);
                return Ok(());
            }
            Plan::Save {
                action,
                folder_uid,
                version,
            } => (action, folder_uid, version),
        };
        if !*folder_ready && folder_uid == FOLDER_UID {
            out.extend(ensure_folder(client, FOLDER_UID, FOLDER_TITLE).await?);
            *folder_ready = true;
        }
        match save_dashboard(client, file, &folder_uid, action, version).await {
            Err(GrafanaError::Changed {
                status: 412,
                message,
                ..
            }) => {
                if retried {
                    return Err(GrafanaError::DashboardRace {
                        uid: file.uid().to_string(),
                        path: file.path.display().to_string(),
                        message,
                    });
                }
                retried = true;
            }
            other => {
                out.push(other?);
                return Ok(());
            }
        }
    }
}

/// How long to wait for the stack's own Grafana to file-provision what is missing.
pub const FILE_PROVISIONING_GRACE: Duration = Duration::from_secs(15);

/// Wait (at most `within`) until the datasource of `spec` and every dashboard of `dashboards`
/// exist: what a Grafana that file-provisions them will have soon after it starts. Since
/// 11.6.3/12.0.2 Grafana provisions datasources and dashboards in a background job that runs
/// after its HTTP port opens (pkg/services/provisioning/provisioning.go), so right after a start
/// `/api/health` answers while both may still be missing; creating them then would race the
/// provisioner, which saves over them. Returns whether everything exists; past `within`, the
/// caller creates what is still missing.
pub async fn wait_for_file_provisioning(
    client: &Client,
    spec: &DatasourceSpec,
    dashboards: &[DashboardFile],
    within: Duration,
) -> Result<bool> {
    let deadline = Instant::now() + within;
    loop {
        let mut all = client.datasource_by_uid(&spec.uid).await?.is_some();
        for d in dashboards {
            if !all {
                break;
            }
            all = client.dashboard_by_uid(d.uid()).await?.is_some();
        }
        if all || Instant::now() >= deadline {
            return Ok(all);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The whole provisioning: datasource, then each dashboard not yet current (into the folder
/// created on first need, or where its file provider keeps it).
pub async fn provision(
    client: &Client,
    spec: &DatasourceSpec,
    dashboards: &[DashboardFile],
) -> Result<Vec<Outcome>> {
    let mut out = vec![upsert_datasource(client, spec).await?];
    let mut folder_ready = false;
    for d in dashboards {
        import_dashboard(client, d, &mut folder_ready, &mut out).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_resolved_and_export_keys_dropped() {
        let text = r#"{"__inputs":[{"name":"DS_PROM"}],"title":"T","panels":[{"datasource":{"type":"prometheus","uid":"${DS_PROM}"}}]}"#;
        let d = load_dashboard(Path::new("/x/my dash.json"), text, "iris-prometheus").unwrap();
        assert_eq!(
            d.dashboard["panels"][0]["datasource"]["uid"],
            "iris-prometheus"
        );
        assert!(d.dashboard.get("__inputs").is_none());
        assert_eq!(d.uid(), "my-dash");
        assert!(d.dashboard["id"].is_null());
    }

    #[test]
    fn invalid_dashboard_names_file_and_position() {
        let e = load_dashboard(
            Path::new("/d/bad.json"),
            "{\n  \"title\": \"x\",\n  oops\n}",
            "u",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/d/bad.json") && text.contains("line 3"),
            "{text}"
        );
        let e = load_dashboard(Path::new("/d/t.json"), r#"{"panels":[]}"#, "u").unwrap_err();
        assert!(e.to_string().contains("title"));
    }

    #[test]
    fn datasource_diff_ignores_server_fields() {
        let spec = DatasourceSpec {
            uid: "u".into(),
            name: "Prometheus".into(),
            url: "http://p:9090".into(),
        };
        let mut cur = spec.body();
        cur["id"] = json!(7);
        cur["version"] = json!(3);
        cur["jsonData"]["extra"] = json!(true);
        assert!(spec.diff(&cur).is_empty());
        cur["url"] = json!("http://elsewhere");
        assert_eq!(spec.diff(&cur).len(), 1);
    }

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
    fn the_file_provider_and_the_importer_agree_on_the_folder() {
        let yaml = include_str!("../monitoring/grafana/provisioning/dashboards/iris.yaml");
        let setting = |key: &str| {
            yaml.lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(&format!("{key}:")))
                .map(|v| {
                    v.split('#')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .trim_matches('"')
                        .to_string()
                })
        };
        assert_eq!(setting("folderUid").as_deref(), Some(FOLDER_UID));
        assert_eq!(setting("folder").as_deref(), Some(FOLDER_TITLE));
        assert_eq!(setting("path").as_deref(), Some("/etc/grafana/dashboards"));
    }

    #[test]
    fn file_provisioned_is_told_by_the_external_id() {
        let answer = |provisioned: bool, external: &str| json!({"meta": {"provisioned": provisioned, "provisionedExternalId": external}});
        // allowUiUpdates: Grafana says provisioned=false, but names the file
        assert!(is_file_provisioned(&answer(false, "iris.json")));
        assert!(!refuses_api_saves(&answer(false, "iris.json")));
        assert!(is_file_provisioned(&answer(true, "iris.json")));
        assert!(refuses_api_saves(&answer(true, "iris.json")));
        assert!(!is_file_provisioned(&answer(false, "")));
        assert!(!is_file_provisioned(&json!({"meta": {}})));
    }

    #[test]
    fn dashboards_are_compared_as_stored_json() {
        let file = json!({"uid": "u", "id": null, "title": "T", "schemaVersion": 39, "refresh": "1s",
            "version": 2, "panels": [{"id": 1, "gridPos": {"h": 8.0},
            "thresholds": {"steps": [{"value": null, "color": "green"}]}}]});
        // What Grafana's legacy API answers after a save: the JSON as sent, server keys set, the
        // refresh raised to min_refresh_interval.
        let mut stored = file.clone();
        stored["id"] = json!(7);
        stored["version"] = json!(3);
        stored["iteration"] = json!(1_700_000_000_000_i64);
        stored["refresh"] = json!("5s");
        stored["panels"][0]["gridPos"]["h"] = json!(8);
        assert!(dashboard_is_current(&stored, &file));

        for (pointer, value) in [
            ("/title", json!("T2")),
            ("/uid", json!("other")),
            ("/schemaVersion", json!(41)),
            ("/refresh", json!("1s2")),
            ("/panels/0/thresholds/steps/0/value", json!(0)),
        ] {
            let mut changed = stored.clone();
            *changed.pointer_mut(pointer).unwrap() = value;
            assert!(!dashboard_is_current(&changed, &file), "{pointer}");
        }
        // A key only Grafana has, or only the file has, is a difference too (no migration adds
        // keys on the legacy API, so one there was put there by someone).
        let mut more = stored.clone();
        more["panels"][0]["options"] = json!({"legend": {"showLegend": true}});
        assert!(!dashboard_is_current(&more, &file));
        let mut fewer = stored.clone();
        fewer["panels"][0]
            .as_object_mut()
            .unwrap()
            .remove("thresholds");
        assert!(!dashboard_is_current(&fewer, &file));
        fewer = stored.clone();
        fewer["panels"] = json!([]);
        assert!(!dashboard_is_current(&fewer, &file));
        // a refresh Grafana did not raise but someone lowered by hand is a change
        let mut lowered = file.clone();
        lowered["refresh"] = json!("1m");
        stored["refresh"] = json!("30s");
        assert!(!dashboard_is_current(&stored, &lowered));
        // no refresh in the file: none in Grafana either
        let mut no_refresh = file.clone();
        no_refresh.as_object_mut().unwrap().remove("refresh");
        assert!(!dashboard_is_current(&stored, &no_refresh));
        stored.as_object_mut().unwrap().remove("refresh");
        assert!(dashboard_is_current(&stored, &no_refresh));
    }

    #[test]
    fn datasource_update_keeps_what_irisctl_does_not_manage() {
        let spec = DatasourceSpec {
            uid: "u".into(),
            name: "Prometheus".into(),
            url: "http://p:9090".into(),
        };
        let mut cur = spec.body();
        cur["id"] = json!(7);
        cur["version"] = json!(3);
        cur["readOnly"] = json!(false);
        cur["secureJsonFields"] = json!({"basicAuthPassword": true});
        cur["basicAuth"] = json!(true);
        cur["basicAuthUser"] = json!("scraper");
        cur["url"] = json!("http://old:9090");
        cur["jsonData"] = json!({"httpMethod": "GET", "timeInterval": "1m"});
        let body = spec.merged_body(&cur);
        assert_eq!(body["url"], "http://p:9090");
        assert_eq!(
            body["jsonData"],
            json!({"httpMethod": "GET", "timeInterval": "5s"})
        );
        assert_eq!(
            (&body["basicAuth"], &body["basicAuthUser"]),
            (&json!(true), &json!("scraper"))
        );
        assert_eq!(body["version"], 3);
        for gone in ["id", "readOnly", "secureJsonFields"] {
            assert!(body.get(gone).is_none(), "{gone}");
        }
    }

    #[test]
    fn resolved_copy_for_file_provisioning() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(dir.path().join("in")).unwrap();
        std::fs::write(
            dir.path().join("in/exported.json"),
            r#"{"__inputs":[{"name":"DS_PROMETHEUS"}],"__requires":[],"dashboard":{"title":"Shared",
               "panels":[{"datasource":{"type":"prometheus","uid":"${DS_PROMETHEUS}"}}]}}"#,
        )
        .unwrap();
        let resolved = resolved_dashboards(&dir.path().join("in"), "iris-prometheus").unwrap();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].0, "exported.json");
        let v: Value = serde_json::from_slice(&resolved[0].1).unwrap();
        assert_eq!(v["panels"][0]["datasource"]["uid"], "iris-prometheus");
        assert_eq!(v["uid"], "exported");
        assert!(v.get("__inputs").is_none() && v.get("dashboard").is_none());

        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("stale.json"), "{}").unwrap();
        let written =
            write_resolved_dashboards(&dir.path().join("in"), &out, "iris-prometheus").unwrap();
        assert_eq!(written, vec![out.join("exported.json")]);
        assert!(!out.join("stale.json").exists());
        // Unchanged: nothing rewritten.
        assert!(
            write_resolved_dashboards(&dir.path().join("in"), &out, "iris-prometheus")
                .unwrap()
                .is_empty()
        );
        // The same dashboard as the API path sends.
        let api = load_dashboards(&dir.path().join("in"), "iris-prometheus").unwrap();
        let file: Value =
            serde_json::from_slice(&std::fs::read(out.join("exported.json")).unwrap()).unwrap();
        assert_eq!(file, api[0].dashboard);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("iris-prometheus"), "iris-prometheus");
    }
}
