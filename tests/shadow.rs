//! Shadow traffic on the real engine, under load (the three species in equal thirds) through
//! the API's published port (the edge) and the web UI's `/api/`:
//! - a challenger that answers "virginica" for every setosa: every client gets the champion's
//!   answer, and `status` reports an agreement within 0.05 of 2/3 after 200 compared requests;
//!   an `up` of an unrelated change keeps the shadow (and the champion: the API's source is the
//!   challenger's);
//! - a challenger 2 s slow per prediction: nothing fails, copies are dropped (counted);
//! - the challenger's container stopped: nothing fails, `status` says so;
//! - `shadow stop` leaves no shadow container; `shadow promote` of a good challenger under load:
//!   nothing fails and the challenger's image serves afterwards; `down` removes a shadow.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{docker, eventually, run, Project};

const PROJECT: &str = "irisctl-test-shadow";
const PORTS: [u16; 4] = [22740, 22741, 22742, 22743];

/// One flower of each species, and the species the champion names for it.
const FLOWERS: [(&str, &str); 3] = [
    (
        r#"{"items":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}"#,
        "setosa",
    ),
    (
        r#"{"items":[{"sepal_length":6.4,"sepal_width":3.2,"petal_length":4.5,"petal_width":1.5}]}"#,
        "versicolor",
    ),
    (
        r#"{"items":[{"sepal_length":6.3,"sepal_width":3.3,"petal_length":6.0,"petal_width":2.5}]}"#,
        "virginica",
    ),
];

/// Code inserted into the API's `/predict` after the prediction: "virginica" for every setosa.
const SETOSA_AS_VIRGINICA: &str = "        setosa = probabilities.argmax(axis=1) == list(model.classes).index(\"setosa\")\n        probabilities[setosa] = np.eye(len(model.classes))[list(model.classes).index(\"virginica\")]\n";
/// Before the prediction: 2 s per request.
const SLOW_2S: &str = "        await __import__(\"asyncio\").sleep(2)\n";

/// One answer a client got: its status (0: none), the container that answered, and whether the
/// species it names is the champion's for that flower.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    replica: String,
    right_species: bool,
    /// From the connect to the last byte.
    took: Duration,
}

fn predict(port: u16, path: &str, flower: usize) -> Answer {
    let (body, species) = FLOWERS[flower];
    let started = std::time::Instant::now();
    let attempt = || -> Result<Answer, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
        let right_species = text.contains(&format!("\"species\":\"{species}\""));
        Ok(Answer {
            status,
            replica,
            right_species,
            took: started.elapsed(),
        })
    };
    attempt().unwrap_or(Answer {
        status: 0,
        replica: String::new(),
        right_species: false,
        took: started.elapsed(),
    })
}

