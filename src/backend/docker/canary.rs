//! Canary releases of the API: the new container starts beside the stable one (as a release
//! does), answers to `api-canary`, and takes a growing share of the requests through the edge
//! (and so through the web UI's `/api/`, which goes through the edge). At every evaluation the
//! two are read from Prometheus over the same window and judged by the gates of
//! [`crate::canary::judge`]; every step passed, the swap ends it as a release ends; a failed
//! gate, Ctrl-C or a canary removed under it (`irisctl rollback api`) sends every request to
//! the stable container again and removes the canary.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::super::plan::Op;
use super::release::published_base;
use super::*;
use crate::canary::{self as pure, Progress, Verdict};
use crate::error::hinted;
use crate::output::Printer;
use crate::stack::Stack;

/// How often the gates are read (Prometheus scrapes the canary every 2 s, the stable API every
/// 5 s).
const EVALUATION: Duration = Duration::from_secs(2);
/// The first reading of a step, after three scrapes of the canary. A reading covers the step
/// so far and nothing before it: an earlier canary (an abort, then a quick retry) may have had
/// the same address, and its last samples must not be judged as this one's.
const FIRST_READING: Duration = Duration::from_secs(6);
/// A step that still has too few requests to judge after this many step durations aborts.
const MAX_WAIT_STEPS: u32 = 10;
/// After every request is routed to the stable container again, how long the edge's old
/// workers get to finish what they sent the canary before it leaves the network.
const ROUTE_DRAIN: Duration = Duration::from_millis(1500);
/// The canary's name on the stack's network: the edge's canary route and Prometheus's job
/// `iris-api-canary` find it by this.
pub const CANARY_ALIAS: &str = "api-canary";
/// Where `up` keeps the canary's progress for `status`: `.irisctl/canary.json`.
pub const PROGRESS_FILE: &str = "canary.json";

/// Why a canary ended without its promotion.
struct Abort {
    /// One line: the gate with both values and its limit, or what happened.
    why: String,
    hint: String,
}

impl Docker {
    /// `canary api`: see the module's documentation.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn canary(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        op: &Op,
        body: bollard::models::ContainerCreateBody,
        new_image: &str,
        deadline: Instant,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<()> {
        let config = op
            .canary
            .as_deref()
            .cloned()
            .unwrap_or_else(|| crate::settings::Release::default().canary);
        let Some(edge) = stack.service(crate::stack::edge::EDGE) else {
            return Err(hinted(
                "a canary needs irisctl's edge in front of the API, and this stack has none (its web UI names no nginx image)",
                "release without --canary (and without `release.strategy: canary`)",
            ));
        };
        let Some(prometheus_port) = stack.service("prometheus").and_then(|p| p.ports.first())
        else {
            return Err(hinted(
                "a canary is judged from Prometheus's readings, and this stack publishes no Prometheus port",
                "publish Prometheus (`ports.prometheus`), or release without --canary",
            ));
        };
        let prometheus = published_base(prometheus_port).await?;
        let started = self
            .start_beside(stack, service, op, body, deadline, timeout, printer)
            .await?;
        let canary = started.new.clone();
        // From here on, Ctrl-C is heard here: traffic goes back and the canary goes first.
        let _shield = pure::Shield::hold();
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut progress = Progress {
            canary: canary.clone(),
            stable: op.object.clone(),
            step: 0,
            steps: config.steps.len(),
            weight: 0,
            state: "starting".into(),
            gates: vec![],
            at: 0,
        };
        let outcome = async {
            self.engine
                .disconnect_network(&stack.network.name, &canary)
                .await?;
            self.engine
                .connect_network(&stack.network.name, &canary, &[CANARY_ALIAS.to_string()])
                .await?;
            let inspected = self.engine.inspect_container(&canary).await?;
            let Some(ip) = container_ip(stack, &inspected) else {
                anyhow::bail!(
                    "the canary `{canary}` has no address on `{}`",
                    stack.network.name
                );
            };
            self.steps(
                stack,
                &edge.container_name,
                &prometheus,
                &format!("{ip}:8000"),
                &config,
                &mut progress,
                &mut interrupt,
                printer,
            )
            .await
        }
        .await;
        match outcome {
            Ok(Ok(())) => {
                printer.enter(format!(
                    "canary api: every step passed; {canary} takes all the requests"
                ));
                progress.state = "promoting".into();
                write_progress(stack, &mut progress);
                // Back to one route, then the swap: the canary gets `api` in place of its own
                // name, which it must not lose while a request is on its way to it.
                self.route(&edge.container_name, None).await?;
                tokio::time::sleep(ROUTE_DRAIN).await;
                let swapped = self
                    .swap(stack, service, op, &started, new_image, printer)
                    .await;
                remove_progress(stack);
                swapped
            }
            Ok(Err(abort)) => {
                self.abort(&edge.container_name, &canary, printer).await;
                progress.state = format!("aborted: {}", abort.why);
                write_progress(stack, &mut progress);
                Err(hinted(
                    format!(
                        "canary of `api` aborted: {}; every request went back to `{}` and the canary `{canary}` was removed",
                        abort.why, op.object
                    ),
                    abort.hint,
                ))
            }
            Err(e) => {
                self.abort(&edge.container_name, &canary, printer).await;
                remove_progress(stack);
                Err(hinted(
                    format!(
                        "canary of `api` stopped: {e:#}; every request went back to `{}` and the canary `{canary}` was removed",
                        op.object
                    ),
                    "`irisctl status` shows what serves; fix the cause and run `irisctl up --canary` again",
                ))
            }
        }
    }

