//! Shadow traffic, the pure part: a challenger API answers copies of the live `/predict`
//! requests that no client sees, and a comparator (`stack/api/app/shadow.py`, run from the
//! challenger's image) compares its answers with the champion's, request by request.
//!
//! The edge does the copying: while a shadow runs, irisctl writes three files into the edge's
//! tmpfs (see `stack/edge/nginx.conf`) and reloads it. [`edge_routes`] makes them.

use serde::{Deserialize, Serialize};

/// The challenger's service label and network alias.
pub const CHALLENGER: &str = "api-challenger";
/// The comparator's service label and network alias.
pub const COMPARATOR: &str = "shadow";
/// The label that marks both (`challenger` or `comparator`): `up` neither replaces nor reports
/// them as orphans; `down` removes them.
pub const LABEL: &str = "io.irisctl.shadow";
/// The share of `/predict` requests copied, on the comparator (percent).
pub const SAMPLE_LABEL: &str = "io.irisctl.shadow-sample";
/// The tag of the challenger's image: `<project>-api:challenger`.
pub const TAG: &str = "challenger";
/// The comparator's syslog port (UDP): the edge logs the champion's answers there.
pub const SYSLOG_PORT: u16 = 5140;
/// Where the edge reads its routes (its tmpfs; shared with the canary's).
const DIR: &str = crate::canary::EDGE_ROUTES_DIR;
const FILES: [&str; 3] = [
    "http-shadow.conf",
    "predict-shadow.conf",
    "server-shadow.conf",
];

/// The shell script, run in the edge, that mirrors `sample` percent of `/predict` to the
/// comparator whose address is `comparator_ip` (the champion's answers are logged there over
/// syslog: an address, not a name, so a reload cannot fail on a comparator that is gone) — or,
/// with `None`, stops mirroring. The configuration is tested before nginx reloads.
pub fn edge_routes(on: Option<(u8, &str)>) -> String {
    let Some((sample, comparator_ip)) = on else {
        let files: Vec<String> = FILES.iter().map(|f| format!("{DIR}/{f}")).collect();
        return format!("rm -f {} && kill -HUP 1", files.join(" "));
    };
    let sampled = if sample >= 100 {
        "map $request_id $iris_shadow { default 1; }".to_string()
    } else {
        format!("split_clients \"$request_id\" $iris_shadow {{ {sample}% 1; * \"\"; }}")
    };
    let http = format!(
        "log_format irisshadow escape=none \"$request_id|$status|$upstream_response_time|$upstream_http_x_iris_predictions\";\n{sampled}"
    );
    let predict = format!(
        "mirror /_irisctl/shadow;\naccess_log syslog:server={comparator_ip}:{SYSLOG_PORT},tag=irisshadow,nohostname irisshadow if=$iris_shadow;"
    );
    // Answered by the comparator at once (it queues the copy): a mirror subrequest that took
    // long would hold the client's next request on the same connection.
    let server = format!(
        "location = /_irisctl/shadow {{\n  internal;\n  if ($iris_shadow = \"\") {{ return 204; }}\n  set $iris_shadow_to http://{COMPARATOR}:8000/mirror/predict;\n  proxy_set_header X-Request-Id $request_id;\n  proxy_set_header Content-Type $content_type;\n  proxy_connect_timeout 100ms;\n  proxy_send_timeout 1s;\n  proxy_read_timeout 1s;\n  proxy_next_upstream off;\n  proxy_pass $iris_shadow_to;\n}}"
    );
    let mut script = format!("mkdir -p {DIR}");
    for (file, text) in FILES.iter().zip([http, predict, server]) {
        script.push_str(&format!(" && printf '%s\\n' '{text}' > {DIR}/{file}"));
    }
    // A configuration nginx refuses is removed again: the next reload (a canary's) must not
    // fail on it.
    let files: Vec<String> = FILES.iter().map(|f| format!("{DIR}/{f}")).collect();
    script.push_str(&format!(
        " && {{ /usr/sbin/nginx -t -q -e /dev/stderr -c {} || {{ rm -f {}; exit 1; }}; }} && kill -HUP 1",
        crate::stack::edge::EDGE_CONFIG_TARGET,
        files.join(" ")
    ));
    script
}