/// Three client threads, the three species in turn: two on the API's port, one through the
/// web UI's `/api/`.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let targets = [
            (PORTS[0], "/predict"),
            (PORTS[0], "/predict"),
            (PORTS[1], "/api/predict"),
        ];
        let threads = targets
            .into_iter()
            .enumerate()
            .map(|(i, (port, path))| {
                let (stop, answers) = (stop.clone(), answers.clone());
                std::thread::spawn(move || {
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let answer = predict(port, path, n % 3);
                        answers.lock().unwrap().push(answer);
                        n += 1;
                        std::thread::sleep(Duration::from_millis(10));
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

/// Every answer a 200 from the champion with the champion's species.
fn assert_all_from_champion(answers: &[Answer], champion: &str, what: &str) {
    assert!(
        answers.len() >= 100,
        "{what}: only {} requests",
        answers.len()
    );
    let failed = answers.iter().filter(|a| a.status != 200).count();
    assert_eq!(failed, 0, "{what}: {failed} of {} failed", answers.len());
    let other = answers.iter().filter(|a| a.replica != champion).count();
    assert_eq!(other, 0, "{what}: {other} answered by another container");
    let wrong = answers.iter().filter(|a| !a.right_species).count();
    assert_eq!(wrong, 0, "{what}: {wrong} answers name another species");
}

fn status_json(p: &Project) -> serde_json::Value {
    let out = run(p.irisctl().args(["status", "--format", "json"]));
    serde_json::from_str(&out.stdout).unwrap_or_default()
}

/// An instant query's values, from the project's Prometheus.
fn prometheus_query(expr: &str) -> Vec<f64> {
    let encoded = common::url_encode(expr);
    let (_, body) = common::http(
        "GET",
        &format!("http://127.0.0.1:{}/api/v1/query?query={encoded}", PORTS[2]),
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["value"][1].as_str()?.parse().ok())
        .filter(|v: &f64| v.is_finite())
        .collect()
}

fn shadow_containers() -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={PROJECT}"),
        "--filter",
        "label=io.irisctl.shadow",
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

fn serving_replica() -> String {
    predict(PORTS[0], "/predict", 0).replica
}

/// The project's API source with `before` code ahead of the prediction and `after` it, and a
/// comment that makes every variant a new image.
fn write_api(p: &Project, original: &str, name: &str, before: &str, after: &str) {
    let anchor = "        x = np.array(";
    let proba = "        probabilities = model.predict_proba(x)\n";
    assert!(original.contains(anchor) && original.contains(proba));
    let text = original
        .replacen(anchor, &format!("{before}{anchor}"), 1)
        .replacen(proba, &format!("{proba}{after}"), 1);
    std::fs::write(
        p.path().join("stack/api/app/main.py"),
        format!("{text}\n# shadow test: {name}\n"),
    )
    .unwrap();
}

#[test]
fn a_challenger_is_compared_on_live_traffic_and_never_answers_a_client() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new(PROJECT, PORTS);
    // Nothing to shadow before the stack serves.
    run(p.irisctl().args(["shadow", "start"])).user_error("does not serve");
    run(p.irisctl().arg("up")).ok();
    let original = std::fs::read_to_string(p.path().join("stack/api/app/main.py")).unwrap();
    let champion = serving_replica();
    assert!(!champion.is_empty());

    // A challenger that cannot start: its last words, nothing left behind, the edge unchanged.
    std::fs::write(
        p.path().join("stack/api/app/main.py"),
        format!("{original}\nraise SystemExit(\"shadow test: a challenger that cannot start\")\n"),
    )
    .unwrap();
    let failed = run(p
        .irisctl()
        .args(["shadow", "start"])
        .env("IRISCTL_HEALTH_TIMEOUT", "30"));
    failed.user_error("the shadow did not start");
    assert!(
        failed.stderr.contains("a challenger that cannot start"),
        "{}",
        failed.stderr
    );
    assert!(shadow_containers().is_empty(), "{:?}", shadow_containers());
    let copy = docker(&[
        "exec",
        &format!("{PROJECT}-edge-1"),
        "sh",
        "-c",
        "ls /tmp/irisctl/ 2>/dev/null || true",
    ]);
    assert!(!copy.contains("shadow"), "{copy}");

    // The plan, then the shadow of a challenger that calls every setosa a virginica.
    write_api(
        &p,
        &original,
        "setosa as virginica",
        "",
        SETOSA_AS_VIRGINICA,
    );
    let dry = run(p.irisctl().args(["shadow", "start", "--dry-run"]));
    dry.ok();
    for line in [
        "create api-challenger: the challenger: the API from the project's source",
        "create shadow: the comparator",
        "route edge: copy 100 % of /predict to the comparator",
    ] {
        assert!(dry.stdout.contains(line), "{line}\n{}", dry.stdout);
    }
    assert!(shadow_containers().is_empty(), "a dry run made something");
    let load = Load::start();
    run(p.irisctl().args(["shadow", "start"])).ok();
    let mut status = serde_json::Value::Null;
    let enough = eventually(120, || {
        status = status_json(&p);
        status["shadow"]["compared"].as_u64().unwrap_or(0) >= 300
    });
    assert!(enough, "fewer than 300 requests compared:\n{status:#}");
    let shadow = &status["shadow"];
    let agreement = shadow["agreement"].as_f64().expect("agreement");
    assert!(
        (agreement - 2.0 / 3.0).abs() <= 0.05,
        "agreement {agreement}, not 2/3 ± 0.05:\n{shadow:#}"
    );
    assert_eq!(shadow["challenger_state"], "running", "{shadow:#}");
    assert!(
        shadow["confusion"]["setosa"]["virginica"]
            .as_u64()
            .unwrap_or(0)
            > 50,
        "{shadow:#}"
    );
    assert_eq!(
        shadow["confusion"]["setosa"]["setosa"],
        serde_json::Value::Null
    );
    assert!(shadow["dropped"].is_u64(), "{shadow:#}");
    let table = run(p.irisctl().arg("status"));
    assert!(
        table.stdout.contains("shadow: challenger"),
        "{}",
        table.stdout
    );
    // Prometheus scrapes the comparator (job iris-api-shadow), and every "Shadow:" panel of
    // the dashboard answers; the agreement panel's answer is the comparator's.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            p.path()
                .join("monitoring/dashboards/grafana-fastapi-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("");
        if !title.starts_with("Shadow:") {
            continue;
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or("")
                .replace("$__rate_interval", "1m")
                .replace("$job", "iris-api");
            let mut values = Vec::new();
            assert!(
                eventually(40, || {
                    values = prometheus_query(&expr);
                    !values.is_empty()
                }),
                "panel {title:?} query {expr:?} returned nothing"
            );
            if title.contains("agreement") {
                assert!((values[0] - 2.0 / 3.0).abs() <= 0.1, "{title}: {values:?}");
            }
            panels += 1;
        }
    }
    assert_eq!(panels, 4, "the dashboard's shadow panels");
    let answers = load.finish();
    assert_all_from_champion(&answers, &champion, "shadowed by a wrong challenger");

    // An `up` of something else keeps the shadow, and the champion: the API's source is the
    // challenger's, which `shadow promote` releases, not this `up`.
    let dry = run(p
        .irisctl()
        .args(["up", "--dry-run"])
        .env("IRISCTL_ALERTING_DRIFT_FOR", "11m"));
    dry.ok();
    assert!(
        dry.stdout.contains("keeps the champion's release") && !dry.stdout.contains("release api"),
        "{}",
        dry.stdout
    );
    let compared_before = status_json(&p)["shadow"]["compared"].as_u64().unwrap_or(0);
    let load = Load::start();
    run(p
        .irisctl()
        .arg("up")
        .env("IRISCTL_ALERTING_DRIFT_FOR", "11m"))
    .ok();
    std::thread::sleep(Duration::from_secs(3));
    let answers = load.finish();
    assert_all_from_champion(&answers, &champion, "an unrelated `up` while shadowing");
    let after = status_json(&p);
    assert!(
        after["shadow"]["compared"].as_u64().unwrap_or(0) > compared_before,
        "the shadow stopped comparing after `up`:\n{after:#}"
    );

    // An `up` that recreates the edge (its configuration changed) writes the copy into the new
    // one: the shadow goes on comparing.
    let edge_config = p.path().join("stack/edge/nginx.conf");
    let text = std::fs::read_to_string(&edge_config).unwrap();
    std::fs::write(&edge_config, format!("{text}# shadow test\n")).unwrap();
    let dry = run(p.irisctl().args(["up", "--dry-run"]));
    assert!(
        dry.stdout.contains("recreate edge")
            && dry
                .stdout
                .contains("the edge's copy of /predict is written into the new edge"),
        "{}",
        dry.stdout
    );
    run(p.irisctl().arg("up")).ok();
    let compared_before = status_json(&p)["shadow"]["compared"].as_u64().unwrap_or(0);
    let load = Load::start();
    std::thread::sleep(Duration::from_secs(3));
    let answers = load.finish();
    assert_all_from_champion(&answers, &champion, "after the edge was recreated");
    let after = status_json(&p);
    assert!(
        eventually(10, || status_json(&p)["shadow"]["compared"]
            .as_u64()
            .unwrap_or(0)
            > compared_before + 50),
        "the new edge does not copy /predict:\n{after:#}"
    );

    // An edge restarted under the shadow (its tmpfs, and the copy in it, gone): `status` says
    // so, and `up` writes the copy again (its plan says why).
    docker(&["restart", "-t", "1", &format!("{PROJECT}-edge-1")]);
    assert!(eventually(30, || serving_replica() == champion));
    let lost = status_json(&p);
    assert_eq!(lost["shadow"]["copying"], false, "{lost:#}");
    let dry = run(p.irisctl().args(["up", "--dry-run"]));
    assert!(
        dry.stdout
            .contains("its copy of /predict to the shadow's comparator is gone"),
        "{}",
        dry.stdout
    );
    run(p.irisctl().arg("up")).ok();
    assert_eq!(status_json(&p)["shadow"]["copying"], true);

    // The challenger's container stopped: nothing changes for the clients; `status` says so.
    let challenger = format!("{PROJECT}-api-challenger-1");
    let load = Load::start();
    std::thread::sleep(Duration::from_secs(1));
    docker(&["stop", "-t", "0", &challenger]);
    std::thread::sleep(Duration::from_secs(4));
    let answers = load.finish();
    assert_all_from_champion(&answers, &champion, "the challenger stopped");
    let stopped = status_json(&p);
    assert!(
        stopped["shadow"]["challenger_state"]
            .as_str()
            .is_some_and(|s| s.starts_with("stopped")),
        "{stopped:#}"
    );
    assert!(
        stopped["shadow"]["failed"].as_u64().unwrap_or(0) > 0,
        "{stopped:#}"
    );
    run(p.irisctl().args(["shadow", "stop"])).ok();
    assert!(shadow_containers().is_empty(), "{:?}", shadow_containers());

    // A challenger 2 s slow per prediction: nothing fails, copies are dropped, not waited for.
    write_api(&p, &original, "slow", SLOW_2S, "");
    run(p.irisctl().args(["shadow", "start"])).ok();
    let load = Load::start();
    let mut slow = serde_json::Value::Null;
    let dropped = eventually(60, || {
        slow = status_json(&p);
        slow["shadow"]["dropped"].as_u64().unwrap_or(0) >= 100
            && slow["shadow"]["compared"].as_u64().unwrap_or(0) >= 10
    });
    let answers = load.finish();
    assert!(
        dropped,
        "no copy dropped (or none compared) with a slow challenger:\n{slow:#}"
    );
    assert_all_from_champion(&answers, &champion, "a 2 s slow challenger");
    assert!(
        slow["shadow"]["latency"]["challenger"]["p50_ms"]
            .as_f64()
            .unwrap_or(0.0)
            >= 1900.0,
        "{slow:#}"
    );
    run(p.irisctl().args(["shadow", "stop"])).ok();

    // Promotion of a good challenger under load: nothing fails, its image serves.
    write_api(&p, &original, "good", "", "");
    run(p.irisctl().args(["shadow", "start"])).ok();
    let image = docker(&["inspect", "-f", "{{.Image}}", &challenger])
        .trim()
        .to_string();
    let dry = run(p.irisctl().args(["shadow", "promote", "--dry-run"]));
    dry.ok();
    assert!(
        dry.stdout.contains("release api")
            && dry
                .stdout
                .contains(&format!("remove container {challenger}")),
        "{}",
        dry.stdout
    );
    let load = Load::start();
    std::thread::sleep(Duration::from_secs(1));
    run(p.irisctl().args(["shadow", "promote"])).ok();
    std::thread::sleep(Duration::from_secs(1));
    let answers = load.finish();
    let failed = answers.iter().filter(|a| a.status != 200).count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} failed during promote",
        answers.len()
    );
    let serving = serving_replica();
    assert_ne!(serving, champion, "the challenger was not released");
    let served_image = docker(&["inspect", "-f", "{{.Image}}", &serving])
        .trim()
        .to_string();
    assert_eq!(
        served_image, image,
        "the API does not run the challenger's image"
    );
    assert!(shadow_containers().is_empty(), "{:?}", shadow_containers());
    // Nothing more to release: the source is the promoted challenger's.
    let dry = run(p.irisctl().args(["up", "--dry-run"]));
    dry.ok();
    assert!(!dry.stdout.contains("release api"), "{}", dry.stdout);

    // A sample of half the requests (`shadow.sample`); `down` removes a running shadow.
    write_api(&p, &original, "for down", "", "");
    run(p
        .irisctl()
        .args(["shadow", "start"])
        .env("IRISCTL_SHADOW_SAMPLE", "50"))
    .ok();
    assert_eq!(shadow_containers().len(), 2);
    let load = Load::start();
    std::thread::sleep(Duration::from_secs(5));
    let sent = load.finish().len() as f64;
    let mut half = serde_json::Value::Null;
    let settled = eventually(20, || {
        half = status_json(&p)["shadow"].clone();
        half["queued"] == 0 && half["sample"] == 50
    });
    let share = half["compared"].as_f64().unwrap_or(0.0) / sent;
    assert!(
        settled && (0.35..=0.65).contains(&share),
        "{share:.2} of {sent} requests compared at a 50 % sample:\n{half:#}"
    );
    run(p.irisctl().arg("down")).ok();
    assert!(shadow_containers().is_empty(), "{:?}", shadow_containers());
    p.cleanup();
    assert_eq!(p.leftovers(), Vec::<String>::new());
}

/// The clients' p50 and p99 over `answers`, in milliseconds.
fn percentiles(answers: &[Answer]) -> (f64, f64) {
    let mut took: Vec<f64> = answers
        .iter()
        .map(|a| a.took.as_secs_f64() * 1000.0)
        .collect();
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    (at(0.5), at(0.99))
}

/// Bench (bench/README.md, "Shadow traffic"; ignored: `cargo test --release --test shadow --
/// --ignored --nocapture bench`): the clients' latency with no shadow, beside the same load
/// with a 2 s slow challenger shadowing 100 % of `/predict`, interleaved `BENCH_SHADOW_ROUNDS`
/// (3) times, `BENCH_SHADOW_SECS` (20) each.
#[test]
#[ignore]
fn bench_shadow_client_latency() {
    let p = Project::new(PROJECT, PORTS);
    run(p.irisctl().arg("up")).ok();
    let original = std::fs::read_to_string(p.path().join("stack/api/app/main.py")).unwrap();
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (rounds, secs) = (var("BENCH_SHADOW_ROUNDS", 3), var("BENCH_SHADOW_SECS", 20));
    let measure = || {
        let load = Load::start();
        std::thread::sleep(Duration::from_secs(secs));
        let answers = load.finish();
        let failed = answers.iter().filter(|a| a.status != 200).count();
        let (p50, p99) = percentiles(&answers);
        (answers.len(), failed, p50, p99)
    };
    write_api(&p, &original, "slow", SLOW_2S, "");
    for round in 1..=rounds {
        let (n, failed, p50, p99) = measure();
        eprintln!("BENCH shadow round {round}: no shadow: {n} requests, {failed} failed, p50 {p50:.1} ms, p99 {p99:.1} ms");
        run(p.irisctl().args(["shadow", "start"])).ok();
        let (n2, failed2, p50s, p99s) = measure();
        let stats = status_json(&p)["shadow"].clone();
        eprintln!(
            "BENCH shadow round {round}: 2 s slow challenger: {n2} requests, {failed2} failed, p50 {p50s:.1} ms, p99 {p99s:.1} ms (p99 ×{:.2}); compared {}, dropped {}, failed {}",
            p99s / p99,
            stats["compared"],
            stats["dropped"],
            stats["failed"]
        );
        run(p.irisctl().args(["shadow", "stop"])).ok();
    }
    p.cleanup();
}
