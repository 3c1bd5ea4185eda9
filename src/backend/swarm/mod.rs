//! The Swarm backend: the same [`Stack`] as Docker Swarm services on an attachable overlay
//! network, planned by [`plan::plan`] (pure) and applied here; rolling updates start the new
//! task first and roll back on failure.

mod down;
pub mod plan;
mod release;
pub mod spec;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Result;
use bollard::models::NetworkCreateRequest;
use serde::Serialize;

use super::images::ImageIds;
use super::plan::{step, Kind, Op, Plan, Verb};
use super::{Observation, ServiceStatus};
use crate::engine::{Engine, Object};
use crate::error::hinted;
use crate::output::Printer;
use crate::poll::{poll_until, Backoff, Ended, Poll};
use crate::stack::record::{self, Record};
use crate::stack::Stack;
use spec::{file_objects, network_name, service_spec, spec_hash, FileObject, NAMESPACE};

const SPEC_HASH: &str = "io.irisctl.spec-hash";

/// What `up --target swarm` warns about.
pub const EXPOSURE_WARNING: &str = "on Swarm, ports are published on every interface of the node that runs the task (the bind address does not apply), and the API only through the web UI's /api/";

pub struct Swarm {
    pub engine: Engine,
    /// On a swarm of more than one node: the manager's node ID, where every service that owns
    /// a volume (its data must not split) or publishes a port (host mode: its address stays
    /// this host's) runs.
    pin: Option<String>,
}

fn namespace(stack: &Stack) -> String {
    format!("{NAMESPACE}={}", stack.project)
}

impl Swarm {
    /// Connect, refusing clearly unless the engine is a Swarm manager.
    pub async fn new(engine: Engine) -> Result<Swarm> {
        let info = ensure_manager(&engine).await?;
        let pin = info
            .as_ref()
            .filter(|s| s.nodes.unwrap_or(1) > 1)
            .and_then(|s| s.node_id.clone());
        Ok(Swarm { engine, pin })
    }

    /// The desired services with their specs, and the file objects each mounts.
    fn desired(
        &self,
        stack: &Stack,
        images: &ImageIds,
    ) -> Result<Vec<(plan::Desired, bollard::models::ServiceSpec, Vec<FileObject>)>> {
        stack
            .services
            .iter()
            .map(|s| {
                let files = file_objects(stack, s)?;
                let mut spec = service_spec(stack, s, &files);
                spec::pin_to(&mut spec, s, self.pin.as_deref());
                let image = images.get(&s.name).cloned().flatten();
                let inputs: Vec<(String, Vec<u8>)> = files
                    .iter()
                    .map(|f| (f.source.display().to_string(), f.data.clone()))
                    .collect();
                let record = Record::of(s, image.as_deref().unwrap_or(""), &inputs)
                    .with_field("replicas", stack.swarm.replicas_of(&s.name));
                let hash = image.as_deref().map(|id| spec_hash(&spec, id));
                if let (Some(l), Some(h)) = (spec.labels.as_mut(), &hash) {
                    l.insert(SPEC_HASH.into(), h.clone());
                    l.insert(record::LABEL.into(), record.label());
                }
                Ok((
                    plan::Desired {
                        service: s.name.clone(),
                        spec_hash: hash,
                        record,
                        files: files.iter().map(|f| (f.name.clone(), f.secret)).collect(),
                    },
                    spec,
                    files,
                ))
            })
            .collect()
    }

