//! Canary releases, the pure part: the PromQL that measures the stable and the canary API
//! containers over one window, the gates that judge the canary against the stable one, and the
//! edge's routing files. The I/O (the canary container, the edge, Prometheus) is in
//! `backend::docker::canary`.
//!
//! Prometheus scrapes the two apart: job `iris-api` (the `api` name, label `track="stable"`)
//! and job `iris-api-canary` (the `api-canary` name, which only a canary answers to, label
//! `track="canary"`); see monitoring/prometheus.yml.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::settings::Canary;

/// While held, a Ctrl-C does not end the run: the canary that holds it hears the signal
/// itself and aborts first (see `main`'s `interrupted`).
static SHIELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Holds Ctrl-C off while alive.
pub struct Shield(());

impl Shield {
    pub fn hold() -> Shield {
        SHIELD.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Shield(())
    }
}

impl Drop for Shield {
    fn drop(&mut self) {
        SHIELD.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Whether a [`Shield`] is held.
pub fn shielded() -> bool {
    SHIELD.load(std::sync::atomic::Ordering::SeqCst) > 0
}

/// The two tracks, as the `track` label names them.
pub const STABLE: &str = "stable";
pub const CANARY: &str = "canary";

/// The queries of one evaluation, by name, over the last `window_secs` seconds. Each answers
/// a vector by `track` (the species one by `track` and `species`). `canary` is the canary's
/// scrape target (`ip:8000`): the canary job may still hold an earlier canary's last samples.
pub fn queries(window_secs: u64, canary: &str) -> Vec<(&'static str, String)> {
    let w = format!("{window_secs}s");
    let canary = regex_quote(canary);
    let jobs = format!(r#"job=~"iris-api|iris-api-canary",instance=~"api:8000|{canary}""#);
    let jobs = jobs.as_str();
    let predict = format!(r#"{jobs},handler="/predict""#);
    vec![
        (
            "requests",
            format!("sum by (track) (increase(iris_http_requests_total{{{predict}}}[{w}]))"),
        ),
        (
            "errors",
            format!(
                r#"sum by (track) (increase(iris_http_requests_total{{{predict},status="5xx"}}[{w}]))"#
            ),
        ),
        (
            "p95",
            format!(
                "histogram_quantile(0.95, sum by (track, le) (increase(iris_http_request_duration_seconds_bucket{{{predict}}}[{w}])))"
            ),
        ),
        (
            "predicted",
            format!("sum by (track) (increase(iris_prediction_confidence_count{{{jobs}}}[{w}]))"),
        ),
        (
            "low_confidence",
            format!(
                r#"sum by (track) (increase(iris_prediction_confidence_bucket{{{jobs},le="0.6"}}[{w}]))"#
            ),
        ),
        (
            "species",
            format!("sum by (track, species) (increase(iris_predictions_total{{{jobs}}}[{w}]))"),
        ),
    ]
}

/// `s` as a PromQL regular expression that matches only itself (dots of an address escaped;
/// the backslash doubled for the string literal).
fn regex_quote(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']' | '-'))
        .map(|c| match c {
            '.' => "\\\\.".to_string(),
            '[' => "\\\\[".to_string(),
            ']' => "\\\\]".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// What one track did over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Side {
    /// `/predict` requests answered.
    pub requests: f64,
    /// Of which with a 5xx status.
    pub errors: f64,
    /// `/predict` p95 latency, seconds (`None`: no requests).
    pub p95: Option<f64>,
    /// Flowers predicted, and of which with a top probability below 0.6.
    pub predicted: f64,
    pub low_confidence: f64,
    /// Flowers predicted, by species.
    pub species: BTreeMap<String, f64>,
}

/// One sample of a Prometheus vector: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// The samples of a Prometheus `/api/v1/query` answer (`NaN` values are dropped).
pub fn parse_vector(body: &serde_json::Value) -> Vec<Sample> {
    body.pointer("/data/result")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let labels = s
                .get("metric")
                .and_then(|m| m.as_object())
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let value: f64 = s.pointer("/value/1")?.as_str()?.parse().ok()?;
            value.is_finite().then_some((labels, value))
        })
        .collect()
}

/// The stable and the canary side from the answers to [`queries`], by query name.
pub fn sides(answers: &BTreeMap<&str, Vec<Sample>>) -> (Side, Side) {
    let mut stable = Side::default();
    let mut canary = Side::default();
    for (name, samples) in answers {
        for (labels, value) in samples {
            let side = match labels.get("track").map(String::as_str) {
                Some(STABLE) => &mut stable,
                Some(CANARY) => &mut canary,
                _ => continue,
            };
            match *name {
                "requests" => side.requests += value,
                "errors" => side.errors += value,
                "p95" => side.p95 = Some(*value),
                "predicted" => side.predicted += value,
                "low_confidence" => side.low_confidence += value,
                "species" => {
                    if let Some(s) = labels.get("species") {
                        *side.species.entry(s.clone()).or_default() += value;
                    }
                }
                _ => {}
            }
        }
    }
    (stable, canary)
}

/// How a gate's values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// A share, shown in percent.
    Share,
    /// Seconds, shown in milliseconds.
    Seconds,
    /// A distance from 0 to 1.
    Distance,
    /// A user-defined gate's number.
    Number,
}

/// One gate's reading: the canary's value, the stable one's, and what it may be. A gate with a
/// `stable` value passes while `canary - stable <= limit`; the distance gate (no `stable`:
/// it compares the two distributions) while `canary <= limit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate {
    pub name: String,
    pub canary: f64,
    pub stable: Option<f64>,
    pub limit: f64,
    pub unit: Unit,
    pub passed: bool,
}

