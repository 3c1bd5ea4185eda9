//! Canary releases on the real engine, under load (the three species in turn) through the
//! API's published port (the edge) and the web UI's `/api/`:
//! - a good release, steps 10,50 of 15 s: no failed request, the canary answers 3–20 % during
//!   the 10 % step, then it is promoted and one API container is left;
//! - a release failing 30 % of `/predict`: aborted during its first step by the 5xx gate, at
//!   most 5 % of the requests sent while it lived failed, the stable container serves alone;
//! - 300 ms slower: aborted by the latency gate; "virginica" for every flower: aborted by the
//!   species-distribution gate;
//! - `irisctl rollback api` during a canary aborts it (nothing fails); Ctrl-C mid-canary: the
//!   stable container serves alone, and the next `up` converges.
//!
//! Also: `status` during a step (step, share, gates), one model per named client
//! (`X-Iris-Client`, the web UI's cookie), the abort's Grafana annotation and Alertmanager
//! alert, a user-defined gate Prometheus refuses.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{docker, run, Project};

const PROJECT: &str = "irisctl-test-canary";
const PORTS: [u16; 4] = [22700, 22701, 22702, 22703];
const ALERTMANAGER_PORT: u16 = 22704;

const FLOWERS: [&str; 3] = [
    r#"{"items":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}"#,
    r#"{"items":[{"sepal_length":6.4,"sepal_width":3.2,"petal_length":4.5,"petal_width":1.5}]}"#,
    r#"{"items":[{"sepal_length":6.3,"sepal_width":3.3,"petal_length":6.0,"petal_width":2.5}]}"#,
];

/// Code inserted into the API's `/predict`: 30 % of the requests fail; 300 ms slower; (after
/// the prediction) "virginica" for every flower.
const FAILS_30: &str = "        if __import__(\"random\").random() < 0.3:\n            raise __import__(\"fastapi\").HTTPException(status_code=500, detail=\"canary test\")\n";
const SLOW: &str = "        await __import__(\"asyncio\").sleep(0.3)\n";
const VIRGINICA: &str = "        probabilities = np.zeros_like(probabilities)\n        probabilities[:, list(model.classes).index(\"virginica\")] = 1.0\n";

/// One answered (or failed) request: when it was sent, its status (0: no answer) and the API
/// container that answered (`X-Iris-Replica`).
#[derive(Debug, Clone)]
struct Answer {
    sent: Instant,
    status: u16,
    replica: String,
    /// Sent through the web UI's `/api/`.
    via_ui: bool,
    /// The client it named (`X-Iris-Client` or cookie), if any.
    client: Option<Client>,
}

/// One POST on a fresh connection (std only).
fn predict(port: u16, path: &str, body: &str, client: Option<&Client>) -> (u16, String) {
    let attempt = || -> Result<(u16, String), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let client = match client {
            Some(Client::Header(c)) => format!("X-Iris-Client: {c}\r\n"),
            Some(Client::Cookie(c)) => format!("Cookie: iris_client={c}\r\n"),
            None => String::new(),
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{client}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("no status line")?;
        let replica = text
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-iris-replica")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        Ok((status, replica))
    };
    attempt().unwrap_or((0, String::new()))
}

/// How a client names itself: the `X-Iris-Client` header, or the `iris_client` cookie the web
/// UI's page gave it.
#[derive(Debug, Clone)]
enum Client {
    Header(String),
    Cookie(String),
}

/// The `iris_client` cookie the web UI's page sets for a first visit (`None`: none set), as
/// asked with `cookie` already held.
fn page_cookie(cookie: Option<&str>) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], PORTS[1]));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let held = cookie.map_or(String::new(), |c| format!("Cookie: iris_client={c}\r\n"));
    let head = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{held}Connection: close\r\n\r\n",
        PORTS[1]
    );
    s.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.eq_ignore_ascii_case("set-cookie") {
            return None;
        }
        let value = v.trim().strip_prefix("iris_client=")?;
        Some(value.split(';').next()?.to_string())
    })
}

