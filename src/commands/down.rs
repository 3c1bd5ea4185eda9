//! `irisctl down`: remove the stack's containers (or Swarm services) and network; volumes and
//! images only on request. One plan, printed by `--dry-run`, carried out as it is.

use anyhow::Result;

use super::Ctx;
use crate::backend::{Backend, Target};
use crate::stack::Stack;

pub struct DownOptions {
    pub volumes: bool,
    pub rmi: bool,
    pub target: Target,
    /// Print the plan and change nothing, in this format.
    pub dry_run: Option<crate::output::Format>,
}

pub async fn run(ctx: &Ctx, opts: DownOptions) -> Result<()> {
    let backend = Backend::connect(opts.target).await?;
    let stack = backend.form(&Stack::from_settings(&ctx.settings));
    // A project directory that does not exist has nothing to serialise with (and is not made).
    let _lock = if ctx.settings.project_dir.is_dir() && opts.dry_run.is_none() {
        Some(ctx.lock_project().await?)
    } else {
        None
    };
    let printer = &ctx.printer;
    let plan = backend.plan_down(&stack, opts.volumes, opts.rmi).await?;
    if let Some(format) = opts.dry_run {
        return super::print_plan(ctx, &stack.project, &plan, format, "down");
    }
    let down = backend.apply_down(&stack, &plan, printer).await?;
    for r in &down.removed {
        printer.info(format!("removed {r}"));
    }
    for v in &down.deleted_volumes {
        printer.warn(format!("deleted volume {v} and the data in it"));
    }
    for k in &down.kept {
        printer.warn(format!("kept {k}"));
    }
    if down.is_empty() {
        printer.info(format!(
            "nothing to remove: project `{}` has no containers, services or network",
            stack.project
        ));
    } else if down.removed.is_empty() && down.deleted_volumes.is_empty() {
        printer.info(format!(
            "nothing removed: what is left of project `{}` is kept (above)",
            stack.project
        ));
    } else {
        let kept = if opts.volumes {
            String::new()
        } else {
            " (volumes kept; `down --volumes` deletes them)".to_string()
        };
        printer.success(format!("stack `{}` is down{kept}", stack.project));
    }
    Ok(())
}
