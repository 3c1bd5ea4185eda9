//! Whose objects irisctl touches, on the real engine: two `up`s at once serialise (one
//! network, one password); a stack is changed only from the directory it is managed from
//! (`up` and `down` elsewhere are refused, `status` says where); a foreign container or volume
//! of the same project name is refused or kept, never deleted; a duplicate of the project's
//! network (Docker allows two of one name) is repaired instead of wedging `up` and `down`.

mod common;

use std::io::{Read, Write};
use std::process::Stdio;

use common::{docker, irisctl, run, Project};

const NAME: &str = "irisctl-test-own";
const PORTS: [u16; 4] = [22400, 22401, 22402, 22403];

fn networks() -> Vec<String> {
    docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={NAME}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// A second network of the project's name, as only the Engine API makes one
/// (`CheckDuplicate: false`; the docker CLI refuses).
fn duplicate_network(dir: &std::path::Path) {
    let body = serde_json::json!({
        "Name": format!("{NAME}-network"),
        "CheckDuplicate": false,
        "Driver": "bridge",
        "Labels": {
            "com.docker.compose.project": NAME,
            "com.docker.compose.network": "iris-network",
            "com.docker.compose.project.working_dir": dir.display().to_string(),
        },
    })
    .to_string();
    let mut s = std::os::unix::net::UnixStream::connect("/var/run/docker.sock").unwrap();
    write!(
        s,
        "POST /networks/create HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 201"), "{answer}");
}

