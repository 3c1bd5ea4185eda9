//! Ctrl-C delivered to `irisctl up` at many points (building, creating, starting, waiting,
//! provisioning): it stops promptly, says what it was doing, and the next `up` converges to a
//! healthy stack with no orphan container, no second network and no leftover build container.
//! `INTERRUPT_POINTS` sets how many points (default 6; `INTERRUPT_POINTS=24 cargo test --test interrupt` for the full sweep).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{docker, run, Project};

fn unlabelled_stopped_containers() -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        "status=created",
        "--filter",
        "status=exited",
        "--format",
        "{{.ID}} {{.Label \"com.docker.compose.project\"}}",
    ])
    .lines()
    .filter(|l| l.split_whitespace().nth(1).is_none())
    .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
    .collect()
}

#[test]
fn interrupted_up_always_converges() {
    if !common::engine_available() {
        return;
    }
    let points: usize = std::env::var("INTERRUPT_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let p = Project::new("irisctl-test-interrupt", [21800, 21801, 21802, 21803]);
    run(p.irisctl().arg("up")).ok();
    let before_leftovers = unlabelled_stopped_containers();
    let main_py = p.path().join("stack/api/app/main.py");
    let mut phases = std::collections::BTreeMap::<String, usize>::new();

    for i in 0..points {
        // Alternate the work `up` has to do: everything from scratch, or one image to rebuild.
        if i % 2 == 0 {
            run(p.irisctl().args(["down", "-q"])).ok();
        } else {
            let mut text = std::fs::read_to_string(&main_py).unwrap();
            text.push_str(&format!("\n# interrupt point {i}\n"));
            std::fs::write(&main_py, text).unwrap();
        }
        // Spread the interruptions over the first ~12 s of an up.
        let delay = Duration::from_millis(150 + (i as u64 * 12_000 / points as u64));
        let child = p
            .irisctl()
            .arg("up")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let sent = Instant::now();
        let _ = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().unwrap();
        let stopped_in = sent.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code().unwrap_or(-1);
        assert!(code == 130 || code == 0, "point {i}: exit {code}\n{stderr}");
        if code == 130 {
            assert!(
                stopped_in < Duration::from_secs(3),
                "point {i}: took {stopped_in:?} to stop"
            );
            assert!(
                stderr.contains("hint: run `irisctl up` to finish"),
                "point {i}: {stderr}"
            );
            let phase = stderr
                .split("interrupted while ")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .unwrap_or("start-up")
                .to_string();
            *phases.entry(phase).or_default() += 1;
        } else {
            *phases
                .entry("finished before the signal".into())
                .or_default() += 1;
        }

        let again = run(p.irisctl().arg("up"));
        again.ok();
        let ids = p.container_ids();
        assert_eq!(
            ids.len(),
            4,
            "point {i}: expected exactly the four services, got {ids:?}"
        );
        let nets = docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.compose.project=irisctl-test-interrupt",
        ]);
        assert_eq!(nets.lines().count(), 1, "point {i}: networks {nets}");
    }
    // Interrupted builds leave no intermediate container behind (the engine removes them).
    let leftovers: Vec<String> = unlabelled_stopped_containers()
        .into_iter()
        .filter(|c| !before_leftovers.contains(c))
        .collect();
    assert!(
        common::eventually(15, || unlabelled_stopped_containers()
            .iter()
            .all(|c| before_leftovers.contains(c))),
        "leftover containers: {leftovers:?}"
    );
    eprintln!("interruption points by phase: {phases:?}");
}
