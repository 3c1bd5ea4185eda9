//! Alerts reach people: with `alerting.webhook_url` set, a stopped API makes `IrisApiDown` fire
//! in the stack's Prometheus and in `irisctl status`, the Alertmanager posts the firing alert to
//! the webhook, and after `irisctl up` repairs the stack it posts the resolved one. Without the
//! webhook again, the Alertmanager goes and Prometheus names none.
//!
//! The webhook receiver is a small container on the stack's network that prints each POST (its
//! Authorization header and body, one line each) on stdout, read back with `docker logs`.
//!
//! And the drift rule, with a short window and `for:` from the settings, stays quiet under
//! in-distribution traffic and goes pending, then firing, once the traffic shifts.

mod common;

use std::time::Instant;

use common::{docker, eventually, http, run, Project};
use serde_json::Value;

const PROJECT: &str = "irisctl-test-alerts";
const PORTS: [u16; 4] = [22500, 22501, 22502, 22503];
const ALERTMANAGER_PORT: u16 = 22504;
const RECEIVER: &str = "irisctl-test-alerts-receiver";
/// The webhook's credentials: Alertmanager must use them, irisctl must never print them.
const USER: &str = "alice";
const PASSWORD: &str = "s3cret-hook-pw";

const RECEIVER_PY: &str = r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        print("auth " + str(self.headers.get("Authorization")), flush=True)
        print("body " + body.decode("utf-8", "replace").replace("\n", " "), flush=True)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("", 8080), H).serve_forever()
"#;

/// The receiver container, removed on drop (before the project's network, which it joins).
struct Receiver;

impl Receiver {
    fn start(network: &str) -> Receiver {
        Receiver::remove();
        let id = docker(&[
            "run",
            "-d",
            "--name",
            RECEIVER,
            // A test project's label, so scripts/clean-test-leftovers finds a leftover.
            "--label",
            "com.docker.compose.project=irisctl-test-alerts-receiver",
            "--network",
            network,
            "--user",
            "nobody",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "irisctl-offline/python:3.11",
            "python3",
            "-u",
            "-c",
            RECEIVER_PY,
        ]);
        assert!(!id.is_empty(), "the webhook receiver did not start");
        Receiver
    }

    fn remove() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", "-v", RECEIVER])
            .output();
    }

    /// The JSON bodies posted so far, with the Authorization header each came with.
    fn posts(&self) -> Vec<(String, Value)> {
        let out = std::process::Command::new("docker")
            .args(["logs", RECEIVER])
            .output()
            .expect("docker logs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut posts = Vec::new();
        let mut auth = String::new();
        for line in text.lines() {
            if let Some(a) = line.strip_prefix("auth ") {
                auth = a.to_string();
            } else if let Some(b) = line.strip_prefix("body ") {
                posts.push((auth.clone(), serde_json::from_str(b).unwrap_or(Value::Null)));
            }
        }
        posts
    }

    /// A notification about `alert` with the given status (`firing`, `resolved`).
    fn got(&self, alert: &str, status: &str) -> Option<(String, Value)> {
        self.posts().into_iter().find(|(_, p)| {
            p["status"] == status
                && p["alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["labels"]["alertname"] == alert && a["status"] == status)
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        Receiver::remove();
    }
}

/// Removes the Alertmanager's volume on drop: once the webhook is unset, the stack (and so
/// `down --volumes`) no longer names it.
struct AlertmanagerVolume;

impl Drop for AlertmanagerVolume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", &format!("{PROJECT}_alertmanager-data")])
            .output();
    }
}

/// What a failed assertion prints beside its values: the project's containers (state, start,
/// restarts), the alerts its Prometheus holds and when Prometheus and the API last started.
fn diagnosis(project: &str, prometheus_port: u16) -> String {
    let containers = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--format",
            "{{.Names}} {{.Status}} {{.Ports}}",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let (_, alerts) = http(
        "GET",
        &format!("http://127.0.0.1:{prometheus_port}/api/v1/alerts"),
        None,
    );
    let (_, started) = http(
        "GET",
        &format!(
            "http://127.0.0.1:{prometheus_port}/api/v1/query?query=process_start_time_seconds"
        ),
        None,
    );
    let (_, targets) = http(
        "GET",
        &format!("http://127.0.0.1:{prometheus_port}/api/v1/targets?state=active"),
        None,
    );
    format!(
        "containers:\n{containers}\nPrometheus alerts: {alerts}\nprocess start times: {started}\ntargets: {targets}"
    )
}

/// The state of `alert` in the stack's Prometheus, if it holds it.
fn prometheus_state(alert: &str) -> Option<String> {
    prometheus_state_at(PORTS[2], alert)
}

fn prometheus_state_at(port: u16, alert: &str) -> Option<String> {
    let (_, body) = http(
        "GET",
        &format!("http://127.0.0.1:{port}/api/v1/alerts"),
        None,
    );
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["alertname"] == alert)
        .and_then(|a| a["state"].as_str().map(str::to_string))
}