impl Gate {
    fn new(name: &str, canary: f64, stable: Option<f64>, limit: f64, unit: Unit) -> Gate {
        let excess = canary - stable.unwrap_or(0.0);
        // A hair of tolerance: float sums of equal counts are not always equal.
        let passed = excess <= limit + 1e-9;
        Gate {
            name: name.to_string(),
            canary,
            stable,
            limit,
            unit,
            passed,
        }
    }

    fn shown(&self, v: f64) -> String {
        match self.unit {
            Unit::Share => format!("{:.1} %", v * 100.0),
            Unit::Seconds => format!("{:.0} ms", v * 1000.0),
            Unit::Distance => format!("{v:.2}"),
            Unit::Number => format!("{v:.4}"),
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stable {
            Some(stable) => {
                let limit = match self.unit {
                    Unit::Share => format!("+{:.1} points", self.limit * 100.0),
                    _ => format!("+{}", self.shown(self.limit)),
                };
                write!(
                    f,
                    "{}: canary {}, stable {} (allowed: stable {limit})",
                    self.name,
                    self.shown(self.canary),
                    self.shown(stable)
                )
            }
            None => write!(
                f,
                "{}: {} between canary and stable (allowed: at most {})",
                self.name,
                self.shown(self.canary),
                self.shown(self.limit)
            ),
        }
    }
}

/// A judgement of the canary over one window.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Too few requests to judge (the canary's, or the stable one's to compare with), or a
    /// user-defined gate without a reading yet: why.
    Wait(String),
    /// Every gate passed.
    Pass(Vec<Gate>),
    /// A gate failed (the first that did), with every reading.
    Fail(Gate, Vec<Gate>),
}

fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

/// Total variation distance between two distributions given as counts: half the sum of the
/// absolute differences of the shares (0: the same, 1: disjoint).
pub fn distance(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> f64 {
    let (ta, tb) = (a.values().sum::<f64>(), b.values().sum::<f64>());
    if ta <= 0.0 || tb <= 0.0 {
        return 0.0;
    }
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.iter()
        .map(|k| {
            (a.get(*k).copied().unwrap_or(0.0) / ta - b.get(*k).copied().unwrap_or(0.0) / tb).abs()
        })
        .sum::<f64>()
        / 2.0
}

/// A user-defined gate's values over the window (`None`: its query read nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub stable: Option<f64>,
    pub canary: Option<f64>,
}

