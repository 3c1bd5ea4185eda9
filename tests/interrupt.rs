//! Ctrl-C delivered to `irisctl up` while each kind of work is in flight (checking ports, a
//! build streaming, a container being created and started, waiting for a dependency, waiting for
//! health, probing, provisioning Grafana): it stops within 3 s with exit code 130, says which
//! phase it was in (the last its progress events reported), and the next `up` converges to a
//! healthy stack with no orphan container, no second network and no leftover build container.
//! The signal goes the moment `up --progress json` reports the phase or operation started;
//! nothing in irisctl waits for the test.

mod common;

use std::time::Duration;

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

/// What `up` has to do before the point: start from nothing, or rebuild the API.
#[derive(Clone, Copy)]
enum Before {
    Down,
    ApiChanged,
    Converged,
}

const POINTS: &[(&str, Before)] = &[
    ("checking host ports", Before::Down),
    ("building images", Before::ApiChanged),
    ("create api", Before::Down),
    (
        "waiting for `api` to be healthy before starting `frontend`",
        Before::Down,
    ),
    ("create frontend", Before::Down),
    ("release api", Before::ApiChanged),
    (
        "waiting for every service to be healthy",
        Before::ApiChanged,
    ),
    (
        "probing the published endpoints and provisioning Grafana",
        Before::Converged,
    ),
];

#[test]
fn interrupted_up_always_converges() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-interrupt", [21800, 21801, 21802, 21803]);
    run(p.irisctl().arg("up")).ok();
    let before_leftovers = unlabelled_stopped_containers();
    let main_py = p.path().join("stack/api/app/main.py");

    for (i, (phase, before)) in POINTS.iter().enumerate() {
        match before {
            Before::Down => {
                run(p.irisctl().args(["down", "-q"])).ok();
            }
            Before::ApiChanged => {
                let mut text = std::fs::read_to_string(&main_py).unwrap();
                text.push_str(&format!("\n# interrupt point {i}\n"));
                std::fs::write(&main_py, text).unwrap();
            }
            Before::Converged => {}
        }
        let common::Interrupted {
            code,
            stderr,
            stopped_in,
            last_phase,
            ..
        } = p.up_interrupted_at(phase);
        assert_eq!(code, Some(130), "point {i} ({phase}): {stderr}");
        assert!(
            stopped_in < Duration::from_secs(3),
            "point {i} ({phase}): took {stopped_in:?} to stop"
        );
        assert!(
            !last_phase.is_empty() && stderr.contains(&format!("interrupted while {last_phase}")),
            "point {i} ({phase}): the message does not name the phase it was in:\n{stderr}"
        );
        assert!(
            stderr.contains("hint: run `irisctl up` to finish"),
            "point {i} ({phase}): {stderr}"
        );

        let again = run(p.irisctl().arg("up"));
        again.ok();
        let ids = p.container_ids();
        assert_eq!(
            ids.len(),
            5,
            "point {i} ({phase}): expected exactly the four services and the edge, got {ids:?}"
        );
        let nets = docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.compose.project=irisctl-test-interrupt",
        ]);
        assert_eq!(
            nets.lines().count(),
            1,
            "point {i} ({phase}): networks {nets}"
        );
        run(p.irisctl().arg("status")).ok();
    }
    // Interrupted builds leave no intermediate container behind (the engine removes them).
    assert!(
        common::eventually(15, || unlabelled_stopped_containers()
            .iter()
            .all(|c| before_leftovers.contains(c))),
        "leftover containers: {:?}",
        unlabelled_stopped_containers()
    );
}