#[test]
fn a_stopped_api_is_notified_firing_then_resolved_and_delivery_turns_off() {
    if !common::engine_available() {
        return;
    }
    let started = Instant::now();
    // Dropped last: after the receiver and the project's `down`.
    let _volume = AlertmanagerVolume;
    let p = Project::new(PROJECT, PORTS);
    let without_webhook = std::fs::read_to_string(&p.config).unwrap().replacen(
        "ports:\n",
        &format!("ports:\n  alertmanager: {ALERTMANAGER_PORT}\n"),
        1,
    );
    std::fs::write(
        &p.config,
        format!(
            "{without_webhook}\nalerting:\n  webhook_url: http://{USER}:{PASSWORD}@{RECEIVER}:8080/hook\n"
        ),
    )
    .unwrap();

    let up = run(p.irisctl().arg("up"));
    up.ok();
    assert!(
        up.stdout.lines().any(|l| l.contains("Alertmanager")
            && l.contains(&format!("http://127.0.0.1:{ALERTMANAGER_PORT}/"))
            && l.contains(&format!("http://***@{RECEIVER}:8080/…"))),
        "{}",
        up.stdout
    );
    let receiver = Receiver::start(&format!("{PROJECT}-network"));
    let settings = run(p.irisctl().args(["--print-settings", "status"]));
    for out in [&up.stdout, &up.stderr, &settings.stdout, &settings.stderr] {
        assert!(
            !out.contains(PASSWORD),
            "the webhook password is printed:\n{out}"
        );
    }
    assert!(
        settings
            .stdout
            .contains(&format!("http://***@{RECEIVER}:8080/…")),
        "{}",
        settings.stdout
    );

    // Prometheus sends to the Alertmanager, which answers ready on its loopback port.
    assert_eq!(
        http(
            "GET",
            &format!("http://127.0.0.1:{ALERTMANAGER_PORT}/-/ready"),
            None
        )
        .0,
        200
    );
    assert!(
        eventually(30, || {
            let (_, body) = http(
                "GET",
                &format!("http://127.0.0.1:{}/api/v1/alertmanagers", PORTS[2]),
                None,
            );
            body.contains("alertmanager:9093")
        }),
        "Prometheus does not know the Alertmanager"
    );
    // The URL's credentials became basic_auth, whose password Alertmanager masks.
    let (code, am_status) = http(
        "GET",
        &format!("http://127.0.0.1:{ALERTMANAGER_PORT}/api/v2/status"),
        None,
    );
    assert_eq!(code, 200, "{am_status}");
    assert!(
        am_status.contains("basic_auth") && !am_status.contains(PASSWORD),
        "{am_status}"
    );
    let ids = p.container_ids();
    let mounts = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.Memory}}",
        &ids["alertmanager"],
    ]);
    assert_eq!(mounts, "true [ALL] 134217728");
    assert_eq!(prometheus_state("IrisApiDown"), None);

    // The API stops: IrisApiDown goes pending, then fires after its `for: 1m`.
    let stopped_at = Instant::now();
    docker(&["stop", &format!("{PROJECT}-api-1")]);
    assert!(
        eventually(150, || prometheus_state("IrisApiDown").as_deref()
            == Some("firing")),
        "IrisApiDown never fired: {:?}",
        prometheus_state("IrisApiDown")
    );
    let fired_after = stopped_at.elapsed();

    let status = run(p.irisctl().args(["status", "--format", "json"]));
    assert_eq!(status.code, 3, "the API is stopped: {}", status.stderr);
    let report: Value = serde_json::from_str(&status.stdout).unwrap();
    let alert = report["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == "IrisApiDown")
        .unwrap_or_else(|| panic!("no IrisApiDown in {report}"));
    assert_eq!(alert["state"], "firing", "{report}");
    assert_eq!(alert["severity"], "critical", "{report}");
    assert!(
        alert["since"].as_str().is_some_and(|s| s.starts_with("20")),
        "{report}"
    );
    let table = run(p.irisctl().arg("status"));
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.contains("FIRING") && l.contains("IrisApiDown") && l.contains("critical")),
        "{}",
        table.stdout
    );

    // The Alertmanager posts it to the webhook, with the URL's credentials.
    assert!(
        eventually(60, || receiver.got("IrisApiDown", "firing").is_some()),
        "no firing notification; the receiver got: {:?}",
        receiver.posts()
    );
    let notified_after = stopped_at.elapsed();
    let (auth, firing) = receiver.got("IrisApiDown", "firing").unwrap();
    // base64 of alice:s3cret-hook-pw
    assert_eq!(auth, "Basic YWxpY2U6czNjcmV0LWhvb2stcHc=");
    assert_eq!(firing["receiver"], "webhook");
    assert_eq!(firing["groupLabels"]["alertname"], "IrisApiDown");

    // `up` restarts the API: the alert resolves and the webhook hears so.
    let repaired_at = Instant::now();
    run(p.irisctl().arg("up")).ok();
    assert!(
        eventually(120, || receiver.got("IrisApiDown", "resolved").is_some()),
        "no resolved notification; the receiver got: {:?}",
        receiver.posts()
    );
    assert_eq!(
        prometheus_state("IrisApiDown"),
        None,
        "the Alertmanager said resolved; the receiver got {:?}\n{}",
        receiver.posts(),
        diagnosis(PROJECT, PORTS[2])
    );
    let resolved_after = repaired_at.elapsed();

    // Delivery off again: the Alertmanager is an orphan `--remove-orphans` removes, and
    // Prometheus, recreated with the stack's own config, names no Alertmanager.
    std::fs::write(&p.config, &without_webhook).unwrap();
    run(p.irisctl().args(["up", "--remove-orphans"])).ok();
    assert!(!p.container_ids().contains_key("alertmanager"));
    let (_, body) = http(
        "GET",
        &format!("http://127.0.0.1:{}/api/v1/alertmanagers", PORTS[2]),
        None,
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"]["activeAlertmanagers"],
        serde_json::json!([]),
        "{body}"
    );
    eprintln!(
        "timings: fired {:?} and notified {:?} after the stop; resolved notification {:?} after `up`; test {:?}",
        fired_after,
        notified_after,
        resolved_after,
        started.elapsed()
    );
}

