//! The same stack on Docker Swarm (a single-node swarm made here if the engine is not one, and
//! left again afterwards): three API replicas, all healthy, each answering predictions; Prometheus
//! finds all three; a rolling update under light load loses no request; `down` removes services,
//! secrets, configs and the network.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{docker, docker_cleanup, eventually, http, run, Project};

const P: &str = "irisctl-test-swarm";
const PORTS: [u16; 4] = [22100, 22101, 22102, 22103];

/// Leaves what the test made: the stack, and the swarm if the test created it.
struct SwarmGuard<'a> {
    project: &'a Project,
    made_swarm: bool,
    /// `swarm init` makes this bridge; it goes again with the swarm the test made.
    made_gwbridge: bool,
}

impl Drop for SwarmGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .project
            .irisctl()
            .args(["down", "--target", "swarm", "--volumes", "--rmi", "-q"])
            .output();
        if self.made_swarm {
            docker_cleanup(&["swarm", "leave", "--force"]);
        }
        if self.made_gwbridge {
            docker_cleanup(&["network", "rm", "docker_gwbridge"]);
        }
    }
}

/// One prediction through the web UI's proxy (which spreads requests over the replicas); the
/// replica that answered, or None on any failure.
fn predict_on_new_connection() -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).pool_max_idle_per_host(0).build().ok()?;
        let r = client
            .post(format!("http://127.0.0.1:{}/api/predict", PORTS[1]))
            .header("content-type", "application/json")
            .body(r#"{"items":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}"#)
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.headers().get("x-iris-replica").and_then(|v| v.to_str().ok()).map(str::to_string)
    })
}

fn api_targets_up() -> usize {
    common::api_targets_up(PORTS[2])
}