/// Client threads: two on the API's port, each sending the three species in turn, every 20 ms;
/// one on the API's port that names itself as one of 100 clients in turn (`X-Iris-Client`);
/// one through the web UI's `/api/` as one of 100 browsers in turn, each with the cookie the
/// page gave it.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let cookies: Vec<String> = (0..100)
            .map(|_| page_cookie(None).expect("the web UI's page sets no iris_client cookie"))
            .collect();
        assert_eq!(
            cookies
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            100,
            "cookies repeat: {cookies:?}"
        );
        assert_eq!(
            page_cookie(Some(&cookies[0])),
            None,
            "a held cookie is replaced"
        );
        let header = (0..100)
            .map(|i| Client::Header(format!("client-{i}")))
            .collect();
        let cookie = cookies.into_iter().map(Client::Cookie).collect();
        let targets: [(u16, &str, Vec<Client>); 4] = [
            (PORTS[0], "/predict", vec![]),
            (PORTS[0], "/predict", vec![]),
            (PORTS[1], "/api/predict", cookie),
            (PORTS[0], "/predict", header),
        ];
        let threads = targets
            .into_iter()
            .enumerate()
            .map(|(i, (port, path, clients))| {
                let (stop, answers) = (stop.clone(), answers.clone());
                std::thread::spawn(move || {
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let client =
                            (!clients.is_empty()).then(|| clients[n % clients.len()].clone());
                        let (status, replica) =
                            predict(port, path, FLOWERS[n % 3], client.as_ref());
                        answers.lock().unwrap().push(Answer {
                            sent,
                            status,
                            replica,
                            via_ui: port == PORTS[1],
                            client,
                        });
                        n += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        Load {
            stop,
            answers,
            threads,
        }
    }

    fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load thread");
        }
        let answers = self.answers.lock().unwrap().clone();
        answers
    }
}

/// `up --canary` with JSON progress: its exit code, its events with when each was read, and
/// the human text of them. `at`: the first phase for which it is true runs `action` (given the
/// process ID of `up`) while `up` goes on.
fn canary_up(
    p: &Project,
    at: impl Fn(&str) -> bool + Send + 'static,
    action: impl FnOnce(u32),
) -> (Option<i32>, Vec<(Instant, serde_json::Value)>, String) {
    let mut child = p
        .irisctl()
        .args(["up", "--canary", "--progress", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run irisctl");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut events = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let event: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
            if event["event"] == "phase" && event["phase"].as_str().is_some_and(&at) {
                let _ = tx.send(());
            }
            events.push((Instant::now(), event));
        }
        events
    });
    // The reader's end (no phase matched) ends the wait too.
    if rx.recv().is_ok() {
        action(child.id());
    }
    let status = child.wait().expect("wait for irisctl");
    let events = reader.join().unwrap();
    let values: Vec<serde_json::Value> = events.iter().map(|(_, e)| e.clone()).collect();
    (status.code(), events, common::human(&values))
}

/// Nothing to do at any phase.
fn never(_: &str) -> bool {
    false
}

/// The edge's last log lines (nginx logs what it could not proxy on stderr).
fn edge_log() -> String {
    std::process::Command::new("docker")
        .args(["logs", "--tail", "30", &format!("{PROJECT}-edge-1")])
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
}

