//! The single-engine backend: the stack as containers on one Docker engine, converged by
//! [`plan::plan`] (pure) and applied here wave by wave, each dependent started once its
//! dependencies are healthy.

mod apply;
pub mod body;
mod canary;
mod down;
pub mod plan;
mod preflight;
mod release;
mod shadow;
mod status;
mod wait;

pub use canary::{read_progress as read_canary, running_canary};
use preflight::managed_elsewhere;
pub use shadow::{shadow_build_stack, shadow_stack, ShadowContainer};
use status::{container_ip, health_word};
use wait::wait_healthy;
pub use wait::StoppedUnderUs;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use bollard::models::ContainerSummaryStateEnum;

use super::images::ImageIds;
use super::owner::{owner, Owner};
use super::plan::Plan;
use crate::engine::{labels, Engine};
use crate::stack::files::{hash_inputs, mounted_files};
use crate::stack::record::{self, Record};
use crate::stack::Stack;
use plan::{Container, Desired, Observed, RunState};

pub struct Docker {
    pub engine: Engine,
}

/// How long both containers of a release serve at most before the old one drains: the proxies
/// (nginx `resolver valid=1s`) see the new address by then (see `proxies_reach`).
const RELEASE_SETTLE: Duration = Duration::from_secs(2);

/// The tag of the image a release replaced: `<project>-<service>:previous`.
pub const PREVIOUS_TAG: &str = "previous";

pub fn previous_repo(stack: &Stack, service: &str) -> String {
    format!("{}-{service}", stack.project)
}

/// A listed container's name, without the engine's leading `/`.
fn listed_name(c: &bollard::models::ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

fn short_id(id: &str) -> &str {
    let id = id.trim_start_matches("sha256:");
    // At a character boundary: an ID read from a label may be anything.
    id.char_indices().nth(12).map_or(id, |(end, _)| &id[..end])
}

fn project_label(stack: &Stack) -> String {
    format!("{}={}", labels::PROJECT, stack.project)
}

/// Labels of a network or volume irisctl makes, as Compose labels them.
fn object_labels(stack: &Stack, kind_label: &str, key: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::PROJECT.to_string(), stack.project.clone()),
        (
            labels::WORKING_DIR.to_string(),
            stack.project_dir.display().to_string(),
        ),
        (kind_label.to_string(), key.to_string()),
        (
            labels::VERSION.to_string(),
            labels::COMPOSE_VERSION.to_string(),
        ),
        (labels::MANAGED_BY.to_string(), "irisctl".to_string()),
    ])
}

impl Docker {
    pub fn new(engine: Engine) -> Docker {
        Docker { engine }
    }

    /// The project's containers (one-off containers and a shadow's excluded), sorted by
    /// service and name.
    async fn containers(&self, stack: &Stack) -> Result<Vec<Container>> {
        let list = self.engine.containers_with(&[project_label(stack)]).await?;
        let mut out: Vec<Container> = list
            .into_iter()
            .filter(|c| {
                c.labels.as_ref().is_none_or(|l| {
                    l.get(labels::ONEOFF).is_none_or(|v| v != "True")
                        && !l.contains_key(crate::shadow::LABEL)
                })
            })
            .map(|c| {
                let label = |k: &str| {
                    c.labels
                        .as_ref()
                        .and_then(|l| l.get(k))
                        .cloned()
                        .unwrap_or_default()
                };
                Container {
                    id: c.id.clone().unwrap_or_default(),
                    name: listed_name(&c),
                    service: label(labels::SERVICE),
                    hash: label(labels::CONFIG_HASH),
                    record: Record::from_label(&label(record::LABEL)),
                    state: match c.state {
                        Some(ContainerSummaryStateEnum::RUNNING) => RunState::Running,
                        Some(ContainerSummaryStateEnum::RESTARTING) => RunState::Restarting,
                        Some(ContainerSummaryStateEnum::PAUSED) => RunState::Paused,
                        _ => RunState::Stopped,
                    },
                    status: c.state.map(|s| s.to_string()).unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.service.cmp(&b.service).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The stack's services whose container is stopped now and not restarting (or gone):
    /// after `up` saw them healthy, that is another client's doing (an interrupted `down` the
    /// engine finished, `docker stop`): a crash would have been restarted by the restart
    /// policy, which a stop by a client turns off.
    pub async fn stopped_by_another_client(&self, stack: &Stack) -> Result<Vec<String>> {
        let containers = self.containers(stack).await?;
        Ok(stack
            .services
            .iter()
            .filter(|s| {
                let mine: Vec<&Container> =
                    containers.iter().filter(|c| c.service == s.name).collect();
                mine.is_empty()
                    || mine
                        .iter()
                        .all(|c| c.state == RunState::Stopped && c.status != "dead")
            })
            .map(|s| s.name.clone())
            .collect())
    }

    async fn observe(&self, stack: &Stack) -> Result<Observed> {
        let mut volumes = Vec::new();
        for v in &stack.volumes {
            if self.engine.inspect_volume(&v.name).await?.is_some() {
                volumes.push(v.name.clone());
            }
        }
        let networks = self
            .engine
            .networks_named(&stack.network.name)
            .await?
            .into_iter()
            .filter(|n| owner(&n.labels, &stack.project, &stack.project_dir) == Owner::Ours)
            .map(|n| n.id)
            .collect();
        Ok(Observed {
            containers: self.containers(stack).await?,
            networks,
            volumes,
            remote: self.engine.is_remote(),
        })
    }

    /// What each service should run: its record, from its definition, image and mounted files.
    pub fn desired(stack: &Stack, images: &ImageIds) -> Result<Vec<Desired>> {
        stack
            .services
            .iter()
            .map(|s| {
                let files = hash_inputs(&mounted_files(s)?);
                let image = images.get(&s.name).cloned().flatten().unwrap_or_default();
                Ok(Desired {
                    service: s.name.clone(),
                    record: Record::of(s, &image, &files),
                })
            })
            .collect()
    }

    pub async fn plan(
        &self,
        stack: &Stack,
        images: &ImageIds,
        remove_orphans: bool,
    ) -> Result<Plan> {
        let desired = Self::desired(stack, images)?;
        let observed = self.observe(stack).await?;
        Ok(plan::plan(stack, &desired, &observed, remove_orphans))
    }
}

#[cfg(test)]
mod tests {
    use super::short_id;

    #[test]
    fn short_ids_never_split_a_character() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id("sha256:ééééééééééééé"), "éééééééééééé");
        assert_eq!(
            super::record::causes(
                &crate::stack::record::Record {
                    image: "ééééééééééééé".into(),
                    ..Default::default()
                },
                &crate::stack::record::Record {
                    image: "sha256:b".into(),
                    ..Default::default()
                },
                std::path::Path::new("/"),
            )[0],
            "image changed (éééééééééééé → b)"
        );
    }
}