    /// The steps: at each, the canary's share, then readings until the step's time is up with
    /// every gate passing. `Err(Abort)`: a gate failed, or the run was stopped.
    #[allow(clippy::too_many_arguments)]
    async fn steps(
        &self,
        stack: &Stack,
        edge: &str,
        prometheus: &str,
        target: &str,
        config: &crate::settings::Canary,
        progress: &mut Progress,
        interrupt: &mut tokio::signal::unix::Signal,
        printer: &Printer,
    ) -> Result<std::result::Result<(), Abort>> {
        let client = crate::probe::client(Duration::from_secs(3));
        let canary = progress.canary.clone();
        for (i, &weight) in config.steps.iter().enumerate() {
            let at = format!(
                "canary api: step {}/{} ({weight} % of requests to {canary})",
                i + 1,
                config.steps.len()
            );
            // Written first: `status` and `rollback api` find the canary as the step begins.
            (progress.step, progress.weight) = (i + 1, weight);
            progress.state = "starting".into();
            progress.gates.clear();
            write_progress(stack, progress);
            printer.enter(at.clone());
            self.route(edge, Some(weight)).await?;
            let step_started = Instant::now();
            loop {
                tokio::select! {
                    _ = interrupt.recv() => return Ok(Err(Abort {
                        why: "interrupted (Ctrl-C)".into(),
                        hint: "run `irisctl up --canary` again to release it as a canary, or `irisctl up` to converge".into(),
                    })),
                    _ = tokio::time::sleep(EVALUATION) => {}
                }
                if self.engine.inspect_container(&canary).await.is_err() {
                    return Ok(Err(Abort {
                        why: format!("its container `{canary}` is gone (`irisctl rollback api` removes a canary)"),
                        hint: "`irisctl up` converges the stack; `irisctl status` shows what serves".into(),
                    }));
                }
                let elapsed = step_started.elapsed();
                if elapsed < FIRST_READING {
                    continue;
                }
                let window = elapsed.as_secs();
                // A Prometheus that stays silent cannot judge: the canary waits as for traffic.
                let silent = |e: &str| {
                    (elapsed > config.step_duration * MAX_WAIT_STEPS).then(|| Abort {
                        why: format!("Prometheus did not answer for {}s ({e})", elapsed.as_secs()),
                        hint: "`irisctl status` and `irisctl logs prometheus`; the canary is judged from Prometheus's readings".into(),
                    })
                };
                let (stable_side, canary_side) =
                    match read(&client, prometheus, window, target).await {
                        Ok(sides) => sides,
                        Err(e) => {
                            if let Some(abort) = silent(&e) {
                                return Ok(Err(abort));
                            }
                            printer.enter(format!("{at}: Prometheus did not answer ({e})"));
                            continue;
                        }
                    };
                let readings = match read_user_gates(&client, prometheus, config, window).await {
                    Ok(r) => r,
                    Err(Refused(why)) => {
                        return Ok(Err(Abort {
                            why,
                            hint: "fix the query in `release.canary.gates` (Prometheus's /graph page tries one), then run `irisctl up --canary` again".into(),
                        }))
                    }
                    Err(Unanswered(e)) => {
                        if let Some(abort) = silent(&e) {
                            return Ok(Err(abort));
                        }
                        printer.enter(format!("{at}: Prometheus did not answer ({e})"));
                        continue;
                    }
                };
                let verdict = pure::judge(config, &stable_side, &canary_side, &readings);
                let (state, gates) = match &verdict {
                    Verdict::Wait(why) => (why.clone(), vec![]),
                    Verdict::Pass(gates) => ("passing".to_string(), gates.clone()),
                    Verdict::Fail(_, gates) => ("failing".to_string(), gates.clone()),
                };
                progress.state = state.clone();
                progress.gates = gates.iter().map(ToString::to_string).collect();
                write_progress(stack, progress);
                match verdict {
                    Verdict::Fail(gate, _) => {
                        return Ok(Err(Abort {
                            why: format!("gate {gate}, over {window}s at {weight} %"),
                            hint: "`irisctl logs api` shows the stable container; fix the release and run `irisctl up --canary` again (`release.canary.*` sets the gates)".into(),
                        }))
                    }
                    Verdict::Wait(_) if elapsed > config.step_duration * MAX_WAIT_STEPS => {
                        return Ok(Err(Abort {
                            why: format!(
                                "it could not be judged: {state} after {}s at {weight} %",
                                elapsed.as_secs()
                            ),
                            hint: format!(
                                "send traffic while the canary runs, or lower release.canary.min_requests (now {})",
                                config.min_requests
                            ),
                        }));
                    }
                    Verdict::Pass(_) if elapsed >= config.step_duration => break,
                    _ => printer.enter(format!("{at}: {state}")),
                }
            }
        }
        Ok(Ok(()))
    }

