//! Test fixture: run the real `irisctl` binary, reach the real engine, clean up what a test made.
#![allow(dead_code)]

pub mod remote;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test, with no irisctl or Grafana settings leaking in from the caller.
pub fn irisctl(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irisctl"));
    cmd.current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("IRISCTL_") || k.starts_with("GRAFANA_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    pub fn ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    /// An error as the user sees it: non-zero exit, one `error:` paragraph, one `hint:` line.
    pub fn user_error(&self, needle: &str) -> &Run {
        assert_ne!(
            self.code, 0,
            "expected failure\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains("error: "),
            "no `error:` in\n{}",
            self.stderr
        );
        assert_eq!(
            self.stderr.matches("\nhint: ").count()
                + usize::from(self.stderr.starts_with("hint: ")),
            1,
            "expected one hint in\n{}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in\n{}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "panic in\n{}",
            self.stderr
        );
        self
    }
}

pub fn run(cmd: &mut Command) -> Run {
    Run::from(cmd.output().expect("run irisctl"))
}

/// Does a Docker engine answer? In CI (`CI=true`) a missing engine fails the test instead of
/// skipping it.
pub fn engine_available() -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but no Docker engine answers: start one (scripts/start-dockerd)");
        }
        eprintln!("skipped: no Docker engine answers (set CI=true to make this a failure)");
    }
    ok
}