    /// Send each built image the plan deploys to every node of `swarm.nodes` (over SSH, only the
    /// layers a node lacks), tagged by its ID (`<repo>:id-<12 hex>`) on every node so that all
    /// run the same image; the tag per service. Nothing without nodes or with a registry.
    async fn send_to_nodes(
        &self,
        stack: &Stack,
        plan: &Plan,
        images: &BTreeMap<String, String>,
        printer: &Printer,
    ) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        if stack.swarm.registry.is_some() {
            return Ok(out);
        }
        let built: Vec<(&crate::stack::Service, &String)> = stack
            .services
            .iter()
            .filter(|s| s.build.is_some())
            // A service pinned to the manager never runs on another node.
            .filter(|s| self.pin.is_none() || spec::runs_anywhere(s))
            .filter(|s| plan.for_service(&s.name).is_some())
            .filter_map(|s| Some((s, images.get(&s.name)?)))
            .collect();
        if built.is_empty() {
            return Ok(out);
        }
        // Every other ready node must be reachable for the images, or a task placed there
        // could not start ("No such image").
        if self.pin.is_some() {
            let ready = self
                .engine
                .nodes()
                .await?
                .iter()
                .filter(|n| {
                    n.status.as_ref().and_then(|s| s.state)
                        == Some(bollard::models::NodeState::READY)
                })
                .count();
            if stack.swarm.nodes.len() + 1 < ready {
                return Err(hinted(
                    format!(
                        "the swarm has {ready} ready nodes, and without a registry the built images reach only this manager and the {} node(s) of swarm.nodes; nothing was deployed",
                        stack.swarm.nodes.len()
                    ),
                    "list every other node's engine in swarm.nodes (IRISCTL_SWARM_NODES=ssh://USER@NODE,…), or set swarm.registry for the nodes to pull from",
                ));
            }
        }
        if stack.swarm.nodes.is_empty() {
            return Ok(out);
        }
        let mut nodes = Vec::new();
        for url in &stack.swarm.nodes {
            let node = Engine::over_ssh(url).await.map_err(|e| {
                hinted(
                    format!("Swarm node `{url}` (swarm.nodes) cannot be reached, so it cannot get the built images; nothing was deployed: {e:#}"),
                    "check `ssh` to it and that its engine runs, or take it out of swarm.nodes (IRISCTL_SWARM_NODES)",
                )
            })?;
            nodes.push((url, node));
        }
        for (s, id) in built {
            let (repo, _) = crate::engine::split_tag(&s.image);
            let hex = id.trim_start_matches("sha256:");
            let tag = format!("id-{}", hex.get(..12).unwrap_or(hex));
            let pinned = format!("{repo}:{tag}");
            self.engine.tag_image(id, repo, &tag).await?;
            for (url, node) in &nodes {
                // A node that has it (an earlier run, an unchanged service) gets nothing.
                if node.image_id(&pinned).await.ok().flatten().as_deref() == Some(id.as_str()) {
                    continue;
                }
                printer.enter(format!("sending {pinned} to {url}"));
                let sent = node.receive_image(&self.engine, &pinned).await;
                let there = node.image_id(&pinned).await.ok().flatten();
                if let Err(e) = sent.and_then(|_| {
                    if there.as_deref() == Some(id.as_str()) {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!("it holds {:?} after the transfer", there))
                    }
                }) {
                    return Err(hinted(
                        format!("Swarm node `{url}` did not get image `{pinned}` of `{}`; nothing was deployed: {e:#}", s.name),
                        "check the node's free disk space and its engine, then run `irisctl up --target swarm` again",
                    ));
                }
            }
            out.insert(s.name.clone(), pinned);
        }
        Ok(out)
    }

    async fn observe(&self, stack: &Stack) -> Result<plan::Observed> {
        let label = namespace(stack);
        let names = |l: Vec<crate::engine::Listed>| l.into_iter().map(|o| o.name).collect();
        Ok(plan::Observed {
            services: states(&self.engine, &stack.project)
                .await?
                .into_iter()
                .map(|s| plan::Current {
                    name: s.name,
                    service: s.service,
                    spec_hash: s.spec_hash,
                    record: s.record,
                })
                .collect(),
            network_exists: self
                .engine
                .inspect_network(&network_name(stack))
                .await?
                .is_some(),
            configs: names(self.engine.list_labelled(Object::Config, &label).await?),
            secrets: names(self.engine.list_labelled(Object::Secret, &label).await?),
        })
    }

    pub async fn plan(&self, stack: &Stack, images: &ImageIds) -> Result<Plan> {
        let desired: Vec<plan::Desired> = self
            .desired(stack, images)?
            .into_iter()
            .map(|(d, _, _)| d)
            .collect();
        Ok(plan::plan(stack, &desired, &self.observe(stack).await?))
    }

    /// Apply `plan`: network, configs and secrets, pushes, service creates and rolling
    /// updates; then wait until Swarm reports every service converged.
    pub async fn apply(
        &self,
        stack: &Stack,
        plan: &Plan,
        images: &BTreeMap<String, String>,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Vec<Op>> {
        let since = std::time::SystemTime::now();
        let ids: ImageIds = images
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let labels = HashMap::from([(NAMESPACE.to_string(), stack.project.clone())]);
        let mut done = Vec::new();
        if let Some(op) = plan
            .ops
            .iter()
            .find(|o| o.kind == Kind::Network && o.verb == Verb::Create)
        {
            let request = NetworkCreateRequest {
                name: network_name(stack),
                driver: Some("overlay".into()),
                attachable: Some(true),
                labels: Some(labels.clone()),
                ..Default::default()
            };
            step(printer, op, self.engine.create_network(request)).await?;
            done.push(op.clone());
        }
        // Without a registry, built images reach the other nodes over SSH before anything is
        // deployed: a node that cannot take one stops the run here.
        let shipped = self.send_to_nodes(stack, plan, images, printer).await?;
        let current = states(&self.engine, &stack.project).await?;
        let mut updated = Vec::new();
        for (d, mut spec, files) in self.desired(stack, &ids)? {
            let Some(op) = plan.for_service(&d.service) else {
                continue;
            };
            let service = stack.service(&d.service);
            if let (Some(registry), Some(s)) = (&stack.swarm.registry, service) {
                if s.build.is_some() && op.changes() {
                    let remote = format!("{registry}/{}", s.image);
                    printer.enter(format!("pushing {remote}"));
                    self.engine.push_image(&s.image, &remote).await.map_err(|msg| {
                        hinted(
                            format!("pushing `{remote}` failed: {msg}"),
                            "check the `registry` setting and that this engine may push there (`docker login`)",
                        )
                    })?;
                    // Pinned by digest: every node runs exactly what was pushed, and Swarm's
                    // rollback (`irisctl rollback --target swarm`) returns to the previous
                    // content, not to whatever the tag holds later.
                    if let Some(pinned) = self.engine.pushed_digest(&remote).await? {
                        if let Some(c) = spec
                            .task_template
                            .as_mut()
                            .and_then(|t| t.container_spec.as_mut())
                        {
                            c.image = Some(pinned);
                        }
                    }
                }
            }
            if let (Some(pinned), Some(c)) = (
                shipped.get(&d.service),
                spec.task_template
                    .as_mut()
                    .and_then(|t| t.container_spec.as_mut()),
            ) {
                c.image = Some(pinned.clone());
            }
            if !op.changes() {
                continue;
            }
            // Tasks refer to configs and secrets by ID: make them, then fill the IDs in.
            let mut with_ids = Vec::new();
            for f in &files {
                let ensure =
                    self.engine
                        .ensure_swarm_file(f.secret, &f.name, labels.clone(), &f.data);
                let id = match plan.ops.iter().find(|o| o.object == f.name && o.changes()) {
                    Some(file_op) => {
                        let id = step(printer, file_op, ensure).await?;
                        done.push(file_op.clone());
                        id
                    }
                    None => ensure.await?,
                };
                with_ids.push((f.name.clone(), id));
            }
            if let Some(c) = spec
                .task_template
                .as_mut()
                .and_then(|t| t.container_spec.as_mut())
            {
                for cfg in c.configs.iter_mut().flatten() {
                    cfg.config_id = with_ids
                        .iter()
                        .find(|(n, _)| Some(n) == cfg.config_name.as_ref())
                        .map(|(_, id)| id.clone());
                }
                for sec in c.secrets.iter_mut().flatten() {
                    sec.secret_id = with_ids
                        .iter()
                        .find(|(n, _)| Some(n) == sec.secret_name.as_ref())
                        .map(|(_, id)| id.clone());
                }
            }
            printer.enter(format!("deploying service {}", op.object));
            let cur = current.iter().find(|c| c.service == d.service);
            step(printer, op, async {
                match (op.verb, cur) {
                    (Verb::Update, Some(cur)) => {
                        // The image tag may be unchanged while its content is new: force new
                        // tasks.
                        if let Some(t) = spec.task_template.as_mut() {
                            t.force_update = Some(cur.force_update + 1);
                        }
                        self.engine
                            .update_service(&op.object, spec, cur.version)
                            .await
                    }
                    _ => self.engine.create_service(spec).await,
                }
            })
            .await?;
            if op.verb == Verb::Update && cur.is_some() {
                updated.push(d.service.clone());
            }
            printer.service(
                &d.service,
                if op.verb == Verb::Update {
                    "rolling update started"
                } else {
                    "created"
                },
            );
            done.push(op.clone());
        }
        printer.enter("waiting for the Swarm services to converge");
        wait_converged(&self.engine, stack, &updated, since, timeout).await?;
        Ok(done)
    }

    /// One row per service with its running/desired tasks.
    pub async fn observe_status(&self, stack: &Stack, host: &str) -> Result<Observation> {
        let states = states(&self.engine, &stack.project).await?;
        let nodes = self.engine.nodes().await?;
        let hostname = |id: &str| {
            nodes
                .iter()
                .find(|n| n.id.as_deref() == Some(id))
                .and_then(|n| n.description.as_ref()?.hostname.clone())
                .unwrap_or_else(|| id.chars().take(12).collect())
        };
        let mut services = Vec::new();
        for s in &stack.services {
            let st = states.iter().find(|st| st.service == s.name);
            let mut on: Vec<String> = match st {
                Some(st) => self
                    .engine
                    .running_tasks(&st.name)
                    .await?
                    .iter()
                    .filter(|t| {
                        t.status.as_ref().and_then(|s| s.state)
                            == Some(bollard::models::TaskState::RUNNING)
                    })
                    .filter_map(|t| t.node_id.as_deref().map(hostname))
                    .collect(),
                None => Vec::new(),
            };
            on.sort();
            let converged = st.is_some_and(|st| st.desired > 0 && st.running == st.desired);
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
                probes: vec![],
                // The port Swarm publishes (not this run's setting: another program may hold
                // a newly configured one).
                probe_port: st.filter(|st| st.running > 0).and_then(|st| {
                    let target = s.ports.first()?.container;
                    st.published
                        .iter()
                        .find(|(t, _)| *t == target)
                        .map(|(_, published)| *published)
                }),
                releases: None,
                nodes: Some(on),
            });
        }
        let orphans = states
            .iter()
            .filter(|st| stack.service(&st.service).is_none())
            .map(|st| st.name.clone())
            .collect();
        let nodes = nodes
            .iter()
            .map(|n| {
                let spec = n.spec.as_ref();
                crate::backend::NodeStatus {
                    hostname: n
                        .description
                        .as_ref()
                        .and_then(|d| d.hostname.clone())
                        .unwrap_or_default(),
                    role: spec
                        .and_then(|s| s.role)
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    state: n
                        .status
                        .as_ref()
                        .and_then(|s| s.state)
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    availability: spec
                        .and_then(|s| s.availability)
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                }
            })
            .collect();
        Ok(Observation {
            services,
            orphans,
            managed_from: None,
            nodes: Some(nodes),
        })
    }
}