    /// Route `weight` percent of the API's requests to the canary, or (`None`) all of them to
    /// the stable container again: files in the edge's tmpfs, then an nginx reload.
    async fn route(&self, edge: &str, weight: Option<u8>) -> Result<()> {
        let script = pure::edge_routes(weight);
        let (code, output) = self
            .engine
            .exec_output(edge, &["/bin/sh", "-c", &script])
            .await?;
        if code != 0 {
            anyhow::bail!(
                "the edge `{edge}` did not take the canary's route (exit {code}): {}",
                output.trim()
            );
        }
        Ok(())
    }

    /// Every request to the stable container again, then the canary goes (gracefully: it
    /// finishes what it holds). Best effort: what fails is said, the rest still happens.
    async fn abort(&self, edge: &str, canary: &str, printer: &Printer) {
        if let Err(e) = self.route(edge, None).await {
            printer.warn(format!(
                "{e:#}; the edge goes back to the stable container when `irisctl up` recreates it"
            ));
        }
        tokio::time::sleep(ROUTE_DRAIN).await;
        // Gone already when `rollback api` removed it.
        if self.engine.inspect_container(canary).await.is_err() {
            return;
        }
        if let Err(e) = self.engine.remove_container(canary, canary).await {
            printer.warn(format!(
                "the canary `{canary}` could not be removed ({e:#}); `irisctl up` removes it"
            ));
        }
    }
}

impl Docker {
    /// The canary among a service's containers: the one that answers to `api-canary`.
    pub(super) async fn canary_among<'a>(
        &self,
        stack: &Stack,
        containers: &[&'a plan::Container],
    ) -> Option<&'a plan::Container> {
        for c in containers {
            let Ok(inspected) = self.engine.inspect_container(&c.id).await else {
                continue;
            };
            let aliases = inspected
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(&stack.network.name))
                .and_then(|e| e.aliases)
                .unwrap_or_default();
            if aliases.iter().any(|a| a == CANARY_ALIAS) {
                return Some(c);
            }
        }
        None
    }

    /// `rollback api` during a canary: every request to the stable container again, then the
    /// canary goes; the `up` running it sees it gone and stops.
    pub(super) async fn abort_canary(&self, stack: &Stack, op: &Op) -> Result<()> {
        if let Some(edge) = stack.service(crate::stack::edge::EDGE) {
            self.route(&edge.container_name, None).await?;
        }
        tokio::time::sleep(ROUTE_DRAIN).await;
        self.engine
            .remove_container(op.id.as_deref().unwrap_or(&op.object), &op.object)
            .await
    }
}

