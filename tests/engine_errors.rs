//! Errors that need the real engine: an absent, unpullable base image; a host port taken by a
//! program or by another container; a failing build step; a health deadline. Each is one
//! paragraph with a hint, a non-zero exit, and leaves nothing of the project behind.

mod common;

use common::{docker, run, Project};

fn set_image(p: &Project, key: &str, image: &str) {
    let text = std::fs::read_to_string(&p.config).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}:")))
        .expect("key in config")
        .to_string();
    let indent = &line[..line.len() - line.trim_start().len()];
    std::fs::write(
        &p.config,
        text.replace(&line, &format!("{indent}{key}: {image}")),
    )
    .unwrap();
}

#[test]
fn unpullable_base_image_points_to_offline_mode() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-noimage", [21000, 21001, 21002, 21003]);
    set_image(&p, "python", "irisctl-test-absent/python:0");
    set_image(&p, "nginx", "irisctl-test-absent/nginx:0");
    let r = run(p.irisctl().arg("up"));
    r.user_error("image `irisctl-test-absent/python:0` (needed by the `api` build) is not on this host and cannot be pulled");
    // Every missing image is named at once.
    assert!(
        r.stderr
            .contains("image `irisctl-test-absent/nginx:0` (needed by the `frontend` build)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("scripts/offline-base-images"),
        "{}",
        r.stderr
    );
    // The script the hint names is in the project directory (`irisctl init` wrote it).
    assert!(p.path().join("scripts/offline-base-images").is_file());
    assert!(p.leftovers().is_empty(), "{:?}", p.leftovers());
    // Nothing was written either: no password, no secret file.
    assert!(!p.path().join(".env").exists(), "a failed up wrote .env");
    assert!(!p.path().join(".irisctl/secrets").exists());
}

#[test]
fn taken_ports_are_named_before_anything_starts() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-ports", [21100, 21101, 21102, 21103]);

    // Another program on the API's port.
    let listener = std::net::TcpListener::bind("127.0.0.1:21100").unwrap();
    let r = run(p.irisctl().arg("up"));
    r.user_error("host port 21100 on 127.0.0.1 (for `api`) is already in use by another program");
    assert!(p.leftovers().is_empty(), "{:?}", p.leftovers());
    assert!(!p.path().join(".env").exists(), "a failed up wrote .env");
    drop(listener);

    // Another container on Grafana's port: named, and left running.
    let hog = "irisctl-test-ports-hog";
    docker(&["rm", "-f", hog]);
    let id = docker(&[
        "run",
        "-d",
        "--name",
        hog,
        "-p",
        "127.0.0.1:21103:80",
        "irisctl-offline/nginx:1.22",
    ]);
    assert!(!id.is_empty(), "could not start the port-holding container");
    let r = run(p.irisctl().arg("up"));
    let running = docker(&["inspect", "-f", "{{.State.Running}}", hog]);
    docker(&["rm", "-f", hog]);
    r.user_error("host port 21103 (for `grafana`) is already published by container `irisctl-test-ports-hog`");
    assert_eq!(
        running, "true",
        "irisctl touched a container it does not own"
    );
    assert!(p.leftovers().is_empty(), "{:?}", p.leftovers());
}

#[test]
fn failing_build_shows_the_step_and_the_log_tail() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-badbuild", [21200, 21201, 21202, 21203]);
    let dockerfile = p.path().join("stack/api/Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let (first, rest) = text.split_once("\nFROM ").expect("a FROM line");
    let broken = format!(
        "{first}\nFROM {}",
        rest.replacen('\n', "\nRUN echo irisctl-test-marker && exit 3\n", 1)
    );
    std::fs::write(&dockerfile, broken).unwrap();
    let r = run(p.irisctl().arg("up"));
    r.user_error("building `irisctl-test-badbuild-api:dev` for service `api` failed at `Step");
    assert!(
        r.stderr.contains("RUN echo irisctl-test-marker && exit 3`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("returned a non-zero code: 3"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("--- last lines of the build log ---\n")
            && r.stderr.contains("irisctl-test-marker\n"),
        "{}",
        r.stderr
    );
    // The builds overlap the rest of the plan: what needed no build (Prometheus, Grafana's
    // stand-in is built here) was started meanwhile, is named, and keeps running; the API and
    // what waits for it (the web UI, the edge) were not created.
    assert!(
        r.stderr
            .contains("meanwhile, what needed no build was done and stays: ")
            && r.stderr.contains("created prometheus"),
        "{}",
        r.stderr
    );
    let ids = p.container_ids();
    let services: Vec<&str> = ids.keys().map(String::as_str).collect();
    assert!(
        services.contains(&"prometheus")
            && !services
                .iter()
                .any(|s| ["api", "frontend", "edge"].contains(s)),
        "{services:?}"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &ids["prometheus"]]),
        "true"
    );
    // `down` takes what was started; no image of the failed service (the other services'
    // images may be built: they are cache, and `down --rmi` removes them).
    run(p.irisctl().args(["down", "--volumes"])).ok();
    assert!(
        p.leftovers().iter().all(|l| l.starts_with("image ")),
        "{:?}",
        p.leftovers()
    );
    assert!(
        docker(&["images", "-q", "irisctl-test-badbuild-api:dev"]).is_empty(),
        "the failed build left an image"
    );
    // `forcerm`: the engine removes the failed step's container (it may take a moment).
    let leftover = || {
        docker(&["ps", "-a", "--no-trunc", "--format", "{{.Command}}"])
            .lines()
            .any(|c| c.contains("irisctl-test-marker"))
    };
    assert!(
        common::eventually(10, || !leftover()),
        "the failed build left its container behind"
    );
}