/// Each failed request and each phase, in time order, from the first event.
fn timeline(events: &[(Instant, serde_json::Value)], failed: &[&Answer]) -> String {
    let Some(&(start, _)) = events.first() else {
        return String::new();
    };
    let at = |t: Instant| {
        if t >= start {
            format!("+{:.3}s", (t - start).as_secs_f64())
        } else {
            format!("-{:.3}s", (start - t).as_secs_f64())
        }
    };
    let mut lines: Vec<(Instant, String)> = events
        .iter()
        .filter(|(_, e)| e["event"] == "phase")
        .map(|(t, e)| (*t, format!("{} phase {}", at(*t), e["phase"])))
        .collect();
    lines.extend(failed.iter().map(|a| {
        (
            a.sent,
            format!(
                "{} FAILED {} (via the UI: {}, client {:?})",
                at(a.sent),
                a.status,
                a.via_ui,
                a.client
            ),
        )
    }));
    lines.sort_by_key(|(t, _)| *t);
    lines
        .into_iter()
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

/// When the first phase starting with `prefix` began.
fn phase_at(events: &[(Instant, serde_json::Value)], prefix: &str) -> Option<Instant> {
    events
        .iter()
        .find(|(_, e)| {
            e["event"] == "phase" && e["phase"].as_str().is_some_and(|p| p.starts_with(prefix))
        })
        .map(|(t, _)| *t)
}

/// The API containers of the project (names).
fn api_containers() -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={PROJECT}"),
        "--filter",
        "label=com.docker.compose.service=api",
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// The replica that answers the API's port now.
fn serving_replica() -> String {
    predict(PORTS[0], "/predict", FLOWERS[0], None).1
}

/// The project's API source, changed: `variant` code before the prediction (or after it,
/// `after`), and a comment that makes every variant a new image.
fn write_api(p: &Project, original: &str, name: &str, before: &str, after: &str) {
    let anchor = "        x = np.array(";
    let proba = "        probabilities = model.predict_proba(x)\n";
    assert!(original.contains(anchor) && original.contains(proba));
    let text = original
        .replacen(anchor, &format!("{before}{anchor}"), 1)
        .replacen(proba, &format!("{proba}{after}"), 1);
    std::fs::write(
        p.path().join("stack/api/app/main.py"),
        format!("{text}\n# canary test: {name}\n"),
    )
    .unwrap();
}

/// How an aborted canary went, from its first step to the end of `up`.
struct Aborted {
    took: Duration,
    /// When the canary answered last, from its first step.
    last_answer: Duration,
    sent: usize,
    /// Shares of the requests sent meanwhile: failed, answered by the canary.
    failed: f64,
    by_canary: f64,
}

/// A bad release: `up --canary` exits 1 naming `gate`; the stable container serves alone.
fn assert_aborted_by(p: &Project, stable: &str, gate: &str) -> Aborted {
    let load = Load::start();
    std::thread::sleep(Duration::from_secs(1));
    let (code, events, text) = canary_up(p, never, |_| ());
    let answers = load.finish();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("canary of `api` aborted: gate {gate}:")),
        "not aborted by the {gate} gate:\n{text}"
    );
    assert!(
        text.contains("hint:") || text.contains("release.canary"),
        "{text}"
    );
    let started = phase_at(&events, "canary api: step 1/").expect("no first step");
    assert!(
        phase_at(&events, "canary api: step 2/").is_none(),
        "aborted after its first step:\n{text}"
    );
    let ended = events.last().map(|(t, _)| *t).unwrap();
    let lived: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent >= started && a.sent <= ended)
        .collect();
    let failed = lived.iter().filter(|a| a.status != 200).count();
    let last_answer = lived
        .iter()
        .filter(|a| !a.replica.is_empty() && a.replica != stable)
        .map(|a| a.sent - started)
        .max()
        .unwrap_or_default();
    let by_canary = lived
        .iter()
        .filter(|a| !a.replica.is_empty() && a.replica != stable)
        .count();
    assert_eq!(api_containers().len(), 1, "{:?}", api_containers());
    assert_eq!(
        serving_replica(),
        stable,
        "the stable container does not serve alone"
    );
    let share = |n: usize| n as f64 / lived.len().max(1) as f64;
    eprintln!(
        "{gate}: aborted {:?} after the first step began; {} requests meanwhile, {failed} failed, {by_canary} answered by the canary",
        ended - started,
        lived.len()
    );
    eprintln!("{text}");
    Aborted {
        took: ended - started,
        last_answer,
        sent: lived.len(),
        failed: share(failed),
        by_canary: share(by_canary),
    }
}

