//! `irisctl up`: build, start in dependency order, wait until healthy, show where things are.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::try_join_all;

use super::Ctx;
use crate::engine::build::build_image;
use crate::engine::converge::{self, Action, ApplyOptions};
use crate::engine::Engine;
use crate::error::hinted;
use crate::probe;
use crate::stack::Stack;

pub struct UpOptions {
    pub remove_orphans: bool,
    /// Provision Grafana's datasource and dashboards once it is healthy.
    pub provision: bool,
}

pub async fn run(ctx: &mut Ctx, opts: UpOptions) -> Result<()> {
    let started = Instant::now();
    ctx.ensure_stack_files()?;
    ctx.ensure_grafana_password()?;
    if ctx.settings.bind.is_unspecified() {
        ctx.printer.warn(format!(
            "publishing on {} makes the API, Prometheus and Grafana reachable from other hosts",
            ctx.settings.bind
        ));
    }
    let engine = Engine::connect().await?;
    let stack = Stack::from_settings(&ctx.settings);
    let printer = &ctx.printer;
    printer.set_phase("checking host ports");
    converge::preflight_ports(&engine, &stack).await?;
    printer.set_phase("building images");

    // Images: builds in parallel (one line each), third-party images pulled if absent.
    let multi = printer.multi();
    let image_ids: BTreeMap<String, String> = try_join_all(stack.services.iter().map(|s| {
        let engine = &engine;
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

    // The engine says healthy; check the published endpoints from this host too.
    printer.set_phase("probing the published endpoints");
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
                "every container is healthy, but `{}` does not answer at {} ({})",
                bad.name,
                bad.url,
                bad.error.clone().unwrap_or_else(|| format!("HTTP {}", bad.status.unwrap_or(0)))
            ),
            "check that nothing on this host intercepts the port (a firewall or proxy), then run `irisctl status`",
        ));
    }

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
    let summary = if changed.is_empty() {
        "nothing to change".to_string()
    } else {
        changed.join(", ")
    };
    printer.success(format!(
        "stack `{}` is up and healthy in {:.1}s ({summary})",
        stack.project,
        started.elapsed().as_secs_f64()
    ));
    let mut table = tabled::builder::Builder::default();
    table.push_record(["SERVICE", "URL"]);
    let urls = [
        (
            "web UI",
            format!("http://{host}:{}/", ctx.settings.ports.frontend),
        ),
        (
            "API docs",
            format!("http://{host}:{}/docs", ctx.settings.ports.api),
        ),
        (
            "Prometheus",
            format!("http://{host}:{}/", ctx.settings.ports.prometheus),
        ),
        (
            "Grafana",
            format!(
                "http://{host}:{}/ (user {})",
                ctx.settings.ports.grafana, ctx.settings.grafana_admin_user
            ),
        ),
    ];
    for (name, url) in urls {
        table.push_record([name.to_string(), url]);
    }
    let mut t = table.build();
    t.with(tabled::settings::Style::blank());
    printer.data(&t.to_string());
    Ok(())
}
