//! `irisctl status`: the engine's view, live HTTP probes and Prometheus's targets.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{short_duration, Ctx};
use crate::cli::{Format, Target};
use crate::engine::observe::{self, health_word};
use crate::engine::Engine;
use crate::error::Exit;
use crate::probe::{self, ProbeResult, ScrapeTarget};
use crate::stack::Stack;

#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub container: Option<String>,
    pub state: String,
    pub health: String,
    pub image: Option<String>,
    pub ports: Vec<String>,
    pub url: Option<String>,
    pub uptime_seconds: Option<u64>,
    /// Swarm: running/desired tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<String>,
    pub probes: Vec<ProbeResult>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub project: String,
    pub services: Vec<ServiceStatus>,
    pub orphans: Vec<String>,
    pub prometheus_targets: Vec<ScrapeTarget>,
    pub prometheus_error: Option<String>,
    pub grafana_dashboards: Vec<DashboardStatus>,
    pub grafana_error: Option<String>,
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

async fn grafana_dashboards(ctx: &Ctx) -> Result<Vec<DashboardStatus>, String> {
    let client = super::grafana::client(ctx, &super::grafana::ProvisionOptions::default())
        .map_err(|e| format!("{e:#}"))?;
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
        self.services.iter().all(|s| {
            s.state == "running"
                && (s.health == "healthy" || s.health == "-")
                && s.probes.iter().all(|p| p.ok)
        })
    }
}

pub async fn collect(ctx: &Ctx, engine: &Engine, target: Target) -> Result<Report> {
    if target == Target::Swarm {
        return collect_swarm(ctx, engine).await;
    }
    let stack = Stack::from_settings(&ctx.settings);
    let observed = observe::project_containers(engine, &stack.project).await?;
    let host = ctx.settings.client_host();
    let client = probe::client(Duration::from_secs(2));
    let now = std::time::SystemTime::now();

    let mut services = Vec::new();
    for s in &stack.services {
        let found = observed.iter().find(|o| o.service == s.name);
        let url = s
            .ports
            .first()
            .map(|p| format!("http://{host}:{}/", p.host));
        let ports = s
            .ports
            .iter()
            .map(|p| format!("{}:{}->{}", p.host_ip, p.host, p.container))
            .collect();
        let Some(o) = found else {
            services.push(ServiceStatus {
                name: s.name.clone(),
                container: None,
                state: "missing".into(),
                health: "-".into(),
                image: None,
                ports,
                url,
                uptime_seconds: None,
                replicas: None,
                probes: vec![],
            });
            continue;
        };
        let detail = observe::inspect(engine, &o.id).await?;
        let state = detail.state.clone().unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let uptime = running
            .then(|| {
                state.started_at.as_deref().and_then(|t| {
                    humantime::parse_rfc3339_weak(t.split('.').next().unwrap_or(t)).ok()
                })
            })
            .flatten()
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| d.as_secs());
        // Report what the container really publishes and runs, which may differ from this run's
        // settings (another --api-port, a stack Compose made).
        let bindings = detail
            .host_config
            .as_ref()
            .and_then(|h| h.port_bindings.clone())
            .unwrap_or_default();
        let published = |p: &crate::stack::Port| {
            bindings
                .get(&format!("{}/tcp", p.container))
                .and_then(|b| b.as_ref())
                .and_then(|b| b.first())
                .and_then(|b| b.host_port.as_deref())
                .and_then(|h| h.parse::<u16>().ok())
                .unwrap_or(p.host)
        };
        let actual_port = s.ports.first().map(published);
        let url = actual_port.map(|port| format!("http://{host}:{port}/"));
        let ports = s
            .ports
            .iter()
            .map(|p| format!("{}:{}->{}", p.host_ip, published(p), p.container))
            .collect();
        let probes = if running {
            let remapped: Vec<crate::stack::Probe> = s
                .probes
                .iter()
                .map(|pr| crate::stack::Probe {
                    port: actual_port.unwrap_or(pr.port),
                    ..pr.clone()
                })
                .collect();
            let probes: Vec<_> = remapped.iter().collect();
            probe::run_all(&client, &host, &probes).await
        } else {
            vec![]
        };
        let image = detail
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_else(|| s.image.clone());
        services.push(ServiceStatus {
            name: s.name.clone(),
            container: Some(o.name.clone()),
            state: state
                .status
                .map(|st| st.to_string())
                .unwrap_or_else(|| "unknown".into()),
            health: health_word(&detail),
            image: Some(image),
            ports,
            url,
            uptime_seconds: uptime,
            replicas: None,
            probes,
        });
    }
    let orphans = observed
        .iter()
        .filter(|o| stack.service(&o.service).is_none())
        .map(|o| o.name.clone())
        .collect();
    finish(ctx, stack.project, services, orphans).await
}

