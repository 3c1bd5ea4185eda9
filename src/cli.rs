//! Command-line syntax (clap derive types) and their conversion into the plain types the
//! commands take. Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Deploy the Iris model-serving stack (API, web UI, Prometheus, Grafana) on a Docker host.
///
/// Settings come from built-in defaults < irisctl.yaml (or --config) < .env < IRISCTL_* environment
/// variables < flags.
#[derive(Debug, Parser)]
#[command(name = "irisctl", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Settings file (default: irisctl.yaml in the current directory, if present)
    #[arg(long, global = true, env = "IRISCTL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Project name: prefixes containers, network, volumes and built images [default: iris]
    #[arg(short = 'p', long, global = true, value_name = "NAME")]
    pub project_name: Option<String>,

    /// Directory holding stack/, monitoring/ and .env [default: the current directory if it holds
    /// them, else the built-in stack written under ~/.local/share/irisctl]
    #[arg(long, global = true, env = "IRISCTL_PROJECT_DIR", value_name = "DIR")]
    pub project_dir: Option<PathBuf>,

    /// Only print errors and data
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more about what is done
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// How progress is shown on stderr: redrawn lines on a terminal and plain lines in a pipe
    /// (auto), always redrawn (tty), plain lines, one JSON object per line (json: phases, each
    /// operation of the plan started, done or failed, messages; see the README), or errors only
    #[arg(long, global = true, value_enum, default_value_t = ProgressArg::Auto, env = "IRISCTL_PROGRESS")]
    pub progress: ProgressArg,

    /// Print the resolved settings (and where each came from) as YAML, and exit
    #[arg(long, global = true)]
    pub print_settings: bool,
}

impl GlobalArgs {
    /// The global options a suggested re-run must repeat to act on the same project:
    /// `--config`, `--project-dir`, `--project-name`, shell-quoted where needed.
    pub fn to_repeat(&self) -> String {
        let mut out = Vec::new();
        if let Some(c) = &self.config {
            out.push(format!("--config {}", shell_word(&c.display().to_string())));
        }
        if let Some(d) = &self.project_dir {
            out.push(format!(
                "--project-dir {}",
                shell_word(&d.display().to_string())
            ));
        }
        if let Some(p) = &self.project_name {
            out.push(format!("-p {}", shell_word(p)));
        }
        out.join(" ")
    }
}

/// Verbs whose suggested re-run must act on the same project.
const PROJECT_VERBS: &[&str] = &[
    "up", "down", "status", "logs", "rollback", "watch", "compose", "grafana",
];