/// Does this edge configuration (the project's `stack/edge/nginx.conf`) have the hooks a
/// shadow needs?
pub fn edge_has_hooks(config: &str) -> bool {
    config.contains("/tmp/irisctl/predict-") && config.contains("/tmp/irisctl/server-")
}

/// One side's latency, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// Both sides' latencies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    #[serde(default)]
    pub champion: Latency,
    #[serde(default)]
    pub challenger: Latency,
}

/// What the comparator counted (its `/stats`). Every field defaults: an older or broken
/// comparator still reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests both sides answered and that were compared.
    #[serde(default)]
    pub compared: u64,
    /// The share of compared predictions with the same species (0–1); `None` before the first.
    #[serde(default)]
    pub agreement: Option<f64>,
    /// Compared predictions (a request may hold several flowers).
    #[serde(default)]
    pub predictions: u64,
    /// The mean absolute difference of the probabilities.
    #[serde(default)]
    pub mean_abs_difference: Option<f64>,
    /// Copies not sent to the challenger: its queue was full.
    #[serde(default)]
    pub dropped: u64,
    /// Copies the challenger failed (no answer, refused, not 200).
    #[serde(default)]
    pub failed: u64,
    /// Requests whose other half never came.
    #[serde(default)]
    pub unmatched: u64,
    #[serde(default)]
    pub queued: u64,
    /// Champion species → challenger species → count.
    #[serde(default)]
    pub confusion: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    #[serde(default)]
    pub latency: Latencies,
    #[serde(default)]
    pub last_failure: Option<String>,
}

/// The shadow as `status` shows it (JSON: `shadow`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Shadow {
    pub challenger: String,
    /// `running`, or what stops it: `stopped (exited)`, `gone`.
    pub challenger_state: String,
    pub challenger_image: Option<String>,
    pub comparator: String,
    pub comparator_state: String,
    /// Percent of `/predict` requests copied.
    pub sample: Option<u8>,
    /// Does the edge copy `/predict` to the comparator now? (`false`: an edge restarted since,
    /// its copy lost; `irisctl up` writes it again.)
    pub copying: bool,
    /// Why the comparator's counts are missing, if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub stats: Stats,
}

