//! Readiness decided by irisctl, and the progress people see, on the real engine: a dependent
//! starts the moment its dependency answers (shown from the engine's own events: the web UI
//! starts before Docker has run the API's first health check); one line per service moving
//! through its states, as plain lines in a pipe and redrawn lines in a terminal; `-q` silences
//! them.

mod common;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{docker, run, Project};

const NAME: &str = "irisctl-test-ready";

/// The states each service went through, from `up`'s plain progress lines (`api   ready (0.9s)`).
fn states(stderr: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stderr.lines() {
        let Some((service, rest)) = line.split_once(' ') else {
            continue;
        };
        if !["api", "frontend", "prometheus", "grafana"].contains(&service) {
            continue;
        }
        let Some((state, _time)) = rest.trim().rsplit_once(" (") else {
            continue;
        };
        out.entry(service.to_string())
            .or_default()
            .push(state.to_string());
    }
    out
}

fn nanos_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn dependents_start_when_their_dependency_answers_and_progress_shows_it() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new(NAME, [22900, 22901, 22902, 22903]);
    run(p.irisctl().arg("up")).ok();
    run(p.irisctl().args(["down", "-q"])).ok();

    // In a pipe: one plain line per state change, in dependency order.
    let since = nanos_now();
    let up = run(p.irisctl().args(["up", "--no-provision"]));
    up.ok();
    let seen = states(&up.stderr);
    let expected: BTreeMap<String, Vec<String>> = [
        ("api", vec!["started", "ready"]),
        ("frontend", vec!["waiting for api", "started", "ready"]),
        ("grafana", vec!["started", "ready"]),
        ("prometheus", vec!["started", "ready"]),
    ]
    .into_iter()
    .map(|(s, v)| (s.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(seen, expected, "{}", up.stderr);
    let at = |needle: &str| {
        up.stderr
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in\n{}", up.stderr))
    };
    assert!(
        at("api          ready") < at("frontend     started"),
        "{}",
        up.stderr
    );

    // From the engine's events: the web UI started before Docker's first health check of the
    // API (it runs 5 s after the API starts), so irisctl's own readiness check let it start.
    // Docker's first health check of the API reports (5 s after it started): poll the
    // engine's events until it has.
    let events_now = || {
        docker(&[
            "events",
            "--since",
            &format!("{}.{:09}", since / 1_000_000_000, since % 1_000_000_000),
            "--until",
            &format!("{}", nanos_now() / 1_000_000_000 + 1),
            "--filter",
            &format!("label=com.docker.compose.project={NAME}"),
            "--format",
            "{{.TimeNano}} {{index .Actor.Attributes \"com.docker.compose.service\"}} {{.Action}}",
        ])
    };
    let mut events = String::new();
    assert!(
        common::eventually(60, || {
            events = events_now();
            events
                .lines()
                .any(|l| l.contains(" api health_status: healthy"))
        }),
        "Docker never reported the API healthy:\n{events}"
    );
    let first = |service: &str, action: &str| {
        events
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ' ');
                let (t, s, a) = (parts.next()?, parts.next()?, parts.next()?);
                (s == service && a.starts_with(action)).then(|| t.parse::<u128>().ok())?
            })
            .min()
            .unwrap_or_else(|| panic!("no `{action}` event of {service} in\n{events}"))
    };
    let api_start = first("api", "start");
    let api_healthy = first("api", "health_status: healthy");
    let frontend_start = first("frontend", "start");
    assert!(api_start < frontend_start, "{events}");
    assert!(
        frontend_start < api_healthy,
        "the web UI waited for Docker's health check of the API:\n{events}"
    );

    // In a terminal: the lines are redrawn in place, then collapse into the summary.
    run(p.irisctl().args(["down", "-q"])).ok();
    let binary = env!("CARGO_BIN_EXE_irisctl");
    let tty = std::process::Command::new("script")
        .args(["-qfec", &format!("{binary} up --no-provision"), "/dev/null"])
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .env_remove("IRISCTL_CONFIG")
        .output()
        .expect("script(1) runs irisctl in a pseudo-terminal");
    let screen = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{screen}");
    assert!(screen.contains("\x1b[2K"), "no line was redrawn:\n{screen}");
    assert!(screen.contains("waiting for api"), "{screen}");
    assert!(screen.contains("is up and healthy"), "{screen}");
    // Plain lines (a service name at the start of a line) are for pipes only.
    assert!(
        !screen
            .split(['\n', '\r'])
            .any(|l| l.starts_with("api          ")),
        "plain lines in a terminal:\n{screen}"
    );

    // `-q` silences progress.
    run(p.irisctl().args(["down", "-q"])).ok();
    let quiet = run(p.irisctl().args(["up", "-q", "--no-provision"]));
    quiet.ok();
    assert!(states(&quiet.stderr).is_empty(), "{}", quiet.stderr);
}