#[test]
fn canary_releases_are_promoted_or_aborted_by_the_models_metrics() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new(PROJECT, PORTS);
    // Alert delivery on (to a webhook nobody answers): an abort is sent to the Alertmanager.
    let config = std::fs::read_to_string(&p.config).unwrap().replacen(
        "ports:\n",
        &format!("ports:\n  alertmanager: {ALERTMANAGER_PORT}\n"),
        1,
    );
    std::fs::write(
        &p.config,
        format!("{config}\nrelease:\n  canary:\n    steps: 10,50\n    step_duration: 15s\nalerting:\n  webhook_url: http://nobody-listens:8080/hook\n"),
    )
    .unwrap();
    run(p.irisctl().arg("up")).ok();
    let original = std::fs::read_to_string(p.path().join("stack/api/app/main.py")).unwrap();
    let first = serving_replica();
    assert!(!first.is_empty());

    // The dry run names the canary's steps and gates.
    write_api(&p, &original, "good", "", "");
    let dry = run(p.irisctl().args(["up", "--canary", "--dry-run"]));
    dry.ok();
    assert!(
        dry.stdout
            .contains("canary api: steps 10 → 50 → 100 (15s each), gates: 5xx ratio"),
        "{}",
        dry.stdout
    );

    // A good release: promoted, nothing failed, ~10 % answered by the canary in its first step.
    let load = Load::start();
    std::thread::sleep(Duration::from_secs(1));
    // `status` while the first step passes: the canary, its step, share and gates.
    let status = Arc::new(Mutex::new(serde_json::Value::Null));
    let (code, events, text) = canary_up(
        &p,
        |ph| ph.starts_with("canary api: step 1/2") && ph.ends_with("passing"),
        |_| {
            let st = run(p.irisctl().args(["status", "--format", "json"]));
            *status.lock().unwrap() = serde_json::from_str(&st.stdout).unwrap_or_default();
        },
    );
    let answers = load.finish();
    assert_eq!(code, Some(0), "{text}");
    let status = status.lock().unwrap().clone();
    let canary = &status["canary"];
    assert_eq!(canary["step"], 1, "{status}");
    assert_eq!(canary["weight"], 10, "{status}");
    assert_eq!(canary["state"], "passing", "{status}");
    assert!(
        canary["gates"].as_array().is_some_and(|g| g.len() == 4
            && g[0]
                .as_str()
                .is_some_and(|t| t.starts_with("5xx ratio: canary"))),
        "{status}"
    );
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed:\n{}\nphases:\n{}\nthe edge's log:\n{}",
        failed.len(),
        answers.len(),
        timeline(&events, &failed),
        text,
        edge_log()
    );
    let step1 = phase_at(&events, "canary api: step 1/2").expect("no step 1");
    let step2 = phase_at(&events, "canary api: step 2/2").expect("no step 2");
    // The first second of the step: the edge's reload takes effect.
    let in_step1: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent >= step1 + Duration::from_secs(1) && a.sent < step2)
        .collect();
    let canary_share = in_step1.iter().filter(|a| a.replica != first).count() as f64
        / in_step1.len().max(1) as f64;
    assert!(
        in_step1.len() >= 100 && (0.03..=0.20).contains(&canary_share),
        "the canary answered {:.1} % of {} requests during the 10 % step",
        canary_share * 100.0,
        in_step1.len()
    );
    let containers = api_containers();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let stable = serving_replica();
    assert_ne!(stable, first, "the canary was not promoted");
    assert!(
        in_step1.iter().any(|a| a.via_ui && a.replica != first),
        "no request through the web UI's /api/ reached the canary"
    );
    // A client that names itself (header, or the page's cookie through the web UI) sees one
    // model during the canary; some of them the canary's.
    let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<&str>> =
        Default::default();
    for a in &in_step1 {
        if let Some(c) = &a.client {
            seen.entry(format!("{c:?}"))
                .or_default()
                .insert(a.replica.as_str());
        }
    }
    assert!(
        seen.len() >= 150,
        "{} named clients in the step",
        seen.len()
    );
    assert!(
        seen.values().all(|r| r.len() == 1),
        "a named client saw both sides: {seen:?}"
    );
    let on_canary = seen
        .values()
        .filter(|r| !r.contains(first.as_str()))
        .count();
    assert!(
        (1..=seen.len() / 3).contains(&on_canary),
        "{on_canary} of {} named clients on the canary at 10 %",
        seen.len()
    );
    eprintln!(
        "good release: {} requests, 0 failed; the canary answered {:.1} % during the 10 % step",
        answers.len(),
        canary_share * 100.0
    );

    // Failing on 30 % of predictions: aborted in the first step by the 5xx gate.
    write_api(&p, &original, "fails 30 %", FAILS_30, "");
    let aborted = assert_aborted_by(&p, &stable, "5xx ratio");
    assert!(
        aborted.failed <= 0.05,
        "{:.1} % failed",
        aborted.failed * 100.0
    );
    // Sent to the Alertmanager, and marked on the dashboards: both name the gate.
    let (code, alerts) = common::http(
        "GET",
        &format!("http://127.0.0.1:{ALERTMANAGER_PORT}/api/v2/alerts"),
        None,
    );
    assert_eq!(code, 200, "{alerts}");
    let alerts: serde_json::Value = serde_json::from_str(&alerts).unwrap_or_default();
    assert!(
        alerts
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["labels"]["alertname"] == "IrisCanaryAborted"
                && a["annotations"]["summary"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("canary api aborted: gate 5xx ratio"))),
        "{alerts}"
    );
    let notes = p.release_annotations(PORTS[3], "api");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("canary api aborted: gate 5xx ratio: canary")),
        "{notes:?}"
    );

    // 300 ms slower per prediction: aborted by the latency gate.
    write_api(&p, &original, "slow", SLOW, "");
    assert_aborted_by(&p, &stable, "/predict p95");

    // "virginica" for every flower: aborted by the species-distribution gate.
    write_api(&p, &original, "virginica", "", VIRGINICA);
    assert_aborted_by(&p, &stable, "species distribution");

    // A user-defined gate whose query Prometheus refuses: aborted with Prometheus's own message.
    let settings = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        settings.replacen(
            "    step_duration: 15s\n",
            "    step_duration: 15s\n    gates:\n      - name: broken\n        query: rate(iris_predictions_total{track=\"$track\"}[$window]\n        max_increase: 1\n",
            1,
        ),
    )
    .unwrap();
    write_api(&p, &original, "bad gate", "", "");
    let load = Load::start();
    let (code, _, text) = canary_up(&p, never, |_| ());
    load.finish();
    std::fs::write(&p.config, &settings).unwrap();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("canary of `api` aborted: Prometheus refused the query of gate `broken`: ")
            && text.contains("hint: fix the query in `release.canary.gates`"),
        "{text}"
    );
    assert_eq!(api_containers().len(), 1, "{:?}", api_containers());
    assert_eq!(serving_replica(), stable);

    // `irisctl rollback api` from another terminal during a canary aborts it: nothing fails.
    write_api(&p, &original, "rolled back", "", "");
    let load = Load::start();
    let rollback = Arc::new(Mutex::new(None));
    let (code, _, text) = canary_up(
        &p,
        |ph| ph.starts_with("canary api: step 1/2"),
        |_| *rollback.lock().unwrap() = Some(run(p.irisctl().args(["rollback", "api"]))),
    );
    let answers = load.finish();
    let rollback = rollback.lock().unwrap().take().expect("rollback ran");
    rollback.ok();
    assert!(
        format!("{}{}", rollback.stdout, rollback.stderr)
            .contains("aborted the canary of api: every request went back to"),
        "{}\n{}",
        rollback.stdout,
        rollback.stderr
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("`irisctl rollback api` removes a canary"),
        "{text}"
    );
    assert_eq!(api_containers().len(), 1, "{:?}", api_containers());
    assert_eq!(serving_replica(), stable);
    let failed = answers.iter().filter(|a| a.status != 200).count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} failed around the rollback",
        answers.len()
    );

    // Ctrl-C mid-canary: back to the stable container alone; the next `up` converges.
    write_api(&p, &original, "interrupted", "", "");
    let (code, _, text) = canary_up(
        &p,
        |ph| ph.starts_with("canary api: step 1/2"),
        |pid| {
            std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .unwrap();
        },
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("interrupted (Ctrl-C)"), "{text}");
    assert_eq!(api_containers().len(), 1, "{:?}", api_containers());
    assert_eq!(serving_replica(), stable);
    run(p.irisctl().arg("up")).ok();
    let dry = run(p.irisctl().args(["up", "--dry-run"]));
    assert!(
        dry.stdout.contains("nothing to change") || !dry.stdout.contains("api"),
        "{}",
        dry.stdout
    );
    assert_ne!(
        serving_replica(),
        stable,
        "the next `up` did not release the change"
    );
}

