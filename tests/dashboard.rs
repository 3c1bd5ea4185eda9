//! The dashboard tells the truth: after a scripted mix of traffic through the UI's proxy, every
//! panel query of every dashboard, evaluated by the stack's real Prometheus, gives the expected,
//! non-empty answer.

mod common;

use std::collections::BTreeMap;

use common::{eventually, http, run, Project};
use serde_json::Value;

const PORTS: [u16; 4] = [21700, 21701, 21702, 21703];

/// Evaluate an instant query; (labels, value) per series.
fn query(expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let url = format!(
        "http://127.0.0.1:{}/api/v1/query?query={}",
        PORTS[2],
        common::url_encode(expr)
    );
    let (code, body) = http("GET", &url, None);
    assert_eq!(code, 200, "{expr}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            let value = s["value"][1]
                .as_str()
                .and_then(|x| x.parse().ok())
                .unwrap_or(f64::NAN);
            (labels, value)
        })
        .collect()
}

/// Evaluate `expr` over the last `secs` seconds at a 5 s step, as a panel's graph does; the
/// values of every series, in time order (NaN where the query gave NaN).
fn query_range(expr: &str, secs: u64) -> Vec<Vec<f64>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let url = format!(
        "http://127.0.0.1:{}/api/v1/query_range?query={}&start={}&end={now}&step=5",
        PORTS[2],
        common::url_encode(expr),
        now - secs
    );
    let (code, body) = http("GET", &url, None);
    assert_eq!(code, 200, "{expr}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    p[1].as_str()
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(f64::NAN)
                })
                .collect()
        })
        .collect()
}

/// The expression of the panel titled `title` whose legend is `legend`, expanded.
fn panel_expr(dashboard: &Value, title: &str, legend: &str) -> String {
    let target = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["title"] == title)
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .find(|t| t["legendFormat"] == legend)
        .unwrap_or_else(|| panic!("no panel {title:?} with legend {legend:?}"));
    expand(target["expr"].as_str().expect("expr"))
}

/// Grafana's macros, as Grafana would expand them for a recent time range, and the dashboard's
/// variables at their defaults (`$feature`: one of its values, as a repeated panel gets it).
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("$job", "iris-api")
        .replace("$instance", ".+")
        .replace("$feature", "petal_length")
}

