//! `irisctl status`: the backend's view of each service, live HTTP probes, Prometheus's targets
//! and whether the dashboards are in Grafana.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{short_duration, Ctx};
pub use crate::backend::ServiceStatus;
use crate::backend::{Backend, Target};
use crate::error::Exit;
use crate::output::Format;
#[cfg(test)]
use crate::probe::ProbeResult;
use crate::probe::{self, Alert, ScrapeTarget};
use crate::stack::Stack;

#[derive(Debug, Serialize)]
pub struct Report {
    pub project: String,
    /// The project directory the stack was made from (its objects' label).
    pub managed_from: Option<String>,
    pub services: Vec<ServiceStatus>,
    pub orphans: Vec<String>,
    pub prometheus_targets: Vec<ScrapeTarget>,
    pub prometheus_error: Option<String>,
    /// Pending and firing alerts of the stack's own Prometheus.
    pub alerts: Vec<Alert>,
    pub alerts_error: Option<String>,
    /// With alert delivery on: what the Alertmanager sent and failed to send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_delivery: Option<probe::Delivery>,
    pub grafana_dashboards: Vec<DashboardStatus>,
    pub grafana_error: Option<String>,
    /// A canary release `up` is running: its step, share and gates.
    pub canary: Option<crate::canary::Progress>,
    /// A shadow (`irisctl shadow start`): the challenger, and how its answers compare with the
    /// champion's.
    pub shadow: Option<crate::shadow::Shadow>,
    /// The project is managed from another directory: which object says so. This directory's
    /// settings then judge neither orphans nor Grafana (its credentials are not that stack's).
    #[serde(skip)]
    pub elsewhere: Option<String>,
    /// Swarm: its nodes (state and availability: one down or draining shows here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<crate::backend::NodeStatus>>,
}

/// Whether a dashboard of the project is in Grafana.
#[derive(Debug, Serialize)]
pub struct DashboardStatus {
    pub uid: String,
    pub title: String,
    pub present: bool,
    /// Loaded from a provisioning file (rather than saved through the API).
    pub provisioned: bool,
}

