//! Converge the engine to a [`Stack`]: a pure planner and the executor that applies its plan.
//!
//! A running container whose config hash matches is left alone; a changed one is recreated; a
//! stopped one is started; containers of services the stack no longer has are orphans.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use futures_util::future::try_join_all;

use super::observe::{self, Observed, RunState};
use super::{is_conflict, is_not_found, is_not_modified, labels, root_message, Engine};
use crate::error::hinted;
use crate::output::Printer;
use crate::stack::{Condition, Mount, Service, Stack};

/// One step of a convergence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create {
        service: String,
    },
    Recreate {
        service: String,
        id: String,
    },
    Start {
        service: String,
        id: String,
    },
    Unpause {
        service: String,
        id: String,
    },
    Keep {
        service: String,
        id: String,
    },
    /// A second container of a service: only one may run.
    RemoveExtra {
        service: String,
        id: String,
        name: String,
    },
    RemoveOrphan {
        id: String,
        name: String,
    },
    ReportOrphan {
        id: String,
        name: String,
    },
}

impl Action {
    pub fn service(&self) -> Option<&str> {
        match self {
            Action::Create { service }
            | Action::Recreate { service, .. }
            | Action::Start { service, .. }
            | Action::Unpause { service, .. }
            | Action::Keep { service, .. }
            | Action::RemoveExtra { service, .. } => Some(service),
            _ => None,
        }
    }

    /// Does this action (re)start the service's container?
    pub fn changes(&self) -> bool {
        !matches!(self, Action::Keep { .. } | Action::ReportOrphan { .. })
    }
}

/// Decide what to do. `desired` is (service, config hash) in stack order.
pub fn plan(
    desired: &[(String, String)],
    observed: &[Observed],
    remove_orphans: bool,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (service, hash) in desired {
        let mut mine: Vec<&Observed> = observed.iter().filter(|o| &o.service == service).collect();
        // Prefer a container that is current and running, then current, then any.
        mine.sort_by_key(|o| {
            (
                o.hash != *hash,
                o.state != RunState::Running,
                o.name.clone(),
            )
        });
        let Some((first, extra)) = mine.split_first() else {
            actions.push(Action::Create {
                service: service.clone(),
            });
            continue;
        };
        let (id, service) = (first.id.clone(), service.clone());
        actions.push(if first.hash != *hash {
            Action::Recreate {
                service: service.clone(),
                id,
            }
        } else {
            match first.state {
                RunState::Running | RunState::Restarting => Action::Keep {
                    service: service.clone(),
                    id,
                },
                RunState::Paused => Action::Unpause {
                    service: service.clone(),
                    id,
                },
                RunState::Stopped => Action::Start {
                    service: service.clone(),
                    id,
                },
            }
        });
        for o in extra {
            actions.push(Action::RemoveExtra {
                service: service.clone(),
                id: o.id.clone(),
                name: o.name.clone(),
            });
        }
    }
    for o in observed
        .iter()
        .filter(|o| !desired.iter().any(|(s, _)| *s == o.service))
    {
        let (id, name) = (o.id.clone(), o.name.clone());
        actions.push(if remove_orphans {
            Action::RemoveOrphan { id, name }
        } else {
            Action::ReportOrphan { id, name }
        });
    }
    actions
}

/// Everything `apply` needs beyond the stack.
pub struct ApplyOptions<'a> {
    /// Image ID per service (built or pulled), part of the config hash.
    pub image_ids: &'a BTreeMap<String, String>,
    pub remove_orphans: bool,
    pub health_timeout: Duration,
}

/// What `apply` did, per service.
#[derive(Debug, Default)]
pub struct Applied {
    pub actions: Vec<Action>,
}

