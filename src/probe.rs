//! HTTP probes of the published endpoints, with deadlines, and Prometheus's view of its targets.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::stack::Probe;

/// A plain HTTP client with short timeouts; no proxy (the endpoints are on this host).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .build()
        .unwrap_or_default()
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub name: String,
    pub url: String,
    pub ok: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub millis: u128,
}

/// One GET; success is a 2xx answer.
pub async fn check(client: &reqwest::Client, name: &str, url: &str) -> ProbeResult {
    let started = Instant::now();
    let (status, error) = match client.get(url).send().await {
        Ok(r) => (Some(r.status().as_u16()), None),
        Err(e) => (None, Some(short_error(&e))),
    };
    ProbeResult {
        name: name.to_string(),
        url: url.to_string(),
        ok: status.is_some_and(|s| (200..300).contains(&s)),
        status,
        error,
        millis: started.elapsed().as_millis(),
    }
}

pub async fn run_all(client: &reqwest::Client, host: &str, probes: &[&Probe]) -> Vec<ProbeResult> {
    futures_util::future::join_all(probes.iter().map(|p| async move {
        match crate::engine::ssh::http_base(host, p.port).await {
            Ok(base) => check(client, &p.name, &format!("{base}{}", p.path)).await,
            Err(e) => ProbeResult {
                name: p.name.clone(),
                url: format!("http://{host}:{}{}", p.port, p.path),
                ok: false,
                status: None,
                error: Some(format!("{e:#}")),
                millis: 0,
            },
        }
    }))
    .await
}

/// Poll until a probe answers 2xx or the deadline passes; returns the last result.
pub async fn until_ok(
    client: &reqwest::Client,
    name: &str,
    url: &str,
    deadline: Instant,
) -> ProbeResult {
    loop {
        let r = check(client, name, url).await;
        if r.ok || Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn short_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg = s.to_string();
            src = s.source();
        }
        msg
    }
}

/// A scrape target as Prometheus reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ScrapeTarget {
    pub job: String,
    pub instance: String,
    pub health: String,
    pub last_error: String,
}

/// Active targets from Prometheus's `/api/v1/targets`.
pub async fn prometheus_targets(
    client: &reqwest::Client,
    base: &str,
) -> Result<Vec<ScrapeTarget>, String> {
    Ok(parse_targets(
        &prometheus_api(client, &format!("{base}/api/v1/targets?state=active")).await?,
    ))
}

/// One GET of Prometheus's HTTP API: its JSON answer, or why there is none.
async fn prometheus_api(client: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let resp = client.get(url).send().await.map_err(|e| short_error(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    resp.json()
        .await
        .map_err(|e| format!("unreadable answer: {e}"))
}

pub fn parse_targets(body: &serde_json::Value) -> Vec<ScrapeTarget> {
    let Some(list) = body
        .pointer("/data/activeTargets")
        .and_then(|v| v.as_array())
    else {
        return Vec::new();
    };
    let text = |t: &serde_json::Value, p: &str| {
        t.pointer(p)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let mut out: Vec<ScrapeTarget> = list
        .iter()
        .map(|t| ScrapeTarget {
            job: text(t, "/labels/job"),
            instance: text(t, "/labels/instance"),
            health: text(t, "/health"),
            last_error: text(t, "/lastError"),
        })
        .collect();
    out.sort_by(|a, b| (&a.job, &a.instance).cmp(&(&b.job, &b.instance)));
    out
}

/// An alert Prometheus holds: pending (its condition holds, not yet for its `for:` duration) or
/// firing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alert {
    pub name: String,
    pub state: String,
    /// The rule's `severity` label; empty when it has none.
    pub severity: String,
    /// When the condition started to hold (Prometheus's `activeAt`, RFC 3339).
    pub since: String,
    /// The rule's `summary` annotation; empty when it has none.
    pub summary: String,
}

/// What the Alertmanager delivered: notifications sent and failed (its own counters,
/// `alertmanager_notifications_total` and `alertmanager_notifications_failed_total`, summed over
/// integrations and reasons).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub sent: u64,
    pub failed: u64,
}

/// The Alertmanager's delivery counters from its `/metrics`.
pub async fn alertmanager_delivery(
    client: &reqwest::Client,
    base: &str,
) -> Result<Delivery, String> {
    let answer = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(|e| short_error(&e))?;
    if !answer.status().is_success() {
        return Err(format!("HTTP {}", answer.status().as_u16()));
    }
    let text = answer.text().await.map_err(|e| short_error(&e))?;
    Ok(parse_delivery(&text))
}

/// The delivery counters of a Prometheus exposition text; a line that does not parse counts 0.
pub fn parse_delivery(text: &str) -> Delivery {
    let mut out = Delivery::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map_or(0, |v| v as u64);
        match name {
            "alertmanager_notifications_total" => out.sent += value,
            "alertmanager_notifications_failed_total" => out.failed += value,
            _ => {}
        }
    }
    out
}

/// Pending and firing alerts from Prometheus's `/api/v1/alerts`.
pub async fn prometheus_alerts(client: &reqwest::Client, base: &str) -> Result<Vec<Alert>, String> {
    Ok(parse_alerts(
        &prometheus_api(client, &format!("{base}/api/v1/alerts")).await?,
    ))
}

