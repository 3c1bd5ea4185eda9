//! The stack's own Grafana (the stand-in image, CI's settings) end to end: the first `up` finds the
//! datasource and the dashboard current because file provisioning got there first; a changed
//! dashboard JSON is updated once, in place, in the same folder, then unchanged; the same with
//! Grafana 12 (its legacy API stores the JSON as sent) and a raised min_refresh_interval. The
//! stand-in provisions in the background after its port opens, as 11.6.3+/12.0.2+ do: `up` waits
//! for it instead of racing it.

mod common;

use common::{run, Project};

const PORTS: [u16; 4] = [17010, 17011, 17012, 17013];
const DASHBOARD: &str = "monitoring/dashboards/grafana-fastapi-dashboard.json";

/// `GET /api/dashboards/uid/iris-api` as the stack's admin.
fn dashboard(p: &Project) -> serde_json::Value {
    let env = std::fs::read_to_string(p.path().join(".env")).unwrap();
    let password = env
        .lines()
        .find_map(|l| l.strip_prefix("GRAFANA_ADMIN_PASSWORD="))
        .expect("a generated Grafana password")
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!(
                "http://127.0.0.1:{}/api/dashboards/uid/iris-api",
                PORTS[3]
            ))
            .basic_auth("admin", Some(password))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

fn grafana_line(stderr: &str) -> &str {
    stderr
        .lines()
        // The provisioning summary (not `build grafana: …`, the build's own line).
        .find(|l| {
            l.trim_start_matches(|c: char| !c.is_alphabetic())
                .starts_with("grafana: ")
        })
        .unwrap_or_else(|| panic!("no `grafana:` line in\n{stderr}"))
}

fn edit_dashboard(p: &Project, marker: &str) {
    let path = p.path().join(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        "\"description\": \"",
        &format!("\"description\": \"{marker} "),
        1,
    );
    std::fs::write(&path, text).unwrap();
}

/// up → current; edit → updated once in place; up → unchanged. Returns nothing; asserts.
fn first_run_current_then_one_update(p: &Project, marker: &str) {
    let up = run(p.irisctl().arg("up"));
    up.ok();
    assert_eq!(
        grafana_line(&up.stderr).trim_start_matches(|c: char| !c.is_alphabetic()),
        "grafana: datasource Prometheus unchanged, dashboard Iris API unchanged",
        "{}",
        up.stderr
    );
    let st = run(p.irisctl().args(["status", "--format", "json"]));
    st.ok();
    let report: serde_json::Value = serde_json::from_str(&st.stdout).expect("status json");
    assert_eq!(
        report["grafana_dashboards"][0]["provisioned"], true,
        "status tells file-provisioned: {report}"
    );
    let before = dashboard(p);
    assert_eq!(before["meta"]["folderUid"], "iris", "{}", before["meta"]);
    let v1 = before["meta"]["version"].as_i64().unwrap();

    edit_dashboard(p, marker);
    let up = run(p.irisctl().arg("up"));
    up.ok();
    let line = grafana_line(&up.stderr);
    assert!(!line.contains("folder"), "{line}");
    let after = dashboard(p);
    assert!(
        after["dashboard"]["description"]
            .as_str()
            .unwrap()
            .starts_with(marker),
        "{}",
        after["dashboard"]
    );
    assert_eq!(after["meta"]["folderUid"], "iris", "not moved");
    assert_eq!(
        after["meta"]["version"].as_i64().unwrap(),
        v1 + 1,
        "saved once"
    );

    let again = run(p.irisctl().arg("up"));
    again.ok();
    assert!(
        grafana_line(&again.stderr).ends_with("dashboard Iris API unchanged"),
        "{}",
        again.stderr
    );
    assert_eq!(dashboard(p)["meta"]["version"].as_i64().unwrap(), v1 + 1);
}

#[test]
fn the_stacks_own_grafana_agrees_with_file_provisioning() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-graf-e2e", PORTS);
    first_run_current_then_one_update(&p, "[edit 1]");

    // Grafana 12: the dashboard is stored as sent, its refresh raised. A fresh Grafana.
    run(p.irisctl().args(["down", "--volumes"])).ok();
    let config = std::fs::read_to_string(&p.config).unwrap();
    let config = config.replace(
        "      PYTHON_IMAGE: irisctl-offline/python:3.11",
        "      PYTHON_IMAGE: irisctl-offline/python:3.11\n      STANDIN_GRAFANA_VERSION: \"12.0.2\"\n      GF_DASHBOARDS_MIN_REFRESH_INTERVAL: 10s",
    );
    assert!(config.contains("STANDIN_GRAFANA_VERSION"), "{config}");
    std::fs::write(&p.config, config).unwrap();
    first_run_current_then_one_update(&p, "[edit 2]");
    let stored = dashboard(&p);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join(DASHBOARD)).unwrap()).unwrap();
    assert_eq!(
        stored["dashboard"]["schemaVersion"], file["schemaVersion"],
        "stored as sent, not migrated"
    );
    assert_eq!(stored["dashboard"]["refresh"], "10s", "raised");
}

/// An exported dashboard ("export for sharing externally": `__inputs`, `${DS_PROMETHEUS}`)
/// dropped into monitoring/dashboards works through file provisioning alone: Grafana's provider
/// reads the resolved copy irisctl writes under .irisctl/grafana-dashboards.
#[test]
fn an_exported_dashboard_works_through_file_provisioning() {
    if !common::engine_available() {
        return;
    }
    const EXP_PORTS: [u16; 4] = [17020, 17021, 17022, 17023];
    let p = Project::new("irisctl-test-graf-exp", EXP_PORTS);
    std::fs::write(
        p.path().join("monitoring/dashboards/exported.json"),
        r#"{"__inputs":[{"name":"DS_PROMETHEUS","type":"datasource","pluginId":"prometheus"}],
            "__requires":[{"type":"datasource","id":"prometheus"}],
            "uid":"exported","title":"Exported","schemaVersion":39,
            "panels":[{"id":1,"type":"timeseries","datasource":{"type":"prometheus","uid":"${DS_PROMETHEUS}"},
                       "targets":[{"expr":"up","datasource":{"type":"prometheus","uid":"${DS_PROMETHEUS}"}}]}]}"#,
    )
    .unwrap();
    let up = run(p.irisctl().arg("up"));
    up.ok();
    assert!(
        grafana_line(&up.stderr)
            .ends_with("dashboard Exported unchanged, dashboard Iris API unchanged"),
        "file provisioning loaded the resolved copy before the API looked:\n{}",
        up.stderr
    );
    let env = std::fs::read_to_string(p.path().join(".env")).unwrap();
    let password = env
        .lines()
        .find_map(|l| l.strip_prefix("GRAFANA_ADMIN_PASSWORD="))
        .unwrap()
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got: serde_json::Value = rt.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!(
                "http://127.0.0.1:{}/api/dashboards/uid/exported",
                EXP_PORTS[3]
            ))
            .basic_auth("admin", Some(password))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(
        got["dashboard"]["panels"][0]["datasource"]["uid"], "iris-prometheus",
        "{got}"
    );
    assert!(got["dashboard"].get("__inputs").is_none(), "{got}");
    assert_eq!(got["meta"]["provisionedExternalId"], "exported.json");
    assert_eq!(got["meta"]["folderUid"], "iris");
}
