//! `irisctl rollback [SERVICE]`: return released services to their previous release. On the
//! single engine through the same health-gated swap as a release (the previous image is kept
//! as `<project>-<service>:previous`, so no registry is needed); on Swarm through Swarm's own
//! rollback to the previous spec.

use anyhow::Result;

use super::Ctx;
use crate::backend::{Backend, Target};
use crate::stack::Stack;

pub struct RollbackOptions {
    pub service: Option<String>,
    pub target: Target,
}

pub async fn run(ctx: &Ctx, opts: RollbackOptions) -> Result<()> {
    let started = std::time::Instant::now();
    let backend = Backend::connect(opts.target).await?;
    let stack = backend.form(&Stack::from_settings(&ctx.settings));
    let _lock = ctx.lock_project().await?;
    let services: Vec<String> = opts.service.into_iter().collect();
    let done = backend
        .rollback(&stack, &services, ctx.settings.health_timeout, &ctx.printer)
        .await?;
    if done.is_empty() {
        ctx.printer.info("nothing to roll back");
    } else {
        ctx.printer.success(format!(
            "stack `{}`: {} in {:.1}s (the next `irisctl up` releases what the settings and sources say again)",
            stack.project,
            done.join(", "),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}
