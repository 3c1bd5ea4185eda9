//! Shadow traffic on the single engine: the challenger (the API built from the project's source,
//! tagged `<project>-api:challenger`) and the comparator (`app.shadow`, from the same image)
//! beside the running stack, and the edge's copy of `/predict` to the comparator. See
//! [`crate::shadow`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::super::images::{self, ImagePlan};
use super::super::plan::{step, Kind, Op, Plan, Verb};
use super::*;
use crate::error::hinted;
use crate::output::Printer;
use crate::shadow::{self as pure, Shadow, CHALLENGER, COMPARATOR};
use crate::stack::edge::EDGE;
use crate::stack::{Service, Stack};

/// A container of a running shadow.
#[derive(Debug, Clone)]
pub struct ShadowContainer {
    /// `challenger` or `comparator`.
    pub role: String,
    pub name: String,
    pub id: String,
    /// The engine's word: `running`, `exited`…
    pub state: String,
    pub image: String,
    pub sample: Option<u8>,
}

/// The challenger's and the comparator's definitions, derived from the API's: the stack they
/// are made and waited for in.
pub fn shadow_stack(stack: &Stack, sample: u8, challenger_image: &str) -> Option<Stack> {
    let api = stack.service("api")?;
    let mut challenger = api.clone();
    challenger.name = CHALLENGER.into();
    challenger.container_name = format!("{}-{CHALLENGER}-1", stack.project);
    challenger.image = format!("{}:{}", previous_repo(stack, "api"), pure::TAG);
    challenger.aliases = vec![CHALLENGER.into()];
    challenger.ports = vec![];
    challenger.depends_on = vec![];
    challenger.probes = vec![];
    let mut comparator = challenger.clone();
    comparator.name = COMPARATOR.into();
    comparator.container_name = format!("{}-{COMPARATOR}-1", stack.project);
    comparator.build = None;
    if !challenger_image.is_empty() {
        comparator.image = challenger_image.to_string();
    }
    comparator.aliases = vec![COMPARATOR.into()];
    comparator.command = [
        "/opt/venv/bin/uvicorn",
        "--factory",
        "app.shadow:create_app",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        // A comparator that cannot start (its syslog port) exits instead of serving half.
        "--lifespan",
        "on",
        "--no-access-log",
    ]
    .map(String::from)
    .to_vec();
    comparator.env.insert(
        "IRIS_CHALLENGER".into(),
        format!("http://{CHALLENGER}:8000"),
    );
    comparator
        .env
        .insert("IRIS_SHADOW_SAMPLE".into(), sample.to_string());
    let mut out = stack.clone();
    out.services = vec![challenger, comparator];
    Some(out)
}

impl Docker {
    /// The shadow's containers, if one runs (or ran and was stopped).
    pub async fn shadow_containers(&self, stack: &Stack) -> Result<Vec<ShadowContainer>> {
        let list = self
            .engine
            .containers_with(&[project_label(stack), pure::LABEL.to_string()])
            .await?;
        Ok(list
            .into_iter()
            .map(|c| {
                let labels = c.labels.clone().unwrap_or_default();
                ShadowContainer {
                    role: labels.get(pure::LABEL).cloned().unwrap_or_default(),
                    name: listed_name(&c),
                    id: c.id.clone().unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    image: c.image_id.clone().unwrap_or_default(),
                    sample: labels.get(pure::SAMPLE_LABEL).and_then(|s| s.parse().ok()),
                }
            })
            .collect())
    }

    /// The image ID of the container that serves `service` now.
    pub async fn serving_image(&self, stack: &Stack, service: &str) -> Result<Option<String>> {
        let Some(c) = self
            .containers(stack)
            .await?
            .into_iter()
            .find(|c| c.service == service && c.state == RunState::Running)
        else {
            return Ok(None);
        };
        Ok(self.engine.inspect_container(&c.id).await?.image)
    }

