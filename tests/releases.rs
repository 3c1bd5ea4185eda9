//! Releases on the real engine under steady load: two client threads post /predict without a
//! pause, one to the API's published port and one through the web UI's `/api/` proxy (both
//! through the edge), while `up` releases a changed API or web UI. Every request must succeed:
//! a changed API is released with 0 failed requests and exactly one API container afterwards
//! serving the new code; an API that builds but raises at import is refused by the health gate
//! (`up` exits non-zero naming the release, the cause and the log tail) while the old one keeps
//! serving; Ctrl-C during a swap leaves a healthy API serving and the next `up` converges; a
//! changed web UI is released the same way (load on `/` and `/api/`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{docker, docker_cleanup, run, Project};

const NAME: &str = "irisctl-test-rel";
const PORTS: [u16; 4] = [22600, 22601, 22602, 22603];
const PREDICT: &str =
    r#"{"items":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}"#;

/// One HTTP/1.1 request on a fresh connection (std only): status and body, or what failed.
fn request(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let head = if method == "POST" {
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
    };
    s.write_all(head.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("no status line in {:?}", text.get(..80)))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// What one client thread saw.
#[derive(Debug, Default)]
struct Stats {
    ok: u64,
    failed: u64,
    /// The first failures, for the message.
    examples: Vec<String>,
    /// The slowest request, answered or not.
    slowest: Duration,
}

/// Client threads sending requests back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<Stats>)>,
}

impl Load {
    fn start(targets: &[(u16, &'static str, &'static str)]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = targets
            .iter()
            .map(|&(port, method, path)| {
                let stop = stop.clone();
                let name = format!("{method} :{port}{path}");
                let handle = std::thread::spawn(move || {
                    let mut st = Stats::default();
                    while !stop.load(Ordering::Relaxed) {
                        let body = if method == "POST" { PREDICT } else { "" };
                        let sent_at = Instant::now();
                        let outcome = request(port, method, path, body);
                        st.slowest = st.slowest.max(sent_at.elapsed());
                        match outcome {
                            Ok((200, _)) => st.ok += 1,
                            other => {
                                st.failed += 1;
                                if st.examples.len() < 10 {
                                    st.examples.push(format!("{other:?}"));
                                }
                            }
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    st
                });
                (name, handle)
            })
            .collect();
        Load { stop, threads }
    }

    /// Like [`Load::start`], for a bench: failures are counted, not fatal.
    fn start_counting(targets: &[(u16, &'static str, &'static str)]) -> (Load, Instant) {
        (Load::start(targets), Instant::now())
    }

    /// Stop; the total of successful requests, after asserting that none failed.
    fn finish_without_failures(self, what: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        let mut report = Vec::new();
        for (name, t) in self.threads {
            let st = t.join().expect("load thread");
            report.push(format!(
                "{name}: {} ok, {} failed {:?}",
                st.ok, st.failed, st.examples
            ));
            if st.failed > 0 {
                for c in ["edge", "frontend", "api"] {
                    for (n, _) in containers(c) {
                        // nginx and uvicorn log errors on stderr.
                        let out = std::process::Command::new("docker")
                            .args(["logs", "--tail", "15", &n])
                            .output()
                            .map(|o| {
                                format!(
                                    "{}{}",
                                    String::from_utf8_lossy(&o.stdout),
                                    String::from_utf8_lossy(&o.stderr)
                                )
                            })
                            .unwrap_or_default();
                        eprintln!("--- {n} ---\n{out}");
                    }
                }
            }
            assert!(st.ok > 0, "{what}: no request succeeded on {name}");
            assert_eq!(st.failed, 0, "{what}: {}", report.join("; "));
            total += st.ok;
        }
        eprintln!("{what}: {}", report.join("; "));
        total
    }
}

impl Load {
    /// Stop; (requests sent, requests failed).
    /// Stop; requests sent, failed, and the slowest one's time.
    fn finish_counting(self) -> (u64, u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|(_, t)| t.join().expect("load thread"))
            .fold((0, 0, Duration::ZERO), |(s, f, slow), st| {
                (s + st.ok + st.failed, f + st.failed, slow.max(st.slowest))
            })
    }
}

/// Containers of a service: (name, health) each.
fn containers(service: &str) -> Vec<(String, String)> {
    docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={NAME}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
        "--format",
        "{{.Names}} {{.Status}}",
    ])
    .lines()
    .map(|l| {
        let (name, status) = l.split_once(' ').unwrap_or((l, ""));
        (name.to_string(), status.to_string())
    })
    .collect()
}

