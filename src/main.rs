//! Entry point: parse, resolve settings, run one command, print an error once, map to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser};

use irisctl::cli::{Cli, Command, GrafanaCommand, ShadowCommand, StackFlags};
use irisctl::commands::{self, Ctx};
use irisctl::error::{hint_of, Exit};
use irisctl::output::{Printer, Verbosity};
use irisctl::settings::{self, FlagPairs, Inputs};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS; // --help, --version
            }
            // Like every other error, a usage error ends with a next step.
            Printer::new(Verbosity::Normal).hint(
                "`irisctl --help` lists the verbs and global options, `irisctl VERB --help` a verb's own",
            );
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let verbosity = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let printer = Printer::with_progress(verbosity, cli.global.progress.into());
    // A suggested re-run repeats the options that chose the project.
    let globals = cli.global.to_repeat();
    let keep = |text: &str| irisctl::cli::keep_global_flags(text, &globals);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            printer.error(format!("cannot start the async runtime: {e}"));
            return ExitCode::from(Exit::Failure as u8);
        }
    };
    // What an interruption means depends on the verb.
    let verb = match &cli.command {
        Command::Up(_) => "up",
        Command::Down(_) => "down",
        Command::Logs(_) => "logs",
        Command::Tunnel(_) => "tunnel",
        Command::Watch(_) => "watch",
        Command::Rollback(_) => "rollback",
        Command::Shadow(_) => "shadow",
        _ => "other",
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(cli, printer.clone()) => r,
            _ = interrupted() => Err(anyhow::Error::new(Interrupted)),
        }
    });
    // Do not wait for in-flight engine calls after an interrupt.
    runtime.shutdown_background();
    // The SSH connection to a remote engine ends with the run.
    irisctl::engine::ssh::close();
    match outcome {
        Ok(code) => ExitCode::from(code as u8),
        // Ctrl-C is how `logs -f` ends.
        Err(err) if err.is::<Interrupted>() && (verb == "logs" || verb == "tunnel") => {
            ExitCode::SUCCESS
        }
        // Ctrl-C is how `watch` ends: the stack keeps running.
        Err(err) if err.is::<Interrupted>() && verb == "watch" => {
            printer.finish_board();
            printer.info("stopped watching; the stack keeps running");
            ExitCode::SUCCESS
        }
        Err(err) if err.is::<Interrupted>() && verb == "up" => {
            let phase = printer.phase();
            let during = if phase.is_empty() {
                String::new()
            } else {
                format!(" while {phase}")
            };
            printer.error(keep(&format!(
                "interrupted{during}: what was already started keeps running, what was being built or created was abandoned; the next `irisctl up` converges from here"
            )));
            printer.hint(keep(
                "run `irisctl up` to finish, or `irisctl down` to remove what was started",
            ));
            ExitCode::from(Exit::Interrupted as u8)
        }
        Err(err) if err.is::<Interrupted>() && verb == "down" => {
            printer.error("interrupted: some of the project's objects may be left");
            printer.hint(keep("run `irisctl down` again to finish"));
            ExitCode::from(Exit::Interrupted as u8)
        }
        Err(err) if err.is::<Interrupted>() && verb == "rollback" => {
            let phase = printer.phase();
            let during = if phase.is_empty() {
                String::new()
            } else {
                format!(" while {phase}")
            };
            printer.error(format!(
                "interrupted{during}: the release that was serving keeps serving unless the new one had taken the traffic already"
            ));
            printer.hint(keep(
                "`irisctl status` shows what serves; run `irisctl up` to converge to the settings, or `irisctl rollback` again",
            ));
            ExitCode::from(Exit::Interrupted as u8)
        }
        Err(err) if err.is::<Interrupted>() => ExitCode::from(Exit::Interrupted as u8),
        Err(err) => {
            printer.error(keep(&format!("{err:#}")));
            // Every error ends with a next step; lower layers give specific ones.
            printer.hint(keep(hint_of(&err).unwrap_or(
                "`irisctl status` shows the stack's state and `irisctl logs SERVICE` a service's output; the engine's own log (`journalctl -u docker`) says why it refused",
            )));
            ExitCode::from(Exit::Failure as u8)
        }
    }
}

#[derive(Debug)]
struct Interrupted;

/// Ctrl-C, as it ends the run: at once, unless work that must undo itself first holds the
/// shield (a canary release sends all traffic back to the stable container and removes the
/// canary); a second Ctrl-C then ends the run anyway.
async fn interrupted() {
    let mut deferred = false;
    loop {
        let _ = tokio::signal::ctrl_c().await;
        if irisctl::canary::shielded() && !deferred {
            deferred = true;
            continue;
        }
        return;
    }
}
impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}
impl std::error::Error for Interrupted {}

fn stack_flags(flags: &StackFlags) -> FlagPairs {
    [
        ("BIND", &flags.bind),
        ("API_PORT", &flags.api_port),
        ("FRONTEND_PORT", &flags.frontend_port),
        ("PROMETHEUS_PORT", &flags.prometheus_port),
        ("GRAFANA_PORT", &flags.grafana_port),
        ("API_REPLICAS", &flags.api_replicas),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.clone().map(|v| (key, v)))
    .collect()
}

