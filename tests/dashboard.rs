//! The dashboard tells the truth: after a scripted mix of traffic through the UI's proxy, every
//! panel query of every dashboard, evaluated by the stack's real Prometheus, gives the expected,
//! non-empty answer.

mod common;

use std::collections::BTreeMap;

use common::{eventually, http, run, Project};
use serde_json::Value;

const PORTS: [u16; 4] = [21700, 21701, 21702, 21703];

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Evaluate an instant query; (labels, value) per series.
fn query(expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let url = format!(
        "http://127.0.0.1:{}/api/v1/query?query={}",
        PORTS[2],
        encode(expr)
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
    round();
    seen(3.0, 2.0, 4.0);
    round();
    seen(6.0, 4.0, 8.0);

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            p.path()
                .join("monitoring/dashboards/grafana-fastapi-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("");
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
                ("Latency of other handlers (p95 by handler)", _) => assert!(
                    by("handler", "/predict").is_none()
                        && result.iter().all(|(_, v)| v.is_nan() || *v > 0.0),
                    "{title}: {result:?}"
                ),
                ("Model accuracy", _) => assert!(single >= 0.9, "{title}: {result:?}"),
                ("Model age", _) => assert!(single >= 0.0, "{title}: {result:?}"),
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
                (other, _) => panic!("panel {other:?} has no expectation in this test: add one"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} queries checked");
}