/// Read the files a service mounts (folders recursively), for the config hash.
pub fn mounted_files(service: &Service) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for m in &service.mounts {
        if let Mount::Bind { source, .. } = m {
            if source.is_dir() {
                let mut stack = vec![source.clone()];
                while let Some(dir) = stack.pop() {
                    let mut entries: Vec<_> = std::fs::read_dir(&dir)
                        .with_context(|| format!("cannot read `{}`", dir.display()))?
                        .flatten()
                        .map(|e| e.path())
                        .collect();
                    entries.sort();
                    for p in entries {
                        if p.is_dir() {
                            stack.push(p);
                        } else {
                            let data = std::fs::read(&p)
                                .with_context(|| format!("cannot read `{}`", p.display()))?;
                            out.push((p.display().to_string(), data));
                        }
                    }
                }
            } else {
                let data = std::fs::read(source).map_err(|e| {
                    hinted(
                        format!("stack file `{}` (mounted into `{}`) cannot be read: {e}", source.display(), service.name),
                        "restore it, or write the built-in stack into a folder with `irisctl init DIR` and use `--project-dir DIR`",
                    )
                })?;
                out.push((source.display().to_string(), data));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The engine's create request for a service.
pub fn container_body(stack: &Stack, service: &Service, hash: &str) -> ContainerCreateBody {
    let env: Vec<String> = service
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut port_bindings = HashMap::new();
    let mut exposed = Vec::new();
    for p in &service.ports {
        let key = format!("{}/tcp", p.container);
        exposed.push(key.clone());
        port_bindings.insert(
            key,
            Some(vec![PortBinding {
                host_ip: Some(p.host_ip.to_string()),
                host_port: Some(p.host.to_string()),
            }]),
        );
    }
    let mut binds = Vec::new();
    let mut tmpfs = HashMap::new();
    for m in &service.mounts {
        match m {
            Mount::Bind { source, target } => {
                binds.push(format!("{}:{target}:ro", source.display()))
            }
            Mount::Volume { key, target } => {
                binds.push(format!("{}:{target}:rw", stack.volume_name(key)))
            }
            Mount::Tmpfs { target } => {
                tmpfs.insert(target.clone(), String::new());
            }
        }
    }
    let healthcheck = service.healthcheck.as_ref().map(super::health_config);
    let restart = match service.restart.as_str() {
        "always" => RestartPolicyNameEnum::ALWAYS,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        "no" | "" => RestartPolicyNameEnum::NO,
        _ => RestartPolicyNameEnum::UNLESS_STOPPED,
    };
    let container_labels = HashMap::from([
        (labels::PROJECT.to_string(), stack.project.clone()),
        (labels::SERVICE.to_string(), service.name.clone()),
        (labels::NUMBER.to_string(), "1".to_string()),
        (labels::ONEOFF.to_string(), "False".to_string()),
        (labels::CONFIG_HASH.to_string(), hash.to_string()),
        (
            labels::VERSION.to_string(),
            labels::COMPOSE_VERSION.to_string(),
        ),
        (
            labels::WORKING_DIR.to_string(),
            stack.project_dir.display().to_string(),
        ),
        (labels::MANAGED_BY.to_string(), "irisctl".to_string()),
    ]);
    ContainerCreateBody {
        image: Some(service.image.clone()),
        cmd: (!service.command.is_empty()).then(|| service.command.clone()),
        env: Some(env),
        user: service.user.clone(),
        labels: Some(container_labels),
        healthcheck,
        exposed_ports: Some(exposed),
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            binds: Some(binds),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            readonly_rootfs: Some(service.read_only),
            cap_drop: Some(service.cap_drop.clone()),
            security_opt: Some(service.security_opt.clone()),
            memory: service.memory_bytes.and_then(|m| i64::try_from(m).ok()),
            network_mode: Some(stack.network.name.clone()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                stack.network.name.clone(),
                EndpointSettings {
                    aliases: Some(service.aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// Create the project's network and volumes if missing (labelled like Compose's).
pub async fn ensure_network_and_volumes(engine: &Engine, stack: &Stack) -> Result<()> {
    let net = &stack.network;
    match engine
        .docker
        .inspect_network(
            &net.name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
    {
        Ok(existing) => {
            let owner = existing
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::PROJECT))
                .cloned();
            if owner.as_deref() != Some(stack.project.as_str()) {
                return Err(hinted(
                    format!(
                        "network `{}` exists but does not belong to project `{}` ({})",
                        net.name,
                        stack.project,
                        owner.map_or("it has no project label".to_string(), |o| format!(
                            "it belongs to `{o}`"
                        ))
                    ),
                    format!(
                        "remove it (`docker network rm {}`) or use another project name with -p",
                        net.name
                    ),
                ));
            }
        }
        Err(e) if is_not_found(&e) => {
            let request = NetworkCreateRequest {
                name: net.name.clone(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([
                    (labels::PROJECT.to_string(), stack.project.clone()),
                    (labels::NETWORK.to_string(), net.key.clone()),
                    (
                        labels::VERSION.to_string(),
                        labels::COMPOSE_VERSION.to_string(),
                    ),
                    (labels::MANAGED_BY.to_string(), "irisctl".to_string()),
                ])),
                ..Default::default()
            };
            match engine.docker.create_network(request).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {} // made concurrently
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("failed to create network `{}`", net.name)))
                }
            }
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("failed to inspect network `{}`", net.name))
            )
        }
    }
    for v in &stack.volumes {
        match engine.docker.inspect_volume(&v.name).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                let request = VolumeCreateRequest {
                    name: Some(v.name.clone()),
                    labels: Some(HashMap::from([
                        (labels::PROJECT.to_string(), stack.project.clone()),
                        (labels::VOLUME.to_string(), v.key.clone()),
                        (
                            labels::VERSION.to_string(),
                            labels::COMPOSE_VERSION.to_string(),
                        ),
                        (labels::MANAGED_BY.to_string(), "irisctl".to_string()),
                    ])),
                    ..Default::default()
                };
                engine
                    .docker
                    .create_volume(request)
                    .await
                    .with_context(|| format!("failed to create volume `{}`", v.name))?;
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("failed to inspect volume `{}`", v.name))
                )
            }
        }
    }
    Ok(())
}

