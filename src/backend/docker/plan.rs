//! The single-engine planner: desired services against the containers, network and volumes the
//! engine has → a [`Plan`] whose every operation carries its cause. Pure: no I/O.
//!
//! A running container whose config hash matches is kept; a changed one is recreated; a
//! stopped one started, a paused one unpaused; containers of services the stack no longer has
//! are orphans (reported, or removed with `--remove-orphans`).

use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};

use crate::backend::plan::{Kind, Op, Plan, Spec, Verb};
use crate::engine::labels;
use crate::stack::record::{causes, Record};
use crate::stack::Stack;

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

/// One container of the project, as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub service: String,
    pub hash: String,
    /// What irisctl recorded when it made the container (`None`: another tool or version).
    pub record: Option<Record>,
    pub state: RunState,
    /// The engine's word for the state (`exited`, `created`…), for causes.
    pub status: String,
}

/// What the engine has for the project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub containers: Vec<Container>,
    /// IDs of the project's networks of the stack's network name, oldest first (Docker allows
    /// several networks of one name; all but the first are duplicates).
    pub networks: Vec<String>,
    /// Names of the project's volumes that exist.
    pub volumes: Vec<String>,
    /// The engine is remote: a container's mounted files are uploaded between its create and
    /// its start, so one created and never started may lack them.
    pub remote: bool,
}

/// What a service should run: its record (image ID empty while a rebuild is pending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub service: String,
    pub record: Record,
}

impl Desired {
    /// The config hash, known once the image is.
    pub fn hash(&self) -> Option<String> {
        (!self.record.image.is_empty()).then(|| self.record.hash())
    }
}

pub fn plan(stack: &Stack, desired: &[Desired], observed: &Observed, remove_orphans: bool) -> Plan {
    let mut plan = Plan::default();
    match observed.networks.split_first() {
        None => plan.push(
            Op::new(Verb::Create, Kind::Network, &stack.network.name)
                .because("not present")
                .spec(Spec::Network(Box::new(NetworkCreateRequest {
                    name: stack.network.name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(super::object_labels(
                        stack,
                        labels::NETWORK,
                        &stack.network.key,
                    )),
                    ..Default::default()
                }))),
        ),
        Some((_, duplicates)) => {
            for id in duplicates {
                plan.push(
                    Op::new(Verb::Remove, Kind::Network, &stack.network.name)
                        .id(id)
                        .because("a duplicate of the project's network (same name)"),
                );
            }
        }
    }
    for v in &stack.volumes {
        if !observed.volumes.contains(&v.name) {
            plan.push(
                Op::new(Verb::Create, Kind::Volume, &v.name)
                    .because("not present")
                    .spec(Spec::Volume(Box::new(VolumeCreateRequest {
                        name: Some(v.name.clone()),
                        labels: Some(super::object_labels(stack, labels::VOLUME, &v.key)),
                        ..Default::default()
                    }))),
            );
        }
    }
    for d in desired {
        let container_name = stack
            .service(&d.service)
            .map_or_else(|| d.service.clone(), |s| s.container_name.clone());
        let hash = d.hash();
        let mut mine: Vec<&Container> = observed
            .containers
            .iter()
            .filter(|c| c.service == d.service)
            .collect();
        // Prefer a container that is current and running, then current, then any.
        mine.sort_by_key(|c| {
            (
                Some(&c.hash) != hash.as_ref(),
                c.state != RunState::Running,
                c.name.clone(),
            )
        });
        let Some((first, extra)) = mine.split_first() else {
            plan.push(
                Op::new(Verb::Create, Kind::Container, container_name)
                    .service(&d.service)
                    .because("no container")
                    .spec(Spec::Container(Box::new(d.record.clone()))),
            );
            continue;
        };
        let op = |verb| {
            let op = Op::new(verb, Kind::Container, &first.name)
                .service(&d.service)
                .id(&first.id);
            if matches!(verb, Verb::Recreate | Verb::Release) {
                op.spec(Spec::Container(Box::new(d.record.clone())))
            } else {
                op
            }
        };
        // Released when the container it replaces publishes no host port either (one from
        // before the edge did: it is recreated, freeing the port for the edge).
        let released = stack
            .service(&d.service)
            .is_some_and(|s| crate::stack::edge::is_released(stack, s))
            && first.record.as_ref().is_some_and(|r| r.ports.is_empty());
        plan.push(if Some(&first.hash) != hash.as_ref() && released {
            op(Verb::Release)
                .because(recreate_cause(first, &d.record, &stack.project_dir))
                .replaced_by(free_name(stack, &d.service, &observed.containers))
        } else if Some(&first.hash) != hash.as_ref() {
            op(Verb::Recreate).because(recreate_cause(first, &d.record, &stack.project_dir))
        } else {
            match first.state {
                RunState::Running | RunState::Restarting => op(Verb::Keep),
                RunState::Stopped if observed.remote && first.status == "created" => {
                    op(Verb::Recreate).because(
                        "created but never started: on a remote engine its files are uploaded before the start, which may not have happened",
                    )
                }
                RunState::Paused => op(Verb::Unpause).because("paused"),
                RunState::Stopped => op(Verb::Start).because(format!(
                    "container is {}",
                    if first.status.is_empty() {
                        "stopped"
                    } else {
                        &first.status
                    }
                )),
            }
        });
        for c in extra {
            plan.push(
                Op::new(Verb::Remove, Kind::Container, &c.name)
                    .service(&d.service)
                    .id(&c.id)
                    .because(format!("a second container of `{}`", d.service)),
            );
        }
    }
    for c in observed
        .containers
        .iter()
        .filter(|c| !desired.iter().any(|d| d.service == c.service))
    {
        let cause = format!("no service `{}` in the stack", c.service);
        plan.push(if remove_orphans {
            Op::new(Verb::Remove, Kind::Container, &c.name)
                .id(&c.id)
                .because(cause)
        } else {
            Op::new(Verb::Report, Kind::Container, &c.name)
                .id(&c.id)
                .because(format!(
                    "{cause} (`irisctl up --remove-orphans` removes it)"
                ))
        });
    }
    plan
}

