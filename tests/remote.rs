//! A remote engine reached only over SSH: a second Docker engine in a container (Debian's
//! `docker.io` and `openssh-server`, sshd on a non-default port, published on this host's
//! loopback), which starts with no image. Everything irisctl does there goes through one SSH
//! connection per run: the stack comes up from nothing (base images sent from this engine,
//! the project's images built here and sent, the mounted files uploaded), `status` probes it, a
//! release under load generated on the remote itself loses no request and sends only the new
//! layer, `rollback` returns the previous image, `tunnel` serves the web UI here, `down --volumes`
//! leaves nothing; an unknown host key is refused.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::remote::Remote;
use common::{docker, run, Project};

const NAME: &str = "irisctl-test-remote-host";
const SSH_PORT: u16 = 22850;
/// The stack's ports on the remote (its own loopback; nothing here listens on them).
const PORTS: [u16; 4] = [22851, 22852, 22853, 22854];

const PREDICT: &str =
    r#"{"items":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}"#;

/// The SSH connections' socket folders in the temporary folder.
fn ssh_folders() -> Vec<std::ffi::OsString> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("irisctl-ssh-"))
        .collect()
}

/// The project's objects on the remote engine.
fn remote_leftovers(remote: &Remote, project: &str) -> String {
    let label = format!("label=com.docker.compose.project={project}");
    let (_, out) = remote.sh(&format!(
        "docker ps -aq --filter {label}; docker network ls -q --filter {label}; docker volume ls -q --filter {label}; docker volume ls -q --filter dangling=true"
    ));
    out
}

