//! `irisctl up`: build, start in dependency order, wait until healthy, show where things are.
//! The same Stack goes to the single engine (default) or to Docker Swarm (`--target swarm`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::try_join_all;

use super::Ctx;
use crate::cli::Target;
use crate::engine::build::build_image;
use crate::engine::converge::{self, Action, ApplyOptions};
use crate::engine::Engine;
use crate::error::hinted;
use crate::output::Printer;
use crate::probe;
use crate::stack::Stack;
use crate::swarm;

pub struct UpOptions {
    pub remove_orphans: bool,
    /// Provision Grafana's datasource and dashboards once it is healthy.
    pub provision: bool,
    pub target: Target,
}

pub async fn run(ctx: &mut Ctx, opts: UpOptions) -> Result<()> {
    let started = Instant::now();
    ctx.ensure_stack_files()?;
    ctx.ensure_grafana_password()?;
    let stack = match opts.target {
        Target::Docker => Stack::from_settings(&ctx.settings),
        Target::Swarm => swarm::for_swarm(&Stack::from_settings(&ctx.settings)),
    };
    let printer = &ctx.printer;
    match opts.target {
        Target::Docker if ctx.settings.bind.is_unspecified() => printer.warn(format!(
            "publishing on {} makes the API, Prometheus and Grafana reachable from other hosts",
            ctx.settings.bind
        )),
        Target::Docker => {}
        Target::Swarm => printer.warn(
            "on Swarm, ports are published on every interface of the node that runs the task (the bind address does not apply), and the API only through the web UI's /api/",
        ),
    }
    let engine = Engine::connect().await?;
    match opts.target {
        Target::Docker => {
            printer.set_phase("checking host ports");
            converge::preflight_ports(&engine, &stack).await?;
        }
        Target::Swarm => swarm::ensure_manager(&engine).await?,
    }
    printer.set_phase("building images");
    let image_ids = build_images(&engine, &stack, printer).await?;

    let summary = match opts.target {
        Target::Docker => {
            let applied = converge::apply(
                &engine,
                &stack,
                &ApplyOptions {
                    image_ids: &image_ids,
                    remove_orphans: opts.remove_orphans,
                    health_timeout: ctx.settings.health_timeout,
                },
                printer,
            )
            .await?;
            let changed: Vec<String> = applied
                .actions
                .iter()
                .filter(|a| a.changes())
                .map(|a| match a {
                    Action::Create { service } => format!("created {service}"),
                    Action::Recreate { service, .. } => format!("recreated {service}"),
                    Action::Start { service, .. } => format!("started {service}"),
                    Action::Unpause { service, .. } => format!("unpaused {service}"),
                    Action::RemoveExtra { name, .. } => format!("removed duplicate {name}"),
                    Action::RemoveOrphan { name, .. } => format!("removed orphan {name}"),
                    _ => String::new(),
                })
                .collect();
            changed
        }
        Target::Swarm => {
            let since = std::time::SystemTime::now();
            let changes = swarm::deploy(
                &engine,
                &stack,
                &image_ids,
                ctx.settings.api_replicas,
                ctx.settings.registry.as_deref(),
                printer,
            )
            .await?;
            printer.set_phase("waiting for the Swarm services to converge");
            let updated: Vec<String> = changes
                .iter()
                .filter(|(_, c)| *c == swarm::Change::Updated)
                .map(|(s, _)| s.clone())
                .collect();
            swarm::wait_converged(
                &engine,
                &stack,
                &updated,
                since,
                ctx.settings.health_timeout,
            )
            .await?;
            changes
                .iter()
                .filter(|(_, c)| *c != swarm::Change::Unchanged)
                .map(|(s, c)| {
                    format!(
                        "{} {s}",
                        if *c == swarm::Change::Created {
                            "created"
                        } else {
                            "updated"
                        }
                    )
                })
                .collect()
        }
    };

    // The engine says healthy; check the published endpoints from this host too.
    printer.set_phase("probing the published endpoints");
    probe_published(ctx, &stack).await?;

    if opts.provision {
        printer.set_phase("provisioning Grafana");
        let outcomes = super::grafana::provision(
            ctx,
            &super::grafana::ProvisionOptions {
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
    }

    let summary = if summary.is_empty() {
        "nothing to change".to_string()
    } else {
        summary.join(", ")
    };
    printer.success(format!(
        "stack `{}` is up and healthy in {:.1}s ({summary})",
        stack.project,
        started.elapsed().as_secs_f64()
    ));
    printer.data(&urls_table(ctx, opts.target));
    Ok(())
}

/// Build the images (in parallel, one progress line each) and pull absent third-party ones;
/// the image ID per service.
async fn build_images(
    engine: &Engine,
    stack: &Stack,
    printer: &Printer,
) -> Result<BTreeMap<String, String>> {
    let multi = printer.multi();
    let ids = try_join_all(stack.services.iter().map(|s| {
        let bar = printer.spinner(&multi, &s.name);
        async move {
            let id = match &s.build {
                Some(build) => {
                    let built = build_image(engine, &s.name, &s.image, build, &bar).await;
                    if built.is_err() {
                        bar.abandon_with_message("failed");
                    }
                    let built = built?;
                    if built.rebuilt {
                        printer.verbose(format!("built {}", s.image));
                    }
                    built.image_id
                }
                None => {
                    bar.set_message(format!("checking {}", s.image));
                    engine
                        .ensure_image(&s.image, &format!("service `{}`", s.name))
                        .await?;
                    bar.finish_with_message(format!("{} present", s.image));
                    engine
                        .image_exists(&s.image)
                        .await?
                        .and_then(|i| i.id)
                        .unwrap_or_default()
                }
            };
            Ok::<_, anyhow::Error>((s.name.clone(), id))
        }
    }))
    .await?
    .into_iter()
    .collect();
    multi.clear().ok();
    Ok(ids)
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

fn urls_table(ctx: &Ctx, target: Target) -> String {
    let host = ctx.settings.client_host();
    let p = &ctx.settings.ports;
    let mut table = tabled::builder::Builder::default();
    table.push_record(["SERVICE", "URL"]);
    table.push_record([
        "web UI".to_string(),
        format!("http://{host}:{}/", p.frontend),
    ]);
    // On Swarm the replicated API is reached through the web UI's proxy only.
    let docs = match target {
        Target::Docker => format!("http://{host}:{}/docs", p.api),
        Target::Swarm => format!("http://{host}:{}/api/docs", p.frontend),
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
    let mut t = table.build();
    t.with(tabled::settings::Style::blank());
    t.to_string()
}
