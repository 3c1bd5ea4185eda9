//! `irisctl up`: plan, build, start in dependency order, wait until healthy, show where things
//! are. The backend (single engine or Swarm) is chosen once; nothing here asks which it is.
//! `--dry-run` stops after the plan and changes nothing.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::Ctx;
use crate::backend::plan::{Kind, Plan, Verb};
use crate::backend::{images, Backend, Target};
use crate::error::hinted;
use crate::output::Format;
use crate::probe;
use crate::stack::Stack;

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub remove_orphans: bool,
    /// Provision Grafana's datasource and dashboards once it is healthy.
    pub provision: bool,
    pub target: Target,
    /// Print the plan and change nothing, in this format.
    pub dry_run: Option<Format>,
    /// Read every file of the build contexts, not only those whose metadata changed.
    pub rehash: bool,
}

pub async fn run(ctx: &Ctx, opts: UpOptions) -> Result<()> {
    if let Some(format) = opts.dry_run {
        return dry_run(ctx, &opts, format).await;
    }
    let result = converge(ctx, &opts).await;
    // The progress lines collapse, into the summary or above the error.
    ctx.printer.finish_board();
    let summary = result?;
    ctx.printer.success(summary.0);
    ctx.printer.data(&summary.1);
    Ok(())
}

