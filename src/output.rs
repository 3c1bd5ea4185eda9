//! The one place that decides where output goes: data to stdout, progress and messages to
//! stderr, progress bars only on a terminal. Commands never `println!`.
//!
//! Lower layers report what happens as events (a phase entered, an operation of the plan
//! started, done or failed, a service's state, a message); the renderer chosen by `--progress`
//! is the only writer: redrawn lines on a terminal (indicatif), plain lines, or one JSON object
//! per line ([`Progress::Json`], an interface documented in the README).

#![allow(clippy::print_stderr)]

use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How data is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// How progress is shown on stderr (`--progress`, as Compose v2's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// Redrawn lines on a terminal, plain lines elsewhere.
    #[default]
    Auto,
    /// Redrawn lines (indicatif), even when stderr is not a terminal.
    Tty,
    /// One plain line per change.
    Plain,
    /// One JSON object per line: every event, message and the final error.
    Json,
    /// Errors only.
    Quiet,
}

/// Something that can be reported as an operation of a plan: its fields as in the plan's
/// JSON (`verb`, `kind`, `object`, `service`, `cause`) and its sentence.
pub trait Operation {
    fn fields(&self) -> serde_json::Map<String, serde_json::Value>;
    fn text(&self) -> String;
    /// Worth a line of its own when it starts (a build, a pull, a release): it takes seconds.
    fn is_slow(&self) -> bool;
    /// What it did, once done ("created container x").
    fn done_text(&self) -> String {
        self.text()
    }
}

/// How chatty the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug, Clone)]
pub struct Printer {
    verbosity: Verbosity,
    color: bool,
    progress: bool,
    /// Draw even when stderr is not a terminal (`--progress tty`).
    forced: bool,
    /// Every event as a JSON line on stderr.
    json: bool,
    /// When the command started: events carry the time since.
    started: std::time::Instant,
    /// What the command is doing now, for the message after an interruption.
    phase: std::sync::Arc<std::sync::Mutex<String>>,
    /// What the operations done so far did, in order (for a message after a failure).
    done: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// One progress line per service while `up` works (see [`Printer::start_board`]).
    board: std::sync::Arc<std::sync::Mutex<Option<Board>>>,
}

/// The per-service progress lines: on a terminal, a line per service that moves through its
/// states with the elapsed time and collapses at the end; elsewhere, one plain line per change.
#[derive(Debug)]
struct Board {
    multi: MultiProgress,
    bars: Vec<(String, ProgressBar)>,
    started: std::time::Instant,
    /// The last state shown per service (a state is shown once).
    last: std::collections::BTreeMap<String, String>,
}

impl Printer {
    pub fn new(verbosity: Verbosity) -> Self {
        Self::with_progress(verbosity, Progress::Auto)
    }

    /// A printer whose progress is shown as `progress` says.
    pub fn with_progress(verbosity: Verbosity, progress: Progress) -> Self {
        let stderr_tty = std::io::stderr().is_terminal();
        let json = progress == Progress::Json;
        let verbosity = if progress == Progress::Quiet {
            Verbosity::Quiet
        } else {
            verbosity
        };
        let color =
            stderr_tty && !json && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let redraw = match progress {
            Progress::Auto => stderr_tty && !dumb,
            Progress::Tty => true,
            Progress::Plain | Progress::Json | Progress::Quiet => false,
        };
        Printer {
            verbosity,
            color,
            progress: redraw && verbosity != Verbosity::Quiet,
            forced: progress == Progress::Tty,
            json,
            started: std::time::Instant::now(),
            phase: Default::default(),
            done: Default::default(),
            board: Default::default(),
        }
    }

