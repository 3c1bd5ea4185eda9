//! The one seam the verbs talk to. A verb resolves one [`Stack`] and hands it to a backend —
//! the single engine ([`docker`]) or Docker Swarm ([`swarm`]) — which does
//! preflight → observe → plan → apply → wait → status → down. No verb asks which target it
//! runs on; a new backend is one folder here and one arm in [`Backend`].

pub mod docker;
pub mod images;
pub mod owner;
pub mod plan;
pub mod swarm;

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::engine::{Engine, ImageRemoval};
use crate::output::Printer;
use crate::poll::{poll_until, Backoff, Ended, Poll};
use crate::probe::ProbeResult;
use crate::stack::Stack;
use plan::{Op, Plan};

/// Where the stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// Containers on the engine `DOCKER_HOST` points at.
    #[default]
    Docker,
    /// Services on the Docker Swarm whose manager `DOCKER_HOST` points at.
    Swarm,
}

/// A connected backend.
pub enum Backend {
    Docker(docker::Docker),
    Swarm(swarm::Swarm),
}

/// One service as `status` reports it.
#[derive(Debug, Default, Serialize)]
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
    /// The host port the service's probes go to (as published, not as configured).
    #[serde(skip)]
    pub probe_port: Option<u16>,
    /// A released service (single engine): the release it runs and the one `irisctl
    /// rollback` would return to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub releases: Option<Releases>,
    /// Swarm: the node (host name) of each running task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
}

/// A Swarm node as `status --target swarm` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStatus {
    pub hostname: String,
    pub role: String,
    /// `ready`, `down`, `disconnected`, `unknown`.
    pub state: String,
    /// `active`, `pause`, `drain`.
    pub availability: String,
}

/// The current and previous release of a service.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Releases {
    pub current: Option<ReleaseImage>,
    pub previous: Option<ReleaseImage>,
}

/// One release: its image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReleaseImage {
    pub image_id: String,
    /// When the image was built (RFC 3339, as the engine says).
    pub built_at: Option<String>,
    /// The digest of its build inputs (context files, args, base images): label
    /// `io.irisctl.build-hash`.
    pub build_digest: Option<String>,
}

impl ReleaseImage {
    fn line(&self) -> String {
        let short = |s: &str| {
            s.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect::<String>()
        };
        format!(
            "image {} built {} source {}",
            short(&self.image_id),
            self.built_at
                .as_deref()
                .map_or("-", |t| t.split('.').next().unwrap_or(t)),
            self.build_digest.as_deref().map_or("-".to_string(), short)
        )
    }
}

/// `status`'s releases section: one line per release of each released service (empty when
/// none has releases).
pub fn releases_section(services: &[ServiceStatus]) -> String {
    let mut out = String::new();
    for s in services {
        let Some(r) = &s.releases else { continue };
        if out.is_empty() {
            out.push_str(
                "
releases
",
            );
        }
        for (which, img) in [("current", &r.current), ("previous", &r.previous)] {
            let text = img.as_ref().map_or(
                "none (`irisctl rollback` needs one)".to_string(),
                ReleaseImage::line,
            );
            out.push_str(&format!("  {:<12} {which:<9} {text}\n", s.name));
        }
    }
    out
}

impl ServiceStatus {
    /// Running, healthy (or without a check, or `ready`: not checked by Docker yet while
    /// irisctl's own readiness check answers — irisctl starts services faster than Docker's
    /// first health check) and answering its probes.
    pub fn is_healthy(&self) -> bool {
        self.state == "running"
            && matches!(self.health.as_str(), "healthy" | "-" | "ready")
            && self.probes.iter().all(|p| p.ok)
    }
}

/// What a backend observed of the stack: one row per service, and what is not the stack's.
pub struct Observation {
    pub services: Vec<ServiceStatus>,
    pub orphans: Vec<String>,
    /// The project directory the stack's objects were made from, when they say.
    pub managed_from: Option<String>,
    /// Swarm: its nodes.
    pub nodes: Option<Vec<NodeStatus>>,
}