#[test]
fn ownership_locking_and_duplicate_networks() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new(NAME, PORTS);

    // Two `up`s at once: the second waits for the first; one network, one password.
    let spawn = || {
        p.irisctl()
            .arg("up")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ea, eb) = (
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr),
    );
    assert!(a.status.success() && b.status.success(), "{ea}\n---\n{eb}");
    assert!(
        ea.contains("waiting for another irisctl") || eb.contains("waiting for another irisctl"),
        "neither waited:\n{ea}\n---\n{eb}"
    );
    assert_eq!(networks().len(), 1, "{:?}", networks());
    let env = std::fs::read_to_string(p.path().join(".env")).unwrap();
    assert_eq!(
        env.matches("GRAFANA_ADMIN_PASSWORD=").count(),
        1,
        "two passwords"
    );
    let ids = p.container_ids();
    assert_eq!(ids.len(), 5, "four services and the edge");

    // Another directory with the same project name: refused, nothing changed.
    let q = Project::new(NAME, PORTS);
    q.irisctl().args(["up"]).output().unwrap();
    let elsewhere = run(q.irisctl().arg("up"));
    elsewhere.user_error(&format!(
        "project `{NAME}` is managed from `{}`",
        p.path().display()
    ));
    let down = run(q.irisctl().arg("down"));
    down.user_error("is managed from");
    assert_eq!(
        p.container_ids(),
        ids,
        "another directory changed the stack"
    );
    let st = run(q.irisctl().args(["status", "--format", "json"]));
    let report: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(report["managed_from"], p.path().display().to_string());

    // A container of the project name made from elsewhere (another Compose file): refused,
    // not removed as an orphan.
    docker(&[
        "run",
        "-d",
        "--name",
        &format!("{NAME}-worker-1"),
        "--label",
        &format!("com.docker.compose.project={NAME}"),
        "--label",
        "com.docker.compose.service=worker",
        "--label",
        "com.docker.compose.project.working_dir=/srv/someone-else",
        "irisctl-offline/python:3.11",
        "sleep",
        "600",
    ]);
    let orphans = run(p.irisctl().args(["up", "--remove-orphans"]));
    orphans.user_error("is managed from `/srv/someone-else`");
    assert_eq!(
        docker(&["ps", "-q", "--filter", &format!("name={NAME}-worker-1")])
            .lines()
            .count(),
        1,
        "the foreign container was removed"
    );
    docker(&["rm", "-f", &format!("{NAME}-worker-1")]);

    // A foreign volume carrying the project label: kept by `down --volumes`, and said so.
    docker(&[
        "volume",
        "create",
        "--label",
        &format!("com.docker.compose.project={NAME}"),
        "--label",
        "com.docker.compose.project.working_dir=/srv/someone-else",
        &format!("{NAME}_theirs"),
    ]);

    // A duplicate of the project's network: planned, repaired by `up`.
    duplicate_network(p.path());
    assert_eq!(networks().len(), 2);
    let plan = run(p.irisctl().args(["up", "--dry-run"]));
    plan.ok();
    assert!(
        plan.stdout.contains(&format!(
            "remove network {NAME}-network: a duplicate of the project's network (same name)"
        )),
        "{}",
        plan.stdout
    );
    run(p.irisctl().arg("up")).ok();
    assert_eq!(networks().len(), 1, "{:?}", networks());
    assert_eq!(
        p.container_ids(),
        ids,
        "repairing the network recreated containers"
    );

    // Ports come from the project's own containers, not from this run's settings.
    run(p.irisctl().args(["up", "--grafana-port", "22413"])).ok();
    let st = run(p.irisctl().args(["status", "--format", "json"]));
    st.ok();
    let report: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(report["grafana_dashboards"][0]["present"], true, "{report}");
    assert!(report["grafana_error"].is_null(), "{report}");
    let prov = run(p.irisctl().args(["grafana", "provision"]));
    prov.ok();
    assert!(
        prov.stderr.contains("http://127.0.0.1:22413"),
        "{}",
        prov.stderr
    );
    // A project with no containers probes nothing (not another stack's Prometheus).
    let none = run(p
        .irisctl()
        .args(["-p", "irisctl-test-nosuch", "status", "--format", "json"]));
    assert_eq!(none.code, 3, "{}", none.stderr);
    let report: serde_json::Value = serde_json::from_str(&none.stdout).unwrap();
    assert_eq!(
        report["prometheus_targets"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(
        report["prometheus_error"], "prometheus is not running",
        "{report}"
    );

    // `down` with a duplicate present removes both; the foreign volume stays.
    duplicate_network(p.path());
    let gone = run(p.irisctl().args(["down", "--volumes"]));
    gone.ok();
    assert!(
        gone.stderr.contains(&format!("kept volume {NAME}_theirs")),
        "{}",
        gone.stderr
    );
    assert!(networks().is_empty(), "{:?}", networks());
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={NAME}_theirs")
        ])
        .trim(),
        format!("{NAME}_theirs")
    );
    docker(&["volume", "rm", &format!("{NAME}_theirs")]);

    // `down --rmi` without the settings that built Grafana still removes every image irisctl
    // built for the project (CI's settings build the Grafana stand-in).
    let grafana_image = format!("{NAME}-grafana:dev");
    assert!(!docker(&["images", "-q", &grafana_image]).is_empty());
    let plain = p.path().join("plain.yaml");
    std::fs::write(
        &plain,
        format!("project: {NAME}\nports:\n  api: 22400\n  frontend: 22401\n  prometheus: 22402\n  grafana: 22403\n"),
    )
    .unwrap();
    let rmi = run(p
        .irisctl()
        .args(["--config", "plain.yaml", "down", "--rmi"]));
    rmi.ok();
    assert!(
        docker(&["images", "-q", &grafana_image]).is_empty(),
        "{}",
        rmi.stderr
    );
}