#[test]
fn three_replicas_rolling_update_and_down() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new(P, PORTS);
    // With alert delivery: the Alertmanager's config (it holds the webhook URL) goes as a secret.
    let config = std::fs::read_to_string(&p.config).unwrap().replacen(
        "ports:\n",
        "ports:\n  alertmanager: 22104\n",
        1,
    );
    std::fs::write(
        &p.config,
        format!("{config}\nalerting:\n  webhook_url: http://receiver:8080/hook/T0KEN\n"),
    )
    .unwrap();
    // The refusal on an engine that is no manager is shown first (in CI the engine is none).
    let made_swarm = !common::already_swarm_manager("swarm: the refusal before `swarm init`");
    let made_gwbridge =
        docker(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"]).is_empty();
    if made_swarm {
        run(p.irisctl().args(["up", "--target", "swarm"])).user_error("is not a Swarm manager");
        common::init_test_swarm();
    }
    let _guard = SwarmGuard {
        project: &p,
        made_swarm,
        made_gwbridge,
    };

    let up = run(p
        .irisctl()
        .args(["up", "--target", "swarm", "--api-replicas", "3"]));
    up.ok();
    assert!(up.stderr.contains("created api"), "{}", up.stderr);

    let st = run(p
        .irisctl()
        .args(["status", "--target", "swarm", "--format", "json"]));
    st.ok();
    let report: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let api = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "api")
        .unwrap()
        .clone();
    assert_eq!(api["replicas"], "3/3", "{report}");

    // Every replica answers predictions (the API names itself in a header).
    let mut replicas = BTreeSet::new();
    assert!(
        eventually(60, || {
            if let Some(r) = predict_on_new_connection() {
                replicas.insert(r);
            }
            replicas.len() == 3
        }),
        "replicas that answered: {replicas:?}"
    );

    // Prometheus finds each replica through DNS service discovery.
    assert!(
        eventually(60, || api_targets_up() == 3),
        "iris-api targets up: {}",
        api_targets_up()
    );

    // The Alertmanager runs (its image's entrypoint, its flags as arguments) and Prometheus
    // sends to it; its config is a secret, never a config `docker config inspect` shows.
    let alertmanager = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "alertmanager")
        .cloned()
        .unwrap_or_default();
    assert_eq!(alertmanager["replicas"], "1/1", "{report}");
    assert!(
        eventually(60, || {
            let (_, body) = http(
                "GET",
                &format!("http://127.0.0.1:{}/api/v1/alertmanagers", PORTS[2]),
                None,
            );
            body.contains("alertmanager:9093")
        }),
        "Prometheus has no Alertmanager"
    );
    let label = format!("label=com.docker.stack.namespace={P}");
    let secrets = docker(&["secret", "ls", "--filter", &label, "--format", "{{.Name}}"]);
    assert!(
        secrets.lines().any(|n| n.contains("alertmanager")),
        "{secrets}"
    );
    for config in docker(&["config", "ls", "-q", "--filter", &label]).lines() {
        let name = docker(&["config", "inspect", "--format", "{{.Spec.Name}}", config]);
        assert!(!name.contains("alertmanager"), "{name} is a config");
    }

    // A rolling update (new API code) under light load loses no request.
    let main_py = p.path().join("stack/api/app/main.py");
    let mut text = std::fs::read_to_string(&main_py).unwrap();
    text.push_str("\n# rolling update made by the swarm test\n");
    std::fs::write(&main_py, text).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                if predict_on_new_connection().is_none() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let update = run(p
        .irisctl()
        .args(["up", "--target", "swarm", "--api-replicas", "3"]));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    update.ok();
    assert!(
        update.stderr.contains("updated api") && !update.stderr.contains("updated frontend"),
        "{}",
        update.stderr
    );
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(sent >= 20, "too little load: {sent} requests");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the rolling update"
    );
    let mut after = BTreeSet::new();
    assert!(eventually(60, || {
        if let Some(r) = predict_on_new_connection() {
            after.insert(r);
        }
        after.len() == 3
    }));
    assert!(
        after.is_disjoint(&replicas),
        "the update did not replace the replicas: {after:?} vs {replicas:?}"
    );

    // Grafana provisioning works unchanged: the datasource and the dashboard are in the
    // Swarm-run Grafana already (file provisioning), and a second provisioning changes nothing.
    let prov = run(p.irisctl().args(["grafana", "provision"]));
    prov.ok();
    let rows: Vec<&str> = prov.stdout.lines().skip(1).collect();
    assert!(
        rows.len() >= 2 && rows.iter().all(|r| r.contains("unchanged")),
        "the Swarm-run Grafana was not provisioned already:\n{}",
        prov.stdout
    );

    // down removes services, secrets, configs and the network.
    run(p.irisctl().args(["down", "--target", "swarm"])).ok();
    let nothing_left = || {
        for kind in ["service", "secret", "config", "network"] {
            assert_eq!(
                docker(&[kind, "ls", "-q", "--filter", &label]),
                "",
                "{kind}s of the stack are left"
            );
        }
    };
    nothing_left();

    // The emitted stack file is accepted by `docker stack deploy`, runs the same stack, and
    // irisctl manages what it made.
    run(p.irisctl().args([
        "compose",
        "--target",
        "swarm",
        "--api-replicas",
        "3",
        "-o",
        "stack.yml",
    ]))
    .ok();
    assert!(
        p.path().join("stack.build.yml").is_file()
            && p.path().join(".irisctl/swarm/prometheus.yml").is_file()
    );
    let deploy = std::process::Command::new("docker")
        .args([
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            "stack.yml",
            P,
        ])
        .current_dir(p.path())
        .output()
        .unwrap();
    assert!(
        deploy.status.success(),
        "docker stack deploy: {}",
        String::from_utf8_lossy(&deploy.stderr)
    );
    assert!(
        eventually(180, || run(p
            .irisctl()
            .args(["status", "--target", "swarm"]))
        .code
            == 0),
        "the stack deployed from the emitted file never became healthy:\n{}\n{}",
        run(p.irisctl().args(["status", "--target", "swarm"])).stdout,
        docker(&["service", "ps", "--no-trunc", &format!("{P}_frontend")])
    );
    assert!(
        eventually(60, || api_targets_up() == 3),
        "iris-api targets up: {}",
        api_targets_up()
    );
    run(p.irisctl().args(["down", "--target", "swarm"])).ok();
    nothing_left();
}