/// Judge the canary against the stable container over the same window: 5xx ratio, `/predict`
/// p95, share of low-confidence predictions, distance between the distributions of predicted
/// species, then the user-defined gates (`readings`, in the order of `config.gates`). Both
/// must have answered `min_requests` first.
pub fn judge(config: &Canary, stable: &Side, canary: &Side, readings: &[Reading]) -> Verdict {
    let needed = config.min_requests;
    if canary.requests < f64::from(needed) || stable.requests < f64::from(needed) {
        return Verdict::Wait(format!(
            "waiting for requests: canary {:.0}, stable {:.0} of {needed}",
            canary.requests, stable.requests
        ));
    }
    let mut gates = vec![
        Gate::new(
            "5xx ratio",
            share(canary.errors, canary.requests),
            Some(share(stable.errors, stable.requests)),
            config.max_5xx_increase,
            Unit::Share,
        ),
        Gate::new(
            "/predict p95",
            canary.p95.unwrap_or(0.0),
            Some(stable.p95.unwrap_or(0.0)),
            config.max_p95_increase.as_secs_f64(),
            Unit::Seconds,
        ),
    ];
    // The model gates need answered predictions on both sides (a canary that only fails has
    // none, and its 5xx gate speaks).
    if canary.predicted > 0.0 && stable.predicted > 0.0 {
        gates.push(Gate::new(
            "low-confidence share",
            share(canary.low_confidence, canary.predicted),
            Some(share(stable.low_confidence, stable.predicted)),
            config.max_low_confidence_increase,
            Unit::Share,
        ));
        gates.push(Gate::new(
            "species distribution",
            distance(&canary.species, &stable.species),
            None,
            config.max_species_distance,
            Unit::Distance,
        ));
    }
    for (gate, reading) in config.gates.iter().zip(readings) {
        match (reading.canary, reading.stable) {
            (Some(c), Some(s)) => gates.push(Gate::new(
                &gate.name,
                c,
                Some(s),
                gate.max_increase,
                Unit::Number,
            )),
            _ => {
                if let Some(failed) = gates.iter().find(|g| !g.passed) {
                    return Verdict::Fail(failed.clone(), gates);
                }
                return Verdict::Wait(format!("waiting for a reading of gate `{}`", gate.name));
            }
        }
    }
    match gates.iter().find(|g| !g.passed) {
        Some(failed) => Verdict::Fail(failed.clone(), gates),
        None => Verdict::Pass(gates),
    }
}

/// The queries of the user-defined gates over the last `window_secs` seconds: for each gate,
/// its query for the stable track, then for the canary.
pub fn user_queries(config: &Canary, window_secs: u64) -> Vec<[String; 2]> {
    let fill = |q: &str, track: &str| {
        q.replace("$track", track)
            .replace("$window", &format!("{window_secs}s"))
    };
    config
        .gates
        .iter()
        .map(|g| [fill(&g.query, STABLE), fill(&g.query, CANARY)])
        .collect()
}

/// The one number a query answered: a scalar, or the first sample of a vector.
pub fn single_value(body: &serde_json::Value) -> Option<f64> {
    let result = body.pointer("/data/result")?;
    let value = if body.pointer("/data/resultType").and_then(|t| t.as_str()) == Some("scalar") {
        result.get(1)?
    } else {
        result.get(0)?.pointer("/value/1")?
    };
    value.as_str()?.parse().ok().filter(|v: &f64| v.is_finite())
}

/// Where the edge reads its routing while a canary runs (its tmpfs; see stack/edge/nginx.conf).
pub const EDGE_ROUTES_DIR: &str = "/tmp/irisctl";

/// The shell command (run in the edge, as its user) that sends `weight` percent of the API's
/// requests to the canary — a client that names itself (`X-Iris-Client`, cookie `iris_client`)
/// always to the same side — or, with `None`, every request to the stable container again;
/// then reloads nginx (new workers take the split; old ones finish what they hold).
pub fn edge_routes(weight: Option<u8>) -> String {
    let dir = EDGE_ROUTES_DIR;
    match weight {
        Some(w) => format!(
            "mkdir -p {dir} && \
             printf '%s\\n' 'split_clients \"$iris_client\" $iris_track {{ {w}% {CANARY}; * {STABLE}; }}' > {dir}/http-canary.conf && \
             printf '%s\\n' 'if ($iris_track = {CANARY}) {{ set $upstream http://api-canary:8000; }}' > {dir}/api-canary.conf && \
             kill -HUP 1"
        ),
        None => format!("rm -f {dir}/http-canary.conf {dir}/api-canary.conf && kill -HUP 1"),
    }
}