/// A project name held only by volumes made from another directory (a stack taken down without
/// `--volumes`): `status` here says where it is managed from and how to free the name, as `up`
/// does, instead of "`irisctl up` repairs it" (which `up` then refuses; issue 23).
#[test]
fn status_elsewhere_says_where_the_stack_is_managed_and_how_to_free_the_name() {
    if !common::engine_available() {
        return;
    }
    const OTHER: &str = "irisctl-test-own-elsewhere";
    let volume = format!("{OTHER}_grafana-data");
    let _ = docker(&["volume", "rm", "-f", &volume]);
    docker(&[
        "volume",
        "create",
        "--label",
        &format!("com.docker.compose.project={OTHER}"),
        "--label",
        "com.docker.compose.project.working_dir=/srv/the checkout",
        &volume,
    ]);
    let dir = tempfile::tempdir().unwrap();
    run(irisctl(dir.path()).args(["init", "-q"])).ok();
    let r = run(irisctl(dir.path()).args(["-p", OTHER, "status"]));
    docker(&["volume", "rm", "-f", &volume]);
    r.user_error(&format!(
        "project `{OTHER}` is managed from `/srv/the checkout` (volume `{volume}` was made there), not from this project directory"
    ));
    assert!(
        r.stderr.contains(&format!("`irisctl --project-dir '/srv/the checkout' -p {OTHER} down --volumes` removes it with its data and frees the name")),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("`irisctl up` repairs it"),
        "{}",
        r.stderr
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.contains("managed from /srv/the checkout"),
        "{}",
        r.stdout
    );

    // With an object of its own here, the project is managed here: a foreign volume of its
    // name does not make status speak for another directory.
    let ours = format!("{OTHER}_prometheus-data");
    for (v, from) in [
        (&volume, "/srv/the checkout".to_string()),
        (&ours, dir.path().display().to_string()),
    ] {
        docker(&[
            "volume",
            "create",
            "--label",
            &format!("com.docker.compose.project={OTHER}"),
            "--label",
            &format!("com.docker.compose.project.working_dir={from}"),
            v,
        ]);
    }
    let r = run(irisctl(dir.path()).args(["-p", OTHER, "status"]));
    docker(&["volume", "rm", "-f", &volume, &ours]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!r.stderr.contains("is managed from"), "{}", r.stderr);
}

/// After a port change not yet applied, `status` probes the port the running stack publishes,
/// never the newly configured one, where another program may answer (issue 23: `api FAIL 501`
/// for a healthy API).
#[test]
fn status_probes_what_the_stack_publishes_not_the_configured_port() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-own-ports", [22420, 22421, 22422, 22423]);
    run(p.irisctl().arg("up")).ok();
    // A foreign program on the port the settings now name: 501 to everything.
    let foreign = std::net::TcpListener::bind("127.0.0.1:22424").unwrap();
    std::thread::spawn(move || {
        for stream in foreign.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 501 Not Implemented\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let st = run(p
        .irisctl()
        .args(["status", "--api-port", "22424", "--format", "json"]));
    let report: serde_json::Value = serde_json::from_str(&st.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", st.stdout, st.stderr));
    let api = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "api")
        .unwrap()
        .clone();
    assert_eq!(api["url"], "http://127.0.0.1:22420/", "{api}");
    let probes = api["probes"].as_array().unwrap();
    assert!(!probes.is_empty(), "{api}");
    for pr in probes {
        assert_eq!(pr["ok"], true, "{api}");
        assert_eq!(pr["status"], 200, "{api}");
    }
    assert_eq!(st.code, 0, "{}", st.stderr);
}

#[test]
fn down_names_a_foreign_container_that_holds_the_network_and_keeps_it() {
    if !common::engine_available() {
        return;
    }
    const HELD: &str = "irisctl-test-own-netheld";
    let p = Project::new(HELD, [22430, 22431, 22432, 22433]);
    run(p.irisctl().arg("up")).ok();
    let network = format!("{HELD}-network");
    let holder = "irisctl-test-own-netholder";
    common::docker_cleanup(&["rm", "-f", holder]);
    docker(&[
        "run",
        "-d",
        "--name",
        holder,
        "--network",
        &network,
        "irisctl-offline/debian:bookworm",
        "sleep",
        "600",
    ]);
    let down = run(p.irisctl().arg("down"));
    let running = docker(&["inspect", "-f", "{{.State.Running}}", holder]);
    let kept = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name=^{network}$"),
    ]);
    docker(&["rm", "-f", holder]);
    down.ok();
    assert!(
        down.stderr.contains(&format!(
            "container `{holder}` of another project is attached (`docker network disconnect {network} {holder}`"
        )),
        "the holder is not named:\n{}",
        down.stderr
    );
    assert_eq!(running, "true", "down touched a container it does not own");
    assert!(
        !kept.is_empty(),
        "the network was removed from under its holder"
    );
    assert!(
        p.container_ids().is_empty(),
        "the project's containers are left"
    );
    // Once the holder is gone, `down` removes the network.
    run(p.irisctl().arg("down")).ok();
    assert_eq!(
        docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=^{network}$")
        ]),
        "",
        "the network is left"
    );
}