fn predict(items: &[[f64; 4]]) -> u16 {
    let items: Vec<String> = items
        .iter()
        .map(|m| {
            format!(
                r#"{{"sepal_length":{},"sepal_width":{},"petal_length":{},"petal_width":{}}}"#,
                m[0], m[1], m[2], m[3]
            )
        })
        .collect();
    let body = format!(r#"{{"items":[{}]}}"#, items.join(","));
    http(
        "POST",
        &format!("http://127.0.0.1:{}/api/predict", PORTS[1]),
        Some(&body),
    )
    .0
}

const SETOSA: [f64; 4] = [5.1, 3.5, 1.4, 0.2];
/// Predictions sent right after the start, one flower each.
const BURST: usize = 30;
const VERSICOLOR: [f64; 4] = [6.4, 3.2, 4.5, 1.5];
const VIRGINICA: [f64; 4] = [6.3, 3.3, 6.0, 2.5];

/// One round: 3 single setosa requests, one batch of 2 versicolor, one of 4 virginica, 3 bad bodies.
fn round() {
    for _ in 0..3 {
        assert_eq!(predict(&[SETOSA]), 200);
    }
    assert_eq!(predict(&[VERSICOLOR, VERSICOLOR]), 200);
    assert_eq!(predict(&[VIRGINICA; 4]), 200);
    assert_eq!(predict(&[[5.1, 3.5, 1.4, -1.0]]), 422);
    assert_eq!(predict(&[]), 422);
    let (code, _) = http(
        "POST",
        &format!("http://127.0.0.1:{}/api/predict", PORTS[1]),
        Some(r#"{"items":[{"colour":"blue"}]}"#),
    );
    assert_eq!(code, 422);
}

#[test]
fn every_panel_query_answers_truthfully() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-dashboard", PORTS);
    run(p.irisctl().arg("up")).ok();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            p.path()
                .join("monitoring/dashboards/grafana-fastapi-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();

    // A burst right after a fresh start shows. Before any prediction, Prometheus has scraped the
    // fresh process's /predict latency and input series at 0 (they exist from the start), so the
    // burst is an increase rate() and increase() can see, not the first sample of new series.
    let zero = |expr: &str| query(expr).first().is_some_and(|(_, v)| *v == 0.0);
    assert!(
        eventually(60, || zero(
            r#"sum(iris_http_request_duration_seconds_count{handler="/predict",method="POST"})"#
        ) && zero(r#"sum(iris_input_centimeters_count{feature="petal_length"})"#)),
        "the fresh API has no /predict latency and input series at 0 before its first prediction: {:?} {:?}",
        query(r#"iris_http_request_duration_seconds_count{handler="/predict"}"#),
        query(r#"iris_input_centimeters_count{feature="petal_length"}"#)
    );
    let burst = std::time::Instant::now();
    for _ in 0..BURST {
        assert_eq!(predict(&[SETOSA]), 200);
    }
    let took = burst.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "the burst of {BURST} took {took:?}"
    );
    // A minute later, the dashboard's graphs (the last 90 s) show it.
    std::thread::sleep(std::time::Duration::from_secs(60).saturating_sub(burst.elapsed()));
    for q in ["p50", "p95", "p99"] {
        let expr = panel_expr(&dashboard, "/predict latency (p50 / p95 / p99)", q);
        let graph = query_range(&expr, 90);
        assert!(
            graph
                .iter()
                .flatten()
                .any(|v| v.is_finite() && *v > 0.0 && *v < 1.0),
            "/predict latency {q} shows no point for the burst: {graph:?}"
        );
    }
    let live = panel_expr(
        &dashboard,
        "Input vs training distribution: $feature",
        "live ≤ {{le}} cm",
    );
    let shares = query(&live);
    assert_eq!(
        shares
            .iter()
            .find(|(l, _)| l.get("le").map(String::as_str) == Some("+Inf"))
            .map(|(_, v)| *v),
        Some(1.0),
        "input panel: {shares:?}"
    );
    // Every flower of the burst is in the input panel's window (increase extrapolates a little).
    let inputs =
        query(r#"sum(increase(iris_input_centimeters_count{feature="petal_length"}[5m]))"#);
    assert!(
        inputs
            .first()
            .is_some_and(|(_, v)| (BURST as f64 - 0.5..=BURST as f64 * 1.5).contains(v)),
        "input count increase after a burst of {BURST}: {inputs:?}"
    );

    // Two rounds with a scrape between them (Prometheus has seen the first before the second
    // is sent), so every series has an increase inside the rate window; a fixed sleep was not
    // enough on a loaded machine (a missed scrape left one sample, or two equal ones).
    let counted = |species: &str| {
        query(&format!(
            "sum(iris_predictions_total{{species=\"{species}\"}})"
        ))
        .first()
        .map(|(_, v)| *v)
        .unwrap_or(0.0)
    };
    let seen = |setosa: f64, versicolor: f64, virginica: f64| {
        assert!(
            eventually(40, || counted("setosa") == setosa
                && counted("versicolor") == versicolor
                && counted("virginica") == virginica),
            "Prometheus never saw the predictions sent: setosa {}, versicolor {}, virginica {}",
            counted("setosa"),
            counted("versicolor"),
            counted("virginica")
        );
    };
    let burst = BURST as f64; // all setosa
    round();
    seen(burst + 3.0, 2.0, 4.0);
    round();
    seen(burst + 6.0, 4.0, 8.0);
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("");
        // Answered only while a shadow runs: tests/shadow.rs queries them then.
        if title.starts_with("Shadow:") {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "iris-prometheus",
            "panel {title}"
        );
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(
                target["datasource"]["uid"], "iris-prometheus",
                "panel {title}"
            );
            let expr = expand(target["expr"].as_str().expect("expr"));
            let legend = target["legendFormat"].as_str().unwrap_or("");
            // A rate needs two scrapes of a series; the predictions' series may have had one.
            let mut result = Vec::new();
            assert!(
                eventually(30, || {
                    result = query(&expr);
                    !result.is_empty()
                }),
                "panel {title:?} query {expr:?} returned nothing"
            );
            let by = |label: &str, value: &str| {
                result
                    .iter()
                    .find(|(l, _)| l.get(label).map(String::as_str) == Some(value))
                    .map(|(_, v)| *v)
            };
            let single = result[0].1;
            match (title, legend) {
                ("Request rate", _) => assert!(
                    by("handler", "/predict").is_some_and(|v| v > 0.0),
                    "{title}: {result:?}"
                ),
                ("Error rate", "4xx") => assert!(single > 0.0, "{title} 4xx: {result:?}"),
                ("Error rate", "5xx") => assert_eq!(single, 0.0, "{title} 5xx: {result:?}"),
                ("Error rate", "client left (499)") => {
                    assert_eq!(single, 0.0, "{title} 499: {result:?}")
                }
                ("5xx ratio", _) => assert_eq!(single, 0.0, "{title}: {result:?}"),
                ("API target up", _) => assert_eq!(single, 1.0, "{title}: {result:?}"),
                ("Latency of other handlers (p95 by handler)", _) => {
                    assert!(by("handler", "/predict").is_none(), "{title}: {result:?}");
                    // /health is asked by the engine's health check every few seconds: a real p95.
                    assert!(
                        by("handler", "/health").is_some_and(|v| v > 0.0 && v < 1.0),
                        "{title} /health: {result:?}"
                    );
                    // The other handlers' series exist from the start; one is NaN (0/0) only
                    // when that handler had no request in the window, else a real latency.
                    for (labels, v) in &result {
                        let handler = &labels["handler"];
                        let requests = query(&format!(
                            "sum(increase(iris_http_request_duration_seconds_count{{handler=\"{handler}\"}}[1m]))"
                        ));
                        let asked = requests.first().is_some_and(|(_, n)| *n > 0.0);
                        assert!(
                            if asked {
                                v.is_finite() && *v > 0.0
                            } else {
                                v.is_nan()
                            },
                            "{title} {handler}: p95 {v} with requests {requests:?}"
                        );
                    }
                }
                ("Model accuracy", _) => assert!(single >= 0.9, "{title}: {result:?}"),
                ("Model age", _) => {
                    // The age of the model the API serves, from its own trained_at.
                    let (code, body) = http(
                        "GET",
                        &format!("http://127.0.0.1:{}/api/model", PORTS[1]),
                        None,
                    );
                    assert_eq!(code, 200, "{body}");
                    let model: Value = serde_json::from_str(&body).unwrap();
                    let trained_at = model["trained_at"].as_str().expect("trained_at");
                    let trained =
                        humantime::parse_rfc3339_weak(trained_at.trim_end_matches("+00:00"))
                            .unwrap_or_else(|e| panic!("trained_at {trained_at:?}: {e}"));
                    let age = trained
                        .elapsed()
                        .expect("trained in the past")
                        .as_secs_f64();
                    assert!(
                        single > 0.0 && (single - age).abs() < 30.0,
                        "{title}: {single} s, but the model was trained {age} s ago ({trained_at})"
                    );
                }
                ("Confidence distribution (share of predictions at or below)", _) => {
                    assert_eq!(by("le", "+Inf"), Some(1.0), "{title}: {result:?}")
                }
                ("Low-confidence rate (confidence ≤ 0.6)", _) => {
                    for species in ["setosa", "versicolor", "virginica"] {
                        assert!(
                            by("species", species).is_some_and(|v| (0.0..=1.0).contains(&v)),
                            "{title} {species}: {result:?}"
                        );
                    }
                }
                ("Input drift: live mean vs training mean (training standard deviations)", _) => {
                    for feature in ["sepal_length", "sepal_width", "petal_length", "petal_width"] {
                        assert!(
                            by("feature", feature).is_some_and(f64::is_finite),
                            "{title} {feature}: {result:?}"
                        );
                    }
                }
                ("Input vs training distribution: $feature", "live ≤ {{le}} cm") => {
                    assert_eq!(by("le", "+Inf"), Some(1.0), "{title}: {result:?}")
                }
                ("Input vs training distribution: $feature", "training ≤ {{le}} cm") => assert!(
                    result.len() >= 6 && result.iter().any(|(_, v)| *v == 1.0),
                    "{title}: {result:?}"
                ),
                ("/predict latency (p50 / p95 / p99)", q) => {
                    assert!(
                        single.is_finite() && single > 0.0,
                        "{title} {q}: {result:?}"
                    );
                    if q == "p50" {
                        assert!(
                            single < 0.010,
                            "{title} p50 is not resolved below 10 ms: {single}"
                        );
                    }
                }
                ("Predictions per species", _) => {
                    for species in ["setosa", "versicolor", "virginica"] {
                        assert!(
                            by("species", species).is_some_and(|v| v > 0.0),
                            "{title} {species}: {result:?}"
                        );
                    }
                    // Rates over the same window keep the ratio of what was sent: 6 : 4 : 8.
                    let (s, ve, vi) = (
                        by("species", "setosa").unwrap(),
                        by("species", "versicolor").unwrap(),
                        by("species", "virginica").unwrap(),
                    );
                    assert!(
                        (ve / s - 4.0 / 6.0).abs() < 0.35 && (vi / s - 8.0 / 6.0).abs() < 0.5,
                        "{title}: {result:?}"
                    );
                }
                ("Replicas with a model loaded", _) => {
                    assert_eq!(single, 1.0, "{title}: {result:?}")
                }
                ("Model info", _) => {
                    let labels = &result[0].0;
                    assert!(
                        ["model", "version", "accuracy"]
                            .iter()
                            .all(|k| labels.get(*k).is_some_and(|v| !v.is_empty())),
                        "{title}: {result:?}"
                    );
                }
                // No canary runs here: the stable track alone (tests/canary.rs has both).
                (t, _) if t.starts_with("Canary vs stable") => {
                    assert!(
                        result
                            .iter()
                            .all(|(l, _)| l.get("track").map(String::as_str) == Some("stable")),
                        "{title}: {result:?}"
                    );
                    if t.ends_with("/predict requests") {
                        assert!(single > 0.0, "{title}: {result:?}");
                    }
                    if t.contains("server errors") {
                        assert_eq!(single, 0.0, "{title}: {result:?}");
                    }
                }
                (other, _) => panic!("panel {other:?} has no expectation in this test: add one"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} queries checked");
}
