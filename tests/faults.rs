//! Faults and data: every container SIGKILLed (status says so, the restart policy brings them
//! back, `up` has nothing left to repair); the API killed under load (the kill is seen failing
//! requests, no client waits past its timeout, and the restart policy brings the same container
//! back with a new process); a hand-saved Grafana dashboard and Prometheus's samples survive `down`/`up`, and only
//! `down --volumes` deletes them, saying so.

mod common;

use std::time::{Duration, Instant};

use common::{docker, eventually, http, run, Project};

const P: &str = "irisctl-test-faults";
const PORTS: [u16; 4] = [21900, 21901, 21902, 21903];

fn grafana(method: &str, path: &str, body: Option<&str>, password: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{}{path}", PORTS[3]);
        let req = if method == "POST" {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or("").to_string())
        } else {
            client.get(url)
        };
        let r = req
            .basic_auth("admin", Some(password))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

fn samples() -> f64 {
    let q = "count_over_time(up%7Bjob%3D%22iris-api%22%7D%5B1h%5D)";
    let (_, body) = http(
        "GET",
        &format!("http://127.0.0.1:{}/api/v1/query?query={q}", PORTS[2]),
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

fn pid(service: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{.State.Pid}}",
        &format!("{P}-{service}-1"),
    ])
}

#[test]
fn faults_and_data_survival() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new(P, PORTS);
    run(p.irisctl().arg("up")).ok();
    let password = std::fs::read_to_string(p.path().join(".env"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("GRAFANA_ADMIN_PASSWORD=")
                .map(str::to_string)
        })
        .expect("password in .env");

    // A dashboard a user saved by hand, and some Prometheus history.
    let (code, body) = grafana(
        "POST",
        "/api/dashboards/db",
        Some(
            r#"{"dashboard":{"uid":"hand-made","title":"Made by hand","panels":[]},"overwrite":false}"#,
        ),
        &password,
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        eventually(30, || samples() >= 2.0),
        "Prometheus has no samples"
    );

    // Every container's main process SIGKILLed: status says so, the restart policy repairs it.
    let ids = p.container_ids();
    for service in ["api", "frontend", "prometheus", "grafana"] {
        let pid = pid(service);
        assert!(
            std::process::Command::new("kill")
                .args(["-9", &pid])
                .status()
                .unwrap()
                .success(),
            "kill {service} ({pid})"
        );
    }
    let st = run(p.irisctl().arg("status"));
    assert_eq!(
        st.code, 3,
        "status right after the kills:\n{}\n{}",
        st.stdout, st.stderr
    );
    assert!(
        eventually(120, || run(p.irisctl().arg("status")).code == 0),
        "the restart policy did not bring the stack back"
    );
    let up = run(p.irisctl().arg("up"));
    up.ok();
    assert!(up.stderr.contains("nothing to change"), "{}", up.stderr);
    assert_eq!(
        p.container_ids(),
        ids,
        "containers were replaced instead of restarted"
    );

    // The API killed mid-load: no client is left hanging. The clients would wait 30 s; the
    // stack answers every request (an error is fine while the API is down) within 5 s — the
    // web UI's proxy gives up connecting after 2 s — and, once the API is back, every request
    // succeeds again, fast.
    let predict = format!("http://127.0.0.1:{}/api/predict", PORTS[1]);
    let body = r#"{"items":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}"#;
    let stop = Instant::now() + Duration::from_secs(6);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let predict = predict.clone();
            std::thread::spawn(move || {
                // (started at, latency, status) of every request.
                let mut seen = Vec::new();
                while Instant::now() < stop {
                    let t = Instant::now();
                    let (code, _) =
                        common::http_within("POST", &predict, Some(body), Duration::from_secs(30));
                    seen.push((t, t.elapsed(), code));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let api = format!("{P}-api-1");
    let restarts = |c: &str| -> u64 {
        docker(&["inspect", "-f", "{{.RestartCount}}", c])
            .parse()
            .expect("a restart count")
    };
    let (api_id, restarts_before, pid_before) = (ids["api"].clone(), restarts(&api), pid("api"));
    let killed_at = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid_before])
            .status()
            .unwrap()
            .success(),
        "kill -9 {pid_before} (the API's process) failed"
    );
    let mut failed_after_kill = 0;
    for w in workers {
        let seen = w.join().unwrap();
        let worst = seen.iter().map(|(_, l, _)| *l).max().unwrap_or_default();
        assert!(
            worst < Duration::from_secs(5),
            "a client waited {worst:?}; the proxy should answer within 5 s"
        );
        assert!(
            seen.iter().all(|(_, _, code)| *code != 0),
            "a request got no HTTP answer at all: {seen:?}"
        );
        let before: Vec<_> = seen
            .iter()
            .filter(|(t, l, _)| *t + *l < killed_at)
            .collect();
        assert!(
            before.len() >= 5 && before.iter().all(|(_, _, code)| *code == 200),
            "before the kill every request succeeds: {before:?}"
        );
        failed_after_kill += seen
            .iter()
            .filter(|(t, _, code)| *t >= killed_at && *code != 200)
            .count();
    }
    // The kill happened and was felt: requests failed while the API was down.
    assert!(
        failed_after_kill > 0,
        "no request failed after the API was killed: was it?"
    );
    assert!(
        eventually(60, || run(p.irisctl().arg("status")).code == 0),
        "the API did not come back"
    );
    // The restart policy brought it back: the same container, restarted once more, a new process.
    assert_eq!(
        p.container_ids()["api"],
        api_id,
        "the API container was replaced"
    );
    assert!(
        restarts(&api) > restarts_before,
        "the API's restart count did not grow ({restarts_before})"
    );
    assert_ne!(pid("api"), pid_before, "the API runs the same process");
    // After recovery: 100 requests, none failed, p99 under a second.
    let mut latencies: Vec<Duration> = (0..100)
        .map(|_| {
            let t = Instant::now();
            let (code, text) =
                common::http_within("POST", &predict, Some(body), Duration::from_secs(30));
            assert_eq!(code, 200, "after recovery: {text}");
            t.elapsed()
        })
        .collect();
    latencies.sort();
    assert!(
        latencies[98] < Duration::from_secs(1),
        "p99 after recovery {:?}",
        latencies[98]
    );

    // down/up keeps Grafana's data and Prometheus's samples.
    let before = samples();
    run(p.irisctl().arg("down")).ok();
    run(p.irisctl().arg("up")).ok();
    assert_eq!(
        grafana("GET", "/api/dashboards/uid/hand-made", None, &password).0,
        200,
        "the hand-made dashboard was lost"
    );
    assert!(
        samples() >= before,
        "Prometheus lost samples: {} < {before}",
        samples()
    );

    // Only `down --volumes` deletes data, and it says so.
    let gone = run(p.irisctl().args(["down", "--volumes"]));
    gone.ok();
    assert!(
        gone.stderr.contains(&format!(
            "deleted volume {P}_grafana-data and the data in it"
        )),
        "{}",
        gone.stderr
    );
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={P}")
        ]),
        ""
    );
}