#[test]
fn a_remote_engine_over_ssh_runs_the_whole_stack() {
    if !common::engine_available() {
        return;
    }
    let folders_before = ssh_folders();
    let remote = Remote::start(NAME, SSH_PORT);
    let p = Project::new("irisctl-test-remote", PORTS);

    // An unknown host key is refused, with how to check and accept it.
    let empty = remote.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let r = run(p
        .irisctl()
        .arg("status")
        .env("DOCKER_HOST", format!("ssh://root@127.0.0.1:{SSH_PORT}"))
        .env("IRISCTL_SSH_COMMAND", remote.ssh_command(&empty)));
    r.user_error(&format!(
        "the SSH host key of `[127.0.0.1]:{SSH_PORT}` is unknown"
    ));
    assert!(
        r.stderr
            .contains(&format!("hint: check the host's key fingerprint and accept it once with `ssh -p {SSH_PORT} root@127.0.0.1`")),
        "{}",
        r.stderr
    );

    // From nothing: the remote has no image at all.
    assert_eq!(remote.sh("docker images -q").1, "");
    // A program of the remote host holding a port the stack would publish there is named by the
    // preflight, before anything is sent or started.
    remote.sh("/usr/sbin/sshd -p 22859 -o PidFile=/run/sshd-extra.pid");
    let taken = run(remote
        .aim(&mut p.irisctl())
        .args(["up", "--api-port", "22859"]));
    taken.user_error("host port 22859 on 127.0.0.1 of `127.0.0.1`");
    assert!(
        taken.stderr.contains("already in use by another program"),
        "{}",
        taken.stderr
    );
    assert_eq!(remote.sh("docker images -q; docker ps -aq").1, "");
    remote.sh("kill $(cat /run/sshd-extra.pid)");
    let up = run(remote.aim(&mut p.irisctl()).arg("up"));
    assert_eq!(up.code, 0, "remote up failed:\n{}", up.stderr);
    let (_, images) = remote.sh("docker images --format '{{.Repository}}:{{.Tag}}'");
    for image in ["irisctl-offline/python:3.11", "irisctl-test-remote-api:dev"] {
        assert!(
            images.contains(image),
            "{image} not on the remote:\n{images}"
        );
    }
    // Prometheus runs with the uploaded configuration (its job is there), not a bind mount.
    let (_, mounts) = remote.sh(
        "docker inspect irisctl-test-remote-prometheus-1 --format '{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}'",
    );
    assert!(
        !mounts.contains("bind:") && mounts.contains("volume:/etc/prometheus"),
        "{mounts}"
    );

    // `status` probes every service through the SSH connection.
    let status = run(remote
        .aim(&mut p.irisctl())
        .args(["status", "--format", "json"]));
    assert_eq!(status.code, 0, "{}\n{}", status.stdout, status.stderr);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    for s in report["services"].as_array().unwrap() {
        // `ready`: irisctl's own readiness check answered (through the connection) before
        // Docker's first health check; it counts as healthy.
        assert!(s["health"] == "healthy" || s["health"] == "ready", "{s}");
        for probe in s["probes"].as_array().into_iter().flatten() {
            assert_eq!(probe["ok"], true, "{probe}");
        }
    }
    let targets = report["prometheus_targets"].to_string();
    assert!(targets.contains("iris-api"), "{targets}");

    // A no-op `up` opens one SSH connection (two at most).
    let before = remote.logins();
    let noop = run(remote.aim(&mut p.irisctl()).arg("up"));
    assert_eq!(noop.code, 0, "{}", noop.stderr);
    assert!(noop.stderr.contains("nothing to change"), "{}", noop.stderr);
    let opened = remote.logins() - before;
    assert!(
        (1..=2).contains(&opened),
        "a no-op up opened {opened} SSH connections"
    );

    // A release of new API code under load generated on the remote: no request fails.
    let load = format!(
        "rm -f /tmp/load.log; while [ ! -e /tmp/stop ]; do curl -s -o /dev/null -w '%{{http_code}}\\n' -m 10 -H 'Content-Type: application/json' -d '{PREDICT}' http://127.0.0.1:{}/predict >> /tmp/load.log; done",
        PORTS[0]
    );
    let mut loader = Command::new("docker")
        .args(["exec", NAME, "sh", "-c", &load])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the load");
    std::thread::sleep(Duration::from_secs(2));
    let main_py = p.path().join("stack/api/app/main.py");
    let mut text = std::fs::read_to_string(&main_py).unwrap();
    text.push_str("\n# a remote release\n");
    std::fs::write(&main_py, text).unwrap();
    let api_image = || {
        remote
            .sh("docker inspect -f '{{.Image}}' $(docker ps -q --filter label=com.docker.compose.project=irisctl-test-remote --filter label=com.docker.compose.service=api)")
            .1
    };
    let before_release = api_image();
    let release = run(remote
        .aim(&mut p.irisctl())
        .args(["-v", "--progress", "plain", "up"]));
    assert_eq!(release.code, 0, "{}", release.stderr);
    assert!(
        release.stderr.contains("released api"),
        "{}",
        release.stderr
    );
    // Built here (its ID here is the one running there), and only the new layer sent.
    let released = api_image();
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "irisctl-test-remote-api:dev",
            "-f",
            "{{.Id}}"
        ]),
        released
    );
    let sent = release
        .stderr
        .lines()
        .find(|l| l.contains("irisctl-test-remote-api:dev: sent "))
        .unwrap_or_else(|| panic!("no line on what was sent:\n{}", release.stderr));
    assert!(sent.contains("to the remote: 1 of "), "{sent}");
    std::thread::sleep(Duration::from_secs(1));
    remote.sh("touch /tmp/stop");
    let _ = loader.wait();
    let (_, codes) = remote.sh("sort /tmp/load.log | uniq -c");
    let total: usize = remote.sh("wc -l < /tmp/load.log").1.parse().unwrap_or(0);
    assert!(
        total >= 20,
        "only {total} requests during the release: {codes}"
    );
    let failed: Vec<&str> = codes.lines().filter(|l| !l.ends_with(" 200")).collect();
    assert!(
        failed.is_empty(),
        "requests failed during the release: {codes}"
    );

    // Back to the previous release.
    let back = run(remote.aim(&mut p.irisctl()).args(["rollback", "api"]));
    assert_eq!(back.code, 0, "{}", back.stderr);
    assert_eq!(
        api_image(),
        before_release,
        "the previous image does not serve"
    );

    // `tunnel` opens the web UI here; Ctrl-C ends it.
    let mut tunnel = remote
        .aim(&mut p.irisctl())
        .arg("tunnel")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run irisctl tunnel");
    let mut ui = None;
    // A row per published port: SERVICE, ON THE REMOTE (127.0.0.1:PORT), HERE (a local URL).
    for line in BufReader::new(tunnel.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains(&format!("127.0.0.1:{} ", PORTS[1])) {
            ui = line
                .split_whitespace()
                .find(|w| w.starts_with("http://127.0.0.1:"))
                .map(String::from);
            break;
        }
    }
    let ui = ui.expect("the tunnel names the web UI's local URL");
    let (code, body) = common::http("GET", &ui, None);
    assert_eq!(code, 200, "{ui}: {body}");
    let (code, _) = common::http("POST", &format!("{ui}api/predict"), Some(PREDICT));
    assert_eq!(code, 200, "{ui}api/predict");
    let _ = Command::new("kill")
        .args(["-INT", &tunnel.id().to_string()])
        .status();
    let ended = tunnel.wait().unwrap();
    assert_eq!(ended.code(), Some(0));

    // `down --volumes` leaves nothing of the project on the remote (no stray volume either).
    let down = run(remote.aim(&mut p.irisctl()).args(["down", "--volumes"]));
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert_eq!(remote_leftovers(&remote, "irisctl-test-remote"), "");
    // Nothing of the connections is left here: no socket folder, no ssh process.
    let made: Vec<_> = ssh_folders()
        .into_iter()
        .filter(|f| !folders_before.contains(f))
        .collect();
    assert!(made.is_empty(), "{made:?}");
    let ssh = Command::new("pgrep")
        .args(["-f", &format!("ssh .*-p {SSH_PORT} .*root@127.0.0.1 cat")])
        .output()
        .unwrap();
    assert!(
        ssh.stdout.is_empty(),
        "ssh still runs: {}",
        String::from_utf8_lossy(&ssh.stdout)
    );
}