/// The alerts of an `/api/v1/alerts` answer: firing first, then by severity (critical, warning,
/// others) and name. Anything missing or of the wrong type reads as empty; an answer without an
/// alert list gives none.
pub fn parse_alerts(body: &serde_json::Value) -> Vec<Alert> {
    let Some(list) = body.pointer("/data/alerts").and_then(|v| v.as_array()) else {
        return Vec::new();
    };
    let text = |a: &serde_json::Value, p: &str| {
        a.pointer(p)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let mut out: Vec<Alert> = list
        .iter()
        .map(|a| Alert {
            name: text(a, "/labels/alertname"),
            state: text(a, "/state"),
            severity: text(a, "/labels/severity"),
            since: text(a, "/activeAt"),
            summary: text(a, "/annotations/summary"),
        })
        .filter(|a| !a.name.is_empty())
        .collect();
    let rank = |a: &Alert| {
        (
            a.state != "firing",
            match a.severity.as_str() {
                "critical" => 0,
                "warning" => 1,
                _ => 2,
            },
        )
    };
    out.sort_by(|a, b| {
        (rank(a), &a.name, &a.since, &a.summary).cmp(&(rank(b), &b.name, &b.since, &b.summary))
    });
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn delivery_counters_are_summed_over_integrations_and_reasons() {
        let text =
            "# HELP alertmanager_notifications_total The total number of attempted notifications.
# TYPE alertmanager_notifications_total counter
alertmanager_notifications_total{integration=\"email\"} 0
alertmanager_notifications_total{integration=\"webhook\"} 7
alertmanager_notifications_failed_total{integration=\"webhook\",reason=\"other\"} 5
alertmanager_notifications_failed_total{integration=\"webhook\",reason=\"clientError\"} 1
alertmanager_notifications_failed_total{integration=\"email\"} NaN
alertmanager_notification_latency_seconds_count{integration=\"webhook\"} 7
";
        assert_eq!(
            super::parse_delivery(text),
            super::Delivery { sent: 7, failed: 6 }
        );
        assert_eq!(
            super::parse_delivery("garbage {{ -1"),
            super::Delivery::default()
        );
    }

    use super::*;

    #[test]
    fn targets_are_parsed_and_sorted() {
        let body = serde_json::json!({"status":"success","data":{"activeTargets":[
            {"labels":{"job":"prometheus","instance":"localhost:9090"},"health":"up","lastError":""},
            {"labels":{"job":"iris-api","instance":"api:8000"},"health":"down","lastError":"connection refused"}
        ]}});
        let t = parse_targets(&body);
        assert_eq!(t[0].job, "iris-api");
        assert_eq!(t[0].health, "down");
        assert_eq!(t[0].last_error, "connection refused");
        assert!(parse_targets(&serde_json::json!({"status":"error"})).is_empty());
    }

    #[test]
    fn alerts_are_parsed_firing_first_then_by_severity() {
        let body = serde_json::json!({"status":"success","data":{"alerts":[
            {"labels":{"alertname":"IrisDrift","severity":"warning"},"annotations":{"summary":"drift"},
             "state":"pending","activeAt":"2026-12-01T03:00:00Z","value":"3e+00"},
            {"labels":{"alertname":"IrisScrapesFailing","severity":"warning"},"annotations":{},
             "state":"firing","activeAt":"2026-12-01T02:00:00Z"},
            {"labels":{"alertname":"IrisApiDown","severity":"critical","instance":"api:8000"},
             "annotations":{"summary":"iris-api target api:8000 is down"},
             "state":"firing","activeAt":"2026-12-01T02:30:00.123Z"},
            {"labels":{"severity":"critical"},"state":"firing"}
        ]}});
        let a = parse_alerts(&body);
        let got: Vec<_> = a
            .iter()
            .map(|a| (a.name.as_str(), a.state.as_str(), a.severity.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("IrisApiDown", "firing", "critical"),
                ("IrisScrapesFailing", "firing", "warning"),
                ("IrisDrift", "pending", "warning"),
            ]
        );
        assert_eq!(a[0].since, "2026-12-01T02:30:00.123Z");
        assert_eq!(a[0].summary, "iris-api target api:8000 is down");
        assert_eq!(a[1].summary, "");
        assert_eq!(
            serde_json::to_value(&a[0]).unwrap(),
            serde_json::json!({"name":"IrisApiDown","state":"firing","severity":"critical",
                "since":"2026-12-01T02:30:00.123Z","summary":"iris-api target api:8000 is down"})
        );
    }

    #[test]
    fn odd_alert_answers_give_no_alerts_and_no_panic() {
        for body in [
            serde_json::json!({"status":"error","error":"x"}),
            serde_json::json!({"data":{"alerts":"none"}}),
            serde_json::json!({"data":{"alerts":[1, null, "x", []]}}),
            serde_json::json!({"data":{"alerts":[{"labels":{"alertname":7},"state":false}]}}),
            serde_json::json!(null),
        ] {
            assert!(parse_alerts(&body).is_empty(), "{body}");
        }
        let a = parse_alerts(&serde_json::json!({"data":{"alerts":[
            {"labels":{"alertname":"X","severity":["odd"]},"state":3,"activeAt":{}}
        ]}}));
        assert_eq!(
            (
                a[0].state.as_str(),
                a[0].severity.as_str(),
                a[0].since.as_str()
            ),
            ("", "", "")
        );
    }

    #[tokio::test]
    async fn refused_connection_is_not_ok() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let r = check(
            &client(Duration::from_secs(2)),
            "x",
            &format!("http://127.0.0.1:{port}/"),
        )
        .await;
        assert!(!r.ok);
        assert_eq!(r.error.as_deref(), Some("connection refused"));
    }
}