/// The version the API's OpenAPI document announces (the test's marker of the code served).
fn api_version() -> String {
    let (_, body) = request(PORTS[0], "GET", "/openapi.json", "").unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["info"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn set_api_version(p: &Project, version: &str) {
    let main_py = p.path().join("stack/api/app/main.py");
    let text = std::fs::read_to_string(&main_py).expect("read main.py");
    let start = text.find("version=\"").expect("version= in main.py") + "version=\"".len();
    let end = start + text[start..].find('"').unwrap();
    let changed = format!("{}{version}{}", &text[..start], &text[end..]);
    std::fs::write(&main_py, changed).expect("write main.py");
}

/// `up`, interrupted (SIGINT) the moment its progress events say `phase` started.
fn up_interrupted_at(p: &Project, phase: &str) -> String {
    let run = p.up_interrupted_at(phase);
    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(
        run.last_phase.starts_with(phase)
            && run
                .stderr
                .contains(&format!("interrupted while {}", run.last_phase)),
        "{}",
        run.stderr
    );
    run.stderr
}

/// `irisctl rollback SERVICE` while `load` runs: it succeeds, no request fails, and one
/// container of the service is left; its output and the image that container runs.
fn rollback_under_load(p: &Project, service: &str, load: Load) -> (common::Run, String) {
    let started = Instant::now();
    let rb = run(p.irisctl().args(["rollback", service]));
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let n = load.finish_without_failures(&format!("{service} rollback"));
    rb.ok();
    eprintln!("{service} rollback took {took:?}, {n} requests, 0 failed");
    assert!(
        rb.stderr.contains(&format!("rolled back {service}")),
        "{}",
        rb.stderr
    );
    // Not silent until done: the swap is announced as it starts.
    assert!(
        rb.stderr
            .lines()
            .next()
            .is_some_and(|l| l.starts_with(&format!(
                "release {service}: rollback to the previous release"
            ))),
        "{}",
        rb.stderr
    );
    let left = containers(service);
    assert_eq!(left.len(), 1, "{left:?}");
    let image = docker(&["inspect", "--format", "{{.Image}}", &left[0].0]);
    (rb, image)
}

fn ui_load() -> Load {
    Load::start(&[(PORTS[1], "GET", "/"), (PORTS[1], "POST", "/api/predict")])
}

fn api_load() -> Load {
    Load::start(&[
        (PORTS[0], "POST", "/predict"),
        (PORTS[1], "POST", "/api/predict"),
    ])
}

/// The tests of this file one at a time: each measures failed requests under load, which the
/// other's builds and swarm set-up would disturb.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn releases_under_steady_load_drop_no_request() {
    if !common::engine_available() {
        return;
    }
    let _serial = one_at_a_time();
    let p = Project::new(NAME, PORTS);
    run(p.irisctl().arg("up")).ok();
    assert_eq!(containers("edge").len(), 1, "the edge publishes the ports");
    let first_api = containers("api");
    assert_eq!(first_api.len(), 1);

    // 1. A changed API: released, no request fails, one API container serving the new code.
    set_api_version(&p, "1.0.0-rel1");
    let dry = run(p.irisctl().args(["up", "--dry-run"]));
    dry.ok();
    assert!(
        dry.stdout.contains("release api: its image is rebuilt"),
        "{}",
        dry.stdout
    );
    let load = api_load();
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let up = run(p.irisctl().arg("up"));
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let n = load.finish_without_failures("API release");
    up.ok();
    assert!(up.stderr.contains("released api"), "{}", up.stderr);
    // In a pipe, the build and the release each say so when they start (no silent seconds).
    let line = |needle: &str| up.stderr.lines().position(|l| l.starts_with(needle));
    assert!(
        line("rebuild api: build context changed").is_some()
            && line("release api: its image is rebuilt").is_some()
            && line("rebuild api: ") < line("release api: "),
        "no line for the build and the release as they start:\n{}",
        up.stderr
    );
    eprintln!("API release: `up` (build + swap) took {took:?}, {n} requests, 0 failed");
    let api = containers("api");
    assert_eq!(api.len(), 1, "{api:?}");
    assert_ne!(api[0].0, first_api[0].0, "a new container serves");
    // irisctl's readiness check lets traffic in before Docker's first health check has run.
    assert!(
        common::eventually(30, || containers("api")[0].1.contains("(healthy)")),
        "{:?}",
        containers("api")
    );
    assert_eq!(api_version(), "1.0.0-rel1");
    // Prometheus's scrapes of `api` kept working through the release: no failed scrape
    // (`up` 0) in the window of the `up` that released it.
    let window = took.as_secs() + 4;
    let (_, body) = request(
        PORTS[2],
        "GET",
        &format!("/api/v1/query?query=min_over_time(up%7Bjob%3D%22iris-api%22%7D%5B{window}s%5D)"),
        "",
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        v["data"]["result"][0]["value"][1], "1",
        "a scrape of the API failed during the release: {body}"
    );
    let notes = p.release_annotations(PORTS[3], "api");
    assert!(
        notes.len() == 1
            && notes[0].starts_with("release api: its image is rebuilt (build context changed (")
            && notes[0].contains("; model "),
        "the release is annotated on the dashboard: {notes:?}"
    );

    // 2. A release that builds but raises at import: refused by the health gate.
    let main_py = p.path().join("stack/api/app/main.py");
    let good = std::fs::read_to_string(&main_py).unwrap();
    std::fs::write(
        &main_py,
        good.replacen(
            "from __future__ import annotations\n",
            "from __future__ import annotations\n\nraise RuntimeError(\"broken on purpose by the release test\")\n",
            1,
        ),
    )
    .unwrap();
    let load = api_load();
    let broken = run(p.irisctl().arg("up"));
    std::thread::sleep(Duration::from_secs(1));
    load.finish_without_failures("failed API release");
    broken.user_error("release of `api` failed");
    assert!(
        broken
            .stderr
            .contains("broken on purpose by the release test"),
        "the log tail shows the cause: {}",
        broken.stderr
    );
    assert!(broken.stderr.contains("keeps serving"), "{}", broken.stderr);
    let after_broken = containers("api");
    assert_eq!(after_broken.len(), 1, "{after_broken:?}");
    assert_eq!(
        after_broken[0].0, api[0].0,
        "the old container serves on, alone"
    );
    assert!(after_broken[0].1.contains("(healthy)"), "{after_broken:?}");
    assert_eq!(api_version(), "1.0.0-rel1");
    std::fs::write(&main_py, &good).unwrap();

    // 3. Ctrl-C during a swap, before and after the new container takes the traffic: a
    //    healthy API serves throughout, and the next `up` converges to one container.
    for (i, phase) in ["releasing api: waiting for", "releasing api: draining"]
        .iter()
        .enumerate()
    {
        let version = format!("1.0.0-int{i}");
        set_api_version(&p, &version);
        if i == 1 {
            // This release changes the API's configuration too (rollback restores it).
            let mut config = std::fs::read_to_string(&p.config).unwrap();
            config.push_str("memory:\n  api: 640m\n");
            std::fs::write(&p.config, config).unwrap();
        }
        let load = api_load();
        up_interrupted_at(&p, phase);
        // A healthy API serves (Docker's check of a just-started one may still be running).
        let mut during = Vec::new();
        assert!(
            common::eventually(30, || {
                during = containers("api");
                during.iter().any(|(_, s)| s.contains("(healthy)"))
            }),
            "{phase}: no healthy API container: {during:?}"
        );
        let again = run(p.irisctl().arg("up"));
        std::thread::sleep(Duration::from_secs(1));
        load.finish_without_failures(&format!("interrupted at {phase}, then up"));
        again.ok();
        assert!(again.stderr.contains("released api"), "{}", again.stderr);
        assert!(
            p.release_annotations(PORTS[3], "api")
                .first()
                .is_some_and(|t| t.contains("finished an interrupted release")),
            "{phase}: {:?}",
            p.release_annotations(PORTS[3], "api")
        );
        let after = containers("api");
        assert_eq!(after.len(), 1, "{phase}: {after:?}");
        assert_eq!(api_version(), version, "{phase}");
        let noop = run(p.irisctl().args(["up", "--dry-run"]));
        assert_eq!(noop.stdout, "nothing to change\n", "{phase}");
    }

    // 4. A changed web UI: released under load on `/` and `/api/`.
    let index = p.path().join("stack/frontend/index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    std::fs::write(
        &index,
        html.replace(
            "<title>Iris classifier</title>",
            "<title>Iris classifier (rel)</title>",
        ),
    )
    .unwrap();
    let first_ui = containers("frontend");
    let load = Load::start(&[
        (PORTS[1], "GET", "/"),
        (PORTS[1], "POST", "/api/predict"),
        (PORTS[0], "POST", "/predict"),
    ]);
    let started = Instant::now();
    let up = run(p.irisctl().arg("up"));
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let n = load.finish_without_failures("web UI release");
    up.ok();
    assert!(up.stderr.contains("released frontend"), "{}", up.stderr);
    eprintln!("web UI release: `up` took {took:?}, {n} requests, 0 failed");
    let ui = containers("frontend");
    assert_eq!(ui.len(), 1, "{ui:?}");
    assert_ne!(ui[0].0, first_ui[0].0);
    let (code, page) = request(PORTS[1], "GET", "/", "").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("Iris classifier (rel)"), "{page}");

    // 5. Rollback under load: the previous release — its image (kept as `:previous`, no
    //    registry) and its configuration (512 MiB, where the settings now say 640) — serves
    //    again through the same swap, and the one it replaced becomes the previous one.
    const MIB: u64 = 1024 * 1024;
    let memory = |c: &str| -> u64 {
        docker(&["inspect", "--format", "{{.HostConfig.Memory}}", c])
            .parse()
            .unwrap_or(0)
    };
    assert_eq!(memory(&containers("api")[0].0), 640 * MIB);
    let previous = format!("{NAME}-api:previous");
    let prev_id = docker(&["image", "inspect", "--format", "{{.Id}}", &previous]);
    assert!(prev_id.starts_with("sha256:"), "no {previous}: {prev_id}");
    let serving_id = docker(&["inspect", "--format", "{{.Image}}", &containers("api")[0].0]);
    let (rb, image) = rollback_under_load(&p, "api", api_load());
    assert_eq!(image, prev_id, "the previous image serves");
    assert_eq!(api_version(), "1.0.0-int0");
    assert_eq!(
        memory(&containers("api")[0].0),
        512 * MIB,
        "the previous configuration serves"
    );
    assert!(
        rb.stderr.contains("definition changed (memory_bytes)"),
        "{}",
        rb.stderr
    );
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Id}}", &previous]),
        serving_id,
        "the replaced release is the previous one now"
    );
    // The next `up` would release what the settings say again, and says why.
    let dry = run(p.irisctl().args(["up", "--dry-run"]));
    assert!(
        dry.stdout.contains("release api: ") && dry.stdout.contains("memory_bytes"),
        "{}",
        dry.stdout
    );
    // `status` shows the current and the previous release (JSON and table).
    let st = run(p.irisctl().args(["status", "--format", "json"]));
    let report: serde_json::Value = serde_json::from_str(&st.stdout).expect("status json");
    let api_row = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "api")
        .unwrap()
        .clone();
    assert_eq!(api_row["releases"]["current"]["image_id"], prev_id.as_str());
    assert_eq!(
        api_row["releases"]["previous"]["image_id"],
        serving_id.as_str()
    );
    assert!(
        api_row["releases"]["current"]["build_digest"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
            && api_row["releases"]["current"]["built_at"].is_string(),
        "{api_row}"
    );
    let table = run(p.irisctl().arg("status"));
    assert!(
        table.stdout.contains("\nreleases\n")
            && table.stdout.contains(&format!(
                "previous  image {}",
                &serving_id.trim_start_matches("sha256:")[..12]
            )),
        "{}",
        table.stdout
    );
    assert!(
        p.release_annotations(PORTS[3], "api")
            .first()
            .is_some_and(|t| t.starts_with("rolled back api (image ")),
        "{:?}",
        p.release_annotations(PORTS[3], "api")
    );
    assert_eq!(p.release_annotations(PORTS[3], "frontend").len(), 1);
    // A second rollback goes forward again, configuration included: back where the settings
    // are, so there is nothing left to change.
    let (_, image) = rollback_under_load(&p, "api", api_load());
    assert_eq!(image, serving_id);
    assert_eq!(memory(&containers("api")[0].0), 640 * MIB);
    assert_eq!(api_version(), "1.0.0-int1");
    let noop = run(p.irisctl().args(["up", "--dry-run"]));
    assert_eq!(noop.stdout, "nothing to change\n");

    // 6. The web UI behind the same gate, under load on `/` and `/api/`: an image that builds
    //    but whose nginx refuses its config is refused, the old UI serving on.
    let nginx_conf = p.path().join("stack/frontend/nginx.conf");
    let conf = std::fs::read_to_string(&nginx_conf).unwrap();
    std::fs::write(
        &nginx_conf,
        conf.replacen(
            "http {",
            "http {\n    broken_on_purpose_by_the_release_test on;",
            1,
        ),
    )
    .unwrap();
    let serving_ui = containers("frontend");
    let load = ui_load();
    let broken = run(p.irisctl().arg("up"));
    std::thread::sleep(Duration::from_secs(1));
    load.finish_without_failures("failed web UI release");
    broken.user_error("release of `frontend` failed");
    assert!(
        broken
            .stderr
            .contains("broken_on_purpose_by_the_release_test"),
        "the log tail shows the cause: {}",
        broken.stderr
    );
    let after_broken = containers("frontend");
    assert_eq!(after_broken.len(), 1, "{after_broken:?}");
    assert_eq!(
        after_broken[0].0, serving_ui[0].0,
        "the old UI serves on, alone"
    );
    assert!(after_broken[0].1.contains("(healthy)"), "{after_broken:?}");

    // 7. Ctrl-C while the old UI drains: a healthy UI serves, the next `up` converges.
    std::fs::write(
        &nginx_conf,
        format!("# changed by the release test\n{conf}"),
    )
    .unwrap();
    let load = ui_load();
    up_interrupted_at(&p, "releasing frontend: draining");
    std::thread::sleep(Duration::from_secs(2));
    let during = containers("frontend");
    assert!(
        during.iter().any(|(_, s)| s.contains("(healthy)")),
        "no healthy web UI: {during:?}"
    );
    let again = run(p.irisctl().arg("up"));
    std::thread::sleep(Duration::from_secs(1));
    load.finish_without_failures("web UI interrupted while draining, then up");
    again.ok();
    assert_eq!(containers("frontend").len(), 1);
    let noop = run(p.irisctl().args(["up", "--dry-run"]));
    assert_eq!(noop.stdout, "nothing to change\n");

    // 8. `rollback frontend` under load: the release of step 4 serves again.
    let ui_previous = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{NAME}-frontend:previous"),
    ]);
    let (_, image) = rollback_under_load(&p, "frontend", ui_load());
    assert_eq!(image, ui_previous);
    let (code, page) = request(PORTS[1], "GET", "/", "").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("Iris classifier (rel)"), "{page}");

    // A service without releases is refused.
    run(p.irisctl().args(["rollback", "prometheus"])).user_error("has no releases");

    // `down --rmi` removes the kept previous images too.
    run(p.irisctl().args(["down", "--rmi"])).ok();
    assert_eq!(
        docker(&["images", "-q", &previous]),
        "",
        "{previous} left after down --rmi"
    );
}