    /// `shadow start`: the challenger's image (built when its inputs changed), both
    /// containers, the edge's copy. Refused when the stack does not run, has no edge with the
    /// hooks, or already shadows.
    pub async fn plan_shadow_start(
        &self,
        stack: &Stack,
        shadow: &Stack,
        images: &ImagePlan,
        sample: u8,
    ) -> Result<Plan> {
        let Some(edge) = stack.service(EDGE) else {
            return Err(hinted(
                "shadow traffic needs irisctl's edge in front of the API, and this stack has none (its web UI names no nginx image)",
                "the edge comes with the built-in web UI; `irisctl init` writes the stack files with it",
            ));
        };
        let config =
            std::fs::read_to_string(stack.project_dir.join(crate::stack::edge::EDGE_CONFIG))
                .unwrap_or_default();
        if !pure::edge_has_hooks(&config) {
            return Err(hinted(
                format!(
                    "the edge's configuration `{}` has no hooks for shadow traffic (`include /tmp/irisctl/predict-*.conf` in a `location = /predict`, `include /tmp/irisctl/server-*.conf` in the API's server)",
                    crate::stack::edge::EDGE_CONFIG
                ),
                "take them from `irisctl init` in an empty directory (its stack/edge/nginx.conf), then run `irisctl up`",
            ));
        }
        let running = |name: String| async move {
            self.engine
                .inspect_container(&name)
                .await
                .ok()
                .and_then(|c| c.state)
                .and_then(|s| s.running)
                .unwrap_or(false)
        };
        let api = stack
            .service("api")
            .map(|s| s.container_name.clone())
            .unwrap_or_default();
        let champion = self
            .containers(stack)
            .await?
            .into_iter()
            .find(|c| c.service == "api" && c.state == RunState::Running);
        if champion.is_none() || !running(edge.container_name.clone()).await {
            return Err(hinted(
                format!(
                    "the stack `{}` does not serve: a challenger shadows a running API (`{api}`) behind a running edge (`{}`)",
                    stack.project, edge.container_name
                ),
                "run `irisctl up` first",
            ));
        }
        if let Some(c) = self.shadow_containers(stack).await?.first() {
            return Err(hinted(
                format!(
                    "a shadow is in place already (its {} `{}` is {})",
                    c.role, c.name, c.state
                ),
                "`irisctl shadow stop` ends it (or `irisctl shadow promote` releases its challenger); then start the new one",
            ));
        }
        let comparator_source = shadow.services[0]
            .build
            .as_ref()
            .map(|b| b.context.join("app/shadow.py"));
        if let Some(missing) = comparator_source.filter(|f| !f.is_file()) {
            return Err(hinted(
                format!(
                    "the API's source has no comparator (`{}` is missing): this project's stack files are older than shadow traffic",
                    missing.display()
                ),
                "copy stack/api/app/shadow.py (and the X-Iris-Predictions header of app/main.py) from `irisctl init` in an empty directory",
            ));
        }
        let mut plan = Plan::default();
        for op in images.plan().ops {
            plan.push(op);
        }
        let challenger = &shadow.services[0];
        let comparator = &shadow.services[1];
        plan.push(
            Op::new(Verb::Create, Kind::Container, &challenger.container_name)
                .service(CHALLENGER)
                .because(format!(
                    "the challenger: the API from the project's source ({}), beside the champion `{}`",
                    challenger.image,
                    champion.map(|c| c.name).unwrap_or_default()
                )),
        );
        plan.push(
            Op::new(Verb::Create, Kind::Container, &comparator.container_name)
                .service(COMPARATOR)
                .because("the comparator: the challenger's answer to each copied request against the champion's"),
        );
        plan.push(
            Op::new(Verb::Route, Kind::Container, &edge.container_name)
                .service(EDGE)
                .because(format!(
                    "copy {sample} % of /predict to the comparator (the clients get the champion's answers only)"
                )),
        );
        Ok(plan)
    }

