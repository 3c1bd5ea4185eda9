//! `down` on the single engine, as a plan: the project's containers, then its network and (when
//! asked) volumes, each an operation; what is not the project's is reported, never removed.

use anyhow::Result;
use futures_util::future::try_join_all;

use super::super::owner::{owner, Owner};
use super::super::plan::{step, Kind, Op, Plan, Verb};
use super::super::Down;
use super::*;
use crate::engine::Object;
use crate::output::Printer;
use crate::stack::Stack;

impl Docker {
    /// What `down` removes. A project of the same name managed from another directory is
    /// refused; objects of the name that are not the project's are reported and kept, and so is
    /// a network another project's container is attached to (named, with how to free it).
    pub async fn plan_down(&self, stack: &Stack, volumes: bool) -> Result<Plan> {
        let label = project_label(stack);
        let mut plan = Plan::default();
        let listed = self.engine.list_labelled(Object::Container, &label).await?;
        for c in &listed {
            if let Owner::OtherDir(dir) = owner(&c.labels, &stack.project, &stack.project_dir) {
                return Err(managed_elsewhere(
                    stack,
                    &dir,
                    &format!("container `{}`", c.name),
                ));
            }
        }
        let containers = self.containers(stack).await?;
        // One-off containers of the project (`docker compose run`) go too.
        let one_offs: Vec<&crate::engine::Listed> = listed
            .iter()
            .filter(|c| !containers.iter().any(|k| k.id == c.id))
            .collect();
        for c in &one_offs {
            let cause = match c.labels.get(crate::shadow::LABEL) {
                Some(role) => format!("down (the shadow's {role})"),
                None => "down (a one-off container of the project)".to_string(),
            };
            plan.push(
                Op::new(Verb::Remove, Kind::Container, &c.name)
                    .id(&c.id)
                    .because(cause),
            );
        }
        for c in &containers {
            let op = Op::new(Verb::Remove, Kind::Container, &c.name).id(&c.id);
            plan.push(if stack.service(&c.service).is_some() {
                op.service(&c.service).because("down")
            } else {
                op.because(format!("down (no service `{}` in the stack)", c.service))
            });
        }
        let ours = |o: &crate::engine::Listed| {
            owner(&o.labels, &stack.project, &stack.project_dir) == Owner::Ours
        };
        for n in self.engine.list_labelled(Object::Network, &label).await? {
            if !ours(&n) {
                plan.push(
                    Op::new(Verb::Report, Kind::Network, &n.name)
                        .id(&n.id)
                        .because("not this directory's project"),
                );
                continue;
            }
            // Containers of others on the network would make the engine refuse ("has active
            // endpoints") after the project's are gone: name them now.
            let attached: Vec<String> = self
                .engine
                .inspect_network(&n.id)
                .await?
                .and_then(|i| i.containers)
                .unwrap_or_default()
                .into_iter()
                .filter(|(id, _)| {
                    !containers.iter().any(|c| &c.id == id) && !one_offs.iter().any(|c| &c.id == id)
                })
                .map(|(id, e)| e.name.unwrap_or(id))
                .collect();
            plan.push(if attached.is_empty() {
                Op::new(Verb::Remove, Kind::Network, &n.name)
                    .id(&n.id)
                    .because("down")
            } else {
                Op::new(Verb::Report, Kind::Network, &n.name)
                    .id(&n.id)
                    .because(format!(
                        "{} of another project {} attached (`docker network disconnect {} {}`, then `irisctl down` again)",
                        attached.iter().map(|a| format!("container `{a}`")).collect::<Vec<_>>().join(", "),
                        if attached.len() == 1 { "is" } else { "are" },
                        n.name,
                        attached[0]
                    ))
            });
        }
        if volumes {
            for v in self.engine.list_labelled(Object::Volume, &label).await? {
                plan.push(if ours(&v) {
                    Op::new(Verb::Remove, Kind::Volume, &v.name)
                        .because("down --volumes: its data is deleted")
                } else {
                    Op::new(Verb::Report, Kind::Volume, &v.name)
                        .because("not this directory's project")
                });
            }
        }
        Ok(plan)
    }

    /// Carry out a `down` plan: the containers at once, then networks and volumes.
    pub async fn apply_down(&self, plan: &Plan, printer: &Printer) -> Result<Down> {
        let mut out = Down::default();
        let containers: Vec<&Op> = plan
            .changes()
            .filter(|o| o.kind == Kind::Container)
            .collect();
        try_join_all(containers.iter().map(|op| {
            step(
                printer,
                op,
                self.engine
                    .remove_container(op.id.as_deref().unwrap_or(&op.object), &op.object),
            )
        }))
        .await?;
        out.removed
            .extend(containers.iter().map(|o| format!("container {}", o.object)));
        for op in plan.ops.iter().filter(|o| o.kind != Kind::Container) {
            if op.verb == Verb::Report {
                out.kept.push(format!(
                    "{} {}: {}",
                    kind_name(op.kind),
                    op.object,
                    op.cause
                ));
                continue;
            }
            let kind = match op.kind {
                Kind::Network => Object::Network,
                Kind::Volume => Object::Volume,
                _ => continue,
            };
            let listed = crate::engine::Listed {
                id: op.id.clone().unwrap_or_else(|| op.object.clone()),
                name: op.object.clone(),
                ..Default::default()
            };
            let removed = step(printer, op, self.engine.remove(kind, &listed)).await?;
            match (removed, op.kind) {
                (true, Kind::Volume) => out.deleted_volumes.push(op.object.clone()),
                (true, _) => out.removed.push(format!("network {}", op.object)),
                (false, _) => {}
            }
        }
        Ok(out)
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Network => "network",
        Kind::Volume => "volume",
        Kind::Image => "image",
        _ => "object",
    }
}
