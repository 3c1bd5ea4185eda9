//! The whole stack on the real engine: up → healthy → prediction through the UI's proxy →
//! Prometheus target up → status → no-op up → one changed setting → one changed source → a
//! stopped container repaired → Grafana provisioned and idempotent → down leaves nothing.

mod common;

use common::{docker, eventually, http, run, Project};

const PORTS: [u16; 4] = [18000, 15174, 19090, 13000];

fn setosa() -> &'static str {
    r#"{"items":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}"#
}

#[test]
fn stack_lifecycle_on_the_real_engine() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-e2e", PORTS);

    // up: everything healthy, the UI's /api/ proxy answers a prediction.
    let up = run(p.irisctl().arg("up"));
    up.ok();
    assert!(up.stderr.contains("is up and healthy"), "{}", up.stderr);
    assert!(
        up.stdout
            .contains(&format!("http://127.0.0.1:{}/", PORTS[1])),
        "{}",
        up.stdout
    );
    let (code, body) = http(
        "POST",
        &format!("http://127.0.0.1:{}/api/predict", PORTS[1]),
        Some(setosa()),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["predictions"][0]["species"], "setosa");

    // Prometheus (the real one, from the offline image) scrapes the API.
    let targets_up = eventually(60, || common::api_targets_up(PORTS[2]) >= 1);
    assert!(targets_up, "the iris-api target never came up");

    // status: JSON, every service healthy, exit 0.
    let st = run(p.irisctl().args(["status", "--format", "json"]));
    st.ok();
    let report: serde_json::Value = serde_json::from_str(&st.stdout).expect("status json");
    assert_eq!(report["project"], "irisctl-test-e2e");
    let services = report["services"].as_array().expect("services");
    assert_eq!(services.len(), 5, "four services and the edge");
    for s in services {
        assert_eq!(s["state"], "running", "{s}");
        assert_eq!(s["health"], "healthy", "{s}");
        assert!(
            s["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
            "{s}"
        );
    }
    let targets = report["prometheus_targets"].as_array().expect("targets");
    assert!(
        targets
            .iter()
            .any(|t| t["job"] == "iris-api" && t["health"] == "up"),
        "{targets:?}"
    );
    assert_eq!(report["grafana_dashboards"][0]["present"], true, "{report}");

    // Secure defaults, as the engine reports them.
    for service in ["api", "frontend", "prometheus", "grafana", "edge"] {
        let c: serde_json::Value = serde_json::from_str(&docker(&[
            "inspect",
            &format!("irisctl-test-e2e-{service}-1"),
        ]))
        .unwrap();
        let c = &c[0];
        for bindings in c["HostConfig"]["PortBindings"]
            .as_object()
            .unwrap()
            .values()
        {
            for b in bindings.as_array().unwrap() {
                assert_eq!(b["HostIp"], "127.0.0.1", "{service} publishes off loopback");
            }
        }
        assert_eq!(
            c["HostConfig"]["CapDrop"],
            serde_json::json!(["ALL"]),
            "{service}"
        );
        assert!(
            c["HostConfig"]["SecurityOpt"]
                .to_string()
                .contains("no-new-privileges"),
            "{service}"
        );
        assert!(
            c["HostConfig"]["Memory"].as_i64().unwrap() > 0,
            "{service} has no memory limit"
        );
        let env = c["Config"]["Env"].to_string();
        assert!(
            !env.contains("GF_SECURITY_ADMIN_PASSWORD="),
            "{service} shows the Grafana password in its env"
        );
        if service != "grafana" {
            assert_eq!(c["HostConfig"]["ReadonlyRootfs"], true, "{service}");
            let user = docker(&["exec", &format!("irisctl-test-e2e-{service}-1"), "id", "-u"]);
            assert!(
                !user.is_empty() && user != "0",
                "{service} runs as root ({user:?})"
            );
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.path().join(".env"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, ".env must be private");
    // The password's value (not only the variable's name) is nowhere the engine shows: not in
    // any container's inspect output, not in any log; its folders are private to this user.
    let password = std::fs::read_to_string(p.path().join(".env"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("GRAFANA_ADMIN_PASSWORD=")
                .map(str::to_string)
        })
        .expect("password in .env");
    assert!(password.len() >= 16);
    for service in ["api", "frontend", "prometheus", "grafana"] {
        let name = format!("irisctl-test-e2e-{service}-1");
        assert!(
            !docker(&["inspect", &name]).contains(&password),
            "{service}: the password is in `docker inspect`"
        );
        let logs = std::process::Command::new("docker")
            .args(["logs", &name])
            .output()
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&logs.stdout).contains(&password)
                && !String::from_utf8_lossy(&logs.stderr).contains(&password),
            "{service}: the password is in its log"
        );
    }
    assert!(!up.stderr.contains(&password) && !up.stdout.contains(&password));
    for (folder, want) in [(".irisctl", 0o700), (".irisctl/secrets", 0o700)] {
        let mode = std::fs::metadata(p.path().join(folder))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, want, "{folder} must be private");
    }

    // A second up changes nothing.
    let before = p.container_ids();
    assert_eq!(before.len(), 5);
    let again = run(p.irisctl().arg("up"));
    again.ok();
    assert!(
        again.stderr.contains("nothing to change"),
        "{}",
        again.stderr
    );
    assert_eq!(p.container_ids(), before);

    // A changed setting recreates only the service it concerns.
    let moved = run(p.irisctl().args(["up", "--prometheus-port", "19091"]));
    moved.ok();
    let after = p.container_ids();
    for (service, id) in &before {
        assert_eq!(
            after[service] != *id,
            service == "prometheus",
            "{service}: {moved:?}",
            moved = moved.stderr
        );
    }

    // A changed source file rebuilds and recreates only that image's service.
    let main_py = p.path().join("stack/api/app/main.py");
    let mut text = std::fs::read_to_string(&main_py).expect("read main.py");
    text.push_str("\n# a change made by the e2e test\n");
    std::fs::write(&main_py, text).expect("write main.py");
    let rebuilt = run(p.irisctl().args(["up", "--prometheus-port", "19091"]));
    rebuilt.ok();
    let after_src = p.container_ids();
    for (service, id) in &after {
        assert_eq!(
            after_src[service] != *id,
            service == "api",
            "{service}: {}",
            rebuilt.stderr
        );
    }

    // A changed Prometheus config recreates Prometheus only.
    let before_config = p.container_ids();
    let prom_yml = p.path().join("monitoring/prometheus.yml");
    let mut config = std::fs::read_to_string(&prom_yml).unwrap();
    config.push_str("\n# a change made by the e2e test\n");
    std::fs::write(&prom_yml, config).unwrap();
    let reconfigured = run(p.irisctl().args(["up", "--prometheus-port", "19091"]));
    reconfigured.ok();
    let after_config = p.container_ids();
    for (service, id) in &before_config {
        assert_eq!(
            after_config[service] != *id,
            service == "prometheus",
            "{service}: {}",
            reconfigured.stderr
        );
    }

    // A paused container is unpaused, not replaced.
    docker(&["pause", "irisctl-test-e2e-frontend-1"]);
    let unpaused = run(p.irisctl().args(["up", "--prometheus-port", "19091"]));
    unpaused.ok();
    assert!(
        unpaused.stderr.contains("unpaused frontend"),
        "{}",
        unpaused.stderr
    );
    assert_eq!(p.container_ids(), after_config);

    // A container of the project that no service defines: reported, then removed on request.
    docker(&[
        "run",
        "-d",
        "--name",
        "irisctl-test-e2e-worker-1",
        "--label",
        "com.docker.compose.project=irisctl-test-e2e",
        "--label",
        "com.docker.compose.service=worker",
        "--label",
        "com.docker.compose.container-number=1",
        "--label",
        "com.docker.compose.oneoff=False",
        "irisctl-offline/python:3.11",
        "sleep",
        "600",
    ]);
    let reported = run(p.irisctl().args(["up", "--prometheus-port", "19091"]));
    reported.ok();
    assert!(reported.stderr.contains("container `irisctl-test-e2e-worker-1` belongs to project `irisctl-test-e2e` but to no service of it"), "{}", reported.stderr);
    let removed = run(p
        .irisctl()
        .args(["up", "--prometheus-port", "19091", "--remove-orphans"]));
    removed.ok();
    assert!(
        removed
            .stderr
            .contains("removed orphan irisctl-test-e2e-worker-1"),
        "{}",
        removed.stderr
    );
    assert_eq!(
        docker(&["ps", "-aq", "--filter", "name=irisctl-test-e2e-worker-1"]),
        ""
    );

    // A stopped container: status says so (exit 3), up starts it again.
    docker(&["stop", "irisctl-test-e2e-grafana-1"]);
    let st = run(p.irisctl().args(["status", "--prometheus-port", "19091"]));
    assert_eq!(st.code, 3, "{}\n{}", st.stdout, st.stderr);
    assert!(st.stdout.contains("exited"), "{}", st.stdout);
    run(p.irisctl().args(["up", "--prometheus-port", "19091"])).ok();
    assert_eq!(
        p.container_ids()["grafana"],
        after_config["grafana"],
        "a stopped container is started, not recreated"
    );

    // Grafana: provisioned by up; provisioning again changes nothing.
    let prov = run(p.irisctl().args(["grafana", "provision"]));
    prov.ok();
    assert!(
        prov.stdout.contains("datasource Prometheus") && prov.stdout.contains("unchanged"),
        "{}",
        prov.stdout
    );
    assert!(
        !prov.stdout.contains("created") && !prov.stdout.contains("updated"),
        "{}",
        prov.stdout
    );

    // down: no container or network of the project left; a second down is a no-op.
    run(p.irisctl().arg("down")).ok();
    assert!(p.container_ids().is_empty());
    assert_eq!(
        docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.compose.project=irisctl-test-e2e"
        ]),
        ""
    );
    assert_ne!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.compose.project=irisctl-test-e2e"
        ]),
        "",
        "volumes are kept"
    );
    let second = run(p.irisctl().arg("down"));
    second.ok();
    assert!(
        second.stderr.contains("nothing to remove"),
        "{}",
        second.stderr
    );
}