    /// Carry out `shadow start`'s plan. A challenger or comparator that does not become
    /// healthy is removed with what was made before it; the stack is untouched.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_shadow_start(
        &self,
        stack: &Stack,
        shadow: &Stack,
        plan: &Plan,
        images: &mut ImagePlan,
        sample: u8,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<()> {
        let build_stack = shadow_build_stack(shadow);
        // As `up`: the base images first (the plan's pulls), then the build.
        let pulls: Vec<Op> = plan
            .ops
            .iter()
            .filter(|o| o.verb == Verb::Pull)
            .cloned()
            .collect();
        for op in &pulls {
            printer.op_started(op);
        }
        let pulled_at = Instant::now();
        images
            .pull(&self.engine, &build_stack)
            .await
            .inspect_err(|e| {
                for op in &pulls {
                    printer.op_failed(op, &format!("{e:#}"));
                }
            })?;
        for op in &pulls {
            printer.op_done(op, pulled_at.elapsed());
        }
        let (publish, _built) = images::Built::channel();
        let (_, ids) = images
            .build(&self.engine, &build_stack, printer, &publish)
            .await?;
        let image = ids.get(CHALLENGER).cloned().unwrap_or_default();
        if image.is_empty() {
            return Err(hinted(
                "the challenger's image was not built, and the engine reported no error",
                "run `irisctl shadow start` again; `irisctl up --rehash` rebuilds the API from every file of its source",
            ));
        }
        let deadline = Instant::now() + timeout;
        let made = async {
            for (i, service) in shadow.services.iter().enumerate() {
                let op = plan.for_service(&service.name).cloned().unwrap_or_else(|| {
                    Op::new(Verb::Create, Kind::Container, &service.container_name)
                });
                step(printer, &op, async {
                    let body = shadow_body(stack, service, &image, i == 0, sample);
                    self.create_named(shadow, service, &service.container_name, body)
                        .await?;
                    wait_healthy(
                        &self.engine,
                        shadow,
                        &service.container_name,
                        &service.name,
                        deadline,
                        timeout,
                        false,
                    )
                    .await
                })
                .await?;
            }
            let route = plan
                .ops
                .iter()
                .find(|o| o.verb == Verb::Route)
                .cloned()
                .unwrap_or_else(|| Op::new(Verb::Route, Kind::Container, EDGE));
            step(printer, &route, self.shadow_route(stack, Some(sample))).await
        }
        .await;
        if let Err(e) = made {
            // The edge copies nothing (a refused configuration is removed by the route's own
            // script; this removes one nginx took), then what was made goes.
            let _ = self.shadow_route(stack, None).await;
            for s in shadow.services.iter().rev() {
                let _ = self.engine.kill_and_remove(&s.container_name).await;
            }
            return Err(hinted(
                format!("the shadow did not start; what it had made was removed and the stack serves as before: {e:#}"),
                "the lines above are the challenger's (or the comparator's) last words; fix the project's API source and run `irisctl shadow start` again",
            ));
        }
        Ok(())
    }

    /// Point the edge's copy of `/predict` at the comparator (`Some(sample)`), or stop it.
    pub async fn shadow_route(&self, stack: &Stack, sample: Option<u8>) -> Result<()> {
        let Some(edge) = stack.service(EDGE) else {
            return Ok(());
        };
        let script = match sample {
            Some(sample) => {
                let comparator = format!("{}-{COMPARATOR}-1", stack.project);
                let inspected = self.engine.inspect_container(&comparator).await?;
                let Some(ip) = container_ip(stack, &inspected) else {
                    anyhow::bail!(
                        "the comparator `{comparator}` has no address on `{}`",
                        stack.network.name
                    );
                };
                pure::edge_routes(Some((sample, &ip)))
            }
            None => pure::edge_routes(None),
        };
        let (code, output) = self
            .engine
            .exec_output(&edge.container_name, &["/bin/sh", "-c", &script])
            .await?;
        if code != 0 {
            return Err(hinted(
                format!(
                    "the edge `{}` did not take the shadow's route (exit {code}): {}",
                    edge.container_name,
                    output.trim()
                ),
                "`irisctl logs edge` shows why; `irisctl up` recreates an edge whose configuration changed",
            ));
        }
        Ok(())
    }