impl Target {
    /// A warning about the exposure this target implies with this bind address, if any.
    pub fn exposure_warning(self, bind: std::net::IpAddr) -> Option<String> {
        match self {
            Target::Docker if bind.is_unspecified() => Some(format!(
                "publishing on {bind} makes the API, Prometheus and Grafana reachable from other hosts"
            )),
            Target::Docker => None,
            Target::Swarm => Some(swarm::EXPOSURE_WARNING.to_string()),
        }
    }
}

impl Backend {
    /// Connect to the engine for `target`; Swarm refuses unless the engine is a manager.
    pub async fn connect(target: Target) -> Result<Backend> {
        let engine = Engine::connect().await?;
        Ok(match target {
            Target::Docker => Backend::Docker(docker::Docker::new(engine)),
            Target::Swarm => Backend::Swarm(swarm::Swarm::new(engine).await?),
        })
    }

    pub fn engine(&self) -> &Engine {
        match self {
            Backend::Docker(b) => &b.engine,
            Backend::Swarm(b) => &b.engine,
        }
    }

    /// The stack as this backend runs it.
    pub fn form(&self, stack: &Stack) -> Stack {
        match self {
            Backend::Docker(_) => stack.docker_form(),
            Backend::Swarm(_) => stack.swarm_form(),
        }
    }

    /// Refuse, before anything is built or touched, what would fail later.
    pub async fn preflight(&self, stack: &Stack) -> Result<()> {
        match self {
            Backend::Docker(b) => b.preflight(stack).await,
            Backend::Swarm(_) => Ok(()),
        }
    }

    /// Refuse a stack that is not this directory's project (without checking host ports: for
    /// verbs that publish none).
    pub async fn preflight_ownership(&self, stack: &Stack) -> Result<()> {
        match self {
            Backend::Docker(b) => b.preflight_ownership(stack).await,
            Backend::Swarm(_) => Ok(()),
        }
    }

    /// What `up` would do, given the image IDs (`None`: still to be built).
    pub async fn plan(
        &self,
        stack: &Stack,
        images: &images::ImageIds,
        remove_orphans: bool,
    ) -> Result<Plan> {
        match self {
            Backend::Docker(b) => b.plan(stack, images, remove_orphans).await,
            Backend::Swarm(b) => b.plan(stack, images).await,
        }
    }