async fn grafana_dashboards(ctx: &Ctx, own_url: String) -> Result<Vec<DashboardStatus>, String> {
    let opts = super::grafana::ProvisionOptions {
        own_url: Some(own_url),
        ..Default::default()
    };
    let client = super::grafana::client(ctx, &opts).map_err(|e| format!("{e:#}"))?;
    let files = crate::grafana::load_dashboards(
        &ctx.settings.project_dir.join("monitoring/dashboards"),
        crate::grafana::DATASOURCE_UID,
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for f in files {
        let found = client
            .dashboard_by_uid(f.uid())
            .await
            .map_err(|e| e.to_string())?;
        out.push(DashboardStatus {
            uid: f.uid().to_string(),
            title: f.title().to_string(),
            present: found.is_some(),
            provisioned: found
                .as_ref()
                .is_some_and(crate::grafana::is_file_provisioned),
        });
    }
    Ok(out)
}

impl Report {
    /// Every service present, running, healthy (or without a check) and answering its probes.
    pub fn healthy(&self) -> bool {
        self.services.iter().all(ServiceStatus::is_healthy)
    }
}

/// The backend's view of every service, with live probes of what each really publishes.
pub async fn collect(ctx: &Ctx, backend: &Backend) -> Result<Report> {
    let stack = backend.form(&Stack::from_settings(&ctx.settings));
    let host = ctx.settings.client_host();
    let observed = backend.observe(&stack, &host).await?;
    let elsewhere = crate::backend::owner::managed_elsewhere_by(
        backend.engine(),
        &stack.project,
        &ctx.settings.project_dir,
    )
    .await?;
    let client = probe::client(Duration::from_secs(2));
    let nodes = observed.nodes.clone();
    let mut services = observed.services;
    for row in &mut services {
        let (Some(port), Some(s)) = (row.probe_port, stack.service(&row.name)) else {
            continue;
        };
        let remapped: Vec<crate::stack::Probe> = s
            .probes
            .iter()
            .map(|pr| crate::stack::Probe { port, ..pr.clone() })
            .collect();
        let probes: Vec<_> = remapped.iter().collect();
        row.probes = probe::run_all(&client, &host, &probes).await;
    }
    let Some((other, what)) = elsewhere else {
        let mut report =
            finish(ctx, stack.project.clone(), services, observed.orphans, true).await?;
        report.managed_from = observed.managed_from;
        report.nodes = nodes;
        if let Backend::Docker(d) = backend {
            report.shadow = d.shadow_status(&stack).await;
        }
        return Ok(report);
    };
    // Another directory's stack: which containers are orphans, and Grafana's password, are in
    // that directory's settings, not in these.
    let mut report = finish(ctx, stack.project, services, Vec::new(), false).await?;
    report.grafana_error = Some(format!(
        "not checked: the stack is managed from `{other}`, whose Grafana credentials this directory does not hold"
    ));
    report.managed_from = Some(other);
    report.elsewhere = Some(what);
    Ok(report)
}

/// Prometheus's targets and Grafana's dashboards, the same for both targets.
async fn finish(
    ctx: &Ctx,
    project: String,
    services: Vec<ServiceStatus>,
    orphans: Vec<String>,
    check_grafana: bool,
) -> Result<Report> {
    let host = ctx.settings.client_host();
    let client = probe::client(Duration::from_secs(2));
    // Only the project's own Prometheus, where it really publishes: never an address the
    // project does not hold (another stack's Prometheus on the default port).
    // A port that cannot be reached (a remote's forward refused) is said in its section.
    let base = |port: u16| {
        let host = host.clone();
        async move {
            crate::engine::ssh::http_base(&host, port)
                .await
                .map_err(|e| format!("{e:#}"))
        }
    };
    let prom = match services
        .iter()
        .find(|s| s.name == "prometheus" && s.state == "running")
        .and_then(|s| s.probe_port)
    {
        Some(port) => Some(base(port).await),
        None => None,
    };
    let (prometheus_targets, prometheus_error, alerts, alerts_error) = match prom {
        None => {
            let e = Some("prometheus is not running".to_string());
            (vec![], e.clone(), vec![], e)
        }
        Some(Err(e)) => (vec![], Some(e.clone()), vec![], Some(e)),
        Some(Ok(url)) => {
            let (targets, alerts) = futures_util::future::join(
                probe::prometheus_targets(&client, &url),
                probe::prometheus_alerts(&client, &url),
            )
            .await;
            let (t, te) = match targets {
                Ok(t) => (t, None),
                Err(e) => (vec![], Some(e)),
            };
            let (a, ae) = match alerts {
                Ok(a) => (a, None),
                Err(e) => (vec![], Some(e)),
            };
            (t, te, a, ae)
        }
    };
    let alert_delivery = match services
        .iter()
        .find(|s| s.name == "alertmanager" && s.state == "running")
        .and_then(|s| s.probe_port)
    {
        Some(port) => match base(port).await {
            Ok(url) => probe::alertmanager_delivery(&client, &url).await.ok(),
            Err(_) => None,
        },
        None => None,
    };
    let grafana_running = services
        .iter()
        .any(|s| s.name == "grafana" && s.state == "running");
    let (grafana_dashboards, grafana_error) = if !check_grafana {
        (vec![], None)
    } else if grafana_running {
        let port = services
            .iter()
            .find(|s| s.name == "grafana")
            .and_then(|s| s.probe_port)
            .unwrap_or(ctx.settings.ports.grafana);
        match base(port).await {
            Ok(url) => match grafana_dashboards(ctx, url).await {
                Ok(d) => (d, None),
                Err(e) => (vec![], Some(e)),
            },
            Err(e) => (vec![], Some(e)),
        }
    } else {
        (vec![], Some("grafana is not running".to_string()))
    };
    Ok(Report {
        project,
        managed_from: None,
        services,
        orphans,
        prometheus_targets,
        prometheus_error,
        alerts,
        alerts_error,
        alert_delivery,
        grafana_dashboards,
        grafana_error,
        canary: crate::backend::docker::running_canary(&ctx.settings.project_dir),
        shadow: None,
        elsewhere: None,
        nodes: None,
    })
}

pub async fn run(ctx: &Ctx, format: Format, target: Target) -> Result<Exit> {
    let backend = Backend::connect(target).await?;
    let report = collect(ctx, &backend).await?;
    match format {
        Format::Json => ctx.printer.data(&serde_json::to_string_pretty(&report)?),
        Format::Table => ctx.printer.data(&render_table(&report)),
    }
    if let (Some(what), Some(other)) = (&report.elsewhere, &report.managed_from) {
        // Not "`irisctl up` repairs it": `up` here is refused for the same reason.
        return Err(crate::backend::owner::managed_elsewhere(
            &report.project,
            other,
            what,
            &ctx.settings.project_dir,
        ));
    }
    if report.healthy() {
        Ok(Exit::Success)
    } else {
        if format == Format::Table {
            let bad: Vec<_> = report
                .services
                .iter()
                .filter(|s| !s.is_healthy())
                .map(|s| format!("`{}` ({}, {})", s.name, s.state, s.health))
                .collect();
            ctx.printer.error(format!(
                "stack `{}` is not healthy: {}",
                report.project,
                bad.join(", ")
            ));
            ctx.printer
                .hint("`irisctl up` repairs it; `irisctl logs SERVICE` shows why a service fails");
        }
        Ok(Exit::Unhealthy)
    }
}

/// The table people read.
/// `node-a ×2, node-b`: how many tasks run on each node.
fn tally(on: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for n in on {
        match counts.iter_mut().find(|(name, _)| name == n) {
            Some((_, c)) => *c += 1,
            None => counts.push((n, 1)),
        }
    }
    counts
        .iter()
        .map(|(n, c)| {
            if *c > 1 {
                format!("{n} ×{c}")
            } else {
                n.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn render_table(r: &Report) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        "SERVICE", "STATE", "HEALTH", "IMAGE", "URL", "UPTIME", "PROBES",
    ]);
    for s in &r.services {
        let probes = if s.probes.is_empty() {
            "-".to_string()
        } else {
            s.probes
                .iter()
                .map(|p| match (p.ok, p.status, &p.error) {
                    (true, Some(code), _) => format!("{} {code}", p.name),
                    (false, Some(code), _) => format!("{} FAIL {code}", p.name),
                    (_, None, Some(e)) => format!("{} FAIL {e}", p.name),
                    _ => format!("{} FAIL", p.name),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        b.push_record([
            s.name.clone(),
            match (&s.replicas, &s.nodes) {
                (Some(r), Some(on)) if !on.is_empty() => {
                    format!("{} {r} on {}", s.state, tally(on))
                }
                (Some(r), _) => format!("{} {r}", s.state),
                (None, _) => s.state.clone(),
            },
            s.health.clone(),
            s.image.clone().unwrap_or_else(|| "-".into()),
            s.url.clone().unwrap_or_else(|| "-".into()),
            s.uptime_seconds
                .map(short_duration)
                .unwrap_or_else(|| "-".into()),
            probes,
        ]);
    }
    let mut t = b.build();
    t.with(tabled::settings::Style::blank());
    let mut out = match &r.managed_from {
        Some(dir) => format!("project {} (managed from {dir})\n{t}\n", r.project),
        None => format!("project {}\n{t}\n", r.project),
    };
    if let Some(c) = &r.canary {
        out.push_str(&format!(
            "\ncanary {} (stable {}): step {}/{} at {} %, {}\n",
            c.canary, c.stable, c.step, c.steps, c.weight, c.state
        ));
        for g in &c.gates {
            out.push_str(&format!("  {g}\n"));
        }
    }
    if let Some(shadow) = &r.shadow {
        out.push_str(&shadow.text());
    }
    if let Some(nodes) = &r.nodes {
        out.push_str("\nswarm nodes\n");
        for n in nodes {
            let warn = if n.state != "ready" {
                "  (down: its tasks move to the other nodes)"
            } else if n.availability == "drain" {
                "  (draining: its tasks move to the other nodes)"
            } else if n.availability == "pause" {
                "  (paused: no new tasks)"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {:<20} {:<8} {:<8} {}{warn}\n",
                n.hostname, n.role, n.state, n.availability
            ));
        }
    }
    out.push_str("\nprometheus targets\n");
    if let Some(e) = &r.prometheus_error {
        out.push_str(&format!("  unavailable: {e}\n"));
    } else if r.prometheus_targets.is_empty() {
        out.push_str("  none\n");
    }
    for t in &r.prometheus_targets {
        let err = if t.last_error.is_empty() {
            String::new()
        } else {
            format!(" ({})", t.last_error)
        };
        out.push_str(&format!(
            "  {:<15} {:<22} {}{err}\n",
            t.job, t.instance, t.health
        ));
    }
    out.push_str("\nprometheus alerts\n");
    if let Some(e) = &r.alerts_error {
        out.push_str(&format!("  unavailable: {e}\n"));
    } else if r.alerts.is_empty() {
        out.push_str("  none pending or firing\n");
    }
    for a in &r.alerts {
        let severity = if a.severity.is_empty() {
            "-"
        } else {
            &a.severity
        };
        let summary = if a.summary.is_empty() {
            String::new()
        } else {
            format!(" {}", a.summary)
        };
        out.push_str(&format!(
            "  {:<8} {:<24} {:<9} since {}{summary}\n",
            a.state.to_uppercase(),
            a.name,
            severity,
            a.since
        ));
    }
    if let Some(d) = &r.alert_delivery {
        out.push_str(&format!(
            "\nalert delivery\n  {} notification(s) sent, {} failed{}\n",
            d.sent,
            d.failed,
            if d.failed > 0 {
                " (`irisctl logs alertmanager` says why: an unreachable webhook URL?)"
            } else {
                ""
            }
        ));
    }
    out.push_str("\ngrafana dashboards\n");
    if let Some(e) = &r.grafana_error {
        out.push_str(&format!("  unavailable: {e}\n"));
    }
    for d in &r.grafana_dashboards {
        let state = match (d.present, d.provisioned) {
            (false, _) => "missing (`irisctl grafana provision` imports it)",
            (true, true) => "present (file-provisioned)",
            (true, false) => "present",
        };
        out.push_str(&format!("  {:<12} {:<22} {state}\n", d.uid, d.title));
    }
    out.push_str(&crate::backend::releases_section(&r.services));
    for o in &r.orphans {
        out.push_str(&format!(
            "\norphan container {o} (remove with `irisctl up --remove-orphans`)\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_of_the_status_table() {
        let probe = |name: &str, ok: bool, status: Option<u16>, error: Option<&str>| ProbeResult {
            name: name.into(),
            url: String::new(),
            ok,
            status,
            error: error.map(str::to_string),
            millis: 1,
        };
        let svc = |name: &str, state: &str, health: &str, probes: Vec<ProbeResult>| ServiceStatus {
            name: name.into(),
            container: Some(format!("iris-{name}-1")),
            state: state.into(),
            health: health.into(),
            image: Some(format!("iris-{name}:dev")),
            ports: vec![],
            url: Some("http://127.0.0.1:8000/".into()),
            uptime_seconds: Some(125),
            replicas: None,
            probes,
            probe_port: None,
            releases: None,
            nodes: None,
        };
        let report = Report {
            project: "iris".into(),
            managed_from: None,
            services: vec![
                svc(
                    "api",
                    "running",
                    "healthy",
                    vec![probe("api", true, Some(200), None)],
                ),
                svc(
                    "frontend",
                    "running",
                    "unhealthy",
                    vec![probe("frontend", false, Some(502), None)],
                ),
                svc("prometheus", "exited", "-", vec![]),
                svc(
                    "grafana",
                    "running",
                    "starting",
                    vec![probe("grafana", false, None, Some("connection refused"))],
                ),
            ],
            orphans: vec!["iris-worker-1".into()],
            prometheus_targets: vec![ScrapeTarget {
                job: "iris-api".into(),
                instance: "api:8000".into(),
                health: "down".into(),
                last_error: "connection refused".into(),
            }],
            prometheus_error: None,
            alerts: vec![
                Alert {
                    name: "IrisApiDown".into(),
                    state: "firing".into(),
                    severity: "critical".into(),
                    since: "2026-12-01T02:30:00Z".into(),
                    summary: "iris-api target api:8000 is down: scrapes of /metrics fail".into(),
                },
                Alert {
                    name: "IrisInputDrift".into(),
                    state: "pending".into(),
                    severity: "warning".into(),
                    since: "2026-12-01T02:45:00Z".into(),
                    summary: String::new(),
                },
            ],
            alerts_error: None,
            alert_delivery: Some(probe::Delivery { sent: 3, failed: 2 }),
            grafana_dashboards: vec![],
            grafana_error: Some("grafana is not running".into()),
            canary: Some(crate::canary::Progress {
                canary: "iris-api-2".into(),
                stable: "iris-api-1".into(),
                step: 1,
                steps: 2,
                weight: 10,
                state: "passing".into(),
                gates: vec![
                    "5xx ratio: canary 0.0 %, stable 0.0 % (allowed: stable +2.0 points)".into(),
                ],
                at: 0,
            }),
            shadow: None,
            nodes: None,
            elsewhere: None,
        };
        assert!(!report.healthy());
        crate::snapshot::assert_snapshot("status-table.txt", &render_table(&report));
    }

    #[test]
    fn swarm_status_names_each_tasks_node_and_a_draining_or_down_node() {
        assert_eq!(
            tally(&["a".into(), "a".into(), "b".into(), "a".into()]),
            "a ×3, b"
        );
        let mut svc = ServiceStatus {
            name: "api".into(),
            state: "running".into(),
            health: "healthy".into(),
            replicas: Some("4/4".into()),
            nodes: Some(vec![
                "node-a".into(),
                "node-a".into(),
                "node-b".into(),
                "node-b".into(),
            ]),
            ..Default::default()
        };
        svc.image = Some("iris-api:id-0123456789ab".into());
        let report = Report {
            project: "iris".into(),
            managed_from: None,
            services: vec![svc],
            orphans: vec![],
            prometheus_targets: vec![],
            prometheus_error: None,
            alerts: vec![],
            alerts_error: None,
            alert_delivery: None,
            grafana_dashboards: vec![],
            grafana_error: None,
            canary: None,
            shadow: None,
            elsewhere: None,
            nodes: Some(vec![
                crate::backend::NodeStatus {
                    hostname: "node-a".into(),
                    role: "manager".into(),
                    state: "ready".into(),
                    availability: "active".into(),
                },
                crate::backend::NodeStatus {
                    hostname: "node-b".into(),
                    role: "worker".into(),
                    state: "ready".into(),
                    availability: "drain".into(),
                },
                crate::backend::NodeStatus {
                    hostname: "node-c".into(),
                    role: "worker".into(),
                    state: "down".into(),
                    availability: "active".into(),
                },
            ]),
        };
        let text = render_table(&report);
        assert!(
            text.contains("running 4/4 on node-a ×2, node-b ×2"),
            "{text}"
        );
        assert!(
            text.contains("node-b")
                && text.contains("(draining: its tasks move to the other nodes)"),
            "{text}"
        );
        assert!(
            text.contains("(down: its tasks move to the other nodes)"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["nodes"][1]["availability"], "drain");
        assert_eq!(json["services"][0]["nodes"][2], "node-b");
    }
}
