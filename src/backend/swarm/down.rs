//! `down --target swarm`, as a plan.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::super::plan::{Kind, Op, Plan, Verb};
use super::super::Down;
use super::*;
use crate::engine::Object;
use crate::error::hinted;
use crate::output::Printer;
use crate::poll::{poll_until, Backoff, Poll};
use crate::stack::Stack;

impl Swarm {
    /// What `down --target swarm` removes: the stack's services, then its configs, secrets and
    /// network (busy until the tasks stop), and its volumes when asked.
    pub async fn plan_down(&self, stack: &Stack, volumes: bool) -> Result<Plan> {
        let label = namespace(stack);
        let mut plan = Plan::default();
        let mut kinds = vec![
            (Object::Service, Kind::Service),
            (Object::Config, Kind::Config),
            (Object::Secret, Kind::Secret),
            (Object::Network, Kind::Network),
        ];
        if volumes {
            kinds.push((Object::Volume, Kind::Volume));
        }
        for (object, kind) in kinds {
            for o in self.engine.list_labelled(object, &label).await? {
                plan.push(Op::new(Verb::Remove, kind, &o.name).id(&o.id).because(
                    if kind == Kind::Volume {
                        "down --volumes: its data is deleted"
                    } else {
                        "down"
                    },
                ));
            }
        }
        Ok(plan)
    }

    /// Carry out a `down` plan: Swarm removes the stack's objects in dependency order, each
    /// reported as it goes.
    pub async fn apply_down(&self, stack: &Stack, plan: &Plan, printer: &Printer) -> Result<Down> {
        let started = Instant::now();
        for op in plan.changes() {
            printer.op_started(op);
        }
        let out = self
            .down(stack, plan.changes().any(|o| o.kind == Kind::Volume))
            .await;
        for op in plan.changes() {
            match &out {
                Ok(_) => printer.op_done(op, started.elapsed()),
                Err(e) => printer.op_failed(op, &format!("{e:#}")),
            }
        }
        out
    }

    /// Remove the stack's services, then its configs, secrets and network (and volumes if asked).
    pub async fn down(&self, stack: &Stack, volumes: bool) -> Result<Down> {
        let label = namespace(stack);
        let engine = &self.engine;
        let mut out = Down::default();
        let services = engine
            .remove_labelled(Object::Service, &label, |_| true, Duration::ZERO)
            .await?;
        out.removed
            .extend(services.removed.iter().map(|s| format!("service {s}")));
        // Tasks stop asynchronously; configs, secrets and the network are busy until they have.
        let label_ref = &label;
        // Past the deadline the removals below say what is still busy.
        let _ = poll_until(
            (Instant::now() + Duration::from_secs(60)).into(),
            Backoff::fixed(POLL),
            || async move {
                match engine
                    .containers_with(std::slice::from_ref(label_ref))
                    .await
                {
                    Ok(c) if c.is_empty() => Poll::Ready(()),
                    _ => Poll::Pending(()),
                }
            },
        )
        .await;
        let mut leftovers = Vec::new();
        for kind in [Object::Config, Object::Secret] {
            match engine
                .remove_labelled(kind, &label, |_| true, Duration::from_secs(10))
                .await
            {
                Ok(r) => out
                    .removed
                    .extend(r.removed.iter().map(|n| format!("{} {n}", kind.word()))),
                Err(e) => leftovers.push(format!("{e:#}")),
            }
        }
        if !leftovers.is_empty() {
            return Err(hinted(
                format!(
                    "Swarm stack `{}` is partly down; these are left: {}",
                    stack.project,
                    leftovers.join(", ")
                ),
                "tasks may still be stopping: run `irisctl down --target swarm` again in a moment",
            ));
        }
        // The overlay's endpoints linger a moment after the last task.
        let nets = engine
            .remove_labelled(Object::Network, &label, |_| true, Duration::from_secs(30))
            .await?;
        out.removed
            .extend(nets.removed.iter().map(|n| format!("network {n}")));
        if volumes {
            out.deleted_volumes = engine
                .remove_labelled(Object::Volume, &label, |_| true, Duration::ZERO)
                .await?
                .removed;
        }
        Ok(out)
    }
}
