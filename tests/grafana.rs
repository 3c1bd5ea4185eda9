//! irisctl's Grafana client against the Grafana stand-in (a test double of Grafana's HTTP API,
//! tests/grafana-standin), run as a local process on a free port.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use irisctl::grafana::{self, Action, Auth, Client, DatasourceSpec, GrafanaError, DATASOURCE_UID};

struct Standin {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the stand-in with admin password `secret`, two tokens and an optional provisioning dir.
fn standin(provisioning: Option<&Path>, extra_env: &[(&str, &str)]) -> Standin {
    let data = tempfile::tempdir().unwrap();
    start_standin(provisioning, extra_env, data)
}

/// The same on the state an earlier stand-in left in `data` (a Grafana restart).
fn standin_with_data(
    provisioning: Option<&Path>,
    extra_env: &[(&str, &str)],
    data: &Path,
) -> Standin {
    let fresh = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(data).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), fresh.path().join(entry.file_name())).unwrap();
        }
    }
    start_standin(provisioning, extra_env, fresh)
}

fn start_standin(
    provisioning: Option<&Path>,
    extra_env: &[(&str, &str)],
    data: tempfile::TempDir,
) -> Standin {
    let empty = data.path().join("no-provisioning");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(common::repo().join("tests/grafana-standin/standin.py"))
        .args(["--host", "127.0.0.1", "--port", "0", "--data"])
        .arg(data.path())
        .env("GF_SECURITY_ADMIN_PASSWORD", "secret")
        .env("GF_PATHS_PROVISIONING", provisioning.unwrap_or(&empty))
        .env(
            "STANDIN_SERVICE_ACCOUNT_TOKENS",
            "admintoken:Admin,viewertoken:Viewer",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the stand-in with python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    Standin {
        child,
        port,
        _data: data,
    }
}

impl Standin {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn admin(&self) -> Client {
        Client::new(
            &self.url(),
            Auth::Basic {
                user: "admin".into(),
                password: "secret".into(),
            },
        )
    }
}

fn spec() -> DatasourceSpec {
    DatasourceSpec {
        uid: DATASOURCE_UID.into(),
        name: "Prometheus".into(),
        url: "http://prometheus:9090".into(),
    }
}

fn dashboards() -> Vec<grafana::DashboardFile> {
    grafana::load_dashboards(
        &common::repo().join("monitoring/dashboards"),
        DATASOURCE_UID,
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn actions(out: &[grafana::Outcome]) -> Vec<(String, Action)> {
    out.iter().map(|o| (o.object.clone(), o.action)).collect()
}

#[test]
fn provisioning_is_idempotent_and_never_bumps_unchanged_dashboards() {
    let s = standin(None, &[]);
    let c = s.admin();
    rt().block_on(async {
        c.wait_ready(Duration::from_secs(10)).await.unwrap();
        let first = grafana::provision(&c, &spec(), &dashboards())
            .await
            .unwrap();
        assert_eq!(
            actions(&first),
            vec![
                ("datasource Prometheus".to_string(), Action::Created),
                ("folder Iris".to_string(), Action::Created),
                ("dashboard Iris API".to_string(), Action::Created),
            ]
        );
        assert!(
            first[2].url.ends_with("/d/iris-api/iris-api"),
            "{}",
            first[2].url
        );
        let version = |d: serde_json::Value| d["meta"]["version"].as_i64().unwrap();
        let v1 = version(c.dashboard_by_uid("iris-api").await.unwrap().unwrap());
        let second = grafana::provision(&c, &spec(), &dashboards())
            .await
            .unwrap();
        assert!(
            second.iter().all(|o| o.action == Action::Unchanged),
            "{second:?}"
        );
        assert_eq!(
            version(c.dashboard_by_uid("iris-api").await.unwrap().unwrap()),
            v1
        );
        // Panels resolve the datasource by this uid: it must be what Grafana stored.
        let ds = c.datasource_by_uid(DATASOURCE_UID).await.unwrap().unwrap();
        assert_eq!(ds["isDefault"], true);
        assert_eq!(ds["url"], "http://prometheus:9090");
    });
}

#[test]
fn changed_datasource_is_updated_with_its_version() {
    let s = standin(None, &[]);
    let c = s.admin();
    rt().block_on(async {
        grafana::upsert_datasource(&c, &spec()).await.unwrap();
        let moved = DatasourceSpec {
            url: "http://prometheus.internal:9090".into(),
            ..spec()
        };
        let out = grafana::upsert_datasource(&c, &moved).await.unwrap();
        assert_eq!(out.action, Action::Updated);
        let ds = c.datasource_by_uid(DATASOURCE_UID).await.unwrap().unwrap();
        assert_eq!(ds["url"], "http://prometheus.internal:9090");
        assert_eq!(
            ds["version"], 2,
            "PUT carried the current version, so Grafana's lock advanced it"
        );
        assert_eq!(
            grafana::upsert_datasource(&c, &moved).await.unwrap().action,
            Action::Unchanged
        );
    });
}

#[test]
fn changed_dashboard_is_updated_in_place() {
    let s = standin(None, &[]);
    let c = s.admin();
    rt().block_on(async {
        let mut d = dashboards();
        grafana::provision(&c, &spec(), &d).await.unwrap();
        d[0].dashboard["title"] = serde_json::json!("Iris API (edited)");
        let out = grafana::provision(&c, &spec(), &d).await.unwrap();
        assert_eq!(out.last().unwrap().action, Action::Updated);
        let stored = c.dashboard_by_uid("iris-api").await.unwrap().unwrap();
        assert_eq!(stored["dashboard"]["title"], "Iris API (edited)");
        assert_eq!(stored["meta"]["folderUid"], "iris");
    });
}

#[test]
fn credentials_errors_are_clear() {
    let s = standin(None, &[]);
    rt().block_on(async {
        let wrong = Client::new(
            &s.url(),
            Auth::Basic {
                user: "admin".into(),
                password: "nope".into(),
            },
        );
        let e = grafana::upsert_datasource(&wrong, &spec())
            .await
            .unwrap_err();
        assert!(matches!(e, GrafanaError::Unauthorized { .. }), "{e:?}");
        assert!(
            e.to_string().contains("Invalid username or password")
                && e.to_string().contains("user `admin`"),
            "{e}"
        );
        assert!(e
            .hint()
            .contains("GF_SECURITY_ADMIN_PASSWORD only applies on Grafana's first start"));

        let bad_token = Client::new(&s.url(), Auth::Token("forged".into()));
        let e = grafana::upsert_datasource(&bad_token, &spec())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Invalid API key"), "{e}");

        let viewer = Client::new(&s.url(), Auth::Token("viewertoken".into()));
        let e = grafana::upsert_datasource(&viewer, &spec())
            .await
            .unwrap_err();
        assert!(matches!(e, GrafanaError::Forbidden { .. }), "{e:?}");

        let admin_token = Client::new(&s.url(), Auth::Token("admintoken".into()));
        assert_eq!(
            grafana::upsert_datasource(&admin_token, &spec())
                .await
                .unwrap()
                .action,
            Action::Created
        );
    });
}

#[test]
fn a_datasource_of_that_name_with_another_uid_is_reported() {
    let s = standin(None, &[]);
    let c = s.admin();
    rt().block_on(async {
        let other = DatasourceSpec {
            uid: "someone-elses".into(),
            ..spec()
        };
        grafana::upsert_datasource(&c, &other).await.unwrap();
        let e = grafana::upsert_datasource(&c, &spec()).await.unwrap_err();
        assert!(matches!(e, GrafanaError::NameTaken { .. }), "{e:?}");
        assert!(
            e.to_string().contains("uid `someone-elses`")
                && e.to_string().contains("`iris-prometheus`"),
            "{e}"
        );
    });
}

fn provisioning_dir(datasource_url: &str, dashboard: Option<&Path>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("datasources")).unwrap();
    std::fs::create_dir_all(dir.path().join("dashboards")).unwrap();
    let ds = std::fs::read_to_string(
        common::repo().join("monitoring/grafana/provisioning/datasources/prometheus.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("datasources/prometheus.yaml"),
        ds.replace("http://prometheus:9090", datasource_url),
    )
    .unwrap();
    if let Some(board_dir) = dashboard {
        let providers = std::fs::read_to_string(
            common::repo().join("monitoring/grafana/provisioning/dashboards/iris.yaml"),
        )
        .unwrap();
        let providers =
            providers.replace("/etc/grafana/dashboards", &board_dir.display().to_string());
        std::fs::write(dir.path().join("dashboards/iris.yaml"), providers).unwrap();
    }
    dir
}

#[test]
fn file_provisioned_objects_count_as_current_and_read_only_drift_is_refused() {
    // The stack's own Grafana: the same files irisctl mounts, so the API path finds them current.
    let boards = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::repo().join("monitoring/dashboards/grafana-fastapi-dashboard.json"),
        boards.path().join("iris.json"),
    )
    .unwrap();
    let prov = provisioning_dir("http://prometheus:9090", Some(boards.path()));
    let s = standin(Some(prov.path()), &[]);
    let c = s.admin();
    rt().block_on(async {
        // Grafana provisions in the background after its port opens: wait for it, as irisctl does.
        assert!(
            grafana::wait_for_file_provisioning(&c, &spec(), &dashboards(), WAIT)
                .await
                .unwrap()
        );
        let out = grafana::provision(&c, &spec(), &dashboards())
            .await
            .unwrap();
        assert!(out.iter().all(|o| o.action == Action::Unchanged), "{out:?}");
        let moved = DatasourceSpec {
            url: "http://elsewhere:9090".into(),
            ..spec()
        };
        let e = grafana::upsert_datasource(&c, &moved).await.unwrap_err();
        assert!(
            matches!(e, GrafanaError::ReadOnlyDatasource { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("url"), "{e}");
    });
}

#[test]
fn waiting_for_grafana() {
    rt().block_on(async {
        // Nothing listens: not ready within the deadline, with the last answer named.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), Auth::Token("t".into()));
        let e = c.wait_ready(Duration::from_millis(800)).await.unwrap_err();
        assert!(
            matches!(e, GrafanaError::NotReady { .. })
                && e.to_string().contains("connection refused"),
            "{e}"
        );
    });
    // A failing database answers 503: not ready either.
    let s = standin(None, &[("STANDIN_HEALTH_FAIL", "1")]);
    rt().block_on(async {
        let e = s
            .admin()
            .wait_ready(Duration::from_millis(800))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("HTTP 503"), "{e}");
    });
}

#[test]
fn the_cli_provisions_any_grafana_and_reports_a_table() {
    let s = standin(None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let monitoring: PathBuf = common::repo().join("monitoring/dashboards");
    let provision = |password: &str| {
        common::run(
            common::irisctl(dir.path())
                .args([
                    "grafana",
                    "provision",
                    "--url",
                    &s.url(),
                    "--user",
                    "admin",
                    "--dashboards",
                ])
                .arg(&monitoring)
                .env("GRAFANA_PASSWORD", password)
                .env("XDG_DATA_HOME", dir.path()),
        )
    };
    let first = provision("secret");
    first.ok();
    assert!(
        first.stdout.contains("OBJECT")
            && first.stdout.contains("datasource Prometheus")
            && first.stdout.contains("created"),
        "{}",
        first.stdout
    );
    let second = provision("secret");
    second.ok();
    assert!(
        !second.stdout.contains("created") && second.stdout.matches("unchanged").count() == 2,
        "{}",
        second.stdout
    );
    provision("wrong").user_error("Grafana refused the credentials (basic auth as user `admin`)");

    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("broken.json"),
        "{\n  \"title\": \"x\",\n  \"panels\": [\n}",
    )
    .unwrap();
    common::run(
        common::irisctl(dir.path())
            .args([
                "grafana",
                "provision",
                "--url",
                &s.url(),
                "--password",
                "secret",
                "--dashboards",
            ])
            .arg(bad.path())
            .env("XDG_DATA_HOME", dir.path()),
    )
    .user_error("broken.json` is not valid JSON: line 4");
}

// --- issue 14: agreeing with the stack's own file provisioning, Grafana 12, and clashes ----------

/// A raw call to the stand-in as the admin (what a user or another tool does by hand).
async fn raw(
    s: &Standin,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", s.url()))
        .basic_auth("admin", Some("secret"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// The stack's own provisioning (the repo's YAML files), its dashboard provider reading the
/// resolved copy of `boards` that irisctl writes, as `up` mounts it.
fn stack_provisioning(boards: &Path, resolved: &Path) -> tempfile::TempDir {
    grafana::write_resolved_dashboards(boards, resolved, DATASOURCE_UID).unwrap();
    provisioning_dir("http://prometheus:9090", Some(resolved))
}

fn copy_dashboards(to: &Path) {
    for entry in std::fs::read_dir(common::repo().join("monitoring/dashboards")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

const GRAFANA_12: &[(&str, &str)] = &[
    ("STANDIN_GRAFANA_VERSION", "12.0.2"),
    ("GF_DASHBOARDS_MIN_REFRESH_INTERVAL", "10s"),
];

/// Long enough for the stand-in's first provisioning run (1 to 3 s after its port opens).
const WAIT: Duration = Duration::from_secs(10);

fn the_stacks_own_grafana(env: &[(&str, &str)]) {
    let work = tempfile::tempdir().unwrap();
    let boards = work.path().join("dashboards");
    let resolved = work.path().join("resolved");
    std::fs::create_dir_all(&boards).unwrap();
    copy_dashboards(&boards);
    let prov = stack_provisioning(&boards, &resolved);
    // Provisioning 2 s after the port opens: a margin for a loaded machine to see the gap.
    let env = [env, &[("STANDIN_PROVISIONING_DELAY", "2")]].concat();
    let env = env.as_slice();
    let s = standin(Some(prov.path()), env);
    let c = s.admin();
    let load = || grafana::load_dashboards(&boards, DATASOURCE_UID).unwrap();
    rt().block_on(async {
        // Right after the start, /api/health answers before the background provisioning ran.
        c.wait_ready(WAIT).await.unwrap();
        assert!(c.dashboard_by_uid("iris-api").await.unwrap().is_none());
        // First run: irisctl waits for the file provisioning; nothing to write, no folder made.
        assert!(
            grafana::wait_for_file_provisioning(&c, &spec(), &load(), WAIT)
                .await
                .unwrap()
        );
        let out = grafana::provision(&c, &spec(), &load()).await.unwrap();
        assert_eq!(
            actions(&out),
            vec![
                ("datasource Prometheus".to_string(), Action::Unchanged),
                ("dashboard Iris API".to_string(), Action::Unchanged),
            ]
        );
        let got = c.dashboard_by_uid("iris-api").await.unwrap().unwrap();
        assert_eq!(got["meta"]["folderUid"], "iris");
        assert_eq!(got["meta"]["provisioned"], false, "allowUiUpdates: true");
        assert!(grafana::is_file_provisioned(&got), "{}", got["meta"]);
        let v1 = got["meta"]["version"].as_i64().unwrap();

        // The dashboard JSON changes: updated once, in place, still file-provisioned.
        let file = boards.join("grafana-fastapi-dashboard.json");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            text.replace("Iris classifier API", "Iris classifier API (v2)"),
        )
        .unwrap();
        let out = grafana::provision(&c, &spec(), &load()).await.unwrap();
        assert_eq!(out.last().unwrap().action, Action::Updated, "{out:?}");
        assert!(
            !out.iter().any(|o| o.object.starts_with("folder")),
            "{out:?}"
        );
        let got = c.dashboard_by_uid("iris-api").await.unwrap().unwrap();
        assert_eq!(got["meta"]["folderUid"], "iris", "not moved");
        assert_eq!(got["meta"]["version"].as_i64().unwrap(), v1 + 1);
        assert!(grafana::is_file_provisioned(&got));
        let again = grafana::provision(&c, &spec(), &load()).await.unwrap();
        assert!(
            again.iter().all(|o| o.action == Action::Unchanged),
            "{again:?}"
        );
        assert_eq!(
            c.dashboard_by_uid("iris-api").await.unwrap().unwrap()["meta"]["version"],
            v1 + 1
        );
    });
    // The file provider catches up (Grafana restarted with the new resolved copy): it saves the
    // file into the same folder, and irisctl still finds it current.
    grafana::write_resolved_dashboards(&boards, &resolved, DATASOURCE_UID).unwrap();
    let restarted = standin_with_data(Some(prov.path()), env, s._data.path());
    drop(s);
    let s = restarted;
    let c = s.admin();
    rt().block_on(async {
        assert!(
            grafana::wait_for_file_provisioning(&c, &spec(), &load(), WAIT)
                .await
                .unwrap()
        );
        let out = grafana::provision(&c, &spec(), &load()).await.unwrap();
        assert!(out.iter().all(|o| o.action == Action::Unchanged), "{out:?}");
        let got = c.dashboard_by_uid("iris-api").await.unwrap().unwrap();
        assert_eq!(got["meta"]["folderUid"], "iris");
    });
}

#[test]
fn the_stacks_own_grafana_is_current_on_the_first_run_and_updated_in_place() {
    the_stacks_own_grafana(&[]);
}

#[test]
fn the_stacks_own_grafana_12_too() {
    the_stacks_own_grafana(GRAFANA_12);
}

#[test]
fn a_no_change_run_writes_nothing_on_grafana_12() {
    let s = standin(None, GRAFANA_12);
    let c = s.admin();
    rt().block_on(async {
        let first = grafana::provision(&c, &spec(), &dashboards())
            .await
            .unwrap();
        assert_eq!(first.last().unwrap().action, Action::Created);
        let stored = c.dashboard_by_uid("iris-api").await.unwrap().unwrap();
        assert_eq!(
            stored["dashboard"]["schemaVersion"],
            dashboards()[0].dashboard["schemaVersion"],
            "12.x's legacy API stores the JSON as sent"
        );
        assert_eq!(
            stored["dashboard"]["refresh"], "10s",
            "and raised its refresh"
        );
        for _ in 0..2 {
            let out = grafana::provision(&c, &spec(), &dashboards())
                .await
                .unwrap();
            assert!(out.iter().all(|o| o.action == Action::Unchanged), "{out:?}");
        }
        assert_eq!(
            c.dashboard_by_uid("iris-api").await.unwrap().unwrap()["meta"]["version"],
            stored["meta"]["version"]
        );
    });
}

#[test]
fn a_datasource_update_keeps_fields_set_by_hand() {
    let s = standin(None, &[]);
    let c = s.admin();
    rt().block_on(async {
        grafana::upsert_datasource(&c, &spec()).await.unwrap();
        // Someone sets the HTTP method and basic auth by hand.
        let mut ds = c.datasource_by_uid(DATASOURCE_UID).await.unwrap().unwrap();
        ds["jsonData"]["httpMethod"] = serde_json::json!("GET");
        ds["basicAuth"] = serde_json::json!(true);
        ds["basicAuthUser"] = serde_json::json!("scraper");
        ds["secureJsonData"] = serde_json::json!({"basicAuthPassword": "pw"});
        let (status, _) = raw(
            &s,
            reqwest::Method::PUT,
            "/api/datasources/uid/iris-prometheus",
            Some(ds),
        )
        .await;
        assert_eq!(status, 200);
        let moved = DatasourceSpec {
            url: "http://prometheus.internal:9090".into(),
            ..spec()
        };
        assert_eq!(
            grafana::upsert_datasource(&c, &moved).await.unwrap().action,
            Action::Updated
        );
        let ds = c.datasource_by_uid(DATASOURCE_UID).await.unwrap().unwrap();
        assert_eq!(ds["url"], "http://prometheus.internal:9090");
        assert_eq!(ds["jsonData"]["httpMethod"], "GET");
        assert_eq!(ds["jsonData"]["timeInterval"], "5s");
        assert_eq!(
            (&ds["basicAuth"], &ds["basicAuthUser"]),
            (&serde_json::json!(true), &serde_json::json!("scraper"))
        );
        assert_eq!(ds["secureJsonFields"]["basicAuthPassword"], true);
    });
}

#[test]
fn a_same_title_dashboard_with_another_uid_is_left_alone_and_ours_made_beside_it() {
    // Grafana 11.3+ has no unique-title rule: a save with our uid makes our dashboard, every time
    // the same one (no takeover of the namesake, so later runs find ours current).
    let s = standin(None, &[]);
    let c = s.admin();
    rt().block_on(async {
        raw(&s, reqwest::Method::POST, "/api/folders", Some(serde_json::json!({"uid": "iris", "title": "Iris"}))).await;
        let (status, _) = raw(
            &s,
            reqwest::Method::POST,
            "/api/dashboards/db",
            Some(serde_json::json!({"dashboard": {"uid": "someone", "title": "Iris API"}, "folderUid": "iris"})),
        )
        .await;
        assert_eq!(status, 200);
        let out = grafana::provision(&c, &spec(), &dashboards()).await.unwrap();
        assert_eq!(out.last().unwrap().action, Action::Created, "{out:?}");
        let theirs = c.dashboard_by_uid("someone").await.unwrap().unwrap();
        assert_eq!(theirs["meta"]["version"], 1, "the other dashboard is untouched");
        assert_eq!(theirs["dashboard"].get("panels"), None);
        let ours = c.dashboard_by_uid("iris-api").await.unwrap().unwrap();
        assert_eq!(ours["meta"]["folderUid"], "iris");
        let again = grafana::provision(&c, &spec(), &dashboards()).await.unwrap();
        assert!(again.iter().all(|o| o.action == Action::Unchanged), "{again:?}");
    });
}

#[test]
fn a_folder_of_the_same_title_does_not_stop_ours_being_made_by_uid() {
    // As the stack's file provisioner does (getOrCreateFolder by uid; titles may repeat since 11.3).
    let s = standin(None, &[]);
    let c = s.admin();
    rt().block_on(async {
        raw(
            &s,
            reqwest::Method::POST,
            "/api/folders",
            Some(serde_json::json!({"uid": "theirs", "title": "Iris"})),
        )
        .await;
        let out = grafana::provision(&c, &spec(), &dashboards())
            .await
            .unwrap();
        assert_eq!(
            actions(&out)[1..],
            [
                ("folder Iris".to_string(), Action::Created),
                ("dashboard Iris API".to_string(), Action::Created),
            ]
        );
        let ours = c.dashboard_by_uid("iris-api").await.unwrap().unwrap();
        assert_eq!(ours["meta"]["folderUid"], "iris");
        assert!(c.folder("theirs").await.unwrap().is_some());
        let again = grafana::provision(&c, &spec(), &dashboards())
            .await
            .unwrap();
        assert!(
            again.iter().all(|o| o.action == Action::Unchanged),
            "{again:?}"
        );
    });
}

#[test]
fn an_update_carries_the_version_it_read_and_a_concurrent_save_is_read_again() {
    let s = standin(None, &[]);
    let c = s.admin();
    rt().block_on(async {
        let mut d = dashboards();
        grafana::provision(&c, &spec(), &d).await.unwrap();
        d[0].dashboard["title"] = serde_json::json!("Iris API (edited)");
        let grafana::Plan::Save {
            action,
            folder_uid,
            version,
        } = grafana::dashboard_plan(&c, &d[0], grafana::FOLDER_UID)
            .await
            .unwrap()
        else {
            panic!("the edited dashboard is not current")
        };
        assert_eq!((action, version), (Action::Updated, Some(1)));
        // Someone saves it between irisctl's read and its write.
        let mut theirs =
            c.dashboard_by_uid("iris-api").await.unwrap().unwrap()["dashboard"].clone();
        theirs["note"] = serde_json::json!("by hand");
        let (status, _) = raw(
            &s,
            reqwest::Method::POST,
            "/api/dashboards/db",
            Some(serde_json::json!({"dashboard": theirs, "folderUid": "iris"})),
        )
        .await;
        assert_eq!(status, 200);
        // The save planned on version 1 is refused with Grafana's 412, and overwrites nothing.
        let e = grafana::save_dashboard(&c, &d[0], &folder_uid, action, version)
            .await
            .unwrap_err();
        assert!(
            matches!(e, GrafanaError::Changed { status: 412, .. }),
            "{e:?}"
        );
        let stored = c.dashboard_by_uid("iris-api").await.unwrap().unwrap();
        assert_eq!(stored["dashboard"]["note"], "by hand");
        assert_eq!(stored["meta"]["version"], 2);
        // provision reads it again and saves on the version it now has.
        let out = grafana::provision(&c, &spec(), &d).await.unwrap();
        assert_eq!(out.last().unwrap().action, Action::Updated, "{out:?}");
        let stored = c.dashboard_by_uid("iris-api").await.unwrap().unwrap();
        assert_eq!(stored["dashboard"]["title"], "Iris API (edited)");
        assert_eq!(stored["dashboard"].get("note"), None);
        assert_eq!(stored["meta"]["version"], 3);
    });
}

#[test]
fn creating_before_the_file_provisioner_ran_would_be_a_second_save_of_the_same_dashboard() {
    // Why irisctl waits: a dashboard created over the API right after Grafana's start is saved
    // again by the file provisioner moments later (it takes the uid over), so the first `up` would
    // save twice. With the wait, the file provisioner's save is the only one.
    let work = tempfile::tempdir().unwrap();
    let boards = work.path().join("dashboards");
    let resolved = work.path().join("resolved");
    std::fs::create_dir_all(&boards).unwrap();
    copy_dashboards(&boards);
    let prov = stack_provisioning(&boards, &resolved);
    let load = || grafana::load_dashboards(&boards, DATASOURCE_UID).unwrap();
    let version_after = |wait: bool| {
        // Provisioning 3 s after the port opens: irisctl's import comes well before it.
        let s = standin(Some(prov.path()), &[("STANDIN_PROVISIONING_DELAY", "3")]);
        let c = s.admin();
        rt().block_on(async {
            c.wait_ready(WAIT).await.unwrap();
            if wait {
                assert!(
                    grafana::wait_for_file_provisioning(&c, &spec(), &load(), WAIT)
                        .await
                        .unwrap()
                );
            }
            // The datasource is file-provisioned read-only: without the wait, irisctl would make
            // its own first. Only the dashboard is imported here.
            let mut out = Vec::new();
            grafana::import_dashboard(&c, &load()[0], &mut false, &mut out)
                .await
                .unwrap();
            // Past the stand-in's first provisioning run (3 s after start).
            tokio::time::sleep(Duration::from_millis(4500)).await;
            c.dashboard_by_uid("iris-api").await.unwrap().unwrap()["meta"]["version"]
                .as_i64()
                .unwrap()
        })
    };
    assert_eq!(
        version_after(false),
        2,
        "irisctl's save, then the provisioner's"
    );
    assert_eq!(version_after(true), 1, "the provisioner's save only");
}

#[test]
fn a_viewer_cannot_read_datasources() {
    let s = standin(None, &[]);
    rt().block_on(async {
        let viewer = Client::new(&s.url(), Auth::Token("viewertoken".into()));
        let e = viewer.datasource_by_uid(DATASOURCE_UID).await.unwrap_err();
        assert!(
            matches!(e, GrafanaError::Forbidden { .. })
                && e.to_string().contains("datasources:read"),
            "{e}"
        );
    });
}

/// A project directory whose `.env` holds the stack's generated Grafana password.
fn project_with_password(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("GRAFANA_ADMIN_PASSWORD=secret\n{extra}"),
    )
    .unwrap();
    dir
}

#[test]
fn the_stack_password_goes_only_to_the_stacks_own_grafana() {
    let s = standin(None, &[]);
    let project = project_with_password("");
    let boards = common::repo().join("monitoring/dashboards");
    let provision = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = common::irisctl(project.path());
        cmd.arg("--project-dir")
            .arg(project.path())
            .args(["grafana", "provision", "--dashboards"])
            .arg(&boards)
            .args(args)
            .env("XDG_DATA_HOME", project.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        common::run(&mut cmd)
    };
    // Another Grafana (here: another port), by flag or by an ambient GRAFANA_URL: refused, nothing sent.
    provision(&["--url", &s.url()], &[])
        .user_error("no credentials for the Grafana at")
        .user_error("--password or --token");
    provision(&[], &[("GRAFANA_URL", &s.url())]).user_error("it is not this stack's Grafana");
    provision(&[], &[("IRISCTL_GRAFANA_URL", &s.url())])
        .user_error("it is not this stack's Grafana");
    // With credentials given for it, fine.
    provision(&["--url", &s.url(), "--password", "secret"], &[]).ok();
    provision(
        &[],
        &[
            ("IRISCTL_GRAFANA_URL", &s.url()),
            ("IRISCTL_GRAFANA_PASSWORD", "secret"),
        ],
    )
    .ok();
    // The stack's own Grafana (its published port) gets the stack's password.
    let own = project_with_password(&format!("IRISCTL_GRAFANA_PORT={}\n", s.port));
    common::run(
        common::irisctl(own.path())
            .arg("--project-dir")
            .arg(own.path())
            .args(["grafana", "provision", "--dashboards"])
            .arg(&boards)
            .env("XDG_DATA_HOME", own.path()),
    )
    .ok();
}

#[test]
fn credentials_in_the_url_are_used_and_never_echoed() {
    let s = standin(None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let boards = common::repo().join("monitoring/dashboards");
    let with_userinfo = s.url().replace("http://", "http://admin:secret@");
    let run = |url: &str, extra: &[&str]| {
        common::run(
            common::irisctl(dir.path())
                .args(["grafana", "provision", "--url", url, "--dashboards"])
                .arg(&boards)
                .args(extra)
                .env("XDG_DATA_HOME", dir.path()),
        )
    };
    let out = run(&with_userinfo, &[]);
    out.ok();
    assert!(
        out.stdout.contains("datasource Prometheus"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("secret") && !out.stderr.contains("secret"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    // Wrong password in the URL: refused, and not echoed either.
    let wrong = run(&s.url().replace("http://", "http://admin:hunter2@"), &[]);
    wrong.user_error("Grafana refused the credentials");
    assert!(!wrong.stderr.contains("hunter2"), "{}", wrong.stderr);
    // Nothing listens there: the error names the URL without its userinfo.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = run(
        &format!("http://admin:hunter2@127.0.0.1:{port}"),
        &["--wait-timeout", "1"],
    );
    gone.user_error(&format!("127.0.0.1:{port}"));
    assert!(
        !gone.stderr.contains("hunter2") && !gone.stdout.contains("hunter2"),
        "{}",
        gone.stderr
    );
    // A non-http URL with userinfo is refused without showing it.
    let bad = run("ftp://admin:hunter2@h/", &[]);
    bad.user_error("is not an http(s) URL");
    assert!(!bad.stderr.contains("hunter2"), "{}", bad.stderr);
}

#[test]
fn releases_are_written_as_annotations_the_dashboard_queries() {
    let s = standin(None, &[]);
    let c = s.admin();
    rt().block_on(async {
        c.wait_ready(Duration::from_secs(10)).await.unwrap();
        let id = c
            .annotate(
                1_700_000_000_000,
                &["irisctl", "release", "api"],
                "release api: image changed (aaa → bbb); model 1.0.0",
            )
            .await
            .unwrap();
        c.annotate(1_700_000_100_000, &["irisctl", "release", "frontend"], "ui")
            .await
            .unwrap();
        c.annotate(1_700_000_200_000, &["deploy"], "someone else's")
            .await
            .unwrap();
        // The dashboard's annotation query: the built-in Grafana source, by these tags.
        let dash: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                common::repo().join("monitoring/dashboards/grafana-fastapi-dashboard.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let query = &dash["annotations"]["list"][0];
        assert_eq!(query["datasource"]["type"], "grafana");
        assert_eq!(query["target"]["type"], "tags");
        let tags: Vec<&str> = query["target"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let found = c.annotations(&tags, 100).await.unwrap();
        let texts: Vec<&str> = found.iter().map(|a| a["text"].as_str().unwrap()).collect();
        assert_eq!(
            texts,
            ["ui", "release api: image changed (aaa → bbb); model 1.0.0"]
        );
        assert_eq!(found[1]["id"].as_i64(), Some(id));
        assert_eq!(found[1]["time"].as_i64(), Some(1_700_000_000_000));
        // A viewer token cannot write one: Grafana's 403, named.
        let viewer = Client::new(&s.url(), Auth::Token("viewertoken".into()));
        let err = viewer.annotate(1, &["irisctl"], "x").await.unwrap_err();
        assert!(matches!(err, GrafanaError::Forbidden { .. }), "{err:?}");
    });
}
