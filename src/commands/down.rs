//! `irisctl down`: remove the stack's containers (or Swarm services) and network; volumes and
//! images only on request.

use anyhow::Result;

use super::Ctx;
use crate::backend::{Backend, Target};
use crate::stack::Stack;

pub struct DownOptions {
    pub volumes: bool,
    pub rmi: bool,
    pub target: Target,
}

pub async fn run(ctx: &Ctx, opts: DownOptions) -> Result<()> {
    let backend = Backend::connect(opts.target).await?;
    let stack = backend.form(&Stack::from_settings(&ctx.settings));
    // A project directory that does not exist has nothing to serialise with (and is not made).
    let _lock = if ctx.settings.project_dir.is_dir() {
        Some(ctx.lock_project().await?)
    } else {
        None
    };
    let printer = &ctx.printer;
    let mut down = backend.down(&stack, opts.volumes).await?;
    if opts.rmi {
        down.extend(backend.remove_images(&stack).await?);
    }
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