/// Put `globals` (from [`GlobalArgs::to_repeat`]) into every "`irisctl VERB" a message suggests,
/// so that following a hint acts on the same project: after `irisctl --config x.yaml up`,
/// "run `irisctl up` again" becomes "run `irisctl --config x.yaml up` again". A suggestion
/// that already names options, or a verb that takes no project (`init`), is left alone.
pub fn keep_global_flags(text: &str, globals: &str) -> String {
    if globals.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("`irisctl ") {
        let after = &rest[i + "`irisctl ".len()..];
        out.push_str(&rest[..i + "`irisctl ".len()]);
        let verb = after.split([' ', '`']).next().unwrap_or("");
        if PROJECT_VERBS.contains(&verb) {
            out.push_str(globals);
            out.push(' ');
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `word` as one shell word: bare when it is safe, single-quoted otherwise.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_reruns_keep_the_global_flags() {
        let g = "--config 'my dir/x.yaml' -p demo";
        assert_eq!(
            keep_global_flags("then run `irisctl up` again; `irisctl logs api` shows why", g),
            "then run `irisctl --config 'my dir/x.yaml' -p demo up` again; `irisctl --config 'my dir/x.yaml' -p demo logs api` shows why"
        );
        // Already explicit, or not about the project: unchanged.
        for text in [
            "run `irisctl --config a.yaml up`",
            "`irisctl init DIR` writes it",
            "`irisctl --help` lists them",
            "no suggestion",
        ] {
            assert_eq!(keep_global_flags(text, g), text);
        }
        assert_eq!(keep_global_flags("`irisctl up`", ""), "`irisctl up`");
        let args = GlobalArgs {
            config: Some("it's.yaml".into()),
            project_name: None,
            project_dir: Some("/srv/iris".into()),
            quiet: false,
            verbose: false,
            progress: ProgressArg::Auto,
            print_settings: false,
        };
        assert_eq!(
            args.to_repeat(),
            "--config 'it'\\''s.yaml' --project-dir /srv/iris"
        );
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the images and start the whole stack, then wait until every service is healthy
    Up(UpArgs),
    /// Bring the stack up, then rebuild and redeploy the API or web UI whenever its source changes
    Watch(WatchArgs),
    /// Show the services, their health, live HTTP probes and Prometheus targets
    Status(StatusArgs),
    /// Stop and remove the stack's containers and network (volumes and images are kept)
    Down(DownArgs),
    /// Return the API and/or the web UI to their previous release (the same health-gated swap)
    Rollback(RollbackArgs),
    /// Show the logs of the stack's services
    Logs(LogsArgs),
    /// Grafana operations
    #[command(subcommand)]
    Grafana(GrafanaCommand),
    /// Shadow traffic: the project's API as a challenger, answering copies of live /predict requests no client sees
    #[command(subcommand)]
    Shadow(ShadowCommand),
    /// Open a remote engine's published ports (the web UI, Grafana, Prometheus) on this machine, over SSH, until Ctrl-C
    Tunnel(TunnelArgs),
    /// Write the equivalent docker-compose.yml
    Compose(ComposeArgs),
    /// Write the built-in stack files (stack/, monitoring/, irisctl.yaml) into DIR for customising
    Init(InitArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Settings that several commands take as flags (they beat every other source).
#[derive(Debug, Args, Default, Clone)]
pub struct StackFlags {
    /// Host address the published ports bind to [default: 127.0.0.1]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,

    /// Host port of the API [default: 8000]
    #[arg(long, value_name = "PORT")]
    pub api_port: Option<String>,

    /// Host port of the web UI [default: 5174]
    #[arg(long, value_name = "PORT")]
    pub frontend_port: Option<String>,

    /// Host port of Prometheus [default: 9090]
    #[arg(long, value_name = "PORT")]
    pub prometheus_port: Option<String>,

    /// Host port of Grafana [default: 3000]
    #[arg(long, value_name = "PORT")]
    pub grafana_port: Option<String>,

    /// API replicas with `--target swarm` [default: 1]
    #[arg(long, value_name = "N")]
    pub api_replicas: Option<String>,

    /// Where the stack runs: this engine, or the Swarm it manages
    #[arg(long, value_enum, default_value_t = Target::Docker)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub stack: StackFlags,

    /// Remove containers of the project that no service defines any more
    #[arg(long)]
    pub remove_orphans: bool,

    /// Seconds to wait for every service to become healthy [default: 180, or `timeouts.health`]
    #[arg(long, value_name = "SECS")]
    pub wait_timeout: Option<String>,

    /// Do not provision Grafana's datasource and dashboards after start
    #[arg(long)]
    pub no_provision: bool,

    /// Print what `up` would do, each action with its cause, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Output format of `--dry-run`
    #[arg(long, value_enum, default_value_t = Format::Table, requires = "dry_run")]
    pub format: Format,

    /// Read every file of the build contexts to decide what to rebuild, not only the files
    /// whose size, times, inode or mode changed since they were last read
    #[arg(long)]
    pub rehash: bool,
    /// Release a changed API as a canary this time: a growing share of the requests, judged
    /// against the serving API at each step (`release.canary.*`), promoted or rolled back
    #[arg(long)]
    pub canary: bool,
}

/// `--progress`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum ProgressArg {
    #[default]
    Auto,
    Tty,
    Plain,
    Json,
    Quiet,
}

impl From<ProgressArg> for crate::output::Progress {
    fn from(p: ProgressArg) -> Self {
        match p {
            ProgressArg::Auto => crate::output::Progress::Auto,
            ProgressArg::Tty => crate::output::Progress::Tty,
            ProgressArg::Plain => crate::output::Progress::Plain,
            ProgressArg::Json => crate::output::Progress::Json,
            ProgressArg::Quiet => crate::output::Progress::Quiet,
        }
    }
}

/// Where the stack runs.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Target {
    /// Containers on the engine DOCKER_HOST points at
    #[default]
    Docker,
    /// Services on the Docker Swarm whose manager DOCKER_HOST points at
    Swarm,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

impl From<Target> for crate::backend::Target {
    fn from(t: Target) -> Self {
        match t {
            Target::Docker => crate::backend::Target::Docker,
            Target::Swarm => crate::backend::Target::Swarm,
        }
    }
}

impl From<Format> for crate::output::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => crate::output::Format::Table,
            Format::Json => crate::output::Format::Json,
        }
    }
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub stack: StackFlags,

    /// Milliseconds without a further change before a change is deployed
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub debounce_ms: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub stack: StackFlags,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Service to roll back (api or frontend); every one that has a previous release when omitted
    pub service: Option<String>,

    #[command(flatten)]
    pub stack: StackFlags,

    /// Print what `rollback` would do, each with its cause, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Output format of `--dry-run`
    #[arg(long, value_enum, default_value_t = Format::Table, requires = "dry_run")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Where the stack runs: this engine, or the Swarm it manages
    #[arg(long, value_enum, default_value_t = Target::Docker)]
    pub target: Target,

    /// Also remove the named volumes (Prometheus samples, Grafana data): this deletes data
    #[arg(long)]
    pub volumes: bool,

    /// Also remove the images irisctl built for the project
    #[arg(long)]
    pub rmi: bool,

    /// Print what `down` would remove, each with its cause, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Output format of `--dry-run`
    #[arg(long, value_enum, default_value_t = Format::Table, requires = "dry_run")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct TunnelArgs {
    #[command(flatten)]
    pub stack: StackFlags,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Service to show (api, frontend, edge, prometheus, grafana; alertmanager with alert delivery); all when omitted
    pub service: Option<String>,

    /// Keep following new output
    #[arg(short, long)]
    pub follow: bool,

    /// Number of lines to show from the end of each log
    #[arg(long, value_name = "N", default_value = "100")]
    pub tail: String,
}

#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Build the API from the project's source as a challenger and start copying /predict to it
    Start(ShadowArgs),
    /// Stop copying and remove the challenger and its comparator
    Stop(ShadowArgs),
    /// Release the challenger's image as the API (health-gated; a canary with `release.strategy: canary`), then stop
    Promote(ShadowArgs),
}