    /// Does the edge copy `/predict` to the comparator's current address? (Its copy lives in its
    /// tmpfs: an edge restarted since has none.)
    pub async fn edge_copies(&self, stack: &Stack, comparator: &str) -> bool {
        let Some(edge) = stack.service(EDGE) else {
            return false;
        };
        let Ok(inspected) = self.engine.inspect_container(comparator).await else {
            return false;
        };
        let Some(ip) = container_ip(stack, &inspected) else {
            return false;
        };
        match self
            .engine
            .exec_output(
                &edge.container_name,
                &["/bin/sh", "-c", "cat /tmp/irisctl/predict-shadow.conf"],
            )
            .await
        {
            Ok((0, text)) => text.contains(&format!("syslog:server={ip}:")),
            _ => false,
        }
    }

    /// `shadow stop` (and the end of `shadow promote`): the edge stops copying, then the
    /// comparator and the challenger go.
    pub async fn plan_shadow_stop(&self, stack: &Stack) -> Result<Plan> {
        let mut plan = Plan::default();
        let found = self.shadow_containers(stack).await?;
        if found.is_empty() {
            return Ok(plan);
        }
        if let Some(edge) = stack.service(EDGE) {
            plan.push(
                Op::new(Verb::Route, Kind::Container, &edge.container_name)
                    .service(EDGE)
                    .because("no copy of /predict any more"),
            );
        }
        let mut found = found;
        // The comparator first: the challenger it sends to goes last.
        found.sort_by_key(|c| c.role != "comparator");
        for c in found {
            plan.push(
                Op::new(Verb::Remove, Kind::Container, &c.name)
                    .id(&c.id)
                    .because(format!("the shadow's {}", c.role)),
            );
        }
        Ok(plan)
    }