fn data_home() -> Option<PathBuf> {
    settings::data_home(
        std::env::var_os("XDG_DATA_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

async fn run(cli: Cli, printer: Printer) -> Result<Exit> {
    let cwd = std::env::current_dir()?;
    match &cli.command {
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "irisctl", &mut out);
            printer.data(&String::from_utf8_lossy(&out));
            return Ok(Exit::Success);
        }
        Command::Init(args) if args.print_template => {
            printer.data(&settings::keys::template());
            return Ok(Exit::Success);
        }
        Command::Init(args) => {
            let dir = args.dir.clone().unwrap_or_else(|| cwd.clone());
            commands::init::run(&dir, args.force, &printer)?;
            return Ok(Exit::Success);
        }
        _ => {}
    }

    let stack_args = match &cli.command {
        Command::Up(a) => Some(&a.stack),
        Command::Watch(a) => Some(&a.stack),
        Command::Status(a) => Some(&a.stack),
        Command::Tunnel(a) => Some(&a.stack),
        Command::Compose(a) => Some(&a.stack),
        Command::Rollback(a) => Some(&a.stack),
        _ => None,
    };
    let mut flags = match &cli.command {
        Command::Up(a) => stack_flags(&a.stack),
        Command::Status(a) => stack_flags(&a.stack),
        Command::Tunnel(a) => stack_flags(&a.stack),
        Command::Compose(a) => stack_flags(&a.stack),
        Command::Watch(a) => stack_flags(&a.stack),
        Command::Rollback(a) => stack_flags(&a.stack),
        _ => Vec::new(),
    };
    if let Some(p) = &cli.global.project_name {
        flags.push(("PROJECT_NAME", p.clone()));
    }
    if let Command::Up(a) = &cli.command {
        if let Some(t) = &a.wait_timeout {
            flags.push(("HEALTH_TIMEOUT", t.clone()));
        }
        if a.canary {
            flags.push(("RELEASE_STRATEGY", "canary".into()));
        }
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let embedded = cli.global.project_dir.is_none() && !irisctl::assets::holds_stack(&cwd);
    let settings = settings::resolve(Inputs {
        cwd: &cwd,
        config: cli.global.config.as_deref(),
        project_dir: cli.global.project_dir.as_deref(),
        env: &env,
        flags,
        data_home: data_home(),
    })?;
    if let Some(a) = stack_args {
        if a.api_replicas.is_some() && a.target != irisctl::cli::Target::Swarm {
            return Err(irisctl::error::hinted(
                "--api-replicas applies to the Swarm target only: on one engine the API runs one container",
                "add `--target swarm` (to a Swarm manager), or leave --api-replicas out",
            ));
        }
    }
    if cli.global.print_settings {
        printer.data(&settings::to_yaml(&settings));
        return Ok(Exit::Success);
    }
    let ctx = Ctx {
        settings,
        printer,
        embedded,
    };
    match cli.command {
        Command::Up(a) => {
            commands::up::run(
                &ctx,
                commands::up::UpOptions {
                    remove_orphans: a.remove_orphans,
                    provision: !a.no_provision,
                    target: a.stack.target.into(),
                    dry_run: a.dry_run.then(|| a.format.into()),
                    rehash: a.rehash,
                    swap_only: false,
                    api_image: None,
                },
            )
            .await?;
            Ok(Exit::Success)
        }
        Command::Watch(a) => {
            commands::watch::run(
                &ctx,
                commands::watch::WatchOptions {
                    target: a.stack.target.into(),
                    debounce: std::time::Duration::from_millis(a.debounce_ms.clamp(10, 10_000)),
                },
            )
            .await?;
            Ok(Exit::Success)
        }
        Command::Status(a) => {
            commands::status::run(&ctx, a.format.into(), a.stack.target.into()).await
        }
        Command::Down(a) => {
            commands::down::run(
                &ctx,
                commands::down::DownOptions {
                    volumes: a.volumes,
                    rmi: a.rmi,
                    target: a.target.into(),
                    dry_run: a.dry_run.then(|| a.format.into()),
                },
            )
            .await?;
            Ok(Exit::Success)
        }
        Command::Rollback(a) => {
            commands::rollback::run(
                &ctx,
                commands::rollback::RollbackOptions {
                    service: a.service,
                    target: a.stack.target.into(),
                    dry_run: a.dry_run.then(|| a.format.into()),
                },
            )
            .await?;
            Ok(Exit::Success)
        }
        Command::Tunnel(_) => {
            commands::tunnel::run(&ctx).await?;
            Ok(Exit::Success)
        }
        Command::Logs(a) => {
            commands::logs::run(&ctx, a.service.as_deref(), a.follow, &a.tail).await?;
            Ok(Exit::Success)
        }
        Command::Grafana(GrafanaCommand::Provision(a)) => {
            let wait = settings::parse_duration_secs("flag --wait-timeout: ", &a.wait_timeout)?;
            let opts = commands::grafana::ProvisionOptions {
                url: a.url,
                user: a.user,
                password: a.password,
                token: a.token,
                dashboards: a.dashboards,
                prometheus_url: a.prometheus_url,
                wait_timeout: wait,
                own_url: None,
            };
            commands::grafana::run(&ctx, &opts).await?;
            Ok(Exit::Success)
        }
        Command::Shadow(c) => {
            let (verb, a) = match c {
                ShadowCommand::Start(a) => (commands::shadow::Verb::Start, a),
                ShadowCommand::Stop(a) => (commands::shadow::Verb::Stop, a),
                ShadowCommand::Promote(a) => (commands::shadow::Verb::Promote, a),
            };
            commands::shadow::run(
                &ctx,
                verb,
                a.target.into(),
                a.dry_run.then(|| a.format.into()),
            )
            .await?;
            Ok(Exit::Success)
        }
        Command::Compose(a) => commands::compose::run(
            &ctx,
            a.output.as_deref(),
            a.check.as_deref(),
            a.stack.target.into(),
        ),
        Command::Completions { .. } | Command::Init(_) => Ok(Exit::Success),
    }
}