/// `10 → 50 → 100`.
pub fn shown_steps(steps: &[u8]) -> String {
    steps
        .iter()
        .map(u8::to_string)
        .chain(std::iter::once("100".to_string()))
        .collect::<Vec<_>>()
        .join(" → ")
}

/// What a dry run says of a canary release: its steps and gates.
pub fn shown_plan(config: &Canary) -> String {
    let user: String = config
        .gates
        .iter()
        .map(|g| format!(", {} +{}", g.name, g.max_increase))
        .collect();
    format!(
        "steps {} ({}s each), gates: 5xx ratio +{} points, /predict p95 +{} ms, low-confidence share +{} points, species distance ≤ {}{user} (after {} requests each)",
        shown_steps(&config.steps),
        config.step_duration.as_secs(),
        config.max_5xx_increase * 100.0,
        config.max_p95_increase.as_millis(),
        config.max_low_confidence_increase * 100.0,
        config.max_species_distance,
        config.min_requests
    )
}

/// A canary in progress, as `status` shows it (`.irisctl/canary.json`, written at each
/// evaluation by the `up` that runs it).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Progress {
    /// The canary container and the stable one.
    pub canary: String,
    pub stable: String,
    /// 1-based step, of `steps`; the canary's share now, percent.
    pub step: usize,
    pub steps: usize,
    pub weight: u8,
    /// `waiting` (too few requests), `passing`, `promoting`, `aborting`.
    pub state: String,
    /// Each gate's reading, as text (`5xx ratio: canary 0.0 %, stable 0.0 % (…)`).
    pub gates: Vec<String>,
    /// Unix time of the reading.
    pub at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Canary {
        crate::settings::Release::default().canary
    }

    fn side(requests: f64, errors: f64, p95: f64, species: [f64; 3]) -> Side {
        let predicted: f64 = species.iter().sum();
        Side {
            requests,
            errors,
            p95: Some(p95),
            predicted,
            low_confidence: predicted * 0.05,
            species: ["setosa", "versicolor", "virginica"]
                .iter()
                .zip(species)
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    #[test]
    fn a_canary_like_the_stable_one_passes_every_gate() {
        let stable = side(300.0, 0.0, 0.012, [100.0, 100.0, 100.0]);
        let canary = side(30.0, 0.0, 0.014, [9.0, 11.0, 10.0]);
        let Verdict::Pass(gates) = judge(&config(), &stable, &canary, &[]) else {
            panic!("{:?}", judge(&config(), &stable, &canary, &[]));
        };
        assert_eq!(gates.len(), 4);
        assert!(gates.iter().all(|g| g.passed));
    }

    #[test]
    fn too_few_requests_on_either_side_wait_instead_of_passing() {
        let stable = side(300.0, 0.0, 0.012, [100.0, 100.0, 100.0]);
        let canary = side(19.0, 19.0, 5.0, [0.0, 0.0, 0.0]);
        assert_eq!(
            judge(&config(), &stable, &canary, &[]),
            Verdict::Wait("waiting for requests: canary 19, stable 300 of 20".into())
        );
        let quiet_stable = side(3.0, 0.0, 0.012, [1.0, 1.0, 1.0]);
        let busy_canary = side(30.0, 0.0, 0.012, [10.0, 10.0, 10.0]);
        assert!(matches!(
            judge(&config(), &quiet_stable, &busy_canary, &[]),
            Verdict::Wait(_)
        ));
    }

    #[test]
    fn a_canary_failing_30_percent_fails_the_5xx_gate_with_both_values() {
        let stable = side(300.0, 0.0, 0.012, [100.0, 100.0, 100.0]);
        let canary = side(30.0, 9.0, 0.012, [7.0, 7.0, 7.0]);
        let Verdict::Fail(gate, _) = judge(&config(), &stable, &canary, &[]) else {
            panic!()
        };
        assert_eq!(gate.name, "5xx ratio");
        assert_eq!(
            gate.to_string(),
            "5xx ratio: canary 30.0 %, stable 0.0 % (allowed: stable +2.0 points)"
        );
    }

    #[test]
    fn a_canary_300_ms_slower_fails_the_latency_gate() {
        let stable = side(300.0, 0.0, 0.01, [100.0, 100.0, 100.0]);
        let canary = side(30.0, 0.0, 0.31, [10.0, 10.0, 10.0]);
        let Verdict::Fail(gate, _) = judge(&config(), &stable, &canary, &[]) else {
            panic!()
        };
        assert_eq!(gate.name, "/predict p95");
        assert_eq!(
            gate.to_string(),
            "/predict p95: canary 310 ms, stable 10 ms (allowed: stable +100 ms)"
        );
    }

    #[test]
    fn a_canary_that_answers_one_species_fails_the_distribution_gate() {
        let stable = side(300.0, 0.0, 0.012, [100.0, 100.0, 100.0]);
        let canary = side(30.0, 0.0, 0.012, [0.0, 0.0, 30.0]);
        let Verdict::Fail(gate, _) = judge(&config(), &stable, &canary, &[]) else {
            panic!()
        };
        assert_eq!(gate.name, "species distribution");
        assert!((gate.canary - 2.0 / 3.0).abs() < 1e-9, "{gate:?}");
        assert_eq!(
            gate.to_string(),
            "species distribution: 0.67 between canary and stable (allowed: at most 0.30)"
        );
    }

    #[test]
    fn a_less_confident_canary_fails_the_confidence_gate() {
        let stable = side(300.0, 0.0, 0.012, [100.0, 100.0, 100.0]);
        let mut canary = side(30.0, 0.0, 0.012, [10.0, 10.0, 10.0]);
        canary.low_confidence = 15.0;
        let Verdict::Fail(gate, _) = judge(&config(), &stable, &canary, &[]) else {
            panic!()
        };
        assert_eq!(gate.name, "low-confidence share");
    }

    #[test]
    fn user_gates_read_both_tracks_wait_for_a_reading_and_fail_on_their_increase() {
        let mut config = config();
        config.gates.push(crate::settings::UserGate {
            name: "p99".into(),
            query:
                r#"histogram_quantile(0.99, sum by (le) (rate(x_bucket{track="$track"}[$window])))"#
                    .into(),
            max_increase: 0.05,
        });
        let queries = user_queries(&config, 12);
        assert_eq!(
            queries[0],
            [
                r#"histogram_quantile(0.99, sum by (le) (rate(x_bucket{track="stable"}[12s])))"#
                    .to_string(),
                r#"histogram_quantile(0.99, sum by (le) (rate(x_bucket{track="canary"}[12s])))"#
                    .to_string()
            ]
        );
        let stable = side(300.0, 0.0, 0.012, [100.0, 100.0, 100.0]);
        let canary = side(30.0, 0.0, 0.012, [10.0, 10.0, 10.0]);
        let read = |s: Option<f64>, c: Option<f64>| Reading {
            stable: s,
            canary: c,
        };
        assert_eq!(
            judge(&config, &stable, &canary, &[read(Some(0.1), None)]),
            Verdict::Wait("waiting for a reading of gate `p99`".into())
        );
        assert!(matches!(
            judge(&config, &stable, &canary, &[read(Some(0.1), Some(0.14))]),
            Verdict::Pass(g) if g.len() == 5
        ));
        let Verdict::Fail(gate, _) =
            judge(&config, &stable, &canary, &[read(Some(0.1), Some(0.2))])
        else {
            panic!()
        };
        assert_eq!(
            gate.to_string(),
            "p99: canary 0.2000, stable 0.1000 (allowed: stable +0.0500)"
        );
    }

    #[test]
    fn a_single_value_is_read_from_a_scalar_or_a_vector() {
        let scalar: serde_json::Value =
            serde_json::from_str(r#"{"data":{"resultType":"scalar","result":[1,"0.25"]}}"#)
                .unwrap();
        assert_eq!(single_value(&scalar), Some(0.25));
        let vector: serde_json::Value = serde_json::from_str(
            r#"{"data":{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}}"#,
        )
        .unwrap();
        assert_eq!(single_value(&vector), Some(3.0));
        let empty: serde_json::Value =
            serde_json::from_str(r#"{"data":{"resultType":"vector","result":[]}}"#).unwrap();
        assert_eq!(single_value(&empty), None);
    }

    #[test]
    fn distance_is_zero_for_equal_shares_and_one_for_disjoint_ones() {
        let m = |v: &[(&str, f64)]| -> BTreeMap<String, f64> {
            v.iter().map(|(k, x)| (k.to_string(), *x)).collect()
        };
        assert_eq!(
            distance(&m(&[("a", 1.0), ("b", 1.0)]), &m(&[("a", 5.0), ("b", 5.0)])),
            0.0
        );
        assert_eq!(distance(&m(&[("a", 3.0)]), &m(&[("b", 2.0)])), 1.0);
        assert_eq!(distance(&m(&[]), &m(&[("b", 2.0)])), 0.0);
    }

    #[test]
    fn sides_are_read_apart_by_track_from_prometheus_answers() {
        let body = |result: &str| -> serde_json::Value {
            serde_json::from_str(&format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":{result}}}}}"#
            ))
            .unwrap()
        };
        let mut answers = BTreeMap::new();
        answers.insert(
            "requests",
            parse_vector(&body(
                r#"[{"metric":{"track":"stable"},"value":[1,"90"]},{"metric":{"track":"canary"},"value":[1,"10.5"]}]"#,
            )),
        );
        answers.insert(
            "p95",
            parse_vector(&body(
                r#"[{"metric":{"track":"stable"},"value":[1,"NaN"]},{"metric":{"track":"canary"},"value":[1,"0.02"]}]"#,
            )),
        );
        answers.insert(
            "species",
            parse_vector(&body(
                r#"[{"metric":{"track":"canary","species":"setosa"},"value":[1,"4"]},{"metric":{"species":"setosa"},"value":[1,"9"]}]"#,
            )),
        );
        let (stable, canary) = sides(&answers);
        assert_eq!(stable.requests, 90.0);
        assert_eq!(canary.requests, 10.5);
        assert_eq!(stable.p95, None, "NaN is no reading");
        assert_eq!(canary.p95, Some(0.02));
        assert_eq!(canary.species["setosa"], 4.0);
        assert!(
            stable.species.is_empty(),
            "a sample without a track is ignored"
        );
    }

    #[test]
    fn every_query_groups_by_track_over_the_window() {
        for (name, q) in queries(15, "172.18.0.5:8000") {
            assert!(q.contains("track"), "{name}: {q}");
            assert!(q.contains("[15s]"), "{name}: {q}");
            assert!(
                q.contains(r#"instance=~"api:8000|172\\.18\\.0\\.5:8000""#),
                "{name}: {q}"
            );
        }
    }

    #[test]
    fn edge_routes_split_by_weight_and_go_back_to_stable() {
        let on = edge_routes(Some(10));
        assert!(on.contains("10% canary; * stable;"), "{on}");
        assert!(on.contains("http://api-canary:8000"), "{on}");
        assert!(on.ends_with("kill -HUP 1"), "{on}");
        let off = edge_routes(None);
        assert!(off.starts_with("rm -f /tmp/irisctl/http-canary.conf /tmp/irisctl/api-canary.conf"));
    }

    #[test]
    fn the_plan_names_steps_and_gates() {
        assert_eq!(shown_steps(&[10, 50]), "10 → 50 → 100");
        let shown = shown_plan(&config());
        assert!(
            shown.starts_with("steps 10 → 50 → 100 (60s each), gates: 5xx ratio +2 points"),
            "{shown}"
        );
    }
}
