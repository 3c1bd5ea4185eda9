//! The single-engine backend: the stack as containers on one Docker engine, converged by
//! [`plan::plan`] (pure) and applied here wave by wave, each dependent started once its
//! dependencies are healthy.

pub mod body;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Result;
use bollard::models::{
    ContainerInspectResponse, ContainerSummaryStateEnum, HealthStatusEnum, NetworkCreateRequest,
    VolumeCreateRequest,
};
use futures_util::future::try_join_all;

use super::images::ImageIds;
use super::owner::{owner, Owner};
use super::plan::{Kind, Op, Plan, Verb};
use super::{Down, Observation, ServiceStatus};
use crate::engine::{labels, Engine, Object};
use crate::error::hinted;
use crate::output::Printer;
use crate::stack::files::{hash_inputs, mounted_files};
use crate::stack::record::{self, Record};
use crate::stack::{Condition, Stack};
use plan::{Container, Desired, Observed, RunState};

pub struct Docker {
    pub engine: Engine,
}

/// How long both containers of a release serve before the old one drains: the proxies
/// (nginx `resolver valid=1s`) see the new address by then.
const RELEASE_SETTLE: Duration = Duration::from_secs(2);

/// The tag of the image a release replaced: `<project>-<service>:previous`.
pub const PREVIOUS_TAG: &str = "previous";

