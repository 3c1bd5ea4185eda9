//! What `status` shows of the single engine: each service's container, ports, health and
//! releases.

use std::time::Duration;

use anyhow::Result;
use bollard::models::{ContainerInspectResponse, HealthStatusEnum};

use super::super::{Observation, ServiceStatus};
use super::*;
use crate::engine::labels;
use crate::stack::Stack;

impl Docker {
    /// The release a service runs (its container's image) and the previous one, if kept.
    pub(super) async fn releases(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        current: Option<&str>,
    ) -> Result<super::super::Releases> {
        let describe = |reference: String| async move {
            let Some(i) = self.engine.image_exists(&reference).await? else {
                return Ok::<_, anyhow::Error>(None);
            };
            Ok(Some(super::super::ReleaseImage {
                image_id: i.id.clone().unwrap_or_default(),
                built_at: i.created.clone(),
                build_digest: i
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.as_ref())
                    .and_then(crate::backend::images::record::labelled_hash),
            }))
        };
        Ok(super::super::Releases {
            current: match current {
                Some(id) => describe(id.to_string()).await?,
                None => None,
            },
            previous: describe(format!(
                "{}:{PREVIOUS_TAG}",
                previous_repo(stack, &service.name)
            ))
            .await?,
        })
    }

    /// One row per service: what the container really publishes and runs (which may differ
    /// from this run's settings: another --api-port, a stack Compose made).
    pub async fn observe_status(&self, stack: &Stack, host: &str) -> Result<Observation> {
        let observed = self.containers(stack).await?;
        let now = std::time::SystemTime::now();
        let mut services = Vec::new();
        let mut managed_from = None;
        let edge = observed
            .iter()
            .find(|o| o.service == crate::stack::edge::EDGE)
            .map(|o| o.id.clone());
        let edge_published = |p: &crate::stack::Port| {
            let p = p.clone();
            let edge = edge.clone();
            async move {
                let Some(id) = edge else {
                    return Ok::<Option<u16>, anyhow::Error>(None);
                };
                let detail = self.engine.inspect_container(&id).await?;
                Ok(detail
                    .host_config
                    .and_then(|h| h.port_bindings)
                    .and_then(|b| b.get(&format!("{}/tcp", p.container)).cloned().flatten())
                    .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
                    .and_then(|h| h.parse::<u16>().ok()))
            }
        };
        for s in &stack.services {
            let configured: Vec<String> = s
                .ports
                .iter()
                .map(|p| format!("{}:{}->{}", p.host_ip, p.host, p.container))
                .collect();
            let Some(o) = observed.iter().find(|o| o.service == s.name) else {
                services.push(ServiceStatus {
                    name: s.name.clone(),
                    container: None,
                    state: "missing".into(),
                    health: "-".into(),
                    image: None,
                    ports: configured,
                    url: s
                        .ports
                        .first()
                        .or_else(|| crate::stack::edge::edge_port(stack, s))
                        .map(|p| format!("http://{host}:{}/", p.host)),
                    uptime_seconds: None,
                    replicas: None,
                    probes: vec![],
                    probe_port: None,
                    releases: None,
                    nodes: None,
                });
                continue;
            };
            let detail = self.engine.inspect_container(&o.id).await?;
            managed_from = managed_from.or_else(|| {
                detail
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.as_ref())
                    .and_then(|l| l.get(labels::WORKING_DIR))
                    .cloned()
            });
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
            };
            // Behind the edge: the port the edge publishes for the service. Only a port that
            // is published is probed (a newly configured one may be another program's).
            let actual_port = match (s.ports.first(), crate::stack::edge::edge_port(stack, s)) {
                (Some(p), _) => published(p),
                (None, Some(p)) => edge_published(p).await?,
                (None, None) => None,
            };
            services.push(ServiceStatus {
                name: s.name.clone(),
                container: Some(o.name.clone()),
                state: state
                    .status
                    .map(|st| st.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                health: self.health_or_ready(stack, s, &detail).await,
                image: Some(
                    detail
                        .config
                        .as_ref()
                        .and_then(|c| c.image.clone())
                        .unwrap_or_else(|| s.image.clone()),
                ),
                ports: s
                    .ports
                    .iter()
                    .map(|p| {
                        format!(
                            "{}:{}->{}",
                            p.host_ip,
                            published(p).unwrap_or(p.host),
                            p.container
                        )
                    })
                    .collect(),
                url: actual_port.map(|port| format!("http://{host}:{port}/")),
                uptime_seconds: uptime,
                replicas: None,
                probes: vec![],
                probe_port: if running { actual_port } else { None },
                releases: if crate::stack::edge::is_released(stack, s) {
                    Some(self.releases(stack, s, detail.image.as_deref()).await?)
                } else {
                    None
                },
                nodes: None,
            });
        }
        let orphans = observed
            .iter()
            .filter(|o| stack.service(&o.service).is_none())
            .map(|o| o.name.clone())
            .collect();
        Ok(Observation {
            services,
            orphans,
            managed_from,
            nodes: None,
        })
    }
}

impl Docker {
    /// Docker's word for the container's health; `ready` while Docker has not run its first
    /// check yet but irisctl's own readiness check of the container answers.
    pub(super) async fn health_or_ready(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        c: &ContainerInspectResponse,
    ) -> String {
        let health = health_word(c);
        if health != "starting" || !(self.engine.is_local() || self.engine.is_remote()) {
            return health;
        }
        let (Some(r), Some(ip)) = (&service.ready, container_ip(stack, c)) else {
            return health;
        };
        let client = crate::probe::client(Duration::from_millis(800));
        let Ok(base) = crate::engine::ssh::http_base(&ip.to_string(), r.port).await else {
            return health;
        };
        let url = format!("{base}{}", r.path);
        if crate::probe::check(&client, &service.name, &url).await.ok {
            "ready".into()
        } else {
            health
        }
    }
}

/// The container's address on the stack's network.
pub(super) fn container_ip(stack: &Stack, c: &ContainerInspectResponse) -> Option<String> {
    c.network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.get(&stack.network.name))
        .and_then(|e| e.ip_address.clone())
        .filter(|ip| !ip.is_empty())
}

/// Health as a word: `healthy`, `unhealthy`, `starting`, or `-` when there is no check.
pub(super) fn health_word(c: &ContainerInspectResponse) -> String {
    match c
        .state
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
    {
        Some(HealthStatusEnum::HEALTHY) => "healthy",
        Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
        Some(HealthStatusEnum::STARTING) => "starting",
        _ => "-",
    }
    .to_string()
}
