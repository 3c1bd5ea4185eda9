//! `irisctl watch` on the real engine: an edited API source file goes live (a new API container
//! answers /predict) and only the API is redeployed; editors' temporary files are no change; a
//! `.dockerignore`d file or a metadata-only change (touch) deploys nothing; a syntax error is reported, the version that was running keeps
//! serving and watching goes on; Ctrl-C stops watching, exit 0, the stack left as it was.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{http, run, Project};

const PORTS: [u16; 4] = [22950, 22951, 22952, 22953];

fn predict() -> u16 {
    http(
        "POST",
        &format!("http://127.0.0.1:{}/predict", PORTS[0]),
        Some(r#"{"items":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}"#),
    )
    .0
}

/// The next stderr line of `watch` that contains one of `needles`, within `secs`.
fn wait_for(rx: &mpsc::Receiver<String>, needles: &[&str], secs: u64, seen: &mut String) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if needles.iter().any(|n| line.contains(n)) {
                    return line;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {needles:?} within {secs} s; watch said:\n{seen}");
}

/// Lines that arrive within `secs` (none expected).
fn quiet_for(rx: &mpsc::Receiver<String>, secs: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Ok(line) = rx.recv_timeout(left) {
            out.push(line);
        }
    }
    out
}

#[test]
fn watch_deploys_source_changes_and_keeps_serving() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-watch", PORTS);
    let mut child = p
        .irisctl()
        .arg("watch")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    wait_for(&rx, &["watching "], 300, &mut seen);
    let before = p.container_ids();
    assert_eq!(
        before.len(),
        5,
        "api, frontend, prometheus, grafana and the edge"
    );
    assert_eq!(predict(), 200);

    // An edit goes live: a new API container answers; nothing else is redeployed. The
    // temporary files editors write beside it (none listed in .dockerignore) are no change:
    // written first, in the same burst, they would be listed with it.
    let main_py = p.path().join("stack/api/app/main.py");
    let original = std::fs::read_to_string(&main_py).unwrap();
    let app = p.path().join("stack/api/app");
    for temp in [
        "sedX1y2Z3",
        ".main.py.swp",
        "4913",
        "main.py~",
        "#main.py#",
        ".#main.py",
        "main.py___jb_tmp___",
        "main.py.tmp",
    ] {
        std::fs::write(app.join(temp), "temporary\n").unwrap();
    }
    std::fs::write(&main_py, format!("{original}\n# edited while watching\n")).unwrap();
    let changed = wait_for(&rx, &["changed:"], 30, &mut seen);
    assert_eq!(changed, "changed: api: app/main.py", "{seen}");
    let live = wait_for(&rx, &["live ", "error:"], 180, &mut seen);
    assert!(live.contains("api live"), "{seen}");
    let after = p.container_ids();
    for (service, id) in &before {
        assert_eq!(after[service] != *id, service == "api", "{service}\n{seen}");
    }
    assert_eq!(predict(), 200);

    // A file .dockerignore leaves out, and a metadata-only change, deploy nothing.
    std::fs::write(
        p.path().join("stack/api/tests/test_watch_marker.py"),
        "x = 1\n",
    )
    .unwrap();
    std::process::Command::new("touch")
        .arg(&main_py)
        .status()
        .unwrap();
    let noise = quiet_for(&rx, 4);
    assert!(
        !noise.iter().any(|l| l.starts_with("changed:")),
        "an ignored change was deployed: {noise:?}"
    );
    assert_eq!(p.container_ids(), after);

    // A syntax error: reported, the running version keeps serving, watching goes on.
    std::fs::write(&main_py, format!("{original}\ndef broken(:\n")).unwrap();
    wait_for(&rx, &["error:"], 180, &mut seen);
    assert_eq!(
        predict(),
        200,
        "the running version stopped serving\n{seen}"
    );
    std::fs::write(&main_py, format!("{original}\n# fixed\n")).unwrap();
    let fixed = wait_for(&rx, &["live ", "error:"], 180, &mut seen);
    assert!(fixed.contains("api live"), "{seen}");
    assert_eq!(predict(), 200);

    // Ctrl-C: stops watching at once, exit 0, the stack left running as it was.
    let ids = p.container_ids();
    let sent = Instant::now();
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(3));
    assert_eq!(status.code(), Some(0), "{seen}");
    wait_for(&rx, &["stopped watching"], 5, &mut seen);
    assert_eq!(p.container_ids(), ids);
    run(p.irisctl().arg("status")).ok();
}