/// How often Swarm is asked again while it converges.
const POLL: Duration = Duration::from_millis(500);

/// Refuse clearly unless the engine is a Swarm manager.
async fn ensure_manager(engine: &Engine) -> Result<Option<bollard::models::SwarmInfo>> {
    let info = engine.info().await?;
    if !crate::engine::api_at_least(&engine.api_version, (1, 41)) {
        return Err(hinted(
            format!(
                "`--target swarm` needs Engine API 1.41 (Docker 20.10) or newer; `{}` speaks {}",
                engine.host, engine.api_version
            ),
            "upgrade the engine on the Swarm manager",
        ));
    }
    let manager = info
        .swarm
        .as_ref()
        .and_then(|s| s.control_available)
        .unwrap_or(false);
    if !manager {
        return Err(hinted(
            format!("the Docker engine at `{}` is not a Swarm manager, so `--target swarm` cannot deploy to it", engine.host),
            "make it one with `docker swarm init --advertise-addr <this host's IP>` (or point DOCKER_HOST at a manager of an existing swarm)",
        ));
    }
    Ok(info.swarm)
}

/// A service as Swarm reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceState {
    pub name: String,
    pub service: String,
    pub running: u64,
    pub desired: u64,
    pub image: String,
    pub update: String,
    pub update_message: String,
    #[serde(skip)]
    pub spec_hash: String,
    #[serde(skip)]
    pub record: Option<Record>,
    #[serde(skip)]
    pub version: u64,
    #[serde(skip)]
    pub force_update: u64,
    /// When the current (or last) update started.
    #[serde(skip)]
    pub update_started: Option<std::time::SystemTime>,
    /// The ports the service publishes, as Swarm says (target → published).
    #[serde(skip)]
    pub published: Vec<(u16, u16)>,
}

