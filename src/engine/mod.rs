//! The Docker engine adapter (bollard): the only module that holds the bollard handle. One
//! small method per operation; each error names the operation and the object. Decisions live
//! in the backends' pure planners (`crate::backend`).

pub mod build;
pub mod context;
pub mod endpoint;
mod objects;
pub mod ship;
pub mod ssh;
mod swarm;

pub use objects::Removed;

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
    /// The build hash, on images made by irisctl before the record carried it (still read).
    pub const BUILD_HASH: &str = "io.irisctl.build-hash";
    /// The only label irisctl puts on the images it builds: the build hash and the build inputs
    /// (context file digests, args, base image IDs), so a plan can say what changed. One label,
    /// because the classic builder turns each build-time label into a step of its own (a
    /// container commit on every build: three labels cost ~0.2 s of each source change).
    pub const BUILD_RECORD: &str = "io.irisctl.build-record";
    /// On a container a release started: the definition of the container it replaced (its
    /// create request, image by ID), so `irisctl rollback` restores image and configuration.
    pub const PREVIOUS_RELEASE: &str = "io.irisctl.previous-release";
}

/// The oldest Engine API irisctl speaks (Docker 19.03).
pub const MIN_API: (u64, u64) = (1, 40);

/// A connected, version-negotiated engine. The bollard handle is private: every engine
/// operation is one method here, and each error names the operation and the object.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    pub host: String,
    pub api_version: String,
    /// Reached over SSH: files and images travel through the API (see [`ship`]).
    remote: bool,
}

/// The kinds of object [`Engine::remove_labelled`] lists and removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Container,
    Network,
    Volume,
    Service,
    Config,
    Secret,
}

impl Object {
    pub fn word(self) -> &'static str {
        match self {
            Object::Container => "container",
            Object::Network => "network",
            Object::Volume => "volume",
            Object::Service => "service",
            Object::Config => "config",
            Object::Secret => "secret",
        }
    }
}

/// An object as listed: its ID, name and labels.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// The outcome of removing an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRemoval {
    Removed,
    Absent,
    InUse,
}

fn unreachable(host: &str, detail: impl std::fmt::Display) -> anyhow::Error {
    let detail = detail.to_string();
    let detail = if detail.trim().is_empty() {
        "no connection (refused, or nothing listens there)".to_string()
    } else {
        detail
    };
    // Over SSH, what ssh said is the cause (a refused socket, a dropped connection).
    let detail = match ssh::opened().map(|s| s.last_words()) {
        Some(said) if !said.is_empty() => format!("{detail} (ssh: {said})"),
        _ => detail,
    };
    hinted(
        format!("cannot reach the Docker engine at `{host}`: {detail}"),
        "start the engine (`sudo systemctl start docker`, or `scripts/start-dockerd` in a checkout) or point DOCKER_HOST at a running one",
    )
}

fn label_filter(labels: &[String]) -> Option<HashMap<String, Vec<String>>> {
    Some(HashMap::from([("label".to_string(), labels.to_vec())]))
}

fn failed(op: &str, kind: &str, name: &str, e: &BollardError) -> anyhow::Error {
    anyhow::anyhow!("failed to {op} {kind} `{name}`: {}", root_message(e))
}

/// `repo` and `tag` of an image reference (`host:5000/repo:tag`; no tag: `latest`).
pub fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

