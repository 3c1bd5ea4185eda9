//! Waiting for a container to be ready.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::*;
use crate::engine::Engine;
use crate::error::hinted;
use crate::poll::{poll_until, Backoff, Poll};
use crate::stack::Stack;

/// A container that was running when the plan was made stopped while `up` waited for it:
/// another client stopped it (an interrupted `irisctl down` whose stop the engine finished,
/// `docker stop`). Not a fault of the stack: `up` plans again, once.
#[derive(Debug)]
pub struct StoppedUnderUs;

impl std::fmt::Display for StoppedUnderUs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a container that was running when the plan was made was stopped while it ran")
    }
}

impl std::error::Error for StoppedUnderUs {}

/// Why a container is not ready (yet).
enum NotReady {
    /// Still starting: Docker's health word.
    Starting(String),
    Exited(i64),
    CrashLoop(i64),
    /// The engine did not answer.
    Engine(anyhow::Error),
}

/// Wait until a service's container is ready: running and either answering its readiness
/// check (polled by irisctl from 25 ms on, at most 50 ms apart, so a dependent starts the moment its dependency
/// answers, not at Docker's next health-check interval) or reported healthy by Docker. A
/// container that exits, keeps restarting or misses the deadline is an error with its last log
/// lines; one that the plan kept running (`kept`) and that exits is [`StoppedUnderUs`].
pub(super) async fn wait_healthy(
    engine: &Engine,
    stack: &Stack,
    container: &str,
    service: &str,
    deadline: Instant,
    budget: Duration,
    kept: bool,
) -> Result<()> {
    // Restarts before this wait (a policy restart last week) say nothing about a crash loop now.
    let restarts_before: Cell<Option<i64>> = Cell::new(None);
    // The readiness check goes to the container's address, which a local engine's host reaches
    // (and a remote one's, through the SSH connection); elsewhere Docker's health check decides.
    let ready = stack
        .service(service)
        .and_then(|s| s.ready.clone())
        .filter(|_| engine.is_local() || engine.is_remote());
    let client = crate::probe::client(Duration::from_millis(800));
    let (ready, client, restarts_before) = (&ready, &client, &restarts_before);
    let waited = poll_until(
        deadline.into(),
        Backoff::doubling(Duration::from_millis(25), Duration::from_millis(50)),
        || async move {
            let c = match engine.inspect_container(container).await {
                Ok(c) => c,
                Err(e) => return Poll::Failed(NotReady::Engine(e)),
            };
            let state = c.state.clone().unwrap_or_default();
            let health = health_word(&c);
            let running = state.running.unwrap_or(false);
            if running && (health == "healthy" || health == "-") {
                return Poll::Ready(());
            }
            if let (true, Some(r)) = (running, ready) {
                if let Some(ip) = container_ip(stack, &c) {
                    let Ok(base) = crate::engine::ssh::http_base(&ip.to_string(), r.port).await
                    else {
                        return Poll::Pending(NotReady::Starting(health));
                    };
                    let url = format!("{base}{}", r.path);
                    if crate::probe::check(client, service, &url).await.ok {
                        return Poll::Ready(());
                    }
                }
            }
            let total = c.restart_count.unwrap_or(0);
            let before = restarts_before.get().unwrap_or(total);
            restarts_before.set(Some(before));
            let restarts = total - before;
            if !running && !state.restarting.unwrap_or(false) {
                return Poll::Failed(NotReady::Exited(state.exit_code.unwrap_or(-1)));
            }
            if restarts >= 3 {
                return Poll::Failed(NotReady::CrashLoop(restarts));
            }
            Poll::Pending(NotReady::Starting(if running {
                health
            } else {
                "restarting".into()
            }))
        },
    )
    .await;
    let Err(ended) = waited else {
        return Ok(());
    };
    let ended = ended.into_inner();
    let stopped_under_us = kept && matches!(ended, NotReady::Exited(_));
    let why = match ended {
        NotReady::Engine(e) => return Err(e),
        NotReady::Exited(code) => format!("exited with code {code}"),
        NotReady::CrashLoop(n) => format!("keeps restarting ({n} restarts)"),
        NotReady::Starting(health) => format!(
            "did not become healthy within {} s (health: {health})",
            budget.as_secs()
        ),
    };
    let logs = engine.logs_tail(container, 20).await;
    let err = hinted(
        format!(
            "service `{service}` (container `{container}`) {why}\n--- last log lines of `{container}` ---\n{}",
            if logs.is_empty() { "(no output)".to_string() } else { logs.join("\n") }
        ),
        format!("see `irisctl logs {service}`; if the host is only slow, raise the deadline with --wait-timeout"),
    );
    Err(if stopped_under_us {
        err.context(StoppedUnderUs)
    } else {
        err
    })
}