/// Everything `up` does; the summary line and the URL table.
pub(crate) async fn converge(ctx: &Ctx, opts: &UpOptions) -> Result<(String, String)> {
    let started = Instant::now();
    let printer = &ctx.printer;
    if !ctx.embedded {
        ctx.check_stack_files()?;
    }
    if let Some(w) = opts.target.exposure_warning(ctx.settings.bind) {
        printer.warn(w);
    }
    let backend = Backend::connect(opts.target).await?;
    let stack = backend.form(&Stack::from_settings(&ctx.settings));
    // Concurrent `up`s of this project run one after the other.
    let _lock = ctx.lock_project().await?;
    printer.enter("checking host ports").await;
    backend.preflight(&stack).await?;
    // Nothing is written before the engine has been reached and the preflight passed.
    ctx.ensure_stack_files()?;
    printer.enter("checking images").await;
    let mut images = images::plan(backend.engine(), &stack, opts.rehash).await?;
    let pulled = images.pull(backend.engine(), &stack).await?;
    let password = ctx.ensure_grafana_password()?;
    ctx.write_derived_files()?;
    let names: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    printer.start_board(&names);
    printer.enter("building images").await;
    let (mut built, image_ids) = images.build(backend.engine(), &stack, printer).await?;
    built.extend(pulled);
    let known = image_ids
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let plan = backend.plan(&stack, &known, opts.remove_orphans).await?;
    for op in plan.ops.iter().filter(|o| o.verb == Verb::Report) {
        printer.warn(match op.kind {
            Kind::Container => format!(
                "container `{}` belongs to project `{}` but to no service of it; `irisctl up --remove-orphans` removes it",
                op.object, stack.project
            ),
            _ => op.text(),
        });
    }
    let done = backend
        .apply(
            &stack,
            &plan,
            &image_ids,
            ctx.settings.health_timeout,
            printer,
        )
        .await?;

    // The engine says healthy; check the published endpoints from this host too, while
    // Grafana (healthy: `apply` waited for it) is provisioned.
    printer
        .enter(if opts.provision {
            "probing the published endpoints and provisioning Grafana"
        } else {
            "probing the published endpoints"
        })
        .await;
    let provision = async {
        if !opts.provision {
            return Ok(());
        }
        let outcomes = super::grafana::provision(
            ctx,
            &super::grafana::ProvisionOptions {
                password: Some(password.clone()),
                wait_timeout: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await?;
        let text: Vec<String> = outcomes
            .iter()
            .map(|o| format!("{} {}", o.object, o.action))
            .collect();
        printer.info(format!("grafana: {}", text.join(", ")));
        Ok::<_, anyhow::Error>(())
    };
    tokio::try_join!(probe_published(ctx, &stack), provision)?;

    if opts.provision {
        let releases: Vec<(String, String)> = done
            .iter()
            .filter(|o| o.verb == Verb::Release)
            .filter_map(|o| {
                let service = o.service.clone()?;
                Some((service.clone(), format!("release {service}: {}", o.cause)))
            })
            .collect();
        super::rollback::annotate(ctx, &stack, Some(password), &releases).await;
    }

    let summary: Vec<String> = built
        .iter()
        .chain(
            done.iter()
                .filter(|o| matches!(o.kind, Kind::Container | Kind::Service)),
        )
        .map(|o| o.done_text())
        .collect();
    let summary = if summary.is_empty() {
        "nothing to change".to_string()
    } else {
        summary.join(", ")
    };
    Ok((
        format!(
            "stack `{}` is up and healthy in {:.1}s ({summary})",
            stack.project,
            started.elapsed().as_secs_f64()
        ),
        urls_table(ctx, &stack),
    ))
}

/// The plan `up` would carry out, printed; nothing is built, created or written.
async fn dry_run(ctx: &Ctx, opts: &UpOptions, format: Format) -> Result<()> {
    ctx.check_stack_files()?;
    let backend = Backend::connect(opts.target).await?;
    let stack = backend.form(&Stack::from_settings(&ctx.settings));
    backend.preflight(&stack).await?;
    let images = images::plan(backend.engine(), &stack, opts.rehash).await?;
    let mut plan = images.plan();
    let services = backend
        .plan(&stack, &images.ids, opts.remove_orphans)
        .await?;
    plan.extend(services);
    print_plan(ctx, &stack, &plan, format)
}

fn print_plan(ctx: &Ctx, stack: &Stack, plan: &Plan, format: Format) -> Result<()> {
    match format {
        Format::Json => ctx
            .printer
            .data(&serde_json::to_string_pretty(&serde_json::json!({
                "project": stack.project,
                "changes": !plan.is_noop(),
                "ops": plan.ops,
            }))?),
        Format::Table => {
            ctx.printer.data(&plan.text());
            if !plan.is_noop() {
                ctx.printer
                    .info("dry run: nothing was changed; `irisctl up` does this");
            }
        }
    }
    Ok(())
}

/// Every published endpoint answers from this host (within 30 s).
async fn probe_published(ctx: &Ctx, stack: &Stack) -> Result<()> {
    let client = probe::client(Duration::from_secs(3));
    let host = ctx.settings.client_host();
    let deadline = Instant::now() + Duration::from_secs(30);
    let probes: Vec<_> = stack
        .services
        .iter()
        .flat_map(|s| s.probes.iter())
        .collect();
    let results = futures_util::future::join_all(probes.iter().map(|p| {
        let url = format!("http://{host}:{}{}", p.port, p.path);
        let client = &client;
        async move { probe::until_ok(client, &p.name, &url, deadline).await }
    }))
    .await;
    if let Some(bad) = results.iter().find(|r| !r.ok) {
        return Err(hinted(
            format!(
                "every service is healthy, but `{}` does not answer at {} ({})",
                bad.name,
                bad.url,
                bad.error.clone().unwrap_or_else(|| format!("HTTP {}", bad.status.unwrap_or(0)))
            ),
            "check that nothing on this host intercepts the port (a firewall or proxy), then run `irisctl status`",
        ));
    }
    Ok(())
}

fn urls_table(ctx: &Ctx, stack: &Stack) -> String {
    let host = ctx.settings.client_host();
    let p = &ctx.settings.ports;
    let mut table = tabled::builder::Builder::default();
    table.push_record(["SERVICE", "URL"]);
    table.push_record([
        "web UI".to_string(),
        format!("http://{host}:{}/", p.frontend),
    ]);
    // An API the stack does not publish (replicated on Swarm) is reached through the web UI's proxy.
    let api_published = stack
        .service("api")
        .is_some_and(|s| !s.ports.is_empty() || crate::stack::edge::edge_port(stack, s).is_some());
    let docs = if api_published {
        format!("http://{host}:{}/docs", p.api)
    } else {
        format!("http://{host}:{}/api/docs", p.frontend)
    };
    table.push_record(["API docs".to_string(), docs]);
    table.push_record([
        "Prometheus".to_string(),
        format!("http://{host}:{}/", p.prometheus),
    ]);
    table.push_record([
        "Grafana".to_string(),
        format!(
            "http://{host}:{}/ (user {})",
            p.grafana, ctx.settings.grafana_admin_user
        ),
    ]);
    if let Some(hook) = &ctx.settings.alerting.webhook_url {
        table.push_record([
            "Alertmanager".to_string(),
            format!("http://{host}:{}/ (to {})", p.alertmanager, hook.shown()),
        ]);
    }
    let mut t = table.build();
    t.with(tabled::settings::Style::blank());
    t.to_string()
}