/// The Swarm view: one row per service with its running/desired tasks.
async fn collect_swarm(ctx: &Ctx, engine: &Engine) -> Result<Report> {
    let stack = crate::swarm::for_swarm(&Stack::from_settings(&ctx.settings));
    let states = crate::swarm::observe(engine, &stack.project).await?;
    let host = ctx.settings.client_host();
    let client = probe::client(Duration::from_secs(2));
    let mut services = Vec::new();
    for s in &stack.services {
        let st = states.iter().find(|st| st.service == s.name);
        let converged = st.is_some_and(|st| st.desired > 0 && st.running == st.desired);
        let probes = if st.is_some_and(|st| st.running > 0) {
            let probes: Vec<_> = s.probes.iter().collect();
            probe::run_all(&client, &host, &probes).await
        } else {
            vec![]
        };
        services.push(ServiceStatus {
            name: s.name.clone(),
            container: st.map(|st| st.name.clone()),
            state: match st {
                None => "missing".into(),
                Some(_) if converged => "running".into(),
                Some(st) if st.update == "updating" => "updating".into(),
                Some(_) => "converging".into(),
            },
            health: if converged {
                "healthy".into()
            } else {
                "-".into()
            },
            image: st.map(|st| st.image.clone()),
            ports: s
                .ports
                .iter()
                .map(|p| format!("*:{}->{}", p.host, p.container))
                .collect(),
            url: s
                .ports
                .first()
                .map(|p| format!("http://{host}:{}/", p.host)),
            uptime_seconds: None,
            replicas: st.map(|st| format!("{}/{}", st.running, st.desired)),
            probes,
        });
    }
    let orphans = states
        .iter()
        .filter(|st| stack.service(&st.service).is_none())
        .map(|st| st.name.clone())
        .collect();
    finish(ctx, stack.project, services, orphans).await
}

/// Prometheus's targets and Grafana's dashboards, the same for both targets.
async fn finish(
    ctx: &Ctx,
    project: String,
    services: Vec<ServiceStatus>,
    orphans: Vec<String>,
) -> Result<Report> {
    let host = ctx.settings.client_host();
    let client = probe::client(Duration::from_secs(2));
    // Where Prometheus really is (its row's URL), else where the settings put it.
    let prom = services
        .iter()
        .find(|s| s.name == "prometheus")
        .and_then(|s| s.url.as_deref())
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://{host}:{}", ctx.settings.ports.prometheus));
    let (prometheus_targets, prometheus_error) =
        match probe::prometheus_targets(&client, &prom).await {
            Ok(t) => (t, None),
            Err(e) => (vec![], Some(e)),
        };
    let grafana_running = services
        .iter()
        .any(|s| s.name == "grafana" && s.state == "running");
    let (grafana_dashboards, grafana_error) = if grafana_running {
        match grafana_dashboards(ctx).await {
            Ok(d) => (d, None),
            Err(e) => (vec![], Some(e)),
        }
    } else {
        (vec![], Some("grafana is not running".to_string()))
    };
    Ok(Report {
        project,
        services,
        orphans,
        prometheus_targets,
        prometheus_error,
        grafana_dashboards,
        grafana_error,
    })
}

pub async fn run(ctx: &Ctx, format: Format, target: Target) -> Result<Exit> {
    let engine = Engine::connect().await?;
    let report = collect(ctx, &engine, target).await?;
    match format {
        Format::Json => ctx.printer.data(&serde_json::to_string_pretty(&report)?),
        Format::Table => ctx.printer.data(&render_table(&report)),
    }
    if report.healthy() {
        Ok(Exit::Success)
    } else {
        if format == Format::Table {
            let bad: Vec<_> = report
                .services
                .iter()
                .filter(|s| {
                    !(s.state == "running"
                        && (s.health == "healthy" || s.health == "-")
                        && s.probes.iter().all(|p| p.ok))
                })
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
            match &s.replicas {
                Some(r) => format!("{} {r}", s.state),
                None => s.state.clone(),
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
    let mut out = format!("project {}\n{t}\n", r.project);
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
            "  {:<12} {:<22} {}{err}\n",
            t.job, t.instance, t.health
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
        };
        let report = Report {
            project: "iris".into(),
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
            grafana_dashboards: vec![],
            grafana_error: Some("grafana is not running".into()),
        };
        assert!(!report.healthy());
        crate::snapshot::assert_snapshot("status-table.txt", &render_table(&report));
    }
}