impl Shadow {
    /// `status`'s shadow section.
    pub fn text(&self) -> String {
        let s = &self.stats;
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", v * 100.0));
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        let mut out = format!(
            "\nshadow: challenger {} ({}), {} of /predict copied\n",
            self.challenger,
            self.challenger_state,
            self.sample.map_or("?".into(), |s| format!("{s} %"))
        );
        if !self.copying {
            out.push_str("  the edge copies nothing to the comparator (restarted since?): `irisctl up` writes the copy again\n");
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("  comparator {}: {e}\n", self.comparator_state));
            return out;
        }
        out.push_str(&format!(
            "  compared {}, agreement {}, mean |Δp| {}, dropped {}, failed {}, unmatched {}\n",
            s.compared,
            pct(s.agreement),
            s.mean_abs_difference
                .map_or("-".to_string(), |v| format!("{v:.3}")),
            s.dropped,
            s.failed,
            s.unmatched
        ));
        out.push_str(&format!(
            "  latency p50/p95: champion {} / {}, challenger {} / {}\n",
            ms(s.latency.champion.p50_ms),
            ms(s.latency.champion.p95_ms),
            ms(s.latency.challenger.p50_ms),
            ms(s.latency.challenger.p95_ms)
        ));
        for (champion, row) in &s.confusion {
            let cells: Vec<String> = row.iter().map(|(c, n)| format!("{c} {n}")).collect();
            out.push_str(&format!(
                "  champion {champion} → challenger {}\n",
                cells.join(", ")
            ));
        }
        if s.compared == 0 && s.unmatched > 0 {
            out.push_str("  nothing compared, every request unmatched: does the champion send X-Iris-Predictions? (an API from before shadow traffic does not: `irisctl shadow promote` releases one that does)\n");
        }
        if let Some(f) = &s.last_failure {
            out.push_str(&format!("  last failure on the challenger: {f}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_mirror_the_sample_and_log_to_the_comparator_address() {
        let on = edge_routes(Some((25, "172.18.0.9")));
        assert!(on.contains("split_clients \"$request_id\" $iris_shadow { 25% 1; * \"\"; }"));
        assert!(on.contains("syslog:server=172.18.0.9:5140"), "{on}");
        assert!(on.contains("mirror /_irisctl/shadow;"));
        assert!(on.contains("http://shadow:8000/mirror/predict"));
        // Tested before the reload: a bad file never reaches the serving workers, and is
        // removed (a later reload, a canary's, must not fail on it).
        assert!(
            on.ends_with("nginx -t -q -e /dev/stderr -c /etc/irisctl-edge/nginx.conf || { rm -f /tmp/irisctl/http-shadow.conf /tmp/irisctl/predict-shadow.conf /tmp/irisctl/server-shadow.conf; exit 1; }; } && kill -HUP 1"),
            "{on}"
        );
        // Written through single-quoted printf arguments: the configuration has no quote.
        let written: Vec<&str> = on
            .split(" && ")
            .filter(|p| p.starts_with("printf"))
            .collect();
        assert_eq!(written.len(), 3);
        for w in written {
            assert_eq!(w.matches('\'').count(), 4, "{w}");
        }
        let all = edge_routes(Some((100, "10.0.0.2")));
        assert!(all.contains("map $request_id $iris_shadow { default 1; }"));
        let off = edge_routes(None);
        assert_eq!(
            off,
            "rm -f /tmp/irisctl/http-shadow.conf /tmp/irisctl/predict-shadow.conf /tmp/irisctl/server-shadow.conf && kill -HUP 1"
        );
    }

    #[test]
    fn the_projects_edge_configuration_has_the_hooks() {
        let config = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stack/edge/nginx.conf"),
        )
        .unwrap();
        assert!(edge_has_hooks(&config));
        assert!(!edge_has_hooks("http { server { listen 8000; } }"));
    }

    #[test]
    fn stats_read_from_the_comparator_and_partial_answers_still_read() {
        let full: Stats = serde_json::from_str(
            r#"{"compared": 300, "agreement": 0.6667, "predictions": 300, "mean_abs_difference": 0.2,
                "dropped": 4, "failed": 1, "unmatched": 0, "queued": 2,
                "confusion": {"setosa": {"virginica": 100}},
                "latency": {"champion": {"p50_ms": 1.2, "p95_ms": 3.4}, "challenger": {"p50_ms": 2000.0, "p95_ms": null}},
                "last_failure": null, "challenger": "http://api-challenger:8000"}"#,
        )
        .unwrap();
        assert_eq!(full.compared, 300);
        assert_eq!(full.confusion["setosa"]["virginica"], 100);
        assert_eq!(full.latency.challenger.p95_ms, None);
        let partial: Stats = serde_json::from_str(r#"{"compared": 3}"#).unwrap();
        assert_eq!(partial.agreement, None);
        let shadow = Shadow {
            challenger: "iris-api-challenger-1".into(),
            challenger_state: "running".into(),
            sample: Some(100),
            copying: true,
            stats: full,
            ..Default::default()
        };
        let text = shadow.text();
        assert!(text.contains("compared 300, agreement 66.7 %"), "{text}");
        assert!(
            text.contains("champion setosa → challenger virginica 100"),
            "{text}"
        );
        let json = serde_json::to_value(&shadow).unwrap();
        assert_eq!(json["compared"], 300);
        assert_eq!(json["agreement"], 0.6667);
        assert_eq!(json["dropped"], 4);
    }
}