/// The docker CLI, for the tests' own observations of the engine (irisctl never shells out).
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker ARGS` for cleaning up (a `Drop`, a leftover that may be gone already): whatever its
/// outcome, never a panic.
pub fn docker_cleanup(args: &[&str]) {
    let _ = Command::new("docker").args(args).output();
}

/// Test ports stay below 32768: above it, Linux hands ports out to outgoing connections, so a
/// test's port could be taken by chance. Each test uses its own four.
///
/// Removes a test project's containers, network, volumes and built images on drop, even when
/// the test failed.
pub struct Project {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Project {
    /// A project directory written by `irisctl init`, with CI's settings (local base images,
    /// Grafana stand-in) and the given host ports.
    pub fn new(name: &str, ports: [u16; 4]) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        run(irisctl(dir.path()).args(["init", "."])).ok();
        let ci = std::fs::read_to_string(repo().join("tests/ci.yaml")).expect("tests/ci.yaml");
        let ci = ci.replace(
            "context: grafana-standin",
            &format!(
                "context: {}",
                repo().join("tests/grafana-standin").display()
            ),
        );
        let config = dir.path().join("irisctl.yaml");
        std::fs::write(
            &config,
            format!(
                "{ci}\nproject: {name}\nports:\n  api: {}\n  frontend: {}\n  prometheus: {}\n  grafana: {}\ntimeouts:\n  health: 240\n",
                ports[0], ports[1], ports[2], ports[3]
            ),
        )
        .expect("write config");
        let p = Project {
            name: name.to_string(),
            dir,
            config,
        };
        p.cleanup();
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn irisctl(&self) -> Command {
        irisctl(self.path())
    }

    pub fn cleanup(&self) {
        let _ = self
            .irisctl()
            .args(["down", "--volumes", "--rmi", "-q"])
            .output();
    }

    /// Every object of the project on the engine, by kind: containers, networks, volumes and the
    /// images irisctl built for it. Empty after a failed `up` that should leave nothing behind.
    pub fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.name);
        let mut out = Vec::new();
        for (kind, args) in [
            ("container", vec!["ps", "-aq", "--filter", label.as_str()]),
            (
                "network",
                vec!["network", "ls", "-q", "--filter", label.as_str()],
            ),
            (
                "volume",
                vec!["volume", "ls", "-q", "--filter", label.as_str()],
            ),
        ] {
            out.extend(docker(&args).lines().map(|l| format!("{kind} {l}")));
        }
        let reference = format!("reference={}-*", self.name);
        out.extend(
            docker(&["images", "-q", "--filter", reference.as_str()])
                .lines()
                .map(|l| format!("image {l}")),
        );
        out
    }

    /// `up` interrupted with SIGINT the moment its progress events (`--progress json`) say
    /// `at` started: a phase whose name starts with it, or an operation `VERB SERVICE` (e.g.
    /// `release api`, `create api`) of the plan. Panics when `up` never gets there.
    pub fn up_interrupted_at(&self, at: &str) -> Interrupted {
        self.interrupted_at(&["up"], at, "INT")
    }

    /// `irisctl ARGS --progress json`, sent `signal` (`INT`, `KILL`) the moment event `at`
    /// starts (see [`Project::up_interrupted_at`]).
    pub fn interrupted_at(&self, args: &[&str], at: &str, signal: &str) -> Interrupted {
        use std::io::BufRead;
        let mut child = self
            .irisctl()
            .args(args)
            .args(["--progress", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run irisctl");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("stderr");
        let at_owned = at.to_string();
        let reader = std::thread::spawn(move || {
            let mut events = Vec::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let event: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
                if event_starts(&event, &at_owned) {
                    let _ = tx.send(line);
                }
                events.push(event);
            }
            events
        });
        let seen = rx.recv_timeout(std::time::Duration::from_secs(400));
        let sent = std::time::Instant::now();
        if seen.is_ok() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status();
        }
        let status = child.wait().expect("wait for irisctl");
        let stopped_in = sent.elapsed();
        let events = reader.join().unwrap_or_default();
        let text = human(&events);
        assert!(seen.is_ok(), "irisctl never reached `{at}`:\n{text}");
        Interrupted {
            code: status.code(),
            stderr: text,
            stopped_in,
            last_phase: events
                .iter()
                .rev()
                .find(|e| e["event"] == "phase")
                .and_then(|e| e["phase"].as_str())
                .unwrap_or_default()
                .to_string(),
            events,
        }
    }

    /// The texts of the stack's release annotations of `service` in its Grafana (the
    /// stand-in, published on `grafana_port`), read with the admin password from `.env`.
    pub fn release_annotations(&self, grafana_port: u16, service: &str) -> Vec<String> {
        let env = std::fs::read_to_string(self.path().join(".env")).unwrap_or_default();
        let password = env
            .lines()
            .find_map(|l| l.strip_prefix("GRAFANA_ADMIN_PASSWORD="))
            .unwrap_or_default()
            .to_string();
        let client = irisctl::grafana::Client::new(
            &format!("http://127.0.0.1:{grafana_port}"),
            irisctl::grafana::Auth::Basic {
                user: "admin".into(),
                password,
            },
        );
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(client.annotations(&["irisctl", "release", service], 100))
            .expect("annotations")
            .iter()
            .filter_map(|a| a["text"].as_str().map(str::to_string))
            .collect()
    }

    /// Container IDs of the project, by service; a second container of a service fails the test.
    pub fn container_ids(&self) -> std::collections::BTreeMap<String, String> {
        docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--format",
            "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
        ])
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(s, id)| (s.to_string(), id.to_string()))
        })
        .fold(
            std::collections::BTreeMap::new(),
            |mut ids, (service, id)| {
                if let Some(other) = ids.insert(service.clone(), id.clone()) {
                    panic!(
                        "service `{service}` of {} has two containers: {other} and {id}",
                        self.name
                    );
                }
                ids
            },
        )
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A blocking HTTP GET/POST for checks from the test (status, body).
/// `s` percent-encoded for a URL's query (RFC 3986 unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    http_within(method, url, body, std::time::Duration::from_secs(10))
}

/// [`http`] with the client's own timeout.
pub fn http_within(
    method: &str,
    url: &str,
    body: Option<&str>,
    timeout: std::time::Duration,
) -> (u16, String) {
    let (code, text, _) = http_full(method, url, body, timeout, "");
    (code, text)
}

/// [`http`] and the value of one response header.
pub fn http_with_header(
    method: &str,
    url: &str,
    body: Option<&str>,
    header: &str,
) -> (u16, String, Option<String>) {
    http_full(
        method,
        url,
        body,
        std::time::Duration::from_secs(10),
        header,
    )
}

fn http_full(
    method: &str,
    url: &str,
    body: Option<&str>,
    timeout: std::time::Duration,
    header: &str,
) -> (u16, String, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .expect("client");
        let req = match method {
            "POST" => client
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or("").to_string()),
            _ => client.get(url),
        };
        match req.send().await {
            Ok(r) => {
                let code = r.status().as_u16();
                let value = r
                    .headers()
                    .get(header)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                (code, r.text().await.unwrap_or_default(), value)
            }
            Err(e) => (0, e.to_string(), None),
        }
    })
}

/// Poll `check` until it returns true or `secs` pass.
pub fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    check()
}

/// How many `iris-api` scrape targets the Prometheus on `port` reports up.
pub fn api_targets_up(port: u16) -> usize {
    let (_, body) = http(
        "GET",
        &format!("http://127.0.0.1:{port}/api/v1/targets?state=active"),
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["labels"]["job"] == "iris-api" && t["health"] == "up")
        .count()
}

/// A run of irisctl interrupted at an event.
pub struct Interrupted {
    pub code: Option<i32>,
    /// Its messages as a person reads them (`error: …`, `hint: …`).
    pub stderr: String,
    /// From the signal to its exit.
    pub stopped_in: std::time::Duration,
    /// The last phase its events reported.
    pub last_phase: String,
    pub events: Vec<serde_json::Value>,
}

/// Does `event` say that `at` starts: a phase whose name starts with `at`, or the operation
/// `VERB SERVICE` (or `VERB KIND OBJECT`) starting?
pub fn event_starts(event: &serde_json::Value, at: &str) -> bool {
    match event["event"].as_str() {
        Some("phase") => event["phase"].as_str().is_some_and(|p| p.starts_with(at)),
        Some("op") if event["status"] == "started" => {
            let verb = event["verb"].as_str().unwrap_or_default();
            let by_service = format!("{verb} {}", event["service"].as_str().unwrap_or("-"));
            let by_object = format!(
                "{verb} {} {}",
                event["kind"].as_str().unwrap_or_default(),
                event["object"].as_str().unwrap_or_default()
            );
            by_service == at || by_object == at
        }
        _ => false,
    }
}

/// JSON progress events as the plain lines a person reads: messages as `level: text` (info
/// bare), other events as their JSON.
pub fn human(events: &[serde_json::Value]) -> String {
    let mut out = String::new();
    for e in events {
        match (e["event"].as_str(), e["level"].as_str(), e["text"].as_str()) {
            (Some("message"), Some("info" | "success"), Some(t)) => out.push_str(t),
            (Some("message"), Some(level), Some(t)) => {
                let level = if level == "warning" { "warning" } else { level };
                out.push_str(&format!("{level}: {t}"));
            }
            _ => out.push_str(&e.to_string()),
        }
        out.push('\n');
    }
    out
}

/// Make this engine a single-node Swarm manager for a test, its node labelled
/// `io.irisctl.test-swarm` so that `scripts/clean-test-leftovers` leaves a swarm a killed test
/// made (and only such a one).
pub fn init_test_swarm() {
    init_test_swarm_on("127.0.0.1");
}

/// [`init_test_swarm`], the manager advertising `addr` (another node must reach it there).
pub fn init_test_swarm_on(addr: &str) {
    docker(&["swarm", "init", "--advertise-addr", addr]);
    let labelled = Command::new("docker")
        .args(["info", "-f", "{{.Swarm.NodeID}}"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|node| !node.is_empty())
        .is_some_and(|node| {
            Command::new("docker")
                .args([
                    "node",
                    "update",
                    "--label-add",
                    "io.irisctl.test-swarm=true",
                    &node,
                ])
                .status()
                .is_ok_and(|s| s.success())
        });
    if !labelled {
        // Unlabelled, nothing would know to leave it: leave it now.
        docker_cleanup(&["swarm", "leave", "--force"]);
        panic!("could not label the test swarm's node");
    }
}

/// Is the engine a Swarm manager already? In CI a test that needs it not to be fails instead
/// of skipping (CI starts from an engine that is none).
pub fn already_swarm_manager(test: &str) -> bool {
    let manager = docker(&["info", "-f", "{{.Swarm.ControlAvailable}}"]) == "true";
    if manager {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: the engine is a Swarm manager already (a swarm left by another run?); \
             `scripts/clean-test-leftovers` leaves a test's swarm"
        );
        eprintln!("skipped {test}: the engine is a Swarm manager already");
    }
    manager
}
