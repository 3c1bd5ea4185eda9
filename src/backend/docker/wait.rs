//! Waiting for a container to be ready.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::*;
use crate::engine::Engine;
use crate::error::hinted;
use crate::stack::Stack;

/// Wait until the container is running and, if it has a health check, healthy.
/// Wait until a service's container is ready: running and either answering its readiness
/// check (polled by irisctl from 50 ms on, so a dependent starts the moment its dependency
/// answers, not at Docker's next health-check interval) or reported healthy by Docker. A
/// container that exits, keeps restarting or misses the deadline is an error with its last log
/// lines.
pub(super) async fn wait_healthy(
    engine: &Engine,
    stack: &Stack,
    container: &str,
    service: &str,
    deadline: Instant,
    budget: Duration,
) -> Result<()> {
    let mut last_health = String::from("not started");
    // Restarts before this wait (a policy restart last week) say nothing about a crash loop now.
    let mut restarts_before: Option<i64> = None;
    // The readiness check goes to the container's address, which only a local engine's host
    // reaches; elsewhere Docker's health check decides.
    let ready = stack
        .service(service)
        .and_then(|s| s.ready.clone())
        .filter(|_| engine.is_local());
    let client = crate::probe::client(Duration::from_millis(800));
    let mut pause = Duration::from_millis(50);
    loop {
        let c = engine.inspect_container(container).await?;
        let state = c.state.clone().unwrap_or_default();
        let health = health_word(&c);
        let running = state.running.unwrap_or(false);
        if running && (health == "healthy" || health == "-") {
            return Ok(());
        }
        if let (true, Some(r)) = (running, &ready) {
            if let Some(ip) = container_ip(stack, &c) {
                let url = format!("http://{ip}:{}{}", r.port, r.path);
                if crate::probe::check(&client, service, &url).await.ok {
                    return Ok(());
                }
            }
        }
        let total = c.restart_count.unwrap_or(0);
        let restarts = total - *restarts_before.get_or_insert(total);
        let exited = !running && !state.restarting.unwrap_or(false);
        let crash_loop = restarts >= 3;
        if exited || crash_loop || Instant::now() >= deadline {
            let why = if exited {
                format!("exited with code {}", state.exit_code.unwrap_or(-1))
            } else if crash_loop {
                format!("keeps restarting ({restarts} restarts)")
            } else {
                format!(
                    "did not become healthy within {} s (health: {last_health})",
                    budget.as_secs()
                )
            };
            let logs = engine.logs_tail(container, 20).await;
            return Err(hinted(
                format!(
                    "service `{service}` (container `{container}`) {why}\n--- last log lines of `{container}` ---\n{}",
                    if logs.is_empty() { "(no output)".to_string() } else { logs.join("\n") }
                ),
                format!("see `irisctl logs {service}`; if the host is only slow, raise the deadline with --wait-timeout"),
            ));
        }
        last_health = if running { health } else { "restarting".into() };
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(400));
    }
}