/// Stop and remove a container; absent is fine.
pub async fn remove_container(engine: &Engine, id: &str, name: &str) -> Result<()> {
    let stop = bollard::query_parameters::StopContainerOptions {
        t: Some(10),
        ..Default::default()
    };
    match engine.docker.stop_container(id, Some(stop)).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) || is_not_modified(&e) => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("failed to stop container `{name}`")))
        }
    }
    let rm = bollard::query_parameters::RemoveContainerOptions {
        force: true,
        v: false,
        ..Default::default()
    };
    match engine.docker.remove_container(id, Some(rm)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // "removal already in progress"
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("failed to remove container `{name}`")))
        }
    }
}

async fn start(engine: &Engine, id: &str, name: &str) -> Result<()> {
    match engine
        .docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_modified(&e) => Ok(()),
        Err(e) => Err(start_error(name, &e)),
    }
}

fn start_error(name: &str, e: &bollard::errors::Error) -> anyhow::Error {
    let msg = root_message(e);
    if msg.contains("address already in use") || msg.contains("port is already allocated") {
        return hinted(
            format!("failed to start container `{name}`: a host port it publishes is taken ({msg})"),
            "free the port, or choose another one (e.g. --api-port, --frontend-port, --prometheus-port, --grafana-port)",
        );
    }
    anyhow::anyhow!("failed to start container `{name}`: {msg}")
}

async fn create_and_start(
    engine: &Engine,
    stack: &Stack,
    service: &Service,
    hash: &str,
) -> Result<()> {
    let body = container_body(stack, service, hash);
    let options = bollard::query_parameters::CreateContainerOptions {
        name: Some(service.container_name.clone()),
        ..Default::default()
    };
    let created = match engine
        .docker
        .create_container(Some(options.clone()), body.clone())
        .await
    {
        Ok(c) => c,
        Err(e) if is_conflict(&e) => {
            // A container of that name that is not labelled as ours (e.g. left by an interrupted
            // run before labels existed, or made by hand): refuse rather than delete it.
            return Err(hinted(
                format!(
                    "a container named `{}` already exists and does not belong to project `{}`",
                    service.container_name, stack.project
                ),
                format!(
                    "remove or rename it (`docker rm -f {}`), or use another project name with -p",
                    service.container_name
                ),
            ));
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "failed to create container `{}`: {}",
                service.container_name,
                root_message(&e)
            ));
        }
    };
    start(engine, &created.id, &service.container_name).await
}

