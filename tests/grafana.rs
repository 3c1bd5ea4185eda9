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
