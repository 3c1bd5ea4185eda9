//! The one place that decides where output goes: data to stdout, progress and messages to
//! stderr, progress bars only on a terminal. Commands never `println!`.

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
    /// What the command is doing now, for the message after an interruption.
    phase: std::sync::Arc<std::sync::Mutex<String>>,
    /// Test hook (`IRISCTL_TEST_HOLD_AT`): a phase at whose start the command waits, so that a
    /// test can interrupt it at a known point.
    hold_at: Option<String>,
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
        let stderr_tty = std::io::stderr().is_terminal();
        let color = stderr_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Printer {
            verbosity,
            color,
            progress: stderr_tty && verbosity != Verbosity::Quiet,
            phase: Default::default(),
            hold_at: std::env::var("IRISCTL_TEST_HOLD_AT")
                .ok()
                .filter(|v| !v.is_empty()),
            board: Default::default(),
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
        if self.progress {
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

    /// Enter a phase: record what the command is doing now (shown if it is interrupted).
    pub async fn enter(&self, phase: impl Into<String>) {
        let phase = phase.into();
        if let Ok(mut p) = self.phase.lock() {
            p.clone_from(&phase);
        }
        if self
            .hold_at
            .as_ref()
            .is_some_and(|h| phase.starts_with(h.as_str()))
        {
            eprintln!("irisctl-test: holding at {phase}");
            std::future::pending::<()>().await;
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
            eprintln!("{}", text.as_ref());
        }
    }

    pub fn verbose(&self, text: impl AsRef<str>) {
        if self.verbosity == Verbosity::Verbose {
            eprintln!("{}", self.dim(text.as_ref()));
        }
    }

    pub fn warn(&self, text: impl AsRef<str>) {
        eprintln!("{} {}", self.paint("warning:", "33;1"), text.as_ref());
    }

    pub fn error(&self, text: impl AsRef<str>) {
        eprintln!("{} {}", self.paint("error:", "31;1"), text.as_ref());
    }

    pub fn hint(&self, text: impl AsRef<str>) {
        eprintln!("{} {}", self.paint("hint:", "36;1"), text.as_ref());
    }

    pub fn success(&self, text: impl AsRef<str>) {
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
        if self.progress {
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
