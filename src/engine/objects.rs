//! Listing and removing the objects of a project by label.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use bollard::errors::Error as BollardError;
use tokio::time::Instant;

use super::{failed, is_not_found, label_filter, root_message, Engine, Listed, Object};
use crate::poll::{poll_until, Backoff, Ended, Poll};

impl Engine {
    /// Objects of one kind carrying `label` (`key=value`).
    pub async fn list_labelled(&self, kind: Object, label: &str) -> Result<Vec<Listed>> {
        let filters = label_filter(&[label.to_string()]);
        let listing_failed = |e: BollardError| {
            anyhow::anyhow!("failed to list {}s: {}", kind.word(), root_message(&e))
        };
        let labels_of = |l: Option<HashMap<String, String>>| l.unwrap_or_default();
        // A Swarm config or secret: its ID, and its spec's name and labels.
        type Spec = (
            Option<String>,
            Option<String>,
            Option<HashMap<String, String>>,
        );
        let listed = |c: Option<Spec>| {
            let (id, name, labels) = c.unwrap_or_default();
            Listed {
                id: id.unwrap_or_default(),
                name: name.unwrap_or_default(),
                labels: labels.unwrap_or_default(),
            }
        };
        Ok(match kind {
            Object::Container => self
                .containers_with(&[label.to_string()])
                .await?
                .into_iter()
                .map(|c| Listed {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    labels: labels_of(c.labels),
                })
                .collect(),
            Object::Network => self
                .docker
                .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
                    filters,
                }))
                .await
                .map_err(listing_failed)?
                .into_iter()
                .map(|n| Listed {
                    id: n.id.unwrap_or_default(),
                    name: n.name.unwrap_or_default(),
                    labels: labels_of(n.labels),
                })
                .collect(),
            Object::Volume => self
                .docker
                .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
                    filters,
                }))
                .await
                .map_err(listing_failed)?
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| Listed {
                    id: v.name.clone(),
                    name: v.name,
                    labels: v.labels,
                })
                .collect(),
            Object::Service => self
                .services_with(label)
                .await?
                .into_iter()
                .map(|s| {
                    let spec = s.spec.unwrap_or_default();
                    Listed {
                        id: s.id.unwrap_or_default(),
                        name: spec.name.unwrap_or_default(),
                        labels: labels_of(spec.labels),
                    }
                })
                .collect(),
            Object::Config => self
                .docker
                .list_configs(Some(bollard::query_parameters::ListConfigsOptions {
                    filters,
                }))
                .await
                .map_err(listing_failed)?
                .into_iter()
                .map(|c| c.spec.map(|sp| (c.id, sp.name, sp.labels)))
                .map(listed)
                .collect(),
            Object::Secret => self
                .docker
                .list_secrets(Some(bollard::query_parameters::ListSecretsOptions {
                    filters,
                }))
                .await
                .map_err(listing_failed)?
                .into_iter()
                .map(|c| c.spec.map(|sp| (c.id, sp.name, sp.labels)))
                .map(listed)
                .collect(),
        })
    }

    /// Remove one object; absent is fine (`Ok(false)`).
    pub async fn remove(&self, kind: Object, obj: &Listed) -> Result<bool> {
        let result = match kind {
            Object::Container => {
                return self
                    .remove_container(&obj.id, &obj.name)
                    .await
                    .map(|()| true)
            }
            Object::Network => self.docker.remove_network(&obj.id).await,
            Object::Volume => {
                self.docker
                    .remove_volume(
                        &obj.name,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await
            }
            Object::Service => self.docker.delete_service(&obj.id).await,
            Object::Config => self.docker.delete_config(&obj.id).await,
            Object::Secret => self.docker.delete_secret(&obj.id).await,
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(failed("remove", kind.word(), &obj.name, &e)),
        }
    }

    /// Remove every object of `kind` carrying `label` for which `owned` holds, retrying each for
    /// up to `retry` (Swarm's objects stay busy a moment after their tasks stop). The names of
    /// those removed, and of those `owned` refused.
    pub async fn remove_labelled(
        &self,
        kind: Object,
        label: &str,
        owned: impl Fn(&Listed) -> bool,
        retry: Duration,
    ) -> Result<Removed> {
        let mut out = Removed::default();
        for obj in self.list_labelled(kind, label).await? {
            if !owned(&obj) {
                out.refused.push(obj.name);
                continue;
            }
            let removed = poll_until(
                Instant::now() + retry,
                Backoff::fixed(Duration::from_millis(500)),
                || async {
                    match self.remove(kind, &obj).await {
                        Ok(removed) => Poll::Ready(removed),
                        Err(e) => Poll::Pending(e),
                    }
                },
            )
            .await
            .map_err(Ended::into_inner)?;
            if removed {
                out.removed.push(obj.name.clone());
            }
        }
        Ok(out)
    }
}

/// What [`Engine::remove_labelled`] did.
#[derive(Debug, Default, Clone)]
pub struct Removed {
    pub removed: Vec<String>,
    /// Carrying the label but not the project's: left alone.
    pub refused: Vec<String>,
}
