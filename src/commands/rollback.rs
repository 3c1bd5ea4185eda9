//! `irisctl rollback [SERVICE]`: return released services to their previous release. On the
//! single engine through the same health-gated swap as a release (the previous image is kept
//! as `<project>-<service>:previous`, so no registry is needed); on Swarm through Swarm's own
//! rollback to the previous spec.

use anyhow::Result;

use super::Ctx;
use crate::backend::plan::Verb;
use crate::backend::{Backend, Target};
use crate::stack::Stack;

pub struct RollbackOptions {
    pub service: Option<String>,
    pub target: Target,
    /// Print the plan and change nothing, in this format.
    pub dry_run: Option<crate::output::Format>,
}

pub async fn run(ctx: &Ctx, opts: RollbackOptions) -> Result<()> {
    let started = std::time::Instant::now();
    let backend = Backend::connect(opts.target).await?;
    let stack = backend.form(&Stack::from_settings(&ctx.settings));
    // A dry run writes nothing, not even the lock file. `rollback api` during a canary aborts
    // it beside the `up` that runs it (and holds the lock), which then sees it gone.
    let canary = crate::backend::docker::running_canary(&ctx.settings.project_dir)
        .filter(|c| c.state != "promoting");
    let aborts_canary = match canary {
        Some(c) if opts.target == Target::Docker && opts.service.as_deref() == Some("api") => {
            backend.engine().inspect_container(&c.canary).await.is_ok()
        }
        _ => false,
    };
    let _lock = match opts.dry_run {
        None if !aborts_canary => Some(ctx.lock_project().await?),
        _ => None,
    };
    // A stack managed from another directory is refused, as `up` refuses it.
    backend.preflight_ownership(&stack).await?;
    let services: Vec<String> = opts.service.into_iter().collect();
    let plan = backend.plan_rollback(&stack, &services).await?;
    if let Some(format) = opts.dry_run {
        return super::print_plan(ctx, &stack.project, &plan, format, "rollback");
    }
    for op in plan.ops.iter().filter(|o| o.verb == Verb::Keep) {
        ctx.printer.info(format!(
            "{}: {}, left as it is",
            op.service.as_deref().unwrap_or(&op.object),
            op.cause
        ));
    }
    let done = backend
        .apply_rollback(&stack, &plan, ctx.settings.health_timeout, &ctx.printer)
        .await?;
    if done.is_empty() {
        ctx.printer.info("nothing to roll back");
    } else {
        let events: Vec<(String, String)> = done
            .iter()
            .map(|op| {
                let service = op.service.clone().unwrap_or_default();
                if op.verb == Verb::Remove {
                    let rest = op
                        .cause
                        .strip_prefix("aborts the canary in progress")
                        .unwrap_or_default();
                    let rest = rest.replace("goes back", "went back");
                    return (
                        service.clone(),
                        format!("aborted the canary of {service}{rest}"),
                    );
                }
                let what = op
                    .cause
                    .strip_prefix("rollback to the previous release ")
                    .unwrap_or(&op.cause);
                (service.clone(), format!("rolled back {service} {what}"))
            })
            .collect();
        if opts.target == Target::Docker {
            let password = ctx.ensure_grafana_password().ok();
            annotate(ctx, &stack, password, &events).await;
        }
        let what: Vec<String> = events.iter().map(|(_, t)| t.clone()).collect();
        ctx.printer.success(format!(
            "stack `{}`: {} in {:.1}s (the next `irisctl up` releases what the settings and sources say again)",
            stack.project,
            what.join("; "),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// Write each release or rollback as a Grafana annotation (tags `irisctl`, `release` and the
/// service; the dashboard's "Releases" annotation query shows them). Best effort: a Grafana
/// that does not answer is a warning, never a failed `up` — the release is done.
pub async fn annotate(
    ctx: &Ctx,
    stack: &Stack,
    password: Option<String>,
    events: &[(String, String)],
) {
    if events.is_empty() {
        return;
    }
    let opts = super::grafana::ProvisionOptions {
        password,
        own_url: ctx
            .settings
            .http_base(ctx.settings.ports.grafana)
            .await
            .ok(),
        ..Default::default()
    };
    let client = match super::grafana::client(ctx, &opts) {
        Ok(c) => c,
        Err(e) => {
            ctx.printer
                .warn(format!("releases not annotated in Grafana: {e:#}"));
            return;
        }
    };
    let model = model_version(ctx, stack).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    for (service, text) in events {
        let text = match (&model, service.as_str()) {
            (Some(m), "api") => format!("{text}; model {m}"),
            _ => text.clone(),
        };
        let tags = ["irisctl", "release", service.as_str()];
        if let Err(e) = client.annotate(now_ms, &tags, &text).await {
            ctx.printer.warn(format!(
                "release of `{service}` not annotated in Grafana: {}",
                crate::grafana::redact_urls(&e.to_string())
            ));
        }
    }
}

/// The model version the API serves now (its `/health`), through its published port.
async fn model_version(ctx: &Ctx, stack: &Stack) -> Option<String> {
    let port = stack
        .service("api")
        .and_then(|s| s.probes.first())
        .map(|p| p.port)?;
    let url = format!("{}/health", ctx.settings.http_base(port).await.ok()?);
    let answer = crate::probe::client(std::time::Duration::from_secs(3))
        .get(url)
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = answer.json().await.ok()?;
    body.get("model_version")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}