    /// Whether events go out as JSON lines.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Write one event as a JSON line: `{"event": kind, "elapsed_ms": …, …fields}`.
    fn emit(&self, kind: &str, fields: serde_json::Map<String, serde_json::Value>) {
        let mut event = serde_json::Map::new();
        event.insert("event".into(), kind.into());
        event.insert(
            "elapsed_ms".into(),
            u64::try_from(self.started.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .into(),
        );
        event.extend(fields);
        let line = serde_json::Value::Object(event).to_string();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    fn message(&self, level: &str, text: &str) {
        let mut f = serde_json::Map::new();
        f.insert("level".into(), level.into());
        f.insert("text".into(), text.into());
        self.emit("message", f);
    }

    /// An operation of the plan starts.
    pub fn op_started(&self, op: &impl Operation) {
        if self.json {
            let mut f = op.fields();
            f.insert("status".into(), "started".into());
            self.emit("op", f);
        } else if self.verbosity != Verbosity::Quiet {
            // On a terminal the service's line shows it while `up` draws them.
            let drawn = self.progress && self.board.lock().is_ok_and(|b| b.is_some());
            if !drawn && op.is_slow() {
                eprintln!("{}", op.text());
            }
        }
    }

    /// An operation of the plan is done, `took` after it started.
    pub fn op_done(&self, op: &impl Operation, took: std::time::Duration) {
        if let Ok(mut done) = self.done.lock() {
            done.push(op.done_text());
        }
        if self.json {
            let mut f = op.fields();
            f.insert("status".into(), "done".into());
            f.insert(
                "took_ms".into(),
                u64::try_from(took.as_millis()).unwrap_or(u64::MAX).into(),
            );
            self.emit("op", f);
        } else {
            self.verbose(format!("done in {:.1}s: {}", took.as_secs_f64(), op.text()));
        }
    }

    /// An operation of the plan failed: the run stops with `cause`.
    /// What the operations done so far did ("created container x"), in order.
    pub fn done_ops(&self) -> Vec<String> {
        self.done.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn op_failed(&self, op: &impl Operation, cause: &str) {
        if self.json {
            let mut f = op.fields();
            f.insert("status".into(), "failed".into());
            f.insert("error".into(), cause.into());
            self.emit("op", f);
        }
    }

    /// Start the per-service progress lines.
    pub fn start_board(&self, services: &[&str]) {
        let multi = self.multi();
        let bars = services
            .iter()
            .map(|s| (s.to_string(), self.spinner(&multi, s)))
            .collect();
        if let Ok(mut b) = self.board.lock() {
            *b = Some(Board {
                multi,
                bars,
                started: std::time::Instant::now(),
                last: Default::default(),
            });
        }
    }

    /// The progress line of a service, to show a build's steps on (hidden off a terminal).
    pub fn service_bar(&self, service: &str) -> ProgressBar {
        self.board
            .lock()
            .ok()
            .and_then(|b| {
                b.as_ref().and_then(|b| {
                    b.bars
                        .iter()
                        .find(|(n, _)| n == service)
                        .map(|(_, bar)| bar.clone())
                })
            })
            .unwrap_or_else(ProgressBar::hidden)
    }

    /// A service moved to a new state (`building`, `created`, `started`, `ready`,
    /// `waiting for api`…): its line shows it with the time since `up` began.
    pub fn service(&self, service: &str, state: impl AsRef<str>) {
        let Ok(mut board) = self.board.lock() else {
            return;
        };
        let Some(board) = board.as_mut() else {
            return;
        };
        let state = state.as_ref();
        if board.last.get(service).is_some_and(|l| l == state) {
            return;
        }
        board.last.insert(service.to_string(), state.to_string());
        let at = board.started.elapsed().as_secs_f64();
        let line = format!("{state} ({at:.1}s)");
        if self.json {
            let mut f = serde_json::Map::new();
            f.insert("service".into(), service.into());
            f.insert("state".into(), state.into());
            self.emit("service", f);
        } else if self.progress {
            if let Some((_, bar)) = board.bars.iter().find(|(n, _)| n == service) {
                bar.set_message(line);
            }
        } else if self.verbosity != Verbosity::Quiet {
            eprintln!("{service:<12} {line}");
        }
    }

    /// End the progress lines: they collapse into the summary that follows.
    pub fn finish_board(&self) {
        if let Ok(mut b) = self.board.lock() {
            if let Some(board) = b.take() {
                for (_, bar) in &board.bars {
                    bar.finish_and_clear();
                }
                board.multi.clear().ok();
            }
        }
    }

    /// Enter a phase: record what the command is doing now (shown if it is interrupted) and
    /// report it (a `phase` event; a verbose line otherwise).
    pub fn enter(&self, phase: impl Into<String>) {
        let phase = phase.into();
        if self.json {
            let mut f = serde_json::Map::new();
            f.insert("phase".into(), phase.clone().into());
            self.emit("phase", f);
        } else {
            self.verbose(&phase);
        }
        if let Ok(mut p) = self.phase.lock() {
            *p = phase;
        }
    }

    pub fn phase(&self) -> String {
        self.phase.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Data for pipes: tables, JSON, YAML.
    pub fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`irisctl status | head`) is not an error worth a panic.
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    /// A progress message or a result for people.
    pub fn info(&self, text: impl AsRef<str>) {
        if self.verbosity != Verbosity::Quiet {
            if self.json {
                self.message("info", text.as_ref());
            } else {
                eprintln!("{}", text.as_ref());
            }
        }
    }

    pub fn verbose(&self, text: impl AsRef<str>) {
        if self.verbosity == Verbosity::Verbose {
            if self.json {
                self.message("verbose", text.as_ref());
            } else {
                eprintln!("{}", self.dim(text.as_ref()));
            }
        }
    }

    pub fn warn(&self, text: impl AsRef<str>) {
        if self.json {
            return self.message("warning", text.as_ref());
        }
        eprintln!("{} {}", self.paint("warning:", "33;1"), text.as_ref());
    }

    pub fn error(&self, text: impl AsRef<str>) {
        if self.json {
            return self.message("error", text.as_ref());
        }
        eprintln!("{} {}", self.paint("error:", "31;1"), text.as_ref());
    }

    pub fn hint(&self, text: impl AsRef<str>) {
        if self.json {
            return self.message("hint", text.as_ref());
        }
        eprintln!("{} {}", self.paint("hint:", "36;1"), text.as_ref());
    }

    pub fn success(&self, text: impl AsRef<str>) {
        if self.json {
            if self.verbosity != Verbosity::Quiet {
                self.message("success", text.as_ref());
            }
            return;
        }
        self.info(self.paint(text.as_ref(), "32"));
    }

    fn dim(&self, text: &str) -> String {
        self.paint(text, "2")
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A set of progress bars that draws only on a terminal.
    pub fn multi(&self) -> MultiProgress {
        if self.progress && self.forced {
            MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(
                console::Term::stderr(),
            )))
        } else if self.progress {
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        }
    }

    /// A spinner line for one task, added to `multi`.
    pub fn spinner(&self, multi: &MultiProgress, prefix: &str) -> ProgressBar {
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<12} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(prefix.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }
}