/// Bench (bench/README.md, "Releases under load"; ignored: `cargo test --test releases --
/// --ignored --nocapture`): one change to the API's source under steady load (clients posting
/// /predict back to back through the published port and the UI's proxy, ≥ 50 req/s each), applied
/// by `irisctl up` and by `docker-compose up -d --build` of the file `irisctl compose` writes.
/// Prints failed requests and the time until the new version answers.
#[test]
#[ignore]
fn bench_release_under_load_irisctl_vs_compose() {
    if !common::engine_available() {
        return;
    }
    let _serial = one_at_a_time();
    const COMPOSE: &str = "irisctl-test-rel-compose";
    let measure = |label: &str,
                   p: &Project,
                   ports: [u16; 4],
                   version: &str,
                   apply: &dyn Fn() -> bool| {
        let marker = format!("\"{version}\"");
        let stop = Arc::new(AtomicBool::new(false));
        let served_at = Arc::new(std::sync::Mutex::new(None::<Duration>));
        let started = Instant::now();
        let poller = {
            let (stop, served_at) = (stop.clone(), served_at.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (_, body) =
                        request(ports[0], "GET", "/openapi.json", "").unwrap_or_default();
                    if body.contains(&marker) {
                        *served_at.lock().unwrap() = Some(started.elapsed());
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let (load, load_started) = Load::start_counting(&[
            (ports[0], "POST", "/predict"),
            (ports[1], "POST", "/api/predict"),
        ]);
        set_api_version(p, version);
        let ok = apply();
        let applied = started.elapsed();
        assert!(common::eventually(120, || served_at
            .lock()
            .unwrap()
            .is_some()));
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        let _ = poller.join();
        let (sent, failed, slowest) = load.finish_counting();
        let secs = load_started.elapsed().as_secs_f64();
        eprintln!(
            "BENCH {label}: command ok={ok} in {:.1}s; new version served after {:.1}s; {sent} requests in {secs:.1}s ({:.0} req/s), {failed} failed, slowest {} ms",
            applied.as_secs_f64(),
            served_at.lock().unwrap().unwrap_or_default().as_secs_f64(),
            sent as f64 / secs,
            slowest.as_millis()
        );
    };

    let p = Project::new(NAME, PORTS);
    run(p.irisctl().arg("up")).ok();
    let releases: usize = std::env::var("BENCH_RELEASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    for i in 1..=releases {
        measure("irisctl up", &p, PORTS, &format!("1.0.{i}-bench"), &|| {
            run(p.irisctl().arg("up")).code == 0
        });
    }
    drop(p);

    let c_ports = [22610, 22611, 22612, 22613];
    let c = Project::new(COMPOSE, c_ports);
    run(c.irisctl().args(["compose", "-o", "docker-compose.yml"])).ok();
    let compose_up = || {
        std::process::Command::new("docker-compose")
            .args(["-p", COMPOSE, "up", "-d", "--build"])
            .current_dir(c.path())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(compose_up());
    assert!(common::eventually(240, || {
        request(c_ports[0], "GET", "/health", "").is_ok_and(|(s, _)| s == 200)
            && request(c_ports[1], "GET", "/api/health", "").is_ok_and(|(s, _)| s == 200)
    }));
    measure(
        "docker-compose up -d --build",
        &c,
        c_ports,
        "1.0.1-bench",
        &compose_up,
    );
    drop(c);
    // docker-compose's builds carry no irisctl label, so `down --rmi` leaves them: the test's own.
    for service in ["api", "frontend", "grafana"] {
        docker_cleanup(&["rmi", &format!("{COMPOSE}-{service}:dev")]);
    }
}

/// Swarm: built images go through a local registry (Debian's `docker-registry`, started here on
/// 127.0.0.1:5000 and stopped again) and are pinned by digest; a rolling update of new API code,
/// then `irisctl rollback --target swarm api` (Swarm's own rollback to the previous spec) serves
/// the previous code again. Makes a single-node swarm when the engine is not in one, and leaves it
/// again.
#[test]
fn swarm_rollback_through_a_local_registry() {
    if !common::engine_available() {
        return;
    }
    let _serial = one_at_a_time();
    const SWARM: &str = "irisctl-test-rel-swarm";
    let ports = [22620, 22621, 22622, 22623];
    let Ok(registry_bin) = which("docker-registry") else {
        panic!("docker-registry is not installed (`apt-get install -y docker-registry`)");
    };
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", 5000)).is_ok(),
        "127.0.0.1:5000 is taken (Debian's docker-registry service? `systemctl disable --now docker-registry`)"
    );
    let store = tempfile::tempdir().unwrap();
    let config = store.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n",
            store.path().join("data").display()
        ),
    )
    .unwrap();
    let mut registry = std::process::Command::new(registry_bin)
        .args(["serve", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry");
    struct Stop<'a>(&'a mut std::process::Child);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _registry = Stop(&mut registry);
    assert!(
        common::eventually(20, || request(5000, "GET", "/v2/", "")
            .is_ok_and(|(s, _)| s == 200)),
        "the registry does not answer on 127.0.0.1:5000"
    );

    let p = Project::new(SWARM, ports);
    let mut yaml = std::fs::read_to_string(&p.config).unwrap();
    yaml.push_str("swarm:\n  registry: 127.0.0.1:5000\n");
    std::fs::write(&p.config, yaml).unwrap();
    let made_swarm = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]) != "active";
    let made_gwbridge =
        docker(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"]).is_empty();
    if made_swarm {
        common::init_test_swarm();
    }
    struct Leave<'a> {
        p: &'a Project,
        made_swarm: bool,
        made_gwbridge: bool,
    }
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            let _ = self
                .p
                .irisctl()
                .args(["down", "--target", "swarm", "--volumes", "--rmi", "-q"])
                .output();
            if self.made_swarm {
                docker_cleanup(&["swarm", "leave", "--force"]);
            }
            if self.made_gwbridge {
                docker_cleanup(&["network", "rm", "docker_gwbridge"]);
            }
            // Superseded pushes stay as untagged images (known by their digest): the test's own.
            for service in ["api", "frontend", "grafana"] {
                let repo = format!("127.0.0.1:5000/{SWARM}-{service}");
                for id in docker(&["images", "-q", &repo]).lines() {
                    docker_cleanup(&["rmi", "-f", id]);
                }
            }
        }
    }
    let _leave = Leave {
        p: &p,
        made_swarm,
        made_gwbridge,
    };
    // The replicated API is reached through the web UI's proxy on Swarm.
    let version = || {
        let (_, body) = request(ports[1], "GET", "/api/openapi.json", "").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["info"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    set_api_version(&p, "1.0.0-swarm1");
    run(p
        .irisctl()
        .args(["up", "--target", "swarm", "--no-provision"]))
    .ok();
    assert!(common::eventually(60, || version() == "1.0.0-swarm1"));
    let image = || {
        docker(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            &format!("{SWARM}_api"),
        ])
    };
    assert!(
        image().starts_with(&format!("127.0.0.1:5000/{SWARM}-api:dev@sha256:")),
        "{}",
        image()
    );
    let first = image();

    set_api_version(&p, "1.0.0-swarm2");
    run(p
        .irisctl()
        .args(["up", "--target", "swarm", "--no-provision"]))
    .ok();
    assert!(common::eventually(60, || version() == "1.0.0-swarm2"));
    assert_ne!(image(), first);

    let rb = run(p.irisctl().args(["rollback", "--target", "swarm", "api"]));
    rb.ok();
    assert!(rb.stderr.contains("rolled back api"), "{}", rb.stderr);
    assert_eq!(image(), first, "Swarm runs the previous spec");
    assert!(
        common::eventually(60, || version() == "1.0.0-swarm1"),
        "the previous code does not serve: {}",
        version()
    );

    // `down --rmi` removes the registry-tagged copies too.
    run(p.irisctl().args(["down", "--target", "swarm", "--rmi"])).ok();
    let pushed = format!("127.0.0.1:5000/{SWARM}-api:dev");
    assert_eq!(
        docker(&["images", "-q", &pushed]),
        "",
        "{pushed} left after down --rmi"
    );
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