    pub async fn apply_shadow_stop(
        &self,
        stack: &Stack,
        plan: &Plan,
        printer: &Printer,
    ) -> Result<()> {
        for op in &plan.ops {
            match op.verb {
                Verb::Route => {
                    // An edge that is not running has no copy to stop.
                    let edge_runs = self
                        .engine
                        .inspect_container(&op.object)
                        .await
                        .ok()
                        .and_then(|c| c.state)
                        .and_then(|s| s.running)
                        .unwrap_or(false);
                    if edge_runs {
                        step(printer, op, self.shadow_route(stack, None)).await?;
                    }
                }
                Verb::Remove => {
                    step(
                        printer,
                        op,
                        self.engine
                            .remove_container(op.id.as_deref().unwrap_or(&op.object), &op.object),
                    )
                    .await?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// What `up`'s plan says of a running shadow: its containers are kept (not orphans), and
    /// the edge's copy is written again when the plan replaces the edge.
    pub async fn shadow_in_up_plan(&self, stack: &Stack, plan: &Plan) -> Result<Vec<Op>> {
        let found = self.shadow_containers(stack).await?;
        let edge_changes = plan.for_service(EDGE).is_some_and(|o| o.changes());
        let mut ops = Vec::new();
        for c in &found {
            let mut cause = format!(
                "the {} of `irisctl shadow start`, {}; kept (`irisctl shadow stop` removes it)",
                c.role, c.state
            );
            let copies = c.role == "comparator" && c.state == "running";
            if copies && edge_changes {
                cause.push_str("; the edge's copy of /predict is written into the new edge");
            }
            ops.push(
                Op::new(Verb::Shadow, Kind::Container, &c.name)
                    .id(&c.id)
                    .because(cause),
            );
            if copies && !edge_changes && !self.edge_copies(stack, &c.name).await {
                if let Some(edge) = stack.service(EDGE) {
                    ops.push(
                        Op::new(Verb::Route, Kind::Container, &edge.container_name).because(
                            "its copy of /predict to the shadow's comparator is gone (the edge restarted, or the comparator has a new address): written again",
                        ),
                    );
                }
            }
        }
        Ok(ops)
    }

    /// After `up` replaced the edge: its copy of `/predict` again, as the comparator says.
    pub async fn shadow_restore(
        &self,
        stack: &Stack,
        plan: &Plan,
        printer: &Printer,
    ) -> Result<()> {
        let edge_changed = plan.for_service(EDGE).is_some_and(|o| o.changes());
        let copy_lost = plan.ops.iter().any(|o| o.verb == Verb::Route);
        if !edge_changed && !copy_lost {
            return Ok(());
        }
        let found = self.shadow_containers(stack).await?;
        let Some(comparator) = found
            .iter()
            .find(|c| c.role == "comparator" && c.state == "running")
        else {
            return Ok(());
        };
        let route = self.shadow_route(stack, Some(comparator.sample.unwrap_or(100)));
        match plan.ops.iter().find(|o| o.verb == Verb::Route) {
            Some(op) => step(printer, op, route).await,
            None => route.await,
        }
    }

    /// `status`'s shadow: both containers' states and the comparator's counts. `None`: no
    /// shadow.
    pub async fn shadow_status(&self, stack: &Stack) -> Option<Shadow> {
        let found = self.shadow_containers(stack).await.ok()?;
        if found.is_empty() {
            return None;
        }
        let of = |role: &str| found.iter().find(|c| c.role == role);
        let state = |c: Option<&ShadowContainer>| match c {
            Some(c) if c.state == "running" => "running".to_string(),
            Some(c) => format!("stopped ({})", c.state),
            None => "gone".to_string(),
        };
        let challenger = of("challenger");
        let comparator = of("comparator");
        let mut shadow = Shadow {
            challenger: challenger
                .map(|c| c.name.clone())
                .unwrap_or_else(|| format!("{}-{CHALLENGER}-1", stack.project)),
            challenger_state: state(challenger),
            challenger_image: challenger.map(|c| c.image.clone()),
            comparator: comparator
                .map(|c| c.name.clone())
                .unwrap_or_else(|| format!("{}-{COMPARATOR}-1", stack.project)),
            comparator_state: state(comparator),
            sample: comparator.and_then(|c| c.sample),
            ..Default::default()
        };
        if let Some(c) = comparator.filter(|c| c.state == "running") {
            shadow.copying = self.edge_copies(stack, &c.name).await;
        }
        match comparator {
            Some(c) if c.state == "running" => match self.comparator_stats(&c.name).await {
                Ok(stats) => shadow.stats = stats,
                Err(e) => shadow.error = Some(format!("{e:#}")),
            },
            _ => shadow.error = Some("the comparator does not run: nothing is compared".into()),
        }
        Some(shadow)
    }

    /// The comparator's `/stats`, read inside its container (its port is not published).
    async fn comparator_stats(&self, comparator: &str) -> Result<pure::Stats> {
        let (code, output) = self
            .engine
            .exec_output_up_to(
                comparator,
                &[
                    "/opt/venv/bin/python",
                    "-c",
                    "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8000/stats', timeout=3).read().decode())",
                ],
                // The confusion of up to 16 species each way.
                64 * 1024,
            )
            .await?;
        if code != 0 {
            anyhow::bail!(
                "the comparator did not answer (exit {code}): {}",
                output.trim()
            );
        }
        serde_json::from_str(output.trim())
            .map_err(|e| anyhow::anyhow!("the comparator's answer is not its counts: {e}"))
    }
}

/// The stack whose one service builds the challenger's image.
pub fn shadow_build_stack(shadow: &Stack) -> Stack {
    let mut out = shadow.clone();
    out.services.truncate(1);
    out
}

/// A shadow container's create request: the derived service's, marked as the shadow's.
fn shadow_body(
    stack: &Stack,
    service: &Service,
    image: &str,
    challenger: bool,
    sample: u8,
) -> bollard::models::ContainerCreateBody {
    let record = crate::stack::record::Record::of(service, image, &[]);
    let mut body = body::container_body(stack, service, &record);
    body.image = Some(image.to_string());
    let labels = body.labels.get_or_insert_with(HashMap::new);
    labels.insert(
        pure::LABEL.to_string(),
        if challenger {
            "challenger"
        } else {
            "comparator"
        }
        .to_string(),
    );
    if !challenger {
        labels.insert(pure::SAMPLE_LABEL.to_string(), sample.to_string());
    }
    body
}
