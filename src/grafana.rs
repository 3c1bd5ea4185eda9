//! Grafana HTTP API client and the idempotent provisioning built on it: upsert the Prometheus
//! datasource by a fixed uid, import dashboards into a folder, skip what is already current.

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
    #[error("dashboard `{uid}` is provisioned from a file in Grafana, which refuses to save `{path}` over it")]
    ProvisionedDashboard { uid: String, path: String },
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
                "check the URL (--url or GRAFANA_URL) and that Grafana runs (`irisctl status`)".into()
            }
            GrafanaError::Unauthorized { .. } => "check --user/--password or --token (GRAFANA_USER, GRAFANA_PASSWORD, GRAFANA_TOKEN); note that GF_SECURITY_ADMIN_PASSWORD only applies on Grafana's first start: a Grafana data volume older than the password in .env keeps its old one".into(),
            GrafanaError::Forbidden { .. } => "use an admin user or a service-account token with the Admin role".into(),
            GrafanaError::NameTaken { .. } => "rename or delete that datasource in Grafana (Connections → Data sources), then run `irisctl grafana provision` again".into(),
            GrafanaError::ReadOnlyDatasource { .. } | GrafanaError::ProvisionedDashboard { .. } => {
                "change the provisioning file mounted into Grafana (monitoring/grafana/provisioning) instead, and restart Grafana".into()
            }
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
    pub fn new(base: &str, auth: Auth) -> Client {
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
                let mut body = spec.body();
                body["version"] = cur.get("version").cloned().unwrap_or(json!(1));
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

/// A dashboard without the fields Grafana sets on save, for comparison.
fn comparable(d: &Value) -> Value {
    let mut d = d.clone();
    if let Some(o) = d.as_object_mut() {
        o.remove("id");
        o.remove("version");
    }
    d
}

/// Make sure the folder exists.
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

/// What importing a dashboard would do: nothing (it is current), create it or update it.
pub async fn dashboard_plan(
    client: &Client,
    file: &DashboardFile,
    folder_uid: &str,
) -> Result<std::result::Result<Outcome, Action>> {
    let Some(cur) = client.dashboard_by_uid(file.uid()).await? else {
        return Ok(Err(Action::Created));
    };
    let stored = cur.get("dashboard").cloned().unwrap_or(Value::Null);
    let same_folder = cur
        .pointer("/meta/folderUid")
        .and_then(Value::as_str)
        .unwrap_or("")
        == folder_uid;
    let provisioned = cur.pointer("/meta/provisioned").and_then(Value::as_bool) == Some(true);
    // A file-provisioned copy with the same content counts as current wherever its folder is.
    if comparable(&stored) == comparable(&file.dashboard) && (same_folder || provisioned) {
        let url = cur
            .pointer("/meta/url")
            .and_then(Value::as_str)
            .map(|u| format!("{}{u}", client.base()))
            .unwrap_or_default();
        return Ok(Ok(Outcome {
            object: format!("dashboard {}", file.title()),
            action: Action::Unchanged,
            url,
        }));
    }
    // A provisioned one may still accept the save (`allowUiUpdates`); `save_dashboard` reports
    // Grafana's refusal clearly otherwise.
    Ok(Err(Action::Updated))
}

/// Save a dashboard with `overwrite` (Grafana bumps its version on every save).
pub async fn save_dashboard(
    client: &Client,
    file: &DashboardFile,
    folder_uid: &str,
    action: Action,
) -> Result<Outcome> {
    let body = json!({
        "dashboard": file.dashboard,
        "folderUid": folder_uid,
        "overwrite": true,
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

/// The whole provisioning: datasource, then each dashboard not yet current (into a folder
/// created on first need).
pub async fn provision(
    client: &Client,
    spec: &DatasourceSpec,
    dashboards: &[DashboardFile],
) -> Result<Vec<Outcome>> {
    let mut out = vec![upsert_datasource(client, spec).await?];
    let mut folder_ready = false;
    for d in dashboards {
        match dashboard_plan(client, d, FOLDER_UID).await? {
            Ok(unchanged) => out.push(unchanged),
            Err(action) => {
                if !folder_ready {
                    out.extend(ensure_folder(client, FOLDER_UID, FOLDER_TITLE).await?);
                    folder_ready = true;
                }
                out.push(save_dashboard(client, d, FOLDER_UID, action).await?);
            }
        }
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
    fn path_segments_are_encoded() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("iris-prometheus"), "iris-prometheus");
    }
}