#[derive(Debug, Args)]
pub struct ShadowArgs {
    /// Where the stack runs (shadow traffic runs on the single engine only)
    #[arg(long, value_enum, default_value_t = Target::Docker)]
    pub target: Target,

    /// Print what it would do, each with its cause, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Output format of `--dry-run`
    #[arg(long, value_enum, default_value_t = Format::Table, requires = "dry_run")]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum GrafanaCommand {
    /// Upsert the Prometheus datasource and import the dashboards (idempotent)
    Provision(ProvisionArgs),
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Grafana base URL [env: IRISCTL_GRAFANA_URL, else GRAFANA_URL] [default: the stack's own Grafana]
    #[arg(long, env = "GRAFANA_URL", hide_env = true, value_name = "URL")]
    pub url: Option<String>,

    /// Basic-auth user [env: IRISCTL_GRAFANA_USER, else GRAFANA_USER] [default: admin]
    #[arg(
        long,
        env = "GRAFANA_USER",
        hide_env = true,
        value_name = "USER",
        conflicts_with = "token"
    )]
    pub user: Option<String>,

    /// Basic-auth password [env: IRISCTL_GRAFANA_PASSWORD, else GRAFANA_PASSWORD] [default: the generated one in .env]
    #[arg(
        long,
        env = "GRAFANA_PASSWORD",
        hide_env = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,

    /// Service-account token, instead of basic auth [env: IRISCTL_GRAFANA_TOKEN, else GRAFANA_TOKEN]
    #[arg(long, env = "GRAFANA_TOKEN", hide_env = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Folder of dashboard JSON files (*.json at its top) [default: monitoring/dashboards/ of the project]
    #[arg(long, value_name = "DIR")]
    pub dashboards: Option<PathBuf>,

    /// Prometheus URL as Grafana's server reaches it [default: http://prometheus:9090]
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,

    /// Seconds to wait for Grafana to be ready
    #[arg(long, value_name = "SECS", default_value = "60")]
    pub wait_timeout: String,
}

#[derive(Debug, Args)]
pub struct ComposeArgs {
    #[command(flatten)]
    pub stack: StackFlags,

    /// Write to FILE instead of stdout (also writes .env.example beside it)
    #[arg(short, long, value_name = "FILE", conflicts_with = "check")]
    pub output: Option<PathBuf>,

    /// Compare FILE with what would be written; exit non-zero and show a diff if it differs
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Target directory [default: the current directory]
    pub dir: Option<PathBuf>,

    /// Overwrite files that already exist
    #[arg(long)]
    pub force: bool,

    /// Print the documented settings file (every key, its variable, flag and default) instead
    /// of writing files
    #[arg(long, conflicts_with_all = ["dir", "force"])]
    pub print_template: bool,
}