/// Why a query has no answer: Prometheus refused it (a user-defined gate's bad PromQL), or
/// did not answer.
enum QueryError {
    Refused(String),
    Unanswered(String),
}
use QueryError::{Refused, Unanswered};

/// One instant query's JSON answer.
async fn query(
    client: &reqwest::Client,
    prometheus: &str,
    q: &str,
) -> std::result::Result<serde_json::Value, QueryError> {
    let resp = client
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .map_err(|e| Unanswered(e.to_string()))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| Unanswered(format!("HTTP {}: {e}", status.as_u16())))?;
    if status.as_u16() == 400 || status.as_u16() == 422 {
        let error = body["error"].as_str().unwrap_or("bad query").to_string();
        return Err(Refused(error));
    }
    if !status.is_success() {
        return Err(Unanswered(format!("HTTP {}", status.as_u16())));
    }
    Ok(body)
}

/// The user-defined gates' readings over the last `window` seconds.
async fn read_user_gates(
    client: &reqwest::Client,
    prometheus: &str,
    config: &crate::settings::Canary,
    window: u64,
) -> std::result::Result<Vec<pure::Reading>, QueryError> {
    let mut out = Vec::new();
    for (gate, [stable, canary]) in config.gates.iter().zip(pure::user_queries(config, window)) {
        let (s, c) = futures_util::future::join(
            query(client, prometheus, &stable),
            query(client, prometheus, &canary),
        )
        .await;
        let named = |e: QueryError| match e {
            Refused(why) => Refused(format!(
                "Prometheus refused the query of gate `{}`: {why}",
                gate.name
            )),
            other => other,
        };
        out.push(pure::Reading {
            stable: pure::single_value(&s.map_err(named)?),
            canary: pure::single_value(&c.map_err(named)?),
        });
    }
    Ok(out)
}

/// Both tracks over the last `window` seconds, from Prometheus's HTTP API.
async fn read(
    client: &reqwest::Client,
    prometheus: &str,
    window: u64,
    target: &str,
) -> std::result::Result<(pure::Side, pure::Side), String> {
    let queries = pure::queries(window, target);
    let answers = futures_util::future::join_all(queries.iter().map(|(name, q)| async move {
        match query(client, prometheus, q).await {
            Ok(body) => Ok((*name, pure::parse_vector(&body))),
            Err(Refused(e) | Unanswered(e)) => Err(format!("{name}: {e}")),
        }
    }))
    .await;
    let answers = answers
        .into_iter()
        .collect::<std::result::Result<std::collections::BTreeMap<_, _>, String>>()?;
    Ok(pure::sides(&answers))
}

fn progress_path(stack: &Stack) -> std::path::PathBuf {
    stack
        .project_dir
        .join(crate::stack::STATE_DIR)
        .join(PROGRESS_FILE)
}

/// Best effort: `status` reads it; a canary runs on without it.
fn write_progress(stack: &Stack, progress: &mut Progress) {
    progress.at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let path = progress_path(stack);
    if let Ok(text) = serde_json::to_string_pretty(progress) {
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

fn remove_progress(stack: &Stack) {
    let _ = std::fs::remove_file(progress_path(stack));
}

/// The canary `up` is running, if any: its progress, refreshed at every reading (2 s), is
/// fresh and does not say it ended.
pub fn running_canary(project_dir: &std::path::Path) -> Option<Progress> {
    let p = read_progress(project_dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (!p.state.starts_with("aborted") && now.saturating_sub(p.at) <= 60).then_some(p)
}

/// The last canary's progress as `up` wrote it (`aborted: …` once it ended so).
pub fn read_progress(project_dir: &std::path::Path) -> Option<Progress> {
    let path = project_dir
        .join(crate::stack::STATE_DIR)
        .join(PROGRESS_FILE);
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}