/// The first `<project>-<service>-<n>` no container of the project has: a release's new
/// container, started beside the old one (`-1`, `-2`, `-1`…).
pub fn free_name(stack: &Stack, service: &str, containers: &[Container]) -> String {
    (1..)
        .map(|n| format!("{}-{service}-{n}", stack.project))
        .find(|name| !containers.iter().any(|c| &c.name == name))
        .unwrap_or_default()
}

fn recreate_cause(c: &Container, wanted: &Record, base: &std::path::Path) -> String {
    match &c.record {
        None => {
            "made by another tool or an older irisctl (no record of its configuration)".to_string()
        }
        Some(old) => {
            let why = causes(old, wanted, base);
            if why.is_empty() {
                "configuration changed".to_string()
            } else {
                why.join(", ")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn stack() -> Stack {
        let mut st = Stack::from_settings(&Settings::defaults("/p".into()));
        st.services
            .retain(|s| s.name == "api" || s.name == "frontend");
        st
    }

    fn desired(st: &Stack) -> Vec<Desired> {
        st.services
            .iter()
            .map(|s| Desired {
                service: s.name.clone(),
                record: Record::of(s, &format!("sha256:{}", s.name), &[]),
            })
            .collect()
    }

    fn container(d: &Desired, state: RunState) -> Container {
        Container {
            id: format!("id-{}", d.service),
            name: format!("iris-{}-1", d.service),
            service: d.service.clone(),
            hash: d.record.hash(),
            record: Some(d.record.clone()),
            state,
            status: match state {
                RunState::Stopped => "exited".into(),
                _ => "running".into(),
            },
        }
    }

    fn converged(st: &Stack, d: &[Desired]) -> Observed {
        Observed {
            containers: d.iter().map(|d| container(d, RunState::Running)).collect(),
            networks: vec!["net1".into()],
            volumes: st.volumes.iter().map(|v| v.name.clone()).collect(),
            remote: false,
        }
    }

    #[test]
    fn nothing_observed_creates_network_volumes_and_containers() {
        let st = stack();
        let p = plan(&st, &desired(&st), &Observed::default(), false);
        assert_eq!(
            p.text(),
            "create network iris-network: not present\n\
             create volume iris_grafana-data: not present\n\
             create volume iris_prometheus-data: not present\n\
             create api: no container\n\
             create frontend: no container\n"
        );
    }

    #[test]
    fn converged_is_nothing_to_change() {
        let st = stack();
        let d = desired(&st);
        let p = plan(&st, &d, &converged(&st, &d), false);
        assert!(p.is_noop());
        assert_eq!(p.text(), "nothing to change\n");
        assert_eq!(p.for_service("api").unwrap().verb, Verb::Keep);
    }

    #[test]
    fn a_remote_container_never_started_is_made_again_not_started() {
        let st = stack();
        let d = desired(&st);
        let mut o = converged(&st, &d);
        o.containers[0].state = RunState::Stopped;
        o.containers[0].status = "created".into();
        // Locally its binds are live: started.
        assert!(plan(&st, &d, &o, false)
            .text()
            .contains("start api: container is created"));
        o.remote = true;
        assert!(plan(&st, &d, &o, false)
            .text()
            .contains("recreate api: created but never started"));
        // An exited one was started once, with its files: started again.
        o.containers[0].status = "exited".into();
        assert!(plan(&st, &d, &o, false)
            .text()
            .contains("start api: container is exited"));
    }

    #[test]
    fn restarting_counts_as_running() {
        let st = stack();
        let d = desired(&st);
        let mut o = converged(&st, &d);
        o.containers[0].state = RunState::Restarting;
        assert!(plan(&st, &d, &o, false).is_noop());
    }

    #[test]
    fn recreate_names_each_cause() {
        let st = stack();
        let d = desired(&st);
        let o = converged(&st, &d);
        // A published port.
        let mut moved = st.clone();
        moved.services[0].ports[0].host = 29999;
        let p = plan(&moved, &desired(&moved), &o, false);
        assert_eq!(p.text(), "recreate api: published port 8000 → 29999\n");
        // The image.
        let mut d2 = d.clone();
        d2[0].record.image = "sha256:fresh".into();
        assert_eq!(
            plan(&st, &d2, &o, false).text(),
            "recreate api: image changed (api → fresh)\n"
        );
        // A pending rebuild (dry run): the image ID is not known yet.
        d2[0].record.image = String::new();
        assert_eq!(
            plan(&st, &d2, &o, false).text(),
            "recreate api: its image is rebuilt\n"
        );
        // A mounted file.
        let mut d3 = d.clone();
        d3[1]
            .record
            .files
            .insert("/p/monitoring/x.yml".into(), "abc".into());
        assert_eq!(
            plan(&st, &d3, &o, false).text(),
            "recreate frontend: mounted file changed (monitoring/x.yml (new))\n"
        );
        // Another field of the definition.
        let mut env = st.clone();
        env.services[1].env.insert("X".into(), "1".into());
        assert_eq!(
            plan(&env, &desired(&env), &o, false).text(),
            "recreate frontend: definition changed (env)\n"
        );
        // A container another tool made.
        let mut foreign = o.clone();
        foreign.containers[0].record = None;
        foreign.containers[0].hash = "compose".into();
        assert_eq!(
            plan(&st, &d, &foreign, false).text(),
            "recreate api: made by another tool or an older irisctl (no record of its configuration)\n"
        );
    }

    #[test]
    fn behind_the_edge_a_changed_api_or_web_ui_is_released() {
        let st = Stack::from_settings(&Settings::defaults("/p".into())).docker_form();
        let d = desired(&st);
        let o = converged(&st, &d);
        let mut d2 = d.clone();
        d2[0].record.image = String::new();
        d2[1].record.image = "sha256:ui2".into();
        let p = plan(&st, &d2, &o, false);
        assert_eq!(
            p.text(),
            "release api: its image is rebuilt\n\
             release frontend: image changed (frontend → ui2)\n"
        );
        let api = p.for_service("api").unwrap();
        assert_eq!(api.object, "iris-api-1");
        assert_eq!(api.replacement.as_deref(), Some("iris-api-2"));
        assert_eq!(api.done_text(), "released api");
        // The next release alternates back to -1.
        let mut o2 = o.clone();
        o2.containers[0].name = "iris-api-2".into();
        let p2 = plan(&st, &d2, &o2, false);
        assert_eq!(
            p2.for_service("api").unwrap().replacement.as_deref(),
            Some("iris-api-1")
        );
        // A container from before the edge publishes the port itself: recreated, which
        // frees the port for the edge.
        let mut o3 = o.clone();
        if let Some(r) = o3.containers[0].record.as_mut() {
            r.ports = vec!["127.0.0.1:8000->8000".into()];
        }
        assert_eq!(
            plan(&st, &d2, &o3, false).for_service("api").unwrap().verb,
            Verb::Recreate
        );
        // Prometheus keeps its port and volume: recreated, not released.
        let mut d3 = d.clone();
        let prom = d3.iter_mut().find(|d| d.service == "prometheus").unwrap();
        prom.record.image = "sha256:p2".into();
        assert_eq!(
            plan(&st, &d3, &o, false).text(),
            "recreate prometheus: image changed (prometheus → p2)\n"
        );
    }

    #[test]
    fn stopped_is_started_and_paused_unpaused() {
        let st = stack();
        let d = desired(&st);
        let mut o = converged(&st, &d);
        o.containers[0] = container(&d[0], RunState::Stopped);
        o.containers[1].state = RunState::Paused;
        assert_eq!(
            plan(&st, &d, &o, false).text(),
            "start api: container is exited\nunpause frontend: paused\n"
        );
    }

    #[test]
    fn changed_and_stopped_recreates() {
        let st = stack();
        let d = desired(&st);
        let mut o = converged(&st, &d);
        o.containers[0].state = RunState::Stopped;
        let mut d2 = d.clone();
        d2[0].record.image = "sha256:new".into();
        assert_eq!(
            plan(&st, &d2, &o, false).for_service("api").unwrap().verb,
            Verb::Recreate
        );
    }

    #[test]
    fn a_second_container_is_removed_keeping_the_current_running_one() {
        let st = stack();
        let d = desired(&st);
        let mut o = converged(&st, &d);
        let mut old = container(&d[0], RunState::Running);
        old.id = "old".into();
        old.name = "iris-api-2".into();
        old.hash = "stale".into();
        o.containers.push(old);
        let p = plan(&st, &d, &o, false);
        assert_eq!(p.for_service("api").unwrap().id.as_deref(), Some("id-api"));
        assert_eq!(
            p.text(),
            "remove container iris-api-2: a second container of `api`\n"
        );
    }

    #[test]
    fn orphans_reported_or_removed() {
        let st = stack();
        let d = desired(&st);
        let mut o = converged(&st, &d);
        let mut w = container(&d[0], RunState::Running);
        w.service = "worker".into();
        w.name = "iris-worker-1".into();
        o.containers.push(w);
        assert_eq!(
            plan(&st, &d, &o, false).text(),
            "orphan container iris-worker-1: no service `worker` in the stack (`irisctl up --remove-orphans` removes it)\n"
        );
        assert_eq!(
            plan(&st, &d, &o, true).text(),
            "remove container iris-worker-1: no service `worker` in the stack\n"
        );
    }

    #[test]
    fn duplicate_networks_of_the_project_are_removed_keeping_the_oldest() {
        let st = stack();
        let d = desired(&st);
        let mut o = converged(&st, &d);
        o.networks = vec!["old".into(), "dup".into()];
        let p = plan(&st, &d, &o, false);
        assert_eq!(
            p.text(),
            "remove network iris-network: a duplicate of the project's network (same name)\n"
        );
        assert_eq!(p.ops[0].id.as_deref(), Some("dup"));
    }

    #[test]
    fn a_missing_volume_or_network_alone_is_planned() {
        let st = stack();
        let d = desired(&st);
        let mut o = converged(&st, &d);
        o.volumes.retain(|v| v != "iris_grafana-data");
        o.networks.clear();
        assert_eq!(
            plan(&st, &d, &o, false).text(),
            "create network iris-network: not present\ncreate volume iris_grafana-data: not present\n"
        );
    }
}
