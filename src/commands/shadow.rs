//! `irisctl shadow start|stop|promote`: a challenger API answers copies of live `/predict`
//! requests beside the champion, and its answers are compared with the champion's (see
//! [`crate::shadow`]). Each verb prints its plan (`--dry-run`) and carries out exactly that.

use anyhow::Result;

use super::Ctx;
use crate::backend::docker::{shadow_build_stack, shadow_stack, Docker};
use crate::backend::plan::Plan;
use crate::backend::{images, Backend, Target};
use crate::error::hinted;
use crate::output::Format;
use crate::stack::Stack;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Promote,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Start => "shadow start",
            Verb::Stop => "shadow stop",
            Verb::Promote => "shadow promote",
        }
    }
}

pub async fn run(ctx: &Ctx, verb: Verb, target: Target, dry_run: Option<Format>) -> Result<()> {
    if target == Target::Swarm {
        return Err(hinted(
            "shadow traffic runs on the single engine only: on Swarm no edge of irisctl's copies the API's requests",
            "leave out --target swarm; on Swarm compare a new model with a canary of your own, or on a single-engine copy of the stack",
        ));
    }
    if !ctx.embedded {
        ctx.check_stack_files()?;
    }
    let backend = Backend::connect(Target::Docker).await?;
    let stack = backend.form(&Stack::from_settings(&ctx.settings));
    let Backend::Docker(docker) = &backend else {
        anyhow::bail!("the single-engine backend was asked for and another was made");
    };
    // A dry run writes nothing, not even the lock file. `promote` locks in two turns: the
    // release (`up`'s own lock), then the stop.
    let _lock = match dry_run {
        None if verb != Verb::Promote => Some(ctx.lock_project().await?),
        _ => None,
    };
    backend.preflight_ownership(&stack).await?;
    match verb {
        Verb::Start => start(ctx, docker, &stack, dry_run).await,
        Verb::Stop => {
            let plan = docker.plan_shadow_stop(&stack).await?;
            if let Some(format) = dry_run {
                return super::print_plan(ctx, &stack.project, &plan, format, verb.word());
            }
            if plan.ops.is_empty() {
                ctx.printer.info("no shadow runs: nothing to stop");
                return Ok(());
            }
            docker
                .apply_shadow_stop(&stack, &plan, &ctx.printer)
                .await?;
            ctx.printer
                .success(format!("stack `{}`: the shadow stopped", stack.project));
            Ok(())
        }
        Verb::Promote => promote(ctx, docker, &stack, dry_run).await,
    }
}

async fn start(ctx: &Ctx, docker: &Docker, stack: &Stack, dry_run: Option<Format>) -> Result<()> {
    let sample = ctx.settings.shadow.sample;
    let Some(shadow) = shadow_stack(stack, sample, "") else {
        return Err(hinted(
            "this stack has no `api` service to shadow",
            "shadow traffic needs the stack's API",
        ));
    };
    let mut images = images::plan(&docker.engine, &shadow_build_stack(&shadow), false).await?;
    let plan = docker
        .plan_shadow_start(stack, &shadow, &images, sample)
        .await?;
    if let Some(format) = dry_run {
        return super::print_plan(ctx, &stack.project, &plan, format, "shadow start");
    }
    let started = std::time::Instant::now();
    docker
        .apply_shadow_start(
            stack,
            &shadow,
            &plan,
            &mut images,
            sample,
            ctx.settings.health_timeout,
            &ctx.printer,
        )
        .await?;
    ctx.printer.success(format!(
        "stack `{}`: the challenger `{}` answers copies of {sample} % of /predict in {:.1}s (no client sees them); `irisctl status` compares it with the champion, `irisctl shadow promote` releases it, `irisctl shadow stop` ends it",
        stack.project,
        shadow.services[0].container_name,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The challenger's image released as the API by `up`'s own path (a swap, or a canary with the
/// canary strategy), then the shadow stopped.
async fn promote(ctx: &Ctx, docker: &Docker, stack: &Stack, dry_run: Option<Format>) -> Result<()> {
    let found = docker.shadow_containers(stack).await?;
    let Some(challenger) = found.iter().find(|c| c.role == "challenger") else {
        return Err(hinted(
            format!(
                "no challenger runs in stack `{}`: nothing to promote",
                stack.project
            ),
            "`irisctl shadow start` starts one from the project's source",
        ));
    };
    if docker.engine.image_id(&challenger.image).await?.is_none() {
        return Err(hinted(
            format!(
                "the challenger's image {} is gone from this engine",
                challenger.image
            ),
            "`irisctl shadow stop`, then `irisctl shadow start` builds it again",
        ));
    }
    let opts = super::up::UpOptions {
        remove_orphans: false,
        provision: true,
        target: Target::Docker,
        dry_run: None,
        rehash: false,
        swap_only: false,
        api_image: Some(challenger.image.clone()),
    };
    if let Some(format) = dry_run {
        let (project, mut plan) = super::up::plan_only(ctx, &opts).await?;
        // `up`'s plan shows the shadow as kept: promote removes it after the release.
        plan.ops
            .retain(|o| o.verb != crate::backend::plan::Verb::Shadow);
        let stop: Plan = docker.plan_shadow_stop(stack).await?;
        plan.extend(stop);
        return super::print_plan(ctx, &project, &plan, format, "shadow promote");
    }
    // What the API's tag named before: given back if the release fails (the release points it
    // at the challenger's image first).
    let api_tag = stack.service("api").map(|s| s.image.clone());
    let tagged_before = match &api_tag {
        Some(tag) => docker.engine.image_id(tag).await?,
        None => None,
    };
    let released = super::up::converge(ctx, &opts).await;
    ctx.printer.finish_board();
    if let Err(e) = released {
        if let (Some(tag), Some(id)) = (&api_tag, &tagged_before) {
            let (repo, t) = split_tag(tag);
            if let Err(t_err) = docker.engine.tag_image(id, repo, t).await {
                ctx.printer.warn(format!(
                    "`{tag}` still names the challenger's image ({t_err:#}): the next `irisctl up` may release it"
                ));
            }
        }
        let message = format!("{e:#}");
        let hint = e
            .downcast_ref::<crate::error::Hinted>()
            .map(|h| h.hint.clone())
            .unwrap_or_else(|| "`irisctl status` shows what serves; the shadow runs on".into());
        return Err(hinted(
            format!("the challenger was not promoted (the champion serves, the shadow runs on): {message}"),
            hint,
        ));
    }
    let _lock = ctx.lock_project().await?;
    let stop = docker.plan_shadow_stop(stack).await?;
    if let Err(e) = docker.apply_shadow_stop(stack, &stop, &ctx.printer).await {
        return Err(hinted(
            format!(
                "the challenger's image {} serves as `api`, but the shadow did not stop: {e:#}",
                short(&challenger.image)
            ),
            "`irisctl shadow stop` removes the rest",
        ));
    }
    ctx.printer.success(format!(
        "stack `{}`: the challenger's image {} serves as `api`; the shadow stopped",
        stack.project,
        short(&challenger.image)
    ));
    Ok(())
}

pub(crate) use crate::engine::split_tag;

fn short(id: &str) -> &str {
    let id = id.trim_start_matches("sha256:");
    id.get(..12).unwrap_or(id)
}
