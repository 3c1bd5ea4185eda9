//! Swarm services, configs and secrets.

use std::collections::HashMap;

use anyhow::Result;
use base64::Engine as _;

use super::{failed, is_conflict, label_filter, root_message, Engine};

impl Engine {
    /// Swarm services carrying `label`, with their task counts.
    pub async fn services_with(&self, label: &str) -> Result<Vec<bollard::models::Service>> {
        self.docker
            .list_services(Some(bollard::query_parameters::ListServicesOptions {
                filters: label_filter(&[label.to_string()]),
                status: Some(true),
            }))
            .await
            .map_err(|e| anyhow::anyhow!("failed to list Swarm services: {}", root_message(&e)))
    }

    /// The swarm's nodes.
    pub async fn nodes(&self) -> Result<Vec<bollard::models::Node>> {
        self.docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(|e| anyhow::anyhow!("failed to list the Swarm's nodes: {}", root_message(&e)))
    }

    /// The tasks of service `name` that should run (desired state `running`).
    pub async fn running_tasks(&self, name: &str) -> Result<Vec<bollard::models::Task>> {
        let filters = HashMap::from([
            ("service".to_string(), vec![name.to_string()]),
            ("desired-state".to_string(), vec!["running".to_string()]),
        ]);
        self.docker
            .list_tasks(Some(bollard::query_parameters::ListTasksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| {
                anyhow::anyhow!("failed to list the tasks of `{name}`: {}", root_message(&e))
            })
    }

    pub async fn create_service(&self, spec: bollard::models::ServiceSpec) -> Result<()> {
        let name = spec.name.clone().unwrap_or_default();
        self.docker
            .create_service(spec, None)
            .await
            .map(|_| ())
            .map_err(|e| failed("create", "service", &name, &e))
    }

    /// Update a service at the version it was read at.
    pub async fn update_service(
        &self,
        name: &str,
        spec: bollard::models::ServiceSpec,
        version: u64,
    ) -> Result<()> {
        self.update(name, spec, version, None, "update").await
    }

    /// Roll a service back to its previous spec (Swarm keeps one: `PreviousSpec`), as
    /// `docker service rollback` does; `spec` is the current one, read at `version`.
    pub async fn rollback_service(
        &self,
        name: &str,
        spec: bollard::models::ServiceSpec,
        version: u64,
    ) -> Result<()> {
        self.update(name, spec, version, Some("previous"), "roll back")
            .await
    }

    /// `POST /services/{name}/update` at `version`, with `rollback` when asked; `verb` names the
    /// operation in an error.
    async fn update(
        &self,
        name: &str,
        spec: bollard::models::ServiceSpec,
        version: u64,
        rollback: Option<&str>,
        verb: &str,
    ) -> Result<()> {
        let options = bollard::query_parameters::UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            rollback: rollback.map(str::to_string),
            ..Default::default()
        };
        self.docker
            .update_service(name, spec, options, None)
            .await
            .map(|_| ())
            .map_err(|e| failed(verb, "service", name, &e))
    }

    /// Create a Swarm config or secret unless one of that name exists (irisctl names them by
    /// a hash of their content, so one that exists holds the same data); its ID.
    pub async fn ensure_swarm_file(
        &self,
        secret: bool,
        name: &str,
        labels: HashMap<String, String>,
        data: &[u8],
    ) -> Result<String> {
        let kind = if secret {
            "Swarm secret"
        } else {
            "Swarm config"
        };
        let data = base64::engine::general_purpose::STANDARD.encode(data);
        let created = if secret {
            self.docker
                .create_secret(bollard::models::SecretSpec {
                    name: Some(name.to_string()),
                    labels: Some(labels),
                    data: Some(data),
                    ..Default::default()
                })
                .await
        } else {
            self.docker
                .create_config(bollard::models::ConfigSpec {
                    name: Some(name.to_string()),
                    labels: Some(labels),
                    data: Some(data),
                    ..Default::default()
                })
                .await
        };
        match created {
            Ok(r) => return Ok(r.id),
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(failed("create", kind, name, &e)),
        }
        let id = if secret {
            self.docker.inspect_secret(name).await.map(|x| x.id)
        } else {
            self.docker.inspect_config(name).await.map(|x| x.id)
        };
        id.map_err(|e| failed("inspect", kind, name, &e))?
            .ok_or_else(|| anyhow::anyhow!("{kind} `{name}` has no ID"))
    }
}
