//! Dashboard files (read, `${DS_...}` inputs resolved, the resolved copy for the file provider)
//! and the comparison of a file with what Grafana stores.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::client::Result;
use super::GrafanaError;

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
pub(crate) fn refuses_api_saves(answer: &Value) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
