//! Errors that carry a next step for the user, and the process exit codes.

use std::fmt;

/// An error whose message is complete in itself and comes with a `hint:` line.
///
/// Lower layers return it at the root of an `anyhow` chain; `main` finds it with
/// `downcast_ref` and prints the hint once, after the whole chain.
#[derive(Debug)]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

/// Build an `anyhow::Error` with a hint.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
    })
}

/// A Grafana client error as an error with its hint; URLs in the message are redacted (they may
/// carry credentials). Lower modules (the stack's derived files) and the verbs share it.
pub fn from_grafana(e: crate::grafana::GrafanaError) -> anyhow::Error {
    let hint = e.hint();
    hinted(crate::grafana::redact_urls(&e.to_string()), hint)
}

/// The first hint found in an error's chain.
pub fn hint_of(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Hinted>())
        .map(|h| h.hint.as_str())
}

/// Exit codes with a meaning scripts can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// Any error: bad input, engine failure, build failure, deadline passed.
    Failure = 1,
    /// Command-line usage error (clap's own code).
    Usage = 2,
    /// `status`: a service is missing or unhealthy.
    Unhealthy = 3,
    /// Interrupted by SIGINT.
    Interrupted = 130,
}
