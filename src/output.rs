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