/// Refuse, before anything is built or touched, when a host port the stack publishes is taken by
/// a container of another project or by another program. Ports the project's own containers
/// hold are fine: converging frees or keeps them.
pub async fn preflight_ports(engine: &Engine, stack: &Stack) -> Result<()> {
    let all = engine.containers_with(&[]).await?;
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
                        "host port {} (for `{}`) is already published by container `{name}`",
                        p.host, service.name
                    )));
                }
                None if !ours
                    && engine.is_local()
                    && std::net::TcpListener::bind((p.host_ip, p.host)).is_err() =>
                {
                    return Err(taken(format!(
                        "host port {} on {} (for `{}`) is already in use by another program",
                        p.host, p.host_ip, service.name
                    )));
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// Apply the stack: network and volumes, then the services wave by wave, then wait for health.
pub async fn apply(
    engine: &Engine,
    stack: &Stack,
    opts: &ApplyOptions<'_>,
    printer: &Printer,
) -> Result<Applied> {
    let mut desired = Vec::new();
    for s in &stack.services {
        let files = mounted_files(s)?;
        let image_id = opts
            .image_ids
            .get(&s.name)
            .map(String::as_str)
            .unwrap_or("");
        desired.push((
            s.name.clone(),
            crate::stack::config_hash(s, image_id, &files),
        ));
    }
    let hashes: BTreeMap<&str, &str> = desired
        .iter()
        .map(|(s, h)| (s.as_str(), h.as_str()))
        .collect();
    let observed = observe::project_containers(engine, &stack.project).await?;
    let actions = plan(&desired, &observed, opts.remove_orphans);

    ensure_network_and_volumes(engine, stack).await?;
    for a in &actions {
        match a {
            Action::ReportOrphan { name, .. } => printer.warn(format!(
                "container `{name}` belongs to project `{}` but to no service of it; `irisctl up --remove-orphans` removes it",
                stack.project
            )),
            Action::RemoveOrphan { id, name } => {
                printer.info(format!("removing orphan container {name}"));
                remove_container(engine, id, name).await?;
            }
            _ => {}
        }
    }

    let deadline = Instant::now() + opts.health_timeout;
    for wave in stack.waves() {
        // Dependencies first: a service waits for the condition of each service it depends on.
        for s in &wave {
            for dep in &s.depends_on {
                if let (Condition::Healthy, Some(d)) = (dep.condition, stack.service(&dep.service))
                {
                    printer.set_phase(format!(
                        "waiting for `{}` to be healthy before starting `{}`",
                        d.name, s.name
                    ));
                    wait_healthy(
                        engine,
                        &d.container_name,
                        &d.name,
                        deadline,
                        opts.health_timeout,
                    )
                    .await?;
                }
            }
        }
        let names: Vec<&str> = wave.iter().map(|s| s.name.as_str()).collect();
        printer.set_phase(format!("creating and starting {}", names.join(", ")));
        try_join_all(wave.iter().map(|s| {
            let action = actions
                .iter()
                .find(|a| a.service() == Some(&s.name) && !matches!(a, Action::RemoveExtra { .. }));
            let extras: Vec<&Action> = actions
                .iter()
                .filter(|a| matches!(a, Action::RemoveExtra { service, .. } if *service == s.name))
                .collect();
            let hash = hashes.get(s.name.as_str()).copied().unwrap_or("");
            async move {
                for e in extras {
                    if let Action::RemoveExtra { id, name, .. } = e {
                        remove_container(engine, id, name).await?;
                    }
                }
                match action {
                    Some(Action::Create { .. }) => {
                        printer.verbose(format!("creating {}", s.container_name));
                        create_and_start(engine, stack, s, hash).await
                    }
                    Some(Action::Recreate { id, .. }) => {
                        printer.verbose(format!("recreating {}", s.container_name));
                        remove_container(engine, id, &s.container_name).await?;
                        create_and_start(engine, stack, s, hash).await
                    }
                    Some(Action::Start { id, .. }) => start(engine, id, &s.container_name).await,
                    Some(Action::Unpause { id, .. }) => {
                        engine.docker.unpause_container(id).await.with_context(|| {
                            format!("failed to unpause container `{}`", s.container_name)
                        })
                    }
                    _ => Ok(()),
                }
            }
        }))
        .await?;
    }
    printer.set_phase("waiting for every service to be healthy");
    try_join_all(stack.services.iter().map(|s| {
        wait_healthy(
            engine,
            &s.container_name,
            &s.name,
            deadline,
            opts.health_timeout,
        )
    }))
    .await?;
    Ok(Applied { actions })
}

/// Wait until the container is running and, if it has a health check, healthy.
pub async fn wait_healthy(
    engine: &Engine,
    container: &str,
    service: &str,
    deadline: Instant,
    budget: Duration,
) -> Result<()> {
    let mut last_health = String::from("not started");
    // Restarts before this wait (a policy restart last week) say nothing about a crash loop now.
    let mut restarts_before: Option<i64> = None;
    loop {
        let c = observe::inspect(engine, container).await?;
        let state = c.state.clone().unwrap_or_default();
        let health = observe::health_word(&c);
        let running = state.running.unwrap_or(false);
        if running && (health == "healthy" || health == "-") {
            return Ok(());
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
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(service: &str, id: &str, hash: &str, state: RunState) -> Observed {
        Observed {
            id: id.into(),
            name: format!("p-{service}-{id}"),
            service: service.into(),
            hash: hash.into(),
            state,
            image: String::new(),
            status: String::new(),
        }
    }

    fn desired() -> Vec<(String, String)> {
        vec![
            ("api".into(), "h1".into()),
            ("frontend".into(), "h2".into()),
        ]
    }

    #[test]
    fn nothing_observed_creates_everything() {
        let p = plan(&desired(), &[], false);
        assert_eq!(
            p,
            vec![
                Action::Create {
                    service: "api".into()
                },
                Action::Create {
                    service: "frontend".into()
                }
            ]
        );
    }

    #[test]
    fn unchanged_running_is_kept() {
        let o = [
            obs("api", "a", "h1", RunState::Running),
            obs("frontend", "f", "h2", RunState::Running),
        ];
        let p = plan(&desired(), &o, false);
        assert!(p.iter().all(|a| matches!(a, Action::Keep { .. })), "{p:?}");
        assert!(!p.iter().any(Action::changes));
    }

    #[test]
    fn restarting_counts_as_running() {
        let o = [obs("api", "a", "h1", RunState::Restarting)];
        assert_eq!(
            plan(&desired(), &o, false)[0],
            Action::Keep {
                service: "api".into(),
                id: "a".into()
            }
        );
    }

    #[test]
    fn changed_hash_recreates_only_that_service() {
        let o = [
            obs("api", "a", "old", RunState::Running),
            obs("frontend", "f", "h2", RunState::Running),
        ];
        let p = plan(&desired(), &o, false);
        assert_eq!(
            p[0],
            Action::Recreate {
                service: "api".into(),
                id: "a".into()
            }
        );
        assert_eq!(
            p[1],
            Action::Keep {
                service: "frontend".into(),
                id: "f".into()
            }
        );
    }

    #[test]
    fn changed_and_stopped_recreates() {
        let o = [obs("api", "a", "old", RunState::Stopped)];
        assert_eq!(
            plan(&desired(), &o, false)[0],
            Action::Recreate {
                service: "api".into(),
                id: "a".into()
            }
        );
    }

    #[test]
    fn stopped_is_started_and_paused_unpaused() {
        let o = [
            obs("api", "a", "h1", RunState::Stopped),
            obs("frontend", "f", "h2", RunState::Paused),
        ];
        let p = plan(&desired(), &o, false);
        assert_eq!(
            p[0],
            Action::Start {
                service: "api".into(),
                id: "a".into()
            }
        );
        assert_eq!(
            p[1],
            Action::Unpause {
                service: "frontend".into(),
                id: "f".into()
            }
        );
    }

    #[test]
    fn duplicates_keep_the_current_running_one() {
        let o = [
            obs("api", "old", "x", RunState::Running),
            obs("api", "cur", "h1", RunState::Running),
            obs("api", "stopped", "h1", RunState::Stopped),
        ];
        let p = plan(&desired()[..1], &o, false);
        assert_eq!(
            p[0],
            Action::Keep {
                service: "api".into(),
                id: "cur".into()
            }
        );
        let removed: Vec<_> = p
            .iter()
            .filter_map(|a| {
                if let Action::RemoveExtra { id, .. } = a {
                    Some(id.as_str())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(removed.len(), 2);
        assert!(removed.contains(&"old") && removed.contains(&"stopped"));
    }

    #[test]
    fn orphans_reported_or_removed() {
        let o = [
            obs("api", "a", "h1", RunState::Running),
            obs("worker", "w", "z", RunState::Running),
        ];
        let p = plan(&desired()[..1], &o, false);
        assert!(p.contains(&Action::ReportOrphan {
            id: "w".into(),
            name: "p-worker-w".into()
        }));
        let p = plan(&desired()[..1], &o, true);
        assert!(p.contains(&Action::RemoveOrphan {
            id: "w".into(),
            name: "p-worker-w".into()
        }));
    }

    #[test]
    fn container_body_is_labelled_like_compose_and_hardened() {
        let st = Stack::from_settings(&crate::settings::Settings::defaults("/p".into()));
        let g = st.service("grafana").unwrap();
        let body = container_body(&st, g, "hash");
        let l = body.labels.unwrap();
        assert_eq!(l[labels::PROJECT], "iris");
        assert_eq!(l[labels::SERVICE], "grafana");
        assert_eq!(l[labels::NUMBER], "1");
        assert_eq!(l[labels::CONFIG_HASH], "hash");
        let env = body.env.unwrap();
        assert!(env.contains(
            &"GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/grafana_admin_password".to_string()
        ));
        assert!(
            !env.iter()
                .any(|e| e.starts_with("GF_SECURITY_ADMIN_PASSWORD=")),
            "the secret must not be in the env"
        );
        let hc = body.host_config.unwrap();
        assert_eq!(hc.cap_drop.unwrap(), ["ALL"]);
        assert!(hc.binds.unwrap().contains(
            &"/p/.irisctl/secrets/grafana_admin_password:/run/secrets/grafana_admin_password:ro"
                .to_string()
        ));
        let pb = hc.port_bindings.unwrap();
        assert_eq!(
            pb["3000/tcp"].as_ref().unwrap()[0].host_ip.as_deref(),
            Some("127.0.0.1")
        );
    }
}