impl Engine {
    /// Connect through `DOCKER_HOST` or the local socket and negotiate the API version.
    pub async fn connect() -> Result<Engine> {
        let chosen = endpoint::chosen()?;
        let host = chosen.url.clone();
        let remote = host.starts_with("ssh://");
        let docker = match endpoint::endpoint(&host)? {
            endpoint::Endpoint::Ssh(_) => {
                let ssh = ssh::connection().await?.context("the SSH connection")?;
                Docker::connect_with_unix(
                    &ssh.socket.display().to_string(),
                    600,
                    bollard::API_DEFAULT_VERSION,
                )
            }
            endpoint::Endpoint::Direct(url) if url.starts_with("unix://") => {
                Docker::connect_with_unix(&url, 600, bollard::API_DEFAULT_VERSION)
            }
            endpoint::Endpoint::Direct(url) => {
                Docker::connect_with_http(&url, 600, bollard::API_DEFAULT_VERSION)
            }
        }
        .map_err(|e| unreachable(&host, e))?;
        let docker = docker.with_timeout(Duration::from_secs(600));
        let docker =
            match tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version()).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Err(unreachable(&host, root_message(&e))),
                Err(_) => return Err(unreachable(&host, "no answer within 10 s")),
            };
        // The negotiated version: the engine's own when it is older than bollard's, which
        // is all that is compared (one `/version` request: the engine answers it slowly).
        let negotiated = docker.client_version();
        let api_version = format!("{}.{}", negotiated.major_version, negotiated.minor_version);
        if !api_at_least(&api_version, MIN_API) {
            let version = docker.version().await.ok().and_then(|v| v.version);
            return Err(hinted(
                format!(
                    "the Docker engine at `{host}` is too old: it speaks API {api_version} (Docker {}), irisctl needs API {}.{} (Docker 19.03) or newer",
                    version.unwrap_or_else(|| "unknown".into()),
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
            remote,
        })
    }

    /// Is the engine on this machine (so host ports can be checked here)?
    pub fn is_local(&self) -> bool {
        self.host.starts_with("unix://")
    }

    /// This machine's own engine (the default socket), when the engine irisctl works with is
    /// remote and one answers here: where a remote's images are built and sent from.
    pub async fn here() -> Option<Engine> {
        let docker =
            Docker::connect_with_unix(endpoint::DEFAULT_SOCKET, 600, bollard::API_DEFAULT_VERSION)
                .ok()?;
        let docker = tokio::time::timeout(Duration::from_secs(3), docker.negotiate_version())
            .await
            .ok()?
            .ok()?;
        let v = docker.client_version();
        Some(Engine {
            docker,
            host: endpoint::DEFAULT_SOCKET.into(),
            api_version: format!("{}.{}", v.major_version, v.minor_version),
            remote: false,
        })
    }

    /// This machine's engine when it runs the same platform (OS and architecture) as this
    /// one: what it builds or holds runs here too. An arm64 laptop's images are no use to an
    /// amd64 server: that one builds and pulls for itself.
    pub async fn here_for(&self) -> Option<Engine> {
        let here = Engine::here().await?;
        let (a, b) = tokio::join!(here.info(), self.info());
        let platform =
            |i: &bollard::models::SystemInfo| (i.os_type.clone(), i.architecture.clone());
        (platform(&a.ok()?) == platform(&b.ok()?)).then_some(here)
    }

    /// Another engine reached over SSH (a Swarm node of `swarm.nodes`).
    pub async fn over_ssh(url: &str) -> Result<Engine> {
        let endpoint::Endpoint::Ssh(target) = endpoint::endpoint(url)? else {
            anyhow::bail!("`{url}` is not an ssh:// engine address");
        };
        let ssh = ssh::to(target, url).await?;
        let docker = Docker::connect_with_unix(
            &ssh.socket.display().to_string(),
            600,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| unreachable(url, e))?;
        let docker =
            match tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version()).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Err(unreachable(url, root_message(&e))),
                Err(_) => return Err(unreachable(url, "no answer within 10 s")),
            };
        let v = docker.client_version();
        Ok(Engine {
            docker,
            host: url.to_string(),
            api_version: format!("{}.{}", v.major_version, v.minor_version),
            remote: true,
        })
    }

    /// Take `reference` from `here` (only the layers this engine lacks).
    pub async fn receive_image(&self, here: &Engine, reference: &str) -> Result<ship::ShipReport> {
        ship::ship_image(&here.docker, &self.docker, reference)
            .await?
            .with_context(|| format!("image `{reference}` is not on this machine's engine"))
    }

    /// Is the engine reached over SSH (its ports on the remote's loopback, its files not
    /// this machine's)?
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    pub async fn info(&self) -> Result<bollard::models::SystemInfo> {
        self.docker
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("failed to read the engine's info: {}", root_message(&e)))
    }

    // ---- images ----

    pub async fn image_exists(
        &self,
        reference: &str,
    ) -> Result<Option<bollard::models::ImageInspect>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed("inspect", "image", reference, &e)),
        }
    }

    /// The tags of the images whose reference matches `pattern` (`repo:id-*`).
    pub async fn image_tags(&self, pattern: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("reference".to_string(), vec![pattern.to_string()])]);
        let images = self
            .docker
            .list_images(Some(bollard::query_parameters::ListImagesOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| anyhow::anyhow!("failed to list images: {}", root_message(&e)))?;
        Ok(images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .filter(|t| t != "<none>:<none>")
            .collect())
    }

    /// The image's ID, if it is on the host.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        Ok(self.image_exists(reference).await?.and_then(|i| i.id))
    }

    /// Pull an image; the registry's (or the engine's) reason when that fails.
    pub async fn pull_image(&self, reference: &str) -> Result<(), String> {
        // A remote engine takes what this machine's engine has from it, only the missing layers.
        if self.remote {
            if let Some(here) = self.here_for().await {
                match ship::ship_image(&here.docker, &self.docker, reference).await {
                    Ok(Some(_)) => return Ok(()),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(format!(
                            "sending it from this machine's engine failed: {e:#}"
                        ))
                    }
                }
            }
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
            Some(why) => Err(why),
            None if self.image_exists(reference).await.ok().flatten().is_some() => Ok(()),
            None => Err("the pull ended without the image".into()),
        }
    }

    /// Make sure an image is on the host: pull it if absent, with a clear error when that fails.
    pub async fn ensure_image(&self, reference: &str, needed_by: &str) -> Result<()> {
        if self.image_exists(reference).await?.is_some() {
            return Ok(());
        }
        self.pull_image(reference).await.map_err(|why| {
            hinted(
                format!("image `{reference}` (needed by {needed_by}) is not on this host and cannot be pulled: {why}"),
                "set the image in irisctl.yaml `images:`, or make the local base images (README: offline mode)",
            )
        })
    }

    /// Build an image from a context streamed as tar.
    pub fn build_image(
        &self,
        options: bollard::query_parameters::BuildImageOptions,
        context: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> impl futures_util::Stream<Item = Result<bollard::models::BuildInfo, BollardError>> + '_
    {
        self.docker
            .build_image(options, None, Some(bollard::body_try_stream(context)))
    }

    /// Tag an image (by ID or reference) as `repo:tag`.
    pub async fn tag_image(&self, image: &str, repo: &str, tag: &str) -> Result<()> {
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        self.docker
            .tag_image(image, Some(options))
            .await
            .map_err(|e| failed("tag", "image", &format!("{image} as {repo}:{tag}"), &e))
    }

    pub async fn remove_image(&self, reference: &str) -> Result<ImageRemoval> {
        match self
            .docker
            .remove_image(
                reference,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
        {
            Ok(_) => Ok(ImageRemoval::Removed),
            Err(e) if is_not_found(&e) => Ok(ImageRemoval::Absent),
            Err(e) if is_conflict(&e) => Ok(ImageRemoval::InUse),
            Err(e) => Err(failed("remove", "image", reference, &e)),
        }
    }

    /// `remote@sha256:…`: the reference of the content a push of `remote` (`repo:tag`) sent,
    /// from the image's repo digests; `None` when the engine records none.
    pub async fn pushed_digest(&self, remote: &str) -> Result<Option<String>> {
        let repo = remote
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .map_or(remote, |(r, _)| r);
        Ok(self
            .image_exists(remote)
            .await?
            .and_then(|i| i.repo_digests)
            .unwrap_or_default()
            .iter()
            .find_map(|d| {
                d.strip_prefix(&format!("{repo}@"))
                    .map(|digest| format!("{remote}@{digest}"))
            }))
    }

    /// Tag `local` as `remote` and push it; the first error the registry reports.
    pub async fn push_image(&self, local: &str, remote: &str) -> Result<(), String> {
        let (repo, tag) = remote
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .unwrap_or((remote, "latest"));
        self.docker
            .tag_image(
                local,
                Some(bollard::query_parameters::TagImageOptions {
                    repo: Some(repo.to_string()),
                    tag: Some(tag.to_string()),
                }),
            )
            .await
            .map_err(|e| {
                format!(
                    "failed to tag `{local}` as `{remote}`: {}",
                    root_message(&e)
                )
            })?;
        let mut stream = self.docker.push_image(
            repo,
            Some(bollard::query_parameters::PushImageOptions {
                tag: Some(tag.to_string()),
                ..Default::default()
            }),
            None,
        );
        while let Some(item) = stream.next().await {
            let failure = match item {
                Ok(info) => info.error_detail.and_then(|d| d.message),
                Err(e) => Some(root_message(&e)),
            };
            if let Some(msg) = failure {
                return Err(msg);
            }
        }
        Ok(())
    }

    // ---- containers ----

    /// Containers carrying all of `labels` (`key=value` or bare `key`), stopped ones included.
    pub async fn containers_with(
        &self,
        label_filters: &[String],
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: label_filter(label_filters),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| anyhow::anyhow!("failed to list containers: {}", root_message(&e)))
    }

    pub async fn inspect_container(
        &self,
        id: &str,
    ) -> Result<bollard::models::ContainerInspectResponse> {
        self.docker
            .inspect_container(id, None)
            .await
            .map_err(|e| failed("inspect", "container", id, &e))
    }

    /// Create a container; `Ok(None)` when a container of that name exists already.
    pub async fn create_container(
        &self,
        name: &str,
        body: bollard::models::ContainerCreateBody,
    ) -> Result<Option<String>> {
        let options = bollard::query_parameters::CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        // On a remote engine, files of this machine are uploaded, not bind-mounted.
        let (body, shipped) = if self.remote {
            ship::without_binds(body)
        } else {
            (body, Vec::new())
        };
        let archives = ship::archives(&shipped)?;
        match self.docker.create_container(Some(options), body).await {
            Ok(c) => {
                for (dir, tar) in archives {
                    let options = bollard::query_parameters::UploadToContainerOptions {
                        path: dir.clone(),
                        ..Default::default()
                    };
                    let uploaded = self
                        .docker
                        .upload_to_container(&c.id, Some(options), bollard::body_full(tar.into()))
                        .await;
                    if let Err(e) = uploaded {
                        // Without its files it must never start: it goes again.
                        let _ = self.remove_container(&c.id, name).await;
                        return Err(anyhow::anyhow!(
                            "failed to copy the mounted files of container `{name}` into {dir}: {}",
                            root_message(&e)
                        ));
                    }
                }
                Ok(Some(c.id))
            }
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(failed("create", "container", name, &e)),
        }
    }

    pub async fn start_container(&self, id: &str, name: &str) -> Result<()> {
        match self
            .docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => {
                let msg = root_message(&e);
                if msg.contains("address already in use")
                    || msg.contains("port is already allocated")
                {
                    return Err(hinted(
                        format!("failed to start container `{name}`: a host port it publishes is taken ({msg})"),
                        "free the port, or choose another one (e.g. --api-port, --frontend-port, --prometheus-port, --grafana-port)",
                    ));
                }
                Err(anyhow::anyhow!("failed to start container `{name}`: {msg}"))
            }
        }
    }

    pub async fn unpause_container(&self, id: &str, name: &str) -> Result<()> {
        self.docker
            .unpause_container(id)
            .await
            .map_err(|e| failed("unpause", "container", name, &e))
    }

    /// Stop and remove a container; absent is fine.
    pub async fn remove_container(&self, id: &str, name: &str) -> Result<()> {
        let stop = bollard::query_parameters::StopContainerOptions {
            t: Some(10),
            ..Default::default()
        };
        match self.docker.stop_container(id, Some(stop)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) || is_not_modified(&e) => {}
            Err(e) => return Err(failed("stop", "container", name, &e)),
        }
        let rm = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            // Its anonymous volumes (a remote's uploaded files) go with it; named ones stay.
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(rm)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // "removal already in progress"
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(failed("remove", "container", name, &e)),
        }
    }

    /// An exec of `cmd` in `container`, its output attached or not.
    async fn create_exec(
        &self,
        container: &str,
        cmd: &[&str],
        attach: bool,
    ) -> Result<bollard::exec::CreateExecResults> {
        self.docker
            .create_exec(
                container,
                bollard::exec::CreateExecOptions {
                    cmd: Some(cmd.iter().map(|c| c.to_string()).collect::<Vec<_>>()),
                    attach_stdout: Some(attach),
                    attach_stderr: Some(attach),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| failed("exec in", "container", container, &e))
    }

    /// Run `cmd` in a running container and return without waiting for it (an exec, not a
    /// signal through the kill API: on Docker 20.10 a kill of any signal marks the container as
    /// stopped by hand, and its restart policy would no longer bring it back).
    pub async fn exec_detached(&self, container: &str, cmd: &[&str]) -> Result<()> {
        let exec = self.create_exec(container, cmd, false).await?;
        self.docker
            .start_exec(
                &exec.id,
                Some(bollard::exec::StartExecOptions {
                    detach: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| failed("exec in", "container", container, &e))?;
        Ok(())
    }

    /// Run `cmd` in a running container and wait for it: its exit code and its output (stdout
    /// and stderr, as they came, at most 4 KiB kept).
    pub async fn exec_output(&self, container: &str, cmd: &[&str]) -> Result<(i64, String)> {
        self.exec_output_up_to(container, cmd, 4096).await
    }

    /// [`Engine::exec_output`], keeping about `limit` bytes of the output.
    pub async fn exec_output_up_to(
        &self,
        container: &str,
        cmd: &[&str],
        limit: usize,
    ) -> Result<(i64, String)> {
        let exec = self.create_exec(container, cmd, true).await?;
        let started = self
            .docker
            .start_exec(&exec.id, None::<bollard::exec::StartExecOptions>)
            .await
            .map_err(|e| failed("exec in", "container", container, &e))?;
        let mut text = String::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            while let Some(chunk) = output.next().await {
                let Ok(chunk) = chunk else { break };
                if text.len() < limit {
                    text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                }
            }
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| failed("exec in", "container", container, &e))?
            .exit_code
            .unwrap_or(-1);
        Ok((code, text))
    }

    /// Remove a container at once (killed, no stop grace): for one that serves nothing yet.
    pub async fn kill_and_remove(&self, name: &str) -> Result<()> {
        let rm = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            // Its anonymous volumes (a remote's uploaded files) go with it; named ones stay.
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(name, Some(rm)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(failed("remove", "container", name, &e)),
        }
    }

    /// Attach a container to a network under `aliases` (Docker's DNS answers them with its
    /// address from then on).
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<()> {
        let request = bollard::models::NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(bollard::models::EndpointSettings {
                aliases: Some(aliases.to_vec()),
                ..Default::default()
            }),
        };
        self.docker
            .connect_network(network, request)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "failed to connect container `{container}` to network `{network}`: {}",
                    root_message(&e)
                )
            })
    }

    /// Detach a container from a network (its aliases there stop answering).
    pub async fn disconnect_network(&self, network: &str, container: &str) -> Result<()> {
        let request = bollard::models::NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        self.docker
            .disconnect_network(network, request)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "failed to disconnect container `{container}` from network `{network}`: {}",
                    root_message(&e)
                )
            })
    }

    /// A container's output; `follow` keeps the stream open.
    pub fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: &str,
    ) -> impl futures_util::Stream<Item = Result<String, String>> + 'static {
        let options = bollard::query_parameters::LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        self.docker.logs(id, Some(options)).map(|item| {
            item.map(|chunk| String::from_utf8_lossy(&chunk.into_bytes()).into_owned())
                .map_err(|e| root_message(&e))
        })
    }

    pub async fn logs_tail(&self, container: &str, lines: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut stream = std::pin::pin!(self.logs(container, false, &lines.to_string()));
        while let Some(Ok(text)) = stream.next().await {
            out.extend(text.lines().map(str::to_string));
        }
        let skip = out.len().saturating_sub(lines);
        out.split_off(skip)
    }

    // ---- networks and volumes ----

    pub async fn inspect_network(
        &self,
        name: &str,
    ) -> Result<Option<bollard::models::NetworkInspect>> {
        match self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed("inspect", "network", name, &e)),
        }
    }

    /// Create a network; one made concurrently under the same name is fine.
    pub async fn create_network(
        &self,
        request: bollard::models::NetworkCreateRequest,
    ) -> Result<()> {
        let name = request.name.clone();
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(failed("create", "network", &name, &e)),
        }
    }

    /// Networks named exactly `name` (Docker allows several of one name).
    pub async fn networks_named(&self, name: &str) -> Result<Vec<Listed>> {
        let filters = Some(HashMap::from([(
            "name".to_string(),
            vec![name.to_string()],
        )]));
        let list = self
            .docker
            .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
                filters,
            }))
            .await
            .map_err(|e| anyhow::anyhow!("failed to list networks: {}", root_message(&e)))?;
        let mut out: Vec<(String, Listed)> = list
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .map(|n| {
                (
                    n.created.clone().unwrap_or_default(),
                    Listed {
                        id: n.id.unwrap_or_default(),
                        name: n.name.unwrap_or_default(),
                        labels: n.labels.unwrap_or_default(),
                    },
                )
            })
            .collect();
        // Oldest first: the one to keep when there are duplicates.
        out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
        Ok(out.into_iter().map(|(_, n)| n).collect())
    }

    pub async fn inspect_volume(&self, name: &str) -> Result<Option<bollard::models::Volume>> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed("inspect", "volume", name, &e)),
        }
    }

    pub async fn create_volume(&self, request: bollard::models::VolumeCreateRequest) -> Result<()> {
        let name = request.name.clone().unwrap_or_default();
        self.docker
            .create_volume(request)
            .await
            .map(|_| ())
            .map_err(|e| failed("create", "volume", &name, &e))
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
