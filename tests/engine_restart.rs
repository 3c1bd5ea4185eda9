//! The engine restarted under a running stack: the restart policy brings every service back and
//! `irisctl status` reports it healthy, with the same containers and the data kept.
//!
//! Restarting the engine stops every container on the host, so this runs only where that is
//! wanted: in CI (`CI=true`), or with `RESTART_ENGINE_TEST=1`; it needs root and
//! scripts/start-dockerd.

mod common;

use std::process::Command;

use common::{eventually, repo, run, Project};

#[test]
fn stack_survives_an_engine_restart() {
    let wanted = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("RESTART_ENGINE_TEST").is_ok_and(|v| v == "1");
    if !wanted {
        eprintln!("skipped: restarts the Docker engine; set RESTART_ENGINE_TEST=1 (CI does)");
        return;
    }
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-restart", [22000, 22001, 22002, 22003]);
    run(p.irisctl().arg("up")).ok();
    let before = p.container_ids();

    // A graceful stop, as `systemctl restart docker` does; then start it the way CI does.
    let stopped = Command::new("pkill")
        .args(["-TERM", "-x", "dockerd"])
        .status()
        .unwrap();
    assert!(stopped.success(), "no dockerd to stop");
    assert!(
        eventually(60, || !Command::new("pgrep")
            .args(["-x", "dockerd"])
            .status()
            .unwrap()
            .success()),
        "dockerd did not stop"
    );
    let started = Command::new(repo().join("scripts/start-dockerd"))
        .output()
        .unwrap();
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );

    assert!(
        eventually(180, || run(p.irisctl().arg("status")).code == 0),
        "the stack did not come back healthy after the engine restart"
    );
    assert_eq!(
        p.container_ids(),
        before,
        "the restart policy restarts the same containers"
    );
    let up = run(p.irisctl().arg("up"));
    up.ok();
    assert!(up.stderr.contains("nothing to change"), "{}", up.stderr);
}