pub fn previous_repo(stack: &Stack, service: &str) -> String {
    format!("{}-{service}", stack.project)
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

    /// The project's containers (one-off containers excluded), sorted by service and name.
    async fn containers(&self, stack: &Stack) -> Result<Vec<Container>> {
        let list = self.engine.containers_with(&[project_label(stack)]).await?;
        let mut out: Vec<Container> = list
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
                Container {
                    id: c.id.clone().unwrap_or_default(),
                    name: c
                        .names
                        .as_ref()
                        .and_then(|n| n.first())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
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
        })
    }

    /// Refuse what is not the project's — a network or volume of its names that another
    /// project (or the same project name in another directory) made, containers of the project
    /// made from another directory — and host ports another program or project holds, before
    /// anything is built or touched. Every lookup goes to the engine at once.
    pub async fn preflight(&self, stack: &Stack) -> Result<()> {
        let (all, networks, volumes) = tokio::try_join!(
            self.engine.containers_with(&[]),
            self.engine.networks_named(&stack.network.name),
            try_join_all(
                stack
                    .volumes
                    .iter()
                    .map(|v| self.engine.inspect_volume(&v.name))
            ),
        )?;
        let mut objects = Vec::new();
        for c in &all {
            let labels = c.labels.clone().unwrap_or_default();
            if labels.get(labels::PROJECT) == Some(&stack.project) {
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                objects.push((format!("container `{name}`"), labels, name));
            }
        }
        for n in networks {
            objects.push((format!("network `{}`", n.name), n.labels, n.name));
        }
        for (v, found) in stack.volumes.iter().zip(volumes) {
            if let Some(found) = found {
                objects.push((format!("volume `{}`", v.name), found.labels, v.name.clone()));
            }
        }
        check_ownership(stack, objects)?;
        preflight_ports(&self.engine, stack, &all)
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

    async fn create_and_start(&self, stack: &Stack, name: &str, record: &Record) -> Result<()> {
        let Some(service) = stack.service(name) else {
            return Ok(());
        };
        let body = body::container_body(stack, service, record);
        self.create_named(stack, service, &service.container_name, body)
            .await
    }

    /// Create and start `body` as container `name`; a foreign container of that name is refused.
    async fn create_named(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        name: &str,
        body: bollard::models::ContainerCreateBody,
    ) -> Result<()> {
        let Some(id) = self.engine.create_container(name, body).await? else {
            // A container of that name that is not labelled as ours (e.g. left by an
            // interrupted run before labels existed, or made by hand): refuse, never delete.
            return Err(hinted(
                format!(
                    "a container named `{name}` already exists and does not belong to project `{}`",
                    stack.project
                ),
                format!(
                    "remove or rename it (`docker rm -f {name}`), or use another project name with -p (service `{}`)",
                    service.name
                ),
            ));
        };
        self.engine.start_container(&id, name).await
    }

    /// Make `container` answer to the service's aliases on the stack's network (a release's
    /// new container is started without them, so no request reaches it before it is healthy).
    async fn ensure_aliases(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        container: &str,
    ) -> Result<()> {
        let c = self.engine.inspect_container(container).await?;
        let endpoint = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| n.get(&stack.network.name));
        let has_all = endpoint.is_some_and(|e| {
            let aliases = e.aliases.clone().unwrap_or_default();
            let dns = e.dns_names.clone().unwrap_or_default();
            service
                .aliases
                .iter()
                .all(|a| aliases.contains(a) || dns.contains(a))
        });
        if has_all {
            return Ok(());
        }
        if endpoint.is_some() {
            self.engine
                .disconnect_network(&stack.network.name, container)
                .await?;
        }
        self.engine
            .connect_network(&stack.network.name, container, &service.aliases)
            .await
    }

    /// A release: the new container (`body`, running image `new_image`) starts beside the old
    /// one without the service's alias, must become healthy by the deadline, then takes the
    /// alias (both serve for a moment), and the old one drains (its stop signal: uvicorn and
    /// nginx finish what they hold and refuse new connections, which the proxies retry on the
    /// new one) and goes. The new container carries the old one's definition (label
    /// [`labels::PREVIOUS_RELEASE`]) and the old image is tagged `:previous`: `irisctl rollback`
    /// needs both. A new container that does not become healthy is removed after its last log
    /// lines are shown; the old one serves on, untouched.
    #[allow(clippy::too_many_arguments)]
    async fn release(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        op: &Op,
        mut body: bollard::models::ContainerCreateBody,
        new_image: &str,
        deadline: Instant,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<()> {
        let old = &op.object;
        let old_container = self
            .engine
            .inspect_container(op.id.as_deref().unwrap_or(old))
            .await?;
        let old_image = old_container.image.clone().unwrap_or_default();
        let new = op
            .replacement
            .clone()
            .unwrap_or_else(|| format!("{}-{}-2", stack.project, service.name));
        let name = &service.name;
        printer
            .enter(format!("releasing {name}: starting {new} beside {old}"))
            .await;
        let number = new.rsplit('-').next().unwrap_or("1").to_string();
        let labels = body.labels.get_or_insert_with(HashMap::new);
        labels.insert(labels::NUMBER.to_string(), number);
        labels.remove(labels::PREVIOUS_RELEASE);
        if let Some(previous) =
            body::definition_of(&old_container).and_then(|d| serde_json::to_string(&d).ok())
        {
            labels.insert(labels::PREVIOUS_RELEASE.to_string(), previous);
        }
        // On the stack's network without the alias: no request reaches it before it is healthy.
        body.networking_config = Some(bollard::models::NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                stack.network.name.clone(),
                bollard::models::EndpointSettings {
                    aliases: Some(vec![]),
                    ..Default::default()
                },
            )])),
        });
        self.create_named(stack, service, &new, body).await?;
        printer
            .enter(format!("releasing {name}: waiting for {new} to be healthy"))
            .await;
        if let Err(e) = wait_healthy(&self.engine, stack, &new, name, deadline, timeout).await {
            // Never reached by a request (no alias yet): removed at once.
            let _ = self.engine.kill_and_remove(&new).await;
            return Err(hinted(
                format!(
                    "release of `{name}` failed; `{old}` (the previous release) keeps serving and the new container `{new}` was removed: {e:#}"
                ),
                format!("fix the cause and run `irisctl up` again; `irisctl logs {name}` shows the serving container"),
            ));
        }
        printer
            .enter(format!("releasing {name}: moving traffic to {new}"))
            .await;
        self.ensure_aliases(stack, service, &new).await?;
        // The proxies resolve the alias again every second (nginx `valid=1s`): let each of
        // them see the new address before the old one stops accepting.
        tokio::time::sleep(RELEASE_SETTLE).await;
        self.keep_previous(stack, service, &old_image, new_image)
            .await?;
        printer
            .enter(format!("releasing {name}: draining {old}"))
            .await;
        self.engine
            .remove_container(op.id.as_deref().unwrap_or(old), old)
            .await
    }

    /// Tag the image a release replaces as `<project>-<service>:previous`, so that `irisctl
    /// rollback` finds it offline (and `down --rmi` removes it).
    async fn keep_previous(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        old_image: &str,
        new_image: &str,
    ) -> Result<()> {
        if old_image.is_empty() || old_image == new_image {
            return Ok(());
        }
        self.engine
            .tag_image(
                old_image,
                &previous_repo(stack, &service.name),
                PREVIOUS_TAG,
            )
            .await
    }

    /// The release a service runs (its container's image) and the previous one, if kept.
    async fn releases(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        current: Option<&str>,
    ) -> Result<super::Releases> {
        let describe = |reference: String| async move {
            let Some(i) = self.engine.image_exists(&reference).await? else {
                return Ok::<_, anyhow::Error>(None);
            };
            Ok(Some(super::ReleaseImage {
                image_id: i.id.clone().unwrap_or_default(),
                built_at: i.created.clone(),
                build_digest: i
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.as_ref())
                    .and_then(|l| l.get(labels::BUILD_HASH))
                    .cloned(),
            }))
        };
        Ok(super::Releases {
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

    /// `irisctl rollback`: release each service's previous release — the definition of the
    /// container its last release replaced (label [`labels::PREVIOUS_RELEASE`]: configuration
    /// and image by ID, kept as `<project>-<service>:previous`) — through the same swap; the
    /// release it replaces becomes the previous one. A container not started by a release
    /// (after `down`, say) has no recorded definition: the previous image then runs with the
    /// current settings. What was rolled back, one phrase each.
    pub async fn rollback(
        &self,
        stack: &Stack,
        services: &[String],
        explicit: bool,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let deadline = Instant::now() + timeout;
        for name in services {
            let Some(service) = stack.service(name) else {
                continue;
            };
            if !crate::stack::edge::is_released(stack, service) {
                return Err(hinted(
                    format!("`{name}` has no releases to roll back: only the services irisctl builds behind the edge do ({})", crate::stack::edge::FRONTED.join(", ")),
                    "name one of them, or none for all",
                ));
            }
            let observed = self.observe(stack).await?;
            let Some(current) = observed
                .containers
                .iter()
                .filter(|c| c.service == *name)
                .min_by_key(|c| (c.state != RunState::Running, c.name.clone()))
            else {
                return Err(hinted(
                    format!("`{name}` has no container to roll back"),
                    "run `irisctl up` first",
                ));
            };
            let serving_container = self.engine.inspect_container(&current.id).await?;
            let serving = serving_container.image.clone().unwrap_or_default();
            let kept_tag = format!("{}:{PREVIOUS_TAG}", previous_repo(stack, name));
            let recorded = serving_container
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(body::previous_release)
                .filter(|d| d.image.as_deref().is_some_and(|i| !i.is_empty()));
            let (body, previous) = match recorded {
                Some(def) => {
                    let image = def.image.clone().unwrap_or_default();
                    if self.engine.image_id(&image).await?.is_none() {
                        return Err(hinted(
                            format!("`{name}`'s previous release runs image {}, which is no longer on the engine", short_id(&image)),
                            format!("it was kept as `{kept_tag}`; something removed it (`docker image prune -a`, `docker rmi`). Release a change with `irisctl up` instead"),
                        ));
                    }
                    (def, image)
                }
                None => {
                    let Some(previous) = self.engine.image_id(&kept_tag).await? else {
                        if explicit {
                            return Err(hinted(
                                format!("`{name}` has no previous release to roll back to (one is kept from its second release on, as image `{kept_tag}`)"),
                                "release a change with `irisctl up` first",
                            ));
                        }
                        printer.info(format!("{name}: no previous release, left as it is"));
                        continue;
                    };
                    printer.info(format!(
                        "{name}: `{}` was not started by a release, so the previous release's configuration is not known; its image ({}) runs with the current settings",
                        current.name,
                        short_id(&previous)
                    ));
                    let files = hash_inputs(&mounted_files(service)?);
                    let record = Record::of(service, &previous, &files);
                    let mut body = body::container_body(stack, service, &record);
                    body.image = Some(previous.clone());
                    (body, previous)
                }
            };
            // What else changes besides the image, from the records both definitions carry.
            let record_in = |l: Option<&HashMap<String, String>>| {
                l.and_then(|l| l.get(record::LABEL))
                    .and_then(|l| Record::from_label(l))
            };
            let definition = match (
                record_in(
                    serving_container
                        .config
                        .as_ref()
                        .and_then(|c| c.labels.as_ref()),
                ),
                record_in(body.labels.as_ref()),
            ) {
                (Some(from), Some(to)) => record::causes(&from, &to, &stack.project_dir)
                    .into_iter()
                    .filter(|c| !c.starts_with("image changed"))
                    .collect::<Vec<_>>(),
                _ => vec![],
            };
            let op = Op::new(Verb::Release, Kind::Container, &current.name)
                .service(name)
                .id(&current.id)
                .because("rollback to the previous release")
                .replaced_by(plan::free_name(stack, name, &observed.containers));
            self.release(
                stack, service, &op, body, &previous, deadline, timeout, printer,
            )
            .await?;
            let mut what = format!("image {} → {}", short_id(&serving), short_id(&previous));
            for cause in definition {
                what.push_str("; ");
                what.push_str(&cause);
            }
            done.push(format!("rolled back {name} ({what})"));
        }
        Ok(done)
    }

    /// Apply `plan`: network and volumes, orphans, then the services wave by wave (a service
    /// waits for the dependencies it needs healthy), then wait until all are healthy.
    pub async fn apply(
        &self,
        stack: &Stack,
        plan: &Plan,
        images: &BTreeMap<String, String>,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Vec<Op>> {
        let ids: ImageIds = images
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let desired = Self::desired(stack, &ids)?;
        let record_of = |service: &str| {
            desired
                .iter()
                .find(|d| d.service == service)
                .map(|d| d.record.clone())
                .unwrap_or_default()
        };
        let mut done = Vec::new();
        for op in plan.ops.iter().filter(|o| o.changes()) {
            match (op.kind, op.verb) {
                (Kind::Network, Verb::Create) => {
                    self.engine
                        .create_network(NetworkCreateRequest {
                            name: stack.network.name.clone(),
                            driver: Some("bridge".into()),
                            labels: Some(object_labels(stack, labels::NETWORK, &stack.network.key)),
                            ..Default::default()
                        })
                        .await?;
                }
                (Kind::Network, Verb::Remove) => {
                    let dup = crate::engine::Listed {
                        id: op.id.clone().unwrap_or_default(),
                        name: op.object.clone(),
                        ..Default::default()
                    };
                    self.engine.remove(Object::Network, &dup).await?;
                }
                (Kind::Volume, Verb::Create) => {
                    let key = stack
                        .volumes
                        .iter()
                        .find(|v| v.name == op.object)
                        .map_or(op.object.as_str(), |v| v.key.as_str());
                    self.engine
                        .create_volume(VolumeCreateRequest {
                            name: Some(op.object.clone()),
                            labels: Some(object_labels(stack, labels::VOLUME, key)),
                            ..Default::default()
                        })
                        .await?;
                }
                // Orphans go first; a service's extra containers go with its wave.
                (Kind::Container, Verb::Remove) if op.service.is_none() => {
                    self.engine
                        .remove_container(op.id.as_deref().unwrap_or(&op.object), &op.object)
                        .await?;
                }
                _ => continue,
            }
            done.push(op.clone());
        }

        // The container each service runs once the plan is carried out.
        let current: HashMap<String, String> = stack
            .services
            .iter()
            .map(|s| {
                let name = match plan.for_service(&s.name) {
                    Some(op) if op.verb == Verb::Release => op
                        .replacement
                        .clone()
                        .unwrap_or_else(|| s.container_name.clone()),
                    Some(op) if !matches!(op.verb, Verb::Create | Verb::Recreate) => {
                        op.object.clone()
                    }
                    _ => s.container_name.clone(),
                };
                (s.name.clone(), name)
            })
            .collect();
        let deadline = Instant::now() + timeout;
        for wave in stack.waves() {
            for s in &wave {
                for dep in &s.depends_on {
                    if let (Condition::Healthy, Some(d)) =
                        (dep.condition, stack.service(&dep.service))
                    {
                        if plan.for_service(&s.name).is_some_and(|o| o.changes()) {
                            printer.service(&s.name, format!("waiting for {}", d.name));
                        }
                        printer
                            .enter(format!(
                                "waiting for `{}` to be healthy before starting `{}`",
                                d.name, s.name
                            ))
                            .await;
                        let container = current
                            .get(&d.name)
                            .map_or(d.container_name.as_str(), String::as_str);
                        wait_healthy(&self.engine, stack, container, &d.name, deadline, timeout)
                            .await?;
                        if plan.for_service(&d.name).is_some_and(|o| o.changes()) {
                            printer.service(&d.name, "ready");
                        }
                    }
                }
            }
            let names: Vec<&str> = wave.iter().map(|s| s.name.as_str()).collect();
            printer
                .enter(format!("creating and starting {}", names.join(", ")))
                .await;
            let wave_done = try_join_all(wave.iter().map(|s| {
                let record = record_of(&s.name);
                let current = &current;
                async move {
                    let mut done = Vec::new();
                    let released = crate::stack::edge::is_released(stack, s);
                    let extras: Vec<&Op> = plan
                        .ops
                        .iter()
                        .filter(|o| {
                            o.verb == Verb::Remove && o.service.as_deref() == Some(s.name.as_str())
                        })
                        .collect();
                    // A released service's extra containers may be serving (an interrupted
                    // release): they go after the one kept is healthy. Others go first.
                    if !released {
                        for extra in &extras {
                            self.engine
                                .remove_container(
                                    extra.id.as_deref().unwrap_or(&extra.object),
                                    &extra.object,
                                )
                                .await?;
                            done.push((*extra).clone());
                        }
                    }
                    if let Some(op) = plan.for_service(&s.name) {
                        let id = op.id.as_deref().unwrap_or_default();
                        let acted = match op.verb {
                            Verb::Create => {
                                self.create_and_start(stack, &s.name, &record).await?;
                                true
                            }
                            Verb::Recreate => {
                                printer.verbose(format!(
                                    "recreating {}: {}",
                                    s.container_name, op.cause
                                ));
                                printer.service(&s.name, "stopping the old container");
                                self.engine.remove_container(id, &op.object).await?;
                                self.create_and_start(stack, &s.name, &record).await?;
                                true
                            }
                            Verb::Release => {
                                self.release(
                                    stack,
                                    s,
                                    op,
                                    body::container_body(stack, s, &record),
                                    &record.image,
                                    deadline,
                                    timeout,
                                    printer,
                                )
                                .await?;
                                true
                            }
                            Verb::Start => {
                                self.engine.start_container(id, &op.object).await?;
                                true
                            }
                            Verb::Unpause => {
                                self.engine.unpause_container(id, &op.object).await?;
                                true
                            }
                            _ => false,
                        };
                        if acted {
                            printer.service(
                                &s.name,
                                if op.verb == Verb::Release {
                                    "released"
                                } else {
                                    "started"
                                },
                            );
                            done.push(op.clone());
                        }
                    }
                    if released && !extras.is_empty() {
                        let kept = current.get(&s.name).cloned().unwrap_or_default();
                        printer
                            .enter(format!(
                                "releasing {}: waiting for {kept} to be healthy before removing {}",
                                s.name,
                                extras
                                    .iter()
                                    .map(|e| e.object.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                            .await;
                        wait_healthy(&self.engine, stack, &kept, &s.name, deadline, timeout).await?;
                        self.ensure_aliases(stack, s, &kept).await?;
                        tokio::time::sleep(RELEASE_SETTLE).await;
                        let kept_image = self
                            .engine
                            .inspect_container(&kept)
                            .await?
                            .image
                            .unwrap_or_default();
                        for extra in &extras {
                            let image = self
                                .engine
                                .inspect_container(extra.id.as_deref().unwrap_or(&extra.object))
                                .await
                                .ok()
                                .and_then(|c| c.image)
                                .unwrap_or_default();
                            self.keep_previous(stack, s, &image, &kept_image).await?;
                            self.engine
                                .remove_container(
                                    extra.id.as_deref().unwrap_or(&extra.object),
                                    &extra.object,
                                )
                                .await?;
                            done.push((*extra).clone());
                            // An interrupted release, finished: a release like any other
                            // (summary, Grafana annotation).
                            if !image.is_empty() && image != kept_image {
                                done.push(
                                    Op::new(Verb::Release, Kind::Container, &kept)
                                        .service(&s.name)
                                        .because(format!(
                                            "finished an interrupted release, image changed ({} → {})",
                                            short_id(&image),
                                            short_id(&kept_image)
                                        )),
                                );
                            }
                        }
                    }
                    Ok::<_, anyhow::Error>(done)
                }
            }))
            .await?;
            done.extend(wave_done.into_iter().flatten());
        }
        printer
            .enter("waiting for every service to be healthy")
            .await;
        let current = &current;
        try_join_all(stack.services.iter().map(|s| async move {
            let container = current
                .get(&s.name)
                .map_or(s.container_name.as_str(), String::as_str);
            wait_healthy(&self.engine, stack, container, &s.name, deadline, timeout).await?;
            if plan.for_service(&s.name).is_some_and(|o| o.changes()) {
                printer.service(&s.name, "ready");
            }
            Ok::<_, anyhow::Error>(())
        }))
        .await?;
        Ok(done)
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
                    return Ok::<u16, anyhow::Error>(p.host);
                };
                let detail = self.engine.inspect_container(&id).await?;
                Ok(detail
                    .host_config
                    .and_then(|h| h.port_bindings)
                    .and_then(|b| b.get(&format!("{}/tcp", p.container)).cloned().flatten())
                    .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
                    .and_then(|h| h.parse::<u16>().ok())
                    .unwrap_or(p.host))
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
                    .unwrap_or(p.host)
            };
            // Behind the edge: the port the edge publishes for the service.
            let actual_port = match (s.ports.first(), crate::stack::edge::edge_port(stack, s)) {
                (Some(p), _) => Some(published(p)),
                (None, Some(p)) => Some(edge_published(p).await?),
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
                    .map(|p| format!("{}:{}->{}", p.host_ip, published(p), p.container))
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
        })
    }

    /// Remove the project's containers and networks, and its volumes when asked. A project of
    /// the same name managed from another directory is refused; objects of the name that are
    /// not the project's are left and reported.
    pub async fn down(&self, stack: &Stack, volumes: bool) -> Result<Down> {
        let label = project_label(stack);
        let mut out = Down::default();
        for c in self.engine.list_labelled(Object::Container, &label).await? {
            if let Owner::OtherDir(dir) = owner(&c.labels, &stack.project, &stack.project_dir) {
                return Err(managed_elsewhere(
                    stack,
                    &dir,
                    &format!("container `{}`", c.name),
                ));
            }
        }
        let ours = |o: &crate::engine::Listed| {
            owner(&o.labels, &stack.project, &stack.project_dir) == Owner::Ours
        };
        let containers = self.containers(stack).await?;
        try_join_all(
            containers
                .iter()
                .map(|c| self.engine.remove_container(&c.id, &c.name)),
        )
        .await?;
        out.removed
            .extend(containers.iter().map(|c| format!("container {}", c.name)));
        let nets = self
            .engine
            .remove_labelled(Object::Network, &label, ours, Duration::ZERO)
            .await?;
        out.removed
            .extend(nets.removed.iter().map(|n| format!("network {n}")));
        out.kept.extend(
            nets.refused
                .iter()
                .map(|n| format!("network {n}: not this directory's project")),
        );
        if volumes {
            let vols = self
                .engine
                .remove_labelled(Object::Volume, &label, ours, Duration::ZERO)
                .await?;
            out.deleted_volumes = vols.removed;
            out.kept.extend(
                vols.refused
                    .iter()
                    .map(|v| format!("volume {v}: not this directory's project")),
            );
        }
        Ok(out)
    }
}

/// The project's containers, its network and volumes, as (what, labels, name): each must be
/// this project's, made from this directory.
fn check_ownership(
    stack: &Stack,
    objects: Vec<(String, HashMap<String, String>, String)>,
) -> Result<()> {
    for (what, object_labels, name) in objects {
        match owner(&object_labels, &stack.project, &stack.project_dir) {
            Owner::Ours => {}
            Owner::OtherDir(dir) => return Err(managed_elsewhere(stack, &dir, &what)),
            Owner::OtherProject(other) => {
                let kind = what.split(' ').next().unwrap_or("object");
                return Err(hinted(
                    format!(
                        "{what} exists but does not belong to project `{}` ({})",
                        stack.project,
                        other.map_or("it has no project label".to_string(), |o| format!(
                            "it belongs to `{o}`"
                        ))
                    ),
                    format!(
                        "remove it (`docker {kind} rm {name}`) or use another project name with -p"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn managed_elsewhere(stack: &Stack, dir: &str, what: &str) -> anyhow::Error {
    hinted(
        format!(
            "project `{}` is managed from `{dir}` ({what} was made there), not from this project directory `{}`",
            stack.project,
            stack.project_dir.display()
        ),
        format!(
            "run irisctl in `{dir}` (or with --project-dir {dir}) to change that stack, or give this one its own name with -p NAME"
        ),
    )
}

impl Docker {
    /// Docker's word for the container's health; `ready` while Docker has not run its first
    /// check yet but irisctl's own readiness check of the container answers.
    async fn health_or_ready(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        c: &ContainerInspectResponse,
    ) -> String {
        let health = health_word(c);
        if health != "starting" || !self.engine.is_local() {
            return health;
        }
        let (Some(r), Some(ip)) = (&service.ready, container_ip(stack, c)) else {
            return health;
        };
        let client = crate::probe::client(Duration::from_millis(800));
        let url = format!("http://{ip}:{}{}", r.port, r.path);
        if crate::probe::check(&client, &service.name, &url).await.ok {
            "ready".into()
        } else {
            health
        }
    }
}

/// The container's address on the stack's network.
fn container_ip(stack: &Stack, c: &ContainerInspectResponse) -> Option<String> {
    c.network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.get(&stack.network.name))
        .and_then(|e| e.ip_address.clone())
        .filter(|ip| !ip.is_empty())
}

/// Health as a word: `healthy`, `unhealthy`, `starting`, or `-` when there is no check.
fn health_word(c: &ContainerInspectResponse) -> String {
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

/// Refuse, before anything is built or touched, when a host port the stack publishes is taken by
/// a container of another project or by another program. Ports the project's own containers
/// hold are fine: converging frees or keeps them.
fn preflight_ports(
    engine: &Engine,
    stack: &Stack,
    all: &[bollard::models::ContainerSummary],
) -> Result<()> {
    let taken = |conflict: String| {
        hinted(
            conflict,
            "stop what uses it, or give irisctl another port (--api-port, --frontend-port, --prometheus-port, --grafana-port or `ports:` in irisctl.yaml)",
        )
    };
    for service in &stack.services {
        // A container of ours for this service, in any state: one that is being started (say,
        // by an interrupted `up`) may hold its port before the engine lists it as published.
        let ours = all.iter().any(|c| {
            c.labels.as_ref().is_some_and(|l| {
                l.get(labels::PROJECT) == Some(&stack.project)
                    && l.get(labels::SERVICE) == Some(&service.name)
            })
        });
        for p in &service.ports {
            // The edge publishes a port for `api` or `frontend`: name that service.
            let for_service = stack
                .services
                .iter()
                .find(|f| crate::stack::edge::edge_port(stack, f).is_some_and(|e| e.host == p.host))
                .map_or(service.name.as_str(), |f| f.name.as_str());
            // Any state: a paused container keeps its ports (a stopped one lists none).
            let holder = all.iter().find(|c| {
                c.ports
                    .iter()
                    .flatten()
                    .any(|cp| cp.public_port == Some(p.host))
            });
            match holder {
                Some(c)
                    if c.labels.as_ref().and_then(|l| l.get(labels::PROJECT))
                        == Some(&stack.project) => {}
                Some(c) => {
                    let name = c
                        .names
                        .as_ref()
                        .and_then(|n| n.first())
                        .map(|n| n.trim_start_matches('/'))
                        .unwrap_or("?");
                    return Err(taken(format!(
                        "host port {} (for `{for_service}`) is already published by container `{name}`",
                        p.host
                    )));
                }
                None if !ours
                    && engine.is_local()
                    && std::net::TcpListener::bind((p.host_ip, p.host)).is_err() =>
                {
                    return Err(taken(format!(
                        "host port {} on {} (for `{for_service}`) is already in use by another program",
                        p.host, p.host_ip
                    )));
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// Wait until the container is running and, if it has a health check, healthy.
/// Wait until a service's container is ready: running and either answering its readiness
/// check (polled by irisctl from 50 ms on, so a dependent starts the moment its dependency
/// answers, not at Docker's next health-check interval) or reported healthy by Docker. A
/// container that exits, keeps restarting or misses the deadline is an error with its last log
/// lines.
async fn wait_healthy(
    engine: &Engine,
    stack: &Stack,
    container: &str,
    service: &str,
    deadline: Instant,
    budget: Duration,
) -> Result<()> {
    let mut last_health = String::from("not started");
    // Restarts before this wait (a policy restart last week) say nothing about a crash loop now.
    let mut restarts_before: Option<i64> = None;
    // The readiness check goes to the container's address, which only a local engine's host
    // reaches; elsewhere Docker's health check decides.
    let ready = stack
        .service(service)
        .and_then(|s| s.ready.clone())
        .filter(|_| engine.is_local());
    let client = crate::probe::client(Duration::from_millis(800));
    let mut pause = Duration::from_millis(50);
    loop {
        let c = engine.inspect_container(container).await?;
        let state = c.state.clone().unwrap_or_default();
        let health = health_word(&c);
        let running = state.running.unwrap_or(false);
        if running && (health == "healthy" || health == "-") {
            return Ok(());
        }
        if let (true, Some(r)) = (running, &ready) {
            if let Some(ip) = container_ip(stack, &c) {
                let url = format!("http://{ip}:{}{}", r.port, r.path);
                if crate::probe::check(&client, service, &url).await.ok {
                    return Ok(());
                }
            }
        }
        let total = c.restart_count.unwrap_or(0);
        let restarts = total - *restarts_before.get_or_insert(total);
        let exited = !running && !state.restarting.unwrap_or(false);
        let crash_loop = restarts >= 3;
        if exited || crash_loop || Instant::now() >= deadline {
            let why = if exited {
                format!("exited with code {}", state.exit_code.unwrap_or(-1))
            } else if crash_loop {
                format!("keeps restarting ({restarts} restarts)")
            } else {
                format!(
                    "did not become healthy within {} s (health: {last_health})",
                    budget.as_secs()
                )
            };
            let logs = engine.logs_tail(container, 20).await;
            return Err(hinted(
                format!(
                    "service `{service}` (container `{container}`) {why}\n--- last log lines of `{container}` ---\n{}",
                    if logs.is_empty() { "(no output)".to_string() } else { logs.join("\n") }
                ),
                format!("see `irisctl logs {service}`; if the host is only slow, raise the deadline with --wait-timeout"),
            ));
        }
        last_health = if running { health } else { "restarting".into() };
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(400));
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
