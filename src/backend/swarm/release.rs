//! Rollback on Swarm: Swarm's own rollback to each service's previous spec, as a plan.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::super::plan::{Kind, Op, Plan, Verb};
use super::*;
use crate::error::hinted;
use crate::output::Printer;
use crate::poll::{poll_until, Backoff, Ended, Poll};
use crate::stack::Stack;

impl Swarm {
    /// What `rollback --target swarm` does: Swarm's own rollback of each service to its
    /// previous spec.
    pub async fn plan_rollback(&self, stack: &Stack, services: &[String]) -> Result<Plan> {
        let listed = self
            .engine
            .services_with(&format!("{NAMESPACE}={}", stack.project))
            .await?;
        let mut plan = Plan::default();
        for name in services {
            let full = stack.swarm_name(name);
            let svc = named(&listed, &full)?;
            plan.push(
                Op::new(Verb::Update, Kind::Service, &full)
                    .service(name)
                    .id(svc.id.clone().unwrap_or_default())
                    .because("Swarm rollback to the previous spec"),
            );
        }
        Ok(plan)
    }

    /// Carry out a rollback plan: the services' rollbacks, then the wait for Swarm to finish.
    pub async fn apply_rollback(
        &self,
        stack: &Stack,
        plan: &Plan,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Vec<Op>> {
        let ops: Vec<&Op> = plan.changes().collect();
        let services: Vec<String> = ops.iter().filter_map(|o| o.service.clone()).collect();
        let started = Instant::now();
        for op in &ops {
            printer.op_started(*op);
        }
        let out = self.rollback(stack, &services, timeout, printer).await;
        for op in &ops {
            match &out {
                Ok(_) => printer.op_done(*op, started.elapsed()),
                Err(e) => printer.op_failed(*op, &format!("{e:#}")),
            }
        }
        out.map(|_| ops.into_iter().cloned().collect())
    }

    /// The rollbacks of `services`: Swarm's own rollback of each service to its previous
    /// spec (`PreviousSpec`, as `docker service rollback`), then wait until it converges.
    async fn rollback(
        &self,
        stack: &Stack,
        services: &[String],
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Vec<String>> {
        let listed = self
            .engine
            .services_with(&format!("{NAMESPACE}={}", stack.project))
            .await?;
        let mut done = Vec::new();
        let mut rolled = Vec::new();
        let since = std::time::SystemTime::now();
        for name in services {
            let full = stack.swarm_name(name);
            let svc = named(&listed, &full)?;
            // Swarm refuses a service without a previous spec ("service does not have a
            // previous spec"): the engine's error says so.
            let version = svc
                .version
                .as_ref()
                .and_then(|v| v.index)
                .unwrap_or_default();
            printer.enter(format!("rolling back service {full}"));
            self.engine
                .rollback_service(&full, svc.spec.clone().unwrap_or_default(), version)
                .await?;
            rolled.push(name.clone());
            done.push(format!(
                "rolled back {name} (Swarm rollback to the previous spec)"
            ));
        }
        printer.enter("waiting for the Swarm rollback to complete");
        let since = since - Duration::from_secs(2);
        let deadline = Instant::now() + timeout;
        let (engine, rolled) = (&self.engine, &rolled);
        poll_until(deadline.into(), Backoff::fixed(POLL), || async move {
            let states = match states(engine, &stack.project).await {
                Ok(s) => s,
                Err(e) => return Poll::Failed(e),
            };
            let mine: Vec<&ServiceState> = states
                .iter()
                .filter(|st| rolled.contains(&st.service))
                .collect();
            if let Some(bad) = mine.iter().find(|st| st.update == "rollback_paused") {
                return Poll::Failed(hinted(
                    format!(
                        "the rollback of service `{}` paused: {}",
                        bad.name, bad.update_message
                    ),
                    format!("see `docker service ps {} --no-trunc`", bad.name),
                ));
            }
            let finished = mine.iter().all(|st| {
                st.update == "rollback_completed"
                    && st.update_started.is_some_and(|t| t >= since)
                    && st.desired > 0
                    && st.running == st.desired
            });
            if finished {
                return Poll::Ready(());
            }
            Poll::Pending(hinted(
                format!(
                    "the Swarm rollback did not complete within {} s",
                    timeout.as_secs()
                ),
                format!(
                    "see `docker service ps {}_{}`",
                    stack.project,
                    rolled.join(", ")
                ),
            ))
        })
        .await
        .map_err(Ended::into_inner)?;
        Ok(done)
    }
}

/// The Swarm service named `full` among those listed.
fn named<'a>(
    listed: &'a [bollard::models::Service],
    full: &str,
) -> Result<&'a bollard::models::Service> {
    listed
        .iter()
        .find(|s| s.spec.as_ref().and_then(|sp| sp.name.as_deref()) == Some(full))
        .ok_or_else(|| {
            hinted(
                format!("Swarm service `{full}` does not exist"),
                "run `irisctl up --target swarm` first",
            )
        })
}
