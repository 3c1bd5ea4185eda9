//! `irisctl up`: plan, build, start in dependency order, wait until healthy, show where things
//! are. The backend (single engine or Swarm) is chosen once; nothing here asks which it is.
//! `--dry-run` stops after the plan and changes nothing.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::Ctx;
use crate::backend::docker::StoppedUnderUs;
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
    /// Release a changed API by swap even with `release.strategy: canary` (`watch`: edit to
    /// live in seconds).
    pub swap_only: bool,
    /// Run the API on this image as it is, not built from its source (`shadow promote`: the
    /// challenger's).
    pub api_image: Option<String>,
}

pub async fn run(ctx: &Ctx, opts: UpOptions) -> Result<()> {
    if ctx.settings.release.canary_strategy && opts.target == Target::Swarm {
        return Err(hinted(
            "canary releases run on a single engine only: on Swarm no edge of irisctl's splits the API's requests",
            "leave out --canary (and `release.strategy: canary`) with --target swarm; Swarm releases the API as a rolling update",
        ));
    }
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

/// Everything `up` does; the summary line and the URL table. A container the plan kept running
/// that another client stops meanwhile (an interrupted `down` the engine finishes) makes the
/// plan stale: it is made again and carried out.
pub(crate) async fn converge(ctx: &Ctx, opts: &UpOptions) -> Result<(String, String)> {
    // An interrupted `down` the engine finishes stops the containers one after another: each
    // one found stopped makes the plan again (at most once per service, and a few more).
    let mut attempts = 8;
    loop {
        match converge_once(ctx, opts).await {
            Err(e) if attempts > 1 && e.downcast_ref::<StoppedUnderUs>().is_some() => {
                attempts -= 1;
                let what = format!("{e:#}");
                let what = what.lines().next().unwrap_or_default();
                ctx.printer.warn(format!("{what}; planning again"));
            }
            done => return done,
        }
    }
}

async fn converge_once(ctx: &Ctx, opts: &UpOptions) -> Result<(String, String)> {
    let started = Instant::now();
    let printer = &ctx.printer;
    // What this run does (`watch` runs many through one printer).
    let done_before = printer.done_ops().len();
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
    printer.enter("checking host ports");
    backend.preflight(&stack).await?;
    // The built-in stack's copy is irisctl's own (refreshed here); a user's directory is only
    // checked.
    ctx.ensure_stack_files()?;
    printer.enter("checking images");
    let mut images = images::plan(backend.engine(), &stack, opts.rehash).await?;
    let pinned = pin_api(&backend, &stack, &mut images, opts).await?;
    if let Some(id) = &pinned {
        tag_as_api(&backend, &stack, id).await?;
    }
    let image_plan = images.plan();
    // The containers' plan is made with what was known before anything ran, as `--dry-run`
    // makes it: an image still to be pulled or built is filled in when it is.
    let ids = images.ids.clone();
    // The pulls first, all at once: an image that cannot be had is named before anything is
    // written.
    let pulls: Vec<_> = image_plan
        .ops
        .iter()
        .filter(|o| o.verb == Verb::Pull)
        .collect();
    for op in &pulls {
        printer.op_started(*op);
    }
    let pulled_at = Instant::now();
    images
        .pull(backend.engine(), &stack)
        .await
        .inspect_err(|e| {
            for op in &pulls {
                printer.op_failed(*op, &format!("{e:#}"));
            }
        })?;
    for op in &pulls {
        printer.op_done(*op, pulled_at.elapsed());
    }
    // Nothing of the user's is written before the engine has been reached, the preflight
    // passed and every image is at hand.
    let password = ctx.ensure_grafana_password()?;
    ctx.write_derived_files()?;
    let mut plan = image_plan.clone();
    plan.extend(backend.plan(&stack, &ids, opts.remove_orphans).await?);
    plan.explain_rebuilds();
    canary(ctx, opts, &mut plan);
    shadow(&backend, &stack, &mut plan, opts, pinned.is_some()).await?;
    warn_orphans(ctx, &stack, &plan);
    let names: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    printer.start_board(&names);
    printer.enter("building images");
    // The builds and the plan's other operations run at once: each service starts the moment its
    // image is known, so what builds nothing (Prometheus, Grafana) is started while the images
    // build. A failed build stops the run with its own error; a service waiting for that image
    // was not touched, and what started meanwhile keeps running (the next `up` goes on from
    // there). Each build reports its own start and end (see `ImagePlan::build`).
    let (publish, built) = images::Built::channel();
    let building = async {
        let result = images
            .build(backend.engine(), &stack, printer, &publish)
            .await;
        drop(publish);
        result
    };
    let run_started = std::time::SystemTime::now();
    let applying = async {
        let applied = backend
            .apply(&stack, &plan, &built, ctx.settings.health_timeout, printer)
            .await;
        if applied.is_err() {
            canary_aborted(ctx, opts, &stack, &password, run_started).await;
        }
        if let (Ok(_), Backend::Docker(d)) = (&applied, &backend) {
            if let Err(e) = d.shadow_restore(&stack, &plan, printer).await {
                printer.warn(format!(
                    "the new edge does not copy /predict to the shadow: {e:#}; `irisctl shadow stop` then `irisctl shadow start` start it again"
                ));
            }
        }
        applied
    };
    tokio::pin!(building, applying);
    let done = tokio::select! {
        // The build's error first: the apply's is then only that an image was not built.
        built = &mut building => {
            if let Err(e) = built {
                // What was under way ends; what it did is said with the build's error.
                let _ = applying.await;
                let done = printer.done_ops();
                return Err(with_what_was_done(e, done.get(done_before..).unwrap_or_default()));
            }
            applying.await?
        }
        // An operation that failed stops the builds too.
        applied = &mut applying => {
            let done = applied?;
            building.await?;
            done
        }
    };
    let built: Vec<_> = plan
        .ops
        .iter()
        .filter(|o| o.kind == Kind::Image && o.changes())
        .cloned()
        .collect();

    // The engine says healthy; check the published endpoints from this host too, while
    // Grafana (healthy: `apply` waited for it) is provisioned.
    printer.enter(if opts.provision {
        "probing the published endpoints and provisioning Grafana"
    } else {
        "probing the published endpoints"
    });
    let provision = async {
        if !opts.provision {
            return Ok(());
        }
        let outcomes = super::grafana::provision(
            ctx,
            &super::grafana::ProvisionOptions {
                password: Some(password.clone()),
                wait_timeout: Duration::from_secs(60),
                own_url: Some(ctx.settings.http_base(ctx.settings.ports.grafana).await?),
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
    tokio::try_join!(probe_published(ctx, &backend, &stack), provision)?;

    if opts.provision {
        let releases: Vec<(String, String)> = done
            .iter()
            .filter(|o| matches!(o.verb, Verb::Release | Verb::Canary))
            .filter_map(|o| {
                let service = o.service.clone()?;
                Some((service.clone(), format!("release {service}: {}", o.cause)))
            })
            .collect();
        super::rollback::annotate(ctx, &stack, Some(password.clone()), &releases).await;
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

/// A build's error, with what the run did meanwhile (the services that needed no build were
/// started and keep running).
fn with_what_was_done(e: anyhow::Error, done: &[String]) -> anyhow::Error {
    let done: Vec<&String> = done
        .iter()
        .filter(|d| !d.starts_with("built ") && !d.starts_with("rebuilt "))
        .collect();
    if done.is_empty() {
        return e;
    }
    let meanwhile = format!(
        "meanwhile, what needed no build was done and stays: {}",
        done.iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    match e.downcast_ref::<crate::error::Hinted>() {
        Some(h) => hinted(format!("{}\n{meanwhile}", h.message), h.hint.clone()),
        None => e.context(meanwhile),
    }
}

/// The plan `up` would carry out, printed; nothing is built, created or written.
async fn dry_run(ctx: &Ctx, opts: &UpOptions, format: Format) -> Result<()> {
    ctx.check_stack_files()?;
    let (project, plan) = plan_only(ctx, opts).await?;
    super::print_plan(ctx, &project, &plan, format, "up")
}

/// The plan `up` would carry out (and the project's name); nothing is built, created or
/// written.
pub(crate) async fn plan_only(ctx: &Ctx, opts: &UpOptions) -> Result<(String, Plan)> {
    let backend = Backend::connect(opts.target).await?;
    let stack = backend.form(&Stack::from_settings(&ctx.settings));
    backend.preflight(&stack).await?;
    let mut images = images::plan(backend.engine(), &stack, opts.rehash).await?;
    let pinned = pin_api(&backend, &stack, &mut images, opts).await?;
    let mut plan = images.plan();
    let services = backend
        .plan(&stack, &images.ids, opts.remove_orphans)
        .await?;
    plan.extend(services);
    plan.explain_rebuilds();
    canary(ctx, opts, &mut plan);
    shadow(&backend, &stack, &mut plan, opts, pinned.is_some()).await?;
    Ok((stack.project.clone(), plan))
}

/// The image the API runs on as it is, if any: the one `shadow promote` releases, or, while a
/// shadow runs and the API's source is its challenger's, the champion's (that source is
/// released by `shadow promote`, after comparing, not by an `up` of something else).
async fn pin_api(
    backend: &Backend,
    stack: &Stack,
    images: &mut images::ImagePlan,
    opts: &UpOptions,
) -> Result<Option<String>> {
    if let Some(id) = &opts.api_image {
        images.pin("api", id);
        return Ok(Some(id.clone()));
    }
    let Backend::Docker(d) = backend else {
        return Ok(None);
    };
    let Some(planned) = images.build_hash("api") else {
        return Ok(None);
    };
    let found = d.shadow_containers(stack).await?;
    let Some(challenger) = found.iter().find(|c| c.role == "challenger") else {
        return Ok(None);
    };
    let labels = backend
        .engine()
        .image_exists(&challenger.image)
        .await?
        .and_then(|i| i.config)
        .and_then(|c| c.labels)
        .unwrap_or_default();
    if images::record::labelled_hash(&labels).as_deref() != Some(planned.as_str()) {
        return Ok(None);
    }
    let champion = d.serving_image(stack, "api").await?;
    if let Some(id) = &champion {
        images.pin("api", id);
    }
    Ok(champion)
}

/// Point the API's tag at `id` (a container is made from the tag), when it does not already.
async fn tag_as_api(backend: &Backend, stack: &Stack, id: &str) -> Result<()> {
    let Some(api) = stack.service("api") else {
        return Ok(());
    };
    if backend.engine().image_id(&api.image).await?.as_deref() == Some(id) {
        return Ok(());
    }
    let (repo, tag) = super::shadow::split_tag(&api.image);
    backend.engine().tag_image(id, repo, tag).await
}

/// A running shadow's containers in the plan (kept; said why the API keeps its release when
/// its source is the challenger's).
async fn shadow(
    backend: &Backend,
    stack: &Stack,
    plan: &mut Plan,
    opts: &UpOptions,
    pinned: bool,
) -> Result<()> {
    let Backend::Docker(d) = backend else {
        return Ok(());
    };
    let mut ops = d.shadow_in_up_plan(stack, plan).await?;
    if pinned && opts.api_image.is_none() {
        if let Some(op) = ops
            .iter_mut()
            .find(|o| o.object.contains(crate::shadow::CHALLENGER))
        {
            op.cause.push_str(
                "; the API's source is this challenger's: `api` keeps the champion's release (`irisctl shadow promote` releases the challenger)",
            );
        }
    }
    for op in ops {
        plan.push(op);
    }
    Ok(())
}

/// With the canary strategy (`--canary`, `release.strategy: canary`), the API's release as a
/// canary (`run` refuses it on Swarm).
fn canary(ctx: &Ctx, opts: &UpOptions, plan: &mut Plan) {
    if ctx.settings.release.canary_strategy && opts.target != Target::Swarm && !opts.swap_only {
        plan.as_canary(&ctx.settings.release.canary);
    }
}

/// A canary this run aborted (its progress file says so): a Grafana annotation and, with alert
/// delivery on, an alert through the Alertmanager, both naming the gate. Best effort: what
/// cannot be told is warned about.
async fn canary_aborted(
    ctx: &Ctx,
    opts: &UpOptions,
    stack: &Stack,
    password: &str,
    run_started: std::time::SystemTime,
) {
    let Some(progress) = crate::backend::docker::read_canary(&stack.project_dir) else {
        return;
    };
    let since = run_started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Some(why) = progress.state.strip_prefix("aborted: ") else {
        return;
    };
    if progress.at < since {
        return;
    }
    let text = format!("canary api aborted: {why}");
    if opts.provision {
        super::rollback::annotate(
            ctx,
            stack,
            Some(password.to_string()),
            &[("api".to_string(), text.clone())],
        )
        .await;
    }
    // An operator's own Ctrl-C is annotated, not alerted on.
    if ctx.settings.alerting.webhook_url.is_some() && !why.starts_with("interrupted") {
        let Ok(base) = ctx
            .settings
            .http_base(ctx.settings.ports.alertmanager)
            .await
        else {
            return;
        };
        let url = format!("{base}/api/v2/alerts");
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let ends = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() + Duration::from_secs(15 * 60),
        )
        .to_string();
        let alert = serde_json::json!([{
            "labels": {"alertname": "IrisCanaryAborted", "severity": "warning", "job": "iris-api", "service": "api"},
            "annotations": {
                "summary": text,
                "runbook": "The release was rolled back automatically: the stable API serves every request. `irisctl logs api`, fix the release, then `irisctl up --canary` again."
            },
            "startsAt": now,
            "endsAt": ends,
        }]);
        let sent = probe::client(Duration::from_secs(3))
            .post(&url)
            .json(&alert)
            .send()
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| {
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {}", r.status().as_u16()))
                }
            });
        if let Err(e) = sent {
            ctx.printer.warn(format!(
                "the aborted canary was not sent to the Alertmanager ({e})"
            ));
        }
    }
}

/// Each orphan the plan reports, as a warning with what removes it.
fn warn_orphans(ctx: &Ctx, stack: &Stack, plan: &Plan) {
    for op in plan.ops.iter().filter(|o| o.verb == Verb::Report) {
        ctx.printer.warn(match op.kind {
            Kind::Container => format!(
                "container `{}` belongs to project `{}` but to no service of it; `irisctl up --remove-orphans` removes it",
                op.object, stack.project
            ),
            _ => op.text(),
        });
    }
}

/// Every published endpoint answers from this host (within 30 s).
/// Every published endpoint answers from this host (within 30 s, or the wait timeout if it is
/// shorter). One that does not is an error with what the proxy in front of it logged: behind
/// the edge, a name it cannot resolve or an upstream it cannot reach is said there.
async fn probe_published(ctx: &Ctx, backend: &Backend, stack: &Stack) -> Result<()> {
    let client = probe::client(Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(30).min(ctx.settings.health_timeout);
    let probes: Vec<_> = stack
        .services
        .iter()
        .flat_map(|s| s.probes.iter())
        .collect();
    let mut bases = Vec::new();
    for p in &probes {
        bases.push(ctx.settings.http_base(p.port).await?);
    }
    let results = futures_util::future::join_all(probes.iter().zip(&bases).map(|(p, base)| {
        let url = format!("{base}{}", p.path);
        let client = &client;
        async move { probe::until_ok(client, &p.name, &url, deadline).await }
    }))
    .await;
    let Some(bad) = results.iter().find(|r| !r.ok) else {
        return Ok(());
    };
    let failure = bad
        .error
        .clone()
        .unwrap_or_else(|| format!("HTTP {}", bad.status.unwrap_or(0)));
    // A service stopped since `apply` saw it healthy is another client's doing: plan again.
    if let Backend::Docker(d) = backend {
        let stopped = d.stopped_by_another_client(stack).await?;
        if !stopped.is_empty() {
            return Err(anyhow::anyhow!(
                "`{}` stopped after it was healthy (another client stopped it), and `{}` does not answer at {} ({failure})",
                stopped.join("`, `"),
                bad.name,
                bad.url
            )
            .context(StoppedUnderUs));
        }
    }
    // Behind the edge the cause is in the edge's log (nginx says what it could not do).
    let bad_port = probes
        .iter()
        .zip(&results)
        .find(|(_, r)| !r.ok)
        .map(|(p, _)| p.port);
    let edge = stack
        .service(crate::stack::edge::EDGE)
        .filter(|e| e.ports.iter().any(|p| Some(p.host) == bad_port));
    if let Some(edge) = edge {
        let logs: Vec<String> = backend
            .engine()
            .logs_tail(&edge.container_name, 40)
            .await
            .into_iter()
            .filter(|l| l.contains("[error]") || l.contains("[emerg]") || l.contains("[crit]"))
            .collect();
        let tail: Vec<&str> = logs
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(String::as_str)
            .collect();
        if !tail.is_empty() {
            return Err(hinted(
                format!(
                    "every service is healthy, but `{}` does not answer at {} ({failure}); the edge in front of it (`{}`) logged:\n{}",
                    bad.name,
                    bad.url,
                    edge.container_name,
                    tail.join("\n")
                ),
                format!(
                    "the edge's log names the cause (`irisctl logs {}`); a name it cannot resolve is a service that is not on the stack's network",
                    crate::stack::edge::EDGE
                ),
            ));
        }
    }
    Err(hinted(
        format!(
            "every service is healthy, but `{}` does not answer at {} ({failure})",
            bad.name, bad.url,
        ),
        "check that nothing on this host intercepts the port (a firewall or proxy), then run `irisctl status`",
    ))
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