const DRIFT_PROJECT: &str = "irisctl-test-alerts-drift";
const DRIFT_PORTS: [u16; 4] = [22505, 22506, 22507, 22508];
/// Drift `for:`: long enough to see the alert pending first, short enough for a test.
const DRIFT_FOR_SECS: u64 = 20;

/// One batch to the API: `items` flowers, each `[sepal_length, sepal_width, petal_length,
/// petal_width]`.
fn predict(items: &[[f64; 4]]) {
    let items: Vec<String> = items
        .iter()
        .map(|m| {
            format!(
                r#"{{"sepal_length":{},"sepal_width":{},"petal_length":{},"petal_width":{}}}"#,
                m[0], m[1], m[2], m[3]
            )
        })
        .collect();
    let (code, body) = http(
        "POST",
        &format!("http://127.0.0.1:{}/predict", DRIFT_PORTS[0]),
        Some(&format!(r#"{{"items":[{}]}}"#, items.join(","))),
    );
    assert_eq!(code, 200, "{body}");
}

/// Inputs in the drift window, per feature, as the rule's guard counts them.
fn inputs_in_window() -> f64 {
    let (_, body) = http(
        "GET",
        &format!(
            "http://127.0.0.1:{}/api/v1/query?query=min(sum%20by%20(feature)%20(increase(iris_input_centimeters_count%7Bjob%3D%22iris-api%22%7D%5B1m%5D)))",
            DRIFT_PORTS[2]
        ),
        None,
    );
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn drift_stays_quiet_in_distribution_then_goes_pending_then_firing_when_traffic_shifts() {
    if !common::engine_available() {
        return;
    }
    let started = Instant::now();
    let p = Project::new(DRIFT_PROJECT, DRIFT_PORTS);
    let config = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        format!(
            "{config}\nalerting:\n  drift_window: 1m\n  drift_for: {DRIFT_FOR_SECS}s\n  drift_stddevs: 1\n"
        ),
    )
    .unwrap();
    run(p.irisctl().arg("up")).ok();
    let state = || prometheus_state_at(DRIFT_PORTS[2], "IrisInputDrift");

    // In distribution: the three species in equal parts (every feature's mean within 0.7
    // training standard deviations of the training mean).
    const SETOSA: [f64; 4] = [5.1, 3.5, 1.4, 0.2];
    const VERSICOLOR: [f64; 4] = [6.4, 3.2, 4.5, 1.5];
    const VIRGINICA: [f64; 4] = [6.3, 3.3, 6.0, 2.5];
    let mixed = [SETOSA, VERSICOLOR, VIRGINICA].repeat(4);
    // Shifted: large virginica only (sepal and petal lengths 1.8 to 2.2 deviations above).
    let shifted = [[7.7, 3.0, 6.9, 2.3]; 12];

    // Enough in-distribution inputs for the rule's guard (30 in the window), then 15 s more
    // of evaluations (every 5 s) without the alert in any state.
    let quiet_from = Instant::now();
    while inputs_in_window() < 60.0 {
        assert!(
            quiet_from.elapsed().as_secs() < 60,
            "Prometheus never counted the inputs"
        );
        predict(&mixed);
        assert_eq!(
            state(),
            None,
            "drift raised under in-distribution traffic\n{}",
            diagnosis(DRIFT_PROJECT, DRIFT_PORTS[2])
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let checked = Instant::now();
    while checked.elapsed().as_secs() < 15 {
        predict(&mixed);
        assert_eq!(
            state(),
            None,
            "drift raised under in-distribution traffic\n{}",
            diagnosis(DRIFT_PROJECT, DRIFT_PORTS[2])
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // Shifted traffic: pending first, firing after `for:`.
    let shifted_at = Instant::now();
    let mut pending_at = None;
    let mut firing_at = None;
    while firing_at.is_none() && shifted_at.elapsed().as_secs() < 180 {
        predict(&shifted);
        match state().as_deref() {
            Some("pending") if pending_at.is_none() => pending_at = Some(Instant::now()),
            Some("firing") => firing_at = Some(Instant::now()),
            _ => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let pending_at = pending_at.expect("IrisInputDrift was never seen pending");
    let firing_at = firing_at.expect("IrisInputDrift never fired");
    let held = firing_at - pending_at;
    assert!(
        held.as_secs() + 6 >= DRIFT_FOR_SECS,
        "fired {held:?} after going pending; `for:` is {DRIFT_FOR_SECS}s"
    );

    // `irisctl status` lists it, and the rendered rule names the setting's window.
    let status = run(p.irisctl().args(["status", "--format", "json"]));
    let report: Value = serde_json::from_str(&status.stdout).unwrap();
    let drift: Vec<&Value> = report["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["name"] == "IrisInputDrift")
        .collect();
    assert!(
        drift
            .iter()
            .any(|a| a["state"] == "firing" && a["severity"] == "warning"),
        "{report}"
    );
    assert!(
        drift.iter().all(|a| a["summary"]
            .as_str()
            .is_some_and(|s| s.contains("the mean input of the last 1m is"))),
        "{report}"
    );
    eprintln!(
        "timings: pending {:?} and firing {:?} after the shift; test {:?}",
        pending_at - shifted_at,
        firing_at - shifted_at,
        started.elapsed()
    );
}
