//! The Docker engine adapter (bollard). One small method per operation; each error names the
//! operation and the object. Decisions live in [`converge::plan`], which does no I/O.

pub mod build;
pub mod converge;
pub mod observe;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::errors::Error as BollardError;
use bollard::Docker;
use futures_util::StreamExt;

use crate::error::hinted;

/// Labels shared with Docker Compose, so `docker-compose -p X ps` sees an irisctl stack.
pub mod labels {
    pub const PROJECT: &str = "com.docker.compose.project";
    pub const SERVICE: &str = "com.docker.compose.service";
    pub const NUMBER: &str = "com.docker.compose.container-number";
    pub const ONEOFF: &str = "com.docker.compose.oneoff";
    pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
    pub const VERSION: &str = "com.docker.compose.version";
    pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
    pub const NETWORK: &str = "com.docker.compose.network";
    pub const VOLUME: &str = "com.docker.compose.volume";
    /// A plain version number: docker-compose 1.29 parses it.
    pub const COMPOSE_VERSION: &str = "1.29.2";
    pub const MANAGED_BY: &str = "io.irisctl.managed-by";
    pub const BUILD_HASH: &str = "io.irisctl.build-hash";
}

/// The oldest Engine API irisctl speaks (Docker 19.03).
pub const MIN_API: (u64, u64) = (1, 40);

/// A connected, version-negotiated engine.
#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
    pub host: String,
    pub api_version: String,
}

/// Where `DOCKER_HOST` (or the default socket) points.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

fn unreachable(host: &str, detail: impl std::fmt::Display) -> anyhow::Error {
    hinted(
        format!("cannot reach the Docker engine at `{host}`: {detail}"),
        "start the engine (`sudo systemctl start docker`, or `scripts/start-dockerd` in a checkout) or point DOCKER_HOST at a running one",
    )
}

impl Engine {
    /// Connect through `DOCKER_HOST` or the local socket and negotiate the API version.
    pub async fn connect() -> Result<Engine> {
        let host = docker_host();
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(&host, e))?;
        let docker = docker.with_timeout(Duration::from_secs(600));
        let docker =
            match tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version()).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Err(unreachable(&host, root_message(&e))),
                Err(_) => return Err(unreachable(&host, "no answer within 10 s")),
            };
        let version = docker
            .version()
            .await
            .map_err(|e| unreachable(&host, root_message(&e)))?;
        let api_version = version.api_version.unwrap_or_default();
        if !api_at_least(&api_version, MIN_API) {
            return Err(hinted(
                format!(
                    "the Docker engine at `{host}` is too old: it speaks API {api_version} (Docker {}), irisctl needs API {}.{} (Docker 19.03) or newer",
                    version.version.unwrap_or_else(|| "unknown".into()),
                    MIN_API.0,
                    MIN_API.1
                ),
                "upgrade the engine (e.g. `apt-get install docker.io`), or point DOCKER_HOST at a newer one",
            ));
        }
        Ok(Engine {
            docker,
            host,
            api_version,
        })
    }

    /// Is the engine on this machine (so host ports can be checked here)?
    pub fn is_local(&self) -> bool {
        self.host.starts_with("unix://")
    }

    pub async fn image_exists(
        &self,
        reference: &str,
    ) -> Result<Option<bollard::models::ImageInspect>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("failed to inspect image `{reference}`")))
            }
        }
    }

    /// Make sure an image is on the host: pull it if absent, with a clear error when that fails.
    pub async fn ensure_image(&self, reference: &str, needed_by: &str) -> Result<()> {
        if self.image_exists(reference).await?.is_some() {
            return Ok(());
        }
        let options = bollard::query_parameters::CreateImageOptions {
            from_image: Some(reference.to_string()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        let mut failure: Option<String> = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        failure = Some(detail);
                    }
                }
                Err(e) => {
                    failure = Some(root_message(&e));
                    break;
                }
            }
        }
        match failure {
            None if self.image_exists(reference).await?.is_some() => Ok(()),
            other => Err(hinted(
                format!(
                    "image `{reference}` (needed by {needed_by}) is not on this host and cannot be pulled: {}",
                    other.unwrap_or_else(|| "the pull ended without the image".into())
                ),
                "on a host without registry access, make local base images with `scripts/offline-base-images` and run `irisctl --config examples/offline.yaml up` (README: offline mode); or set the image in irisctl.yaml `images:`",
            )),
        }
    }

    pub async fn logs_tail(&self, container: &str, lines: usize) -> Vec<String> {
        let options = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut stream = self.docker.logs(container, Some(options));
        while let Some(Ok(chunk)) = stream.next().await {
            out.extend(
                String::from_utf8_lossy(&chunk.into_bytes())
                    .lines()
                    .map(str::to_string),
            );
        }
        let skip = out.len().saturating_sub(lines);
        out.split_off(skip)
    }

    /// Remove the volumes carrying `label` (`key=value`); the names of those removed.
    pub async fn remove_volumes(&self, label: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let list = self
            .docker
            .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .context("failed to list volumes")?;
        let mut removed = Vec::new();
        for v in list.volumes.unwrap_or_default() {
            match self
                .docker
                .remove_volume(
                    &v.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await
            {
                Ok(()) => removed.push(v.name),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "failed to remove volume `{}`: {}",
                        v.name,
                        root_message(&e)
                    ))
                }
            }
        }
        Ok(removed)
    }

    /// Containers carrying all of `labels` (`key=value` or bare `key`), stopped ones included.
    pub async fn containers_with(
        &self,
        label_filters: &[String],
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let filters: HashMap<String, Vec<String>> =
            HashMap::from([("label".to_string(), label_filters.to_vec())]);
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(options))
            .await
            .context("failed to list containers")
    }
}

/// A Stack health check as the engine takes it (durations in nanoseconds).
pub fn health_config(h: &crate::stack::Healthcheck) -> bollard::models::HealthConfig {
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    bollard::models::HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(nanos(h.interval)),
        timeout: Some(nanos(h.timeout)),
        retries: Some(i64::from(h.retries)),
        start_period: Some(nanos(h.start_period)),
        start_interval: None,
    }
}

/// `1.41` ≥ `(1, 40)`?
pub fn api_at_least(version: &str, min: (u64, u64)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= min
}

pub fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

pub fn is_conflict(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

pub fn is_not_modified(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

/// The engine's own message, without bollard's wrapping.
pub fn root_message(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        other => {
            let mut msg = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let text = s.to_string();
                if !msg.contains(&text) {
                    msg = format!("{msg}: {text}");
                }
                source = s.source();
            }
            msg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_compare_numerically() {
        assert!(api_at_least("1.41", (1, 40)));
        assert!(api_at_least("1.40", (1, 40)));
        assert!(api_at_least("1.100", (1, 40)));
        assert!(!api_at_least("1.39", (1, 40)));
        assert!(!api_at_least("", (1, 40)));
        assert!(!api_at_least("garbage", (1, 40)));
    }
}
