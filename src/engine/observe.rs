//! What the engine has for a project: its containers, their state and health.

use anyhow::{Context, Result};
use bollard::models::{ContainerInspectResponse, ContainerSummaryStateEnum, HealthStatusEnum};

use super::{labels, Engine};

/// A container's run state, reduced to what decisions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Restarting,
    Paused,
    /// Created, exited or dead: present but not running.
    Stopped,
}

/// One container of a project, from the engine's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    pub service: String,
    pub hash: String,
    pub state: RunState,
    pub image: String,
    pub status: String,
}

/// Every container labelled with the project (one-off containers excluded).
pub async fn project_containers(engine: &Engine, project: &str) -> Result<Vec<Observed>> {
    let list = engine
        .containers_with(&[format!("{}={project}", labels::PROJECT)])
        .await?;
    let mut out: Vec<Observed> = list
        .into_iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get(labels::ONEOFF))
                .is_none_or(|v| v != "True")
        })
        .map(|c| {
            let label = |k: &str| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .cloned()
                    .unwrap_or_default()
            };
            Observed {
                id: c.id.clone().unwrap_or_default(),
                name: c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                service: label(labels::SERVICE),
                hash: label(labels::CONFIG_HASH),
                state: match c.state {
                    Some(ContainerSummaryStateEnum::RUNNING) => RunState::Running,
                    Some(ContainerSummaryStateEnum::RESTARTING) => RunState::Restarting,
                    Some(ContainerSummaryStateEnum::PAUSED) => RunState::Paused,
                    _ => RunState::Stopped,
                },
                image: c.image.clone().unwrap_or_default(),
                status: c.status.clone().unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.service.cmp(&b.service).then(a.name.cmp(&b.name)));
    Ok(out)
}

pub async fn inspect(engine: &Engine, id: &str) -> Result<ContainerInspectResponse> {
    engine
        .docker
        .inspect_container(id, None)
        .await
        .with_context(|| format!("failed to inspect container `{id}`"))
}

/// Health as a word: `healthy`, `unhealthy`, `starting`, or `-` when there is no check.
pub fn health_word(c: &ContainerInspectResponse) -> String {
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