#[test]
fn health_deadline_names_the_service_and_shows_its_log() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-deadline", [21300, 21301, 21302, 21303]);
    // An API that runs but never answers (its server is not started): the deadline is reached.
    let dockerfile = p.path().join("stack/api/Dockerfile");
    let original = std::fs::read_to_string(&dockerfile).unwrap();
    let cmd = original
        .lines()
        .rfind(|l| l.starts_with("CMD "))
        .expect("a CMD line")
        .to_string();
    std::fs::write(
        &dockerfile,
        original.replace(
            &cmd,
            r#"CMD ["sh", "-c", "echo irisctl-test: not serving; exec sleep 3600"]"#,
        ),
    )
    .unwrap();
    let r = run(p.irisctl().args(["up", "--wait-timeout", "3"]));
    r.user_error("did not become healthy within 3 s");
    assert!(
        r.stderr.contains("irisctl-test: not serving"),
        "{}",
        r.stderr
    );
    std::fs::write(&dockerfile, original).unwrap();
    assert!(
        r.stderr
            .contains("--- last log lines of `irisctl-test-deadline-"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("irisctl logs "), "{}", r.stderr);
    // What was started stays, and the next up converges to healthy.
    run(p.irisctl().arg("up")).ok();
    let st = run(p.irisctl().arg("status"));
    st.ok();
}

#[test]
fn logs_of_one_service() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-logs", [21400, 21401, 21402, 21403]);
    run(p.irisctl().args(["up", "--no-provision"])).ok();
    let r = run(p.irisctl().args(["logs", "api", "--tail", "50"]));
    r.ok();
    assert!(
        r.stdout.lines().all(|l| l.starts_with("api | ")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Uvicorn running") || r.stdout.contains("Application startup complete"),
        "{}",
        r.stdout
    );
}

#[test]
fn swarm_verbs_on_an_engine_that_is_no_swarm_manager_say_so() {
    if !common::engine_available() {
        return;
    }
    if common::already_swarm_manager("swarm_verbs_on_an_engine_that_is_no_swarm_manager_say_so") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run(common::irisctl(dir.path()).args(["init", "-q"])).ok();
    for verb in ["status", "down"] {
        let r = run(common::irisctl(dir.path()).args([verb, "--target", "swarm"]));
        r.user_error("is not a Swarm manager");
        assert!(!r.stderr.contains("503"), "{}", r.stderr);
    }
}

#[test]
fn a_changed_port_that_is_taken_stops_nothing() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-portmove", [21150, 21151, 21152, 21153]);
    run(p.irisctl().arg("up")).ok();
    let before = p.container_ids();
    // Another program holds the ports the change would move the API (the edge) and
    // Prometheus to: refused before anything is stopped, every container left as it was.
    let listener = std::net::TcpListener::bind("127.0.0.1:21158").unwrap();
    let r = run(p.irisctl().args(["up", "--api-port", "21158"]));
    r.user_error("host port 21158 on 127.0.0.1 (for `api`) is already in use by another program");
    let r = run(p.irisctl().args(["up", "--prometheus-port", "21158"]));
    r.user_error(
        "host port 21158 on 127.0.0.1 (for `prometheus`) is already in use by another program",
    );
    drop(listener);
    assert_eq!(
        p.container_ids(),
        before,
        "a refused port change touched a container"
    );
    let running = docker(&[
        "ps",
        "--filter",
        "label=com.docker.compose.project=irisctl-test-portmove",
        "--filter",
        "status=running",
        "-q",
    ]);
    assert_eq!(
        running.lines().count(),
        before.len(),
        "a container was stopped"
    );
    // The API still answers on its port.
    let (status, body) = common::http("GET", "http://127.0.0.1:21150/health", None);
    assert_eq!(status, 200, "the API stopped answering: {body}");
    p.cleanup();
}

#[test]
fn an_edge_that_cannot_reach_a_service_is_named_with_its_log_within_the_wait_timeout() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-edgelog", [21160, 21161, 21162, 21163]);
    // The edge proxies the API's port to a name nothing on the network has.
    let conf = p.path().join("stack/edge/nginx.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("set $upstream http://api:8000;"), "{text}");
    std::fs::write(
        &conf,
        text.replace(
            "set $upstream http://api:8000;",
            "set $upstream http://irisctl-no-such-service:8000;",
        ),
    )
    .unwrap();
    let r = run(p
        .irisctl()
        .args(["up", "--wait-timeout", "20", "--progress", "json"]));
    let events: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect();
    let text = common::human(&events);
    assert_ne!(r.code, 0, "{text}");
    assert!(
        text.contains("error: every service is healthy, but `api` does not answer"),
        "{text}"
    );
    assert!(
        text.contains("irisctl-no-such-service") && text.contains("could not be resolved"),
        "the edge's log line is not in the error:\n{text}"
    );
    assert!(
        text.contains("hint: the edge's log names the cause (`irisctl logs edge`)"),
        "{text}"
    );
    // The probes gave up at the wait timeout (20 s), not at their own 30 s.
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        events
            .iter()
            .find(|e| pred(e))
            .and_then(|e| e["elapsed_ms"].as_u64())
            .unwrap_or_else(|| panic!("an event is missing:\n{text}"))
    };
    let probing = at(&|e| {
        e["event"] == "phase"
            && e["phase"]
                .as_str()
                .is_some_and(|p| p.starts_with("probing the published endpoints"))
    });
    let failed = at(&|e| e["event"] == "message" && e["level"] == "error");
    let waited = std::time::Duration::from_millis(failed - probing);
    assert!(
        waited >= std::time::Duration::from_secs(19) && waited < std::time::Duration::from_secs(26),
        "the probes waited {waited:?} with --wait-timeout 20"
    );
    p.cleanup();
}