    /// Carry out `plan` and wait until every service is ready; the operations done.
    pub async fn apply(
        &self,
        stack: &Stack,
        plan: &Plan,
        images: &images::Built,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Vec<Op>> {
        match self {
            Backend::Docker(b) => b.apply(stack, plan, images, timeout, printer).await,
            Backend::Swarm(b) => {
                // Swarm pushes and updates services together: every image first.
                let names: Vec<String> = stack.services.iter().map(|s| s.name.clone()).collect();
                let images = images.all(&names).await?;
                b.apply(stack, plan, &images, timeout, printer).await
            }
        }
    }

    /// What `rollback` does: released services back to their previous release (all of them
    /// that have one when `services` is empty).
    pub async fn plan_rollback(&self, stack: &Stack, services: &[String]) -> Result<Plan> {
        let explicit = !services.is_empty();
        let chosen: Vec<String> = if explicit {
            services.to_vec()
        } else {
            stack
                .services
                .iter()
                .filter(|s| s.build.is_some())
                .map(|s| s.name.clone())
                .collect()
        };
        for name in &chosen {
            if stack.service(name).is_none() {
                let known: Vec<_> = stack.services.iter().map(|s| s.name.as_str()).collect();
                return Err(crate::error::hinted(
                    format!("no service named `{name}`"),
                    format!("services: {}", known.join(", ")),
                ));
            }
        }
        match self {
            Backend::Docker(b) => {
                let chosen: Vec<String> = if explicit {
                    chosen
                } else {
                    chosen
                        .into_iter()
                        .filter(|n| {
                            stack
                                .service(n)
                                .is_some_and(|s| crate::stack::edge::is_released(stack, s))
                        })
                        .collect()
                };
                b.plan_rollback(stack, &chosen, explicit).await
            }
            Backend::Swarm(b) => b.plan_rollback(stack, &chosen).await,
        }
    }

    /// Carry out a rollback plan; the operations done.
    pub async fn apply_rollback(
        &self,
        stack: &Stack,
        plan: &Plan,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Vec<Op>> {
        match self {
            Backend::Docker(b) => b.apply_rollback(stack, plan, timeout, printer).await,
            Backend::Swarm(b) => b.apply_rollback(stack, plan, timeout, printer).await,
        }
    }

    /// The services as the engine reports them.
    pub async fn observe(&self, stack: &Stack, host: &str) -> Result<Observation> {
        match self {
            Backend::Docker(b) => b.observe_status(stack, host).await,
            Backend::Swarm(b) => b.observe_status(stack, host).await,
        }
    }

    /// What `down` removes: the stack's containers or services and network, its volumes when
    /// asked, and with `rmi` the images irisctl built for it.
    pub async fn plan_down(&self, stack: &Stack, volumes: bool, rmi: bool) -> Result<Plan> {
        let mut plan = match self {
            Backend::Docker(b) => b.plan_down(stack, volumes).await?,
            Backend::Swarm(b) => b.plan_down(stack, volumes).await?,
        };
        if rmi {
            for op in self.image_removals(stack).await? {
                plan.push(op);
            }
        }
        Ok(plan)
    }

    /// Carry out a `down` plan.
    pub async fn apply_down(&self, stack: &Stack, plan: &Plan, printer: &Printer) -> Result<Down> {
        let mut out = match self {
            Backend::Docker(b) => b.apply_down(plan, printer).await?,
            Backend::Swarm(b) => b.apply_down(stack, plan, printer).await?,
        };
        // `--rmi` on a remote engine: the images were built on this machine's engine and sent;
        // the copies here go too.
        if self.engine().is_remote() {
            let built: Vec<&str> = plan
                .changes()
                .filter(|o| o.kind == plan::Kind::Image && o.verb == plan::Verb::Remove)
                .map(|o| o.object.as_str())
                .collect();
            if let (false, Some(here)) = (built.is_empty(), self.engine().here_for().await) {
                for t in built {
                    let ours = here.image_exists(t).await.ok().flatten().is_some_and(|i| {
                        i.config
                            .and_then(|c| c.labels)
                            .is_some_and(|l| images::record::built_by_irisctl(&l))
                    });
                    if ours && matches!(here.remove_image(t).await, Ok(ImageRemoval::Removed)) {
                        out.removed.push(format!("image {t} on this machine"));
                    }
                }
            }
        }
        // `--rmi` on a Swarm without a registry: the copies on the other nodes go too (best
        // effort: a node that cannot be reached keeps them, and says so).
        if let Backend::Swarm(_) = self {
            let sent: Vec<&str> = plan
                .changes()
                .filter(|o| o.kind == plan::Kind::Image && o.verb == plan::Verb::Remove)
                .map(|o| o.object.as_str())
                .filter(|t| t.contains(":id-"))
                .collect();
            if !sent.is_empty() {
                for url in &stack.swarm.nodes {
                    match Engine::over_ssh(url).await {
                        Ok(node) => {
                            for t in &sent {
                                // The node's tasks may still be ending: up to 10 s for them.
                                let outcome = poll_until(
                                    (std::time::Instant::now() + Duration::from_secs(10)).into(),
                                    Backoff::fixed(Duration::from_millis(500)),
                                    || async {
                                        match node.remove_image(t).await {
                                            Ok(ImageRemoval::InUse) => {
                                                Poll::Pending(Ok(ImageRemoval::InUse))
                                            }
                                            done => Poll::Ready(done),
                                        }
                                    },
                                )
                                .await
                                .unwrap_or_else(Ended::into_inner);
                                match outcome {
                                    Ok(ImageRemoval::Removed) => {
                                        out.removed.push(format!("image {t} on {url}"))
                                    }
                                    Ok(ImageRemoval::Absent) => {}
                                    Ok(ImageRemoval::InUse) => out
                                        .kept
                                        .push(format!("image {t} on {url}: a container uses it")),
                                    Err(e) => out.kept.push(format!("image {t} on {url}: {e:#}")),
                                }
                            }
                        }
                        Err(e) => out.kept.push(format!("the images sent to {url}: {e:#}")),
                    }
                }
            }
        }
        for op in plan
            .changes()
            .filter(|o| o.kind == plan::Kind::Image && o.verb == plan::Verb::Remove)
        {
            match plan::step(printer, op, self.engine().remove_image(&op.object)).await? {
                ImageRemoval::Removed => out.removed.push(format!("image {}", op.object)),
                ImageRemoval::Absent => {}
                ImageRemoval::InUse => out
                    .kept
                    .push(format!("image {}: another container uses it", op.object)),
            }
        }
        Ok(out)
    }

    /// The images irisctl built for the stack, to remove (kept while a container uses one):
    /// those this run's settings build, and any other service's image of the project's
    /// built-image name that irisctl made (a Grafana built under settings this run does not
    /// have).
    async fn image_removals(&self, stack: &Stack) -> Result<Vec<Op>> {
        let mut out = Vec::new();
        let mut tags: Vec<String> = Vec::new();
        for s in &stack.services {
            let built_name = format!("{}-{}:dev", stack.project, s.name);
            // The image a release replaced, kept for `irisctl rollback`.
            let previous = format!(
                "{}:{}",
                docker::previous_repo(stack, &s.name),
                docker::PREVIOUS_TAG
            );
            // The copy tagged for the Swarm registry (`swarm.registry`), when there is one.
            let pushed = stack
                .swarm
                .registry
                .as_ref()
                .filter(|_| s.build.is_some())
                .map(|r| format!("{r}/{}", s.image));
            // The copies sent to the Swarm's other nodes (`swarm.nodes`), tagged by ID.
            if s.build.is_some() {
                let (repo, _) = crate::engine::split_tag(&s.image);
                for t in self.engine().image_tags(&format!("{repo}:id-*")).await? {
                    if !tags.contains(&t) {
                        tags.push(t);
                    }
                }
            }
            // A shadow's challenger (`irisctl shadow start`).
            let challenger = (s.name == "api").then(|| {
                format!(
                    "{}:{}",
                    docker::previous_repo(stack, &s.name),
                    crate::shadow::TAG
                )
            });
            for tag in [
                s.build.as_ref().map(|_| s.image.clone()),
                Some(built_name),
                Some(previous),
                pushed,
                challenger,
            ]
            .into_iter()
            .flatten()
            {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
        for tag in tags {
            let ours = self.engine().image_exists(&tag).await?.is_some_and(|i| {
                i.config
                    .and_then(|c| c.labels)
                    .is_some_and(|l| images::record::built_by_irisctl(&l))
            });
            if ours {
                out.push(
                    Op::new(plan::Verb::Remove, plan::Kind::Image, &tag)
                        .because("down --rmi: built by irisctl for the project"),
                );
            }
        }
        Ok(out)
    }
}

/// What `down` did.
#[derive(Debug, Default)]
pub struct Down {
    /// `container iris-api-1`, `network iris-network`…
    pub removed: Vec<String>,
    /// Volumes deleted with their data.
    pub deleted_volumes: Vec<String>,
    /// Left in place, with why.
    pub kept: Vec<String>,
}

impl Down {
    pub fn extend(&mut self, other: Down) {
        self.removed.extend(other.removed);
        self.deleted_volumes.extend(other.deleted_volumes);
        self.kept.extend(other.kept);
    }

    /// Nothing removed, deleted or kept.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.deleted_volumes.is_empty() && self.kept.is_empty()
    }
}
