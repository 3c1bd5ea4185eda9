//! Provisioning through the API: the datasource upserted by uid, the folder, dashboards imported
//! with version locking after waiting for the stack's own file provisioner, and nothing written
//! for what is already current.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{encode, Result};
use super::dashboards::{dashboard_is_current, is_file_provisioned, refuses_api_saves};
use super::{Action, Client, DashboardFile, GrafanaError, Outcome, FOLDER_TITLE, FOLDER_UID};

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
    upsert_datasource_waiting(client, spec, None).await
}

/// Read with `read`; when it finds nothing and `wait_until` is given, ask again every 250 ms
/// until it does or that instant passes (Grafana's file provisioner runs in the background once
/// its port is open: "missing right after start" is not "needs creating").
async fn read_or_wait<F, Fut>(wait_until: Option<Instant>, read: F) -> Result<Option<Value>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<Value>>>,
{
    loop {
        let found = read().await?;
        match wait_until {
            Some(deadline) if found.is_none() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ => return Ok(found),
        }
    }
}

async fn upsert_datasource_waiting(
    client: &Client,
    spec: &DatasourceSpec,
    wait_until: Option<Instant>,
) -> Result<Outcome> {
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
        let current = read_or_wait(wait_until.filter(|_| attempt == 0), || {
            client.datasource_by_uid(&spec.uid)
        })
        .await?;
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
    dashboard_plan_waiting(client, file, folder_uid, None).await
}

async fn dashboard_plan_waiting(
    client: &Client,
    file: &DashboardFile,
    folder_uid: &str,
    wait_until: Option<Instant>,
) -> Result<Plan> {
    let Some(cur) = read_or_wait(wait_until, || client.dashboard_by_uid(file.uid())).await? else {
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
    import_dashboard_waiting(client, file, folder_ready, out, None).await
}

async fn import_dashboard_waiting(
    client: &Client,
    file: &DashboardFile,
    folder_ready: &mut bool,
    out: &mut Vec<Outcome>,
    wait_until: Option<Instant>,
) -> Result<()> {
    let mut retried = false;
    loop {
        let wait = wait_until.filter(|_| !retried);
        let (action, folder_uid, version) =
            match dashboard_plan_waiting(client, file, FOLDER_UID, wait).await? {
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
        let (datasource, found) = futures_util::future::join(
            client.datasource_by_uid(&spec.uid),
            futures_util::future::join_all(
                dashboards.iter().map(|d| client.dashboard_by_uid(d.uid())),
            ),
        )
        .await;
        let mut all = datasource?.is_some();
        for d in found {
            all &= d?.is_some();
        }
        if all || Instant::now() >= deadline {
            return Ok(all);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How long to wait for the stack's own Grafana to file-provision what is missing.
pub const FILE_PROVISIONING_GRACE: Duration = Duration::from_secs(15);

/// The whole provisioning: datasource, then each dashboard not yet current (into the folder
/// created on first need, or where its file provider keeps it).
pub async fn provision(
    client: &Client,
    spec: &DatasourceSpec,
    dashboards: &[DashboardFile],
) -> Result<Vec<Outcome>> {
    provision_waiting(client, spec, dashboards, Duration::ZERO).await
}

/// [`provision`], giving a file provisioner up to `grace` to create what is missing before
/// creating it (the stack's own Grafana provisions its files in the background after its port
/// opens). What is present is read once: a no-op run costs no extra round of reads.
pub async fn provision_waiting(
    client: &Client,
    spec: &DatasourceSpec,
    dashboards: &[DashboardFile],
    grace: Duration,
) -> Result<Vec<Outcome>> {
    let wait_until = (!grace.is_zero()).then(|| Instant::now() + grace);
    let mut out = vec![upsert_datasource_waiting(client, spec, wait_until).await?];
    let mut folder_ready = false;
    for d in dashboards {
        import_dashboard_waiting(client, d, &mut folder_ready, &mut out, wait_until).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_file_provider_and_the_importer_agree_on_the_folder() {
        let yaml = include_str!("../../monitoring/grafana/provisioning/dashboards/iris.yaml");
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
}