async fn states(engine: &Engine, project: &str) -> Result<Vec<ServiceState>> {
    let services = engine
        .services_with(&format!("{NAMESPACE}={project}"))
        .await?;
    let mut out: Vec<ServiceState> = services
        .into_iter()
        .map(|s| {
            let name = s
                .spec
                .as_ref()
                .and_then(|sp| sp.name.clone())
                .unwrap_or_default();
            let status = s.service_status.clone().unwrap_or_default();
            ServiceState {
                service: name
                    .strip_prefix(&format!("{project}_"))
                    .unwrap_or(&name)
                    .to_string(),
                image: s
                    .spec
                    .as_ref()
                    .and_then(|sp| sp.task_template.as_ref())
                    .and_then(|t| t.container_spec.as_ref())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default(),
                running: status.running_tasks.unwrap_or(0),
                desired: status.desired_tasks.unwrap_or(0),
                update: s
                    .update_status
                    .as_ref()
                    .and_then(|u| u.state)
                    .map(|st| st.to_string())
                    .unwrap_or_default(),
                update_message: s
                    .update_status
                    .as_ref()
                    .and_then(|u| u.message.clone())
                    .unwrap_or_default(),
                spec_hash: s
                    .spec
                    .as_ref()
                    .and_then(|sp| sp.labels.as_ref())
                    .and_then(|l| l.get(SPEC_HASH))
                    .cloned()
                    .unwrap_or_default(),
                record: s
                    .spec
                    .as_ref()
                    .and_then(|sp| sp.labels.as_ref())
                    .and_then(|l| l.get(record::LABEL))
                    .and_then(|t| Record::from_label(t)),
                version: s.version.as_ref().and_then(|v| v.index).unwrap_or(0),
                force_update: s
                    .spec
                    .as_ref()
                    .and_then(|sp| sp.task_template.as_ref())
                    .and_then(|t| t.force_update)
                    .unwrap_or(0),
                update_started: s
                    .update_status
                    .as_ref()
                    .and_then(|u| u.started_at.as_deref())
                    .and_then(|t| {
                        humantime::parse_rfc3339_weak(t.split('.').next().unwrap_or(t)).ok()
                    }),
                published: s
                    .endpoint
                    .as_ref()
                    .and_then(|e| e.ports.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        let target = u16::try_from(p.target_port?).ok()?;
                        let published = u16::try_from(p.published_port?).ok()?;
                        Some((target, published))
                    })
                    .collect(),
                name,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Wait until every service runs all its tasks and no update is in progress.
/// `updated` names the services this run updated at `since`; for them, only an update that
/// started then and completed counts.
async fn wait_converged(
    engine: &Engine,
    stack: &Stack,
    updated: &[String],
    since: std::time::SystemTime,
    timeout: Duration,
) -> Result<()> {
    // Whole seconds on the engine's clock: allow for the truncation.
    let since = since - Duration::from_secs(2);
    let deadline = Instant::now() + timeout;
    poll_until(deadline.into(), Backoff::fixed(POLL), || async move {
        let states = match states(engine, &stack.project).await {
            Ok(s) => s,
            Err(e) => return Poll::Failed(e),
        };
        // Only this run's updates count: a rollback left from an earlier run is history.
        let mine = |st: &ServiceState| updated.contains(&st.service);
        let this_update = |st: &ServiceState| st.update_started.is_some_and(|t| t >= since);
        if let Some(rolled) = states.iter().find(|s| {
            mine(s) && this_update(s) && (s.update.starts_with("rollback") || s.update == "paused")
        }) {
            return Poll::Failed(hinted(
                format!(
                    "the update of service `{}` failed and Swarm rolled it back: {}",
                    rolled.name, rolled.update_message
                ),
                format!(
                    "see `docker service ps {} --no-trunc` for the failing task",
                    rolled.name
                ),
            ));
        }
        let pending: Vec<String> = stack
            .services
            .iter()
            .filter(|s| {
                !states.iter().any(|st| {
                    // Right after an update the old tasks still run: wait for Swarm to say done.
                    st.service == s.name
                        && st.desired > 0
                        && st.running == st.desired
                        && if mine(st) {
                            st.update == "completed" && this_update(st)
                        } else {
                            st.update != "updating"
                        }
                })
            })
            .map(|s| s.name.clone())
            .collect();
        if pending.is_empty() {
            return Poll::Ready(());
        }
        let detail: Vec<String> = states
            .iter()
            .map(|s| format!("{} {}/{} {}", s.service, s.running, s.desired, s.update))
            .collect();
        Poll::Pending(hinted(
            format!(
                "Swarm services did not converge within {} s: waiting for {} ({})",
                timeout.as_secs(),
                pending.join(", "),
                detail.join("; ")
            ),
            format!(
                "see `docker service ps {}_{}` for the tasks' errors",
                stack.project, pending[0]
            ),
        ))
    })
    .await
    .map_err(Ended::into_inner)
}
