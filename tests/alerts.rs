//! Alerts reach people: with `alerting.webhook_url` set, a stopped API makes `IrisApiDown` fire
//! in the stack's Prometheus and in `irisctl status`, the Alertmanager posts the firing alert to
//! the webhook, and after `irisctl up` repairs the stack it posts the resolved one.
//!
//! The webhook receiver is a small container on the stack's network that prints each POST (its
//! Authorization header and body, one line each) on stdout, read back with `docker logs`.

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

/// The state of `alert` in the stack's Prometheus, if it holds it.
fn prometheus_state(alert: &str) -> Option<String> {
    let (_, body) = http(
        "GET",
        &format!("http://127.0.0.1:{}/api/v1/alerts", PORTS[2]),
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
fn a_stopped_api_is_notified_firing_then_resolved() {
    if !common::engine_available() {
        return;
    }
    let started = Instant::now();
    let p = Project::new(PROJECT, PORTS);
    let config = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        format!(
            "{}\nalerting:\n  webhook_url: http://{USER}:{PASSWORD}@{RECEIVER}:8080/hook\n",
            config.replacen(
                "ports:\n",
                &format!("ports:\n  alertmanager: {ALERTMANAGER_PORT}\n"),
                1
            )
        ),
    )
    .unwrap();

    let up = run(p.irisctl().arg("up"));
    up.ok();
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
    assert_eq!(prometheus_state("IrisApiDown"), None);
    eprintln!(
        "timings: fired {:?} and notified {:?} after the stop; resolved notification {:?} after `up`; test {:?}",
        fired_after,
        notified_after,
        repaired_at.elapsed(),
        started.elapsed()
    );
}
