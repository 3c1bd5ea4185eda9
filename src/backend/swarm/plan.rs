//! The Swarm planner: desired services, configs and secrets against what the swarm has → a
//! [`Plan`] with causes. Pure: no I/O.

use crate::backend::plan::{Kind, Op, Plan, Verb};
use crate::stack::record::{causes, Record};
use crate::stack::Stack;

/// A service as the swarm has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// `<project>_<service>`.
    pub name: String,
    pub service: String,
    pub spec_hash: String,
    pub record: Option<Record>,
}

/// What the swarm has of the project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub services: Vec<Current>,
    pub network_exists: bool,
    /// Names of the configs and secrets that exist.
    pub configs: Vec<String>,
    pub secrets: Vec<String>,
}

/// What a service should be: its spec hash (`None` while its image is still to be built), its
/// record, and the configs and secrets it mounts (names, secret or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub service: String,
    pub spec_hash: Option<String>,
    pub record: Record,
    pub files: Vec<(String, bool)>,
}

pub fn plan(stack: &Stack, desired: &[Desired], observed: &Observed) -> Plan {
    let mut plan = Plan::default();
    if !observed.network_exists {
        plan.push(
            Op::new(
                Verb::Create,
                Kind::Network,
                super::spec::network_name(stack),
            )
            .because("not present"),
        );
    }
    for d in desired {
        for (name, secret) in &d.files {
            let (kind, have) = if *secret {
                (Kind::Secret, &observed.secrets)
            } else {
                (Kind::Config, &observed.configs)
            };
            if !have.contains(name) && !plan.ops.iter().any(|o| &o.object == name) {
                plan.push(
                    Op::new(Verb::Create, kind, name)
                        .service(&d.service)
                        .because("new content"),
                );
            }
        }
    }
    for d in desired {
        let name = stack.swarm_name(&d.service);
        let op = |verb| Op::new(verb, Kind::Service, &name).service(&d.service);
        let Some(cur) = observed.services.iter().find(|c| c.service == d.service) else {
            plan.push(op(Verb::Create).because("no service"));
            continue;
        };
        if d.spec_hash.as_deref() == Some(cur.spec_hash.as_str()) {
            plan.push(op(Verb::Keep));
            continue;
        }
        let cause = match &cur.record {
            None => "made by another tool or an older irisctl (no record of its configuration)"
                .to_string(),
            Some(old) => {
                let why = causes(old, &d.record, &stack.project_dir);
                if why.is_empty() {
                    "configuration changed".to_string()
                } else {
                    why.join(", ")
                }
            }
        };
        plan.push(op(Verb::Update).because(format!("rolling update, {cause}")));
    }
    for cur in observed
        .services
        .iter()
        .filter(|c| !desired.iter().any(|d| d.service == c.service))
    {
        plan.push(
            Op::new(Verb::Report, Kind::Service, &cur.name)
                .because(format!("no service `{}` in the stack", cur.service)),
        );
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn stack() -> Stack {
        let mut st = Stack::from_settings(&Settings::defaults("/p".into())).swarm_form();
        st.services
            .retain(|s| s.name == "api" || s.name == "prometheus");
        st
    }

    fn desired(st: &Stack) -> Vec<Desired> {
        st.services
            .iter()
            .map(|s| {
                let record = Record::of(s, "sha256:img", &[]).with_field("replicas", 1);
                Desired {
                    service: s.name.clone(),
                    spec_hash: Some(format!("h-{}", s.name)),
                    record,
                    files: if s.name == "prometheus" {
                        vec![("iris_prometheus_cfg_1".into(), false)]
                    } else {
                        vec![]
                    },
                }
            })
            .collect()
    }

    fn converged(d: &[Desired]) -> Observed {
        Observed {
            services: d
                .iter()
                .map(|d| Current {
                    name: format!("iris_{}", d.service),
                    service: d.service.clone(),
                    spec_hash: d.spec_hash.clone().unwrap(),
                    record: Some(d.record.clone()),
                })
                .collect(),
            network_exists: true,
            configs: vec!["iris_prometheus_cfg_1".into()],
            secrets: vec![],
        }
    }

    #[test]
    fn an_empty_swarm_gets_network_configs_and_services() {
        let st = stack();
        assert_eq!(
            plan(&st, &desired(&st), &Observed::default()).text(),
            "create network iris_iris-network: not present\n\
             create config iris_prometheus_cfg_1: new content\n\
             create api: no service\n\
             create prometheus: no service\n"
        );
    }

    #[test]
    fn converged_is_nothing_to_change() {
        let st = stack();
        let d = desired(&st);
        assert_eq!(plan(&st, &d, &converged(&d)).text(), "nothing to change\n");
    }

    #[test]
    fn updates_name_their_cause() {
        let st = stack();
        let d = desired(&st);
        let o = converged(&d);
        let mut scaled = d.clone();
        scaled[0].record = scaled[0].record.clone().with_field("replicas", 3);
        scaled[0].spec_hash = Some("h2".into());
        assert_eq!(
            plan(&st, &scaled, &o).text(),
            "update api: rolling update, replicas 1 → 3\n"
        );
        let mut rebuilt = d.clone();
        rebuilt[0].record.image = String::new();
        rebuilt[0].spec_hash = None;
        assert_eq!(
            plan(&st, &rebuilt, &o).text(),
            "update api: rolling update, its image is rebuilt\n"
        );
    }

    #[test]
    fn a_changed_file_is_a_new_config_and_a_secret_is_a_secret() {
        let st = stack();
        let mut d = desired(&st);
        d[1].files = vec![
            ("iris_prometheus_cfg_2".into(), false),
            ("iris_pw_1".into(), true),
        ];
        d[1].record
            .files
            .insert("/p/monitoring/prometheus.yml".into(), "new".into());
        d[1].spec_hash = Some("h3".into());
        assert_eq!(
            plan(&st, &d, &converged(&desired(&st))).text(),
            "create config iris_prometheus_cfg_2: new content\n\
             create secret iris_pw_1: new content\n\
             update prometheus: rolling update, mounted file changed (monitoring/prometheus.yml (new))\n"
        );
    }

    #[test]
    fn services_of_the_project_not_in_the_stack_are_reported() {
        let st = stack();
        let d = desired(&st);
        let mut o = converged(&d);
        o.services.push(Current {
            name: "iris_worker".into(),
            service: "worker".into(),
            spec_hash: "x".into(),
            record: None,
        });
        assert_eq!(
            plan(&st, &d, &o).text(),
            "orphan service iris_worker: no service `worker` in the stack\n"
        );
    }
}