/// Bench (bench/README.md, "Canary releases"; ignored: `cargo test --release --test canary --
/// --ignored --nocapture bench`): bad canaries of each kind, `BENCH_CANARY_ROUNDS` (3) of the
/// failing one; for each, the time from its first step to the end of the abort and the shares
/// of the requests sent meanwhile that failed and that it answered.
#[test]
#[ignore]
fn bench_bad_canaries_time_to_abort() {
    let p = Project::new(PROJECT, PORTS);
    let config = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(
        &p.config,
        format!("{config}\nrelease:\n  canary:\n    steps: 10,50\n    step_duration: 15s\n"),
    )
    .unwrap();
    run(p.irisctl().arg("up")).ok();
    let original = std::fs::read_to_string(p.path().join("stack/api/app/main.py")).unwrap();
    let stable = serving_replica();
    let rounds: usize = std::env::var("BENCH_CANARY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut kinds: Vec<(String, &str, &str, &str)> = (0..rounds)
        .map(|i| (format!("fails 30 % #{i}"), "5xx ratio", FAILS_30, ""))
        .collect();
    kinds.push(("300 ms slower".into(), "/predict p95", SLOW, ""));
    kinds.push(("virginica".into(), "species distribution", "", VIRGINICA));
    for (name, gate, before, after) in kinds {
        write_api(&p, &original, &name, before, after);
        let a = assert_aborted_by(&p, &stable, gate);
        eprintln!(
            "BENCH canary {name}: aborted by {gate}; from its first step: last answer {:.1}s, `up` done {:.1}s; {} requests meanwhile, {:.1} % failed, {:.1} % answered by the canary",
            a.last_answer.as_secs_f64(),
            a.took.as_secs_f64(),
            a.sent,
            a.failed * 100.0,
            a.by_canary * 100.0
        );
    }
}
