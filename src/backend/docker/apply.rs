//! Apply a plan: networks and volumes, orphans, then the services wave by wave, each dependent
//! started once its dependencies are healthy.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::try_join_all;

use super::super::images::Built;
use super::super::plan::{step, Kind, Op, Plan, Spec, Verb};
use super::*;
use crate::engine::Object;
use crate::error::hinted;
use crate::output::Printer;
use crate::poll::{poll_until, Backoff, Ended, Poll};
use crate::stack::{Condition, Stack};

impl Docker {
    /// Create and start `body` as container `name`; a foreign container of that name is refused.
    pub(super) async fn create_named(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        name: &str,
        body: bollard::models::ContainerCreateBody,
    ) -> Result<()> {
        // The name may be taken by a container of this service that the plan did not see: an
        // interrupted run's create still under way in the engine when this run listed the
        // containers (the engine then either finishes it or releases the name). One that
        // never started never served: it is replaced. Anything else is refused below.
        let created = poll_until(
            (Instant::now() + Duration::from_secs(10)).into(),
            Backoff::doubling(Duration::from_millis(50), Duration::from_millis(500)),
            || {
                let body = body.clone();
                async move {
                    match self.engine.create_container(name, body).await {
                        Ok(Some(id)) => {
                            // Seen here: a container created while an interrupted run's create
                            // of the same name was being cleaned up in the engine was gone
                            // before it could start. Made again.
                            return match self.engine.start_container(&id, name).await {
                                Ok(()) => Poll::Ready(Some(id)),
                                Err(e) if format!("{e:#}").contains("No such container") => {
                                    Poll::Pending(e)
                                }
                                Err(e) => Poll::Failed(e),
                            };
                        }
                        Ok(None) => {}
                        Err(e) => return Poll::Failed(e),
                    }
                    let existing = match self.engine.inspect_container(name).await {
                        Ok(c) => c,
                        // Released meanwhile: try again.
                        Err(e) if format!("{e:#}").contains("No such container") => {
                            return Poll::Pending(e)
                        }
                        Err(e) => return Poll::Failed(e),
                    };
                    let labels = existing
                        .config
                        .as_ref()
                        .and_then(|c| c.labels.clone())
                        .unwrap_or_default();
                    let never_started = existing
                        .state
                        .as_ref()
                        .and_then(|s| s.started_at.as_deref())
                        .is_none_or(|t| t.starts_with("0001-"));
                    let status = existing
                        .state
                        .as_ref()
                        .and_then(|s| s.status)
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    if matches!(status.as_str(), "removing" | "dead") {
                        // Going away (a removal still in progress): its name is free soon.
                        return Poll::Pending(anyhow::anyhow!("`{name}` is being removed"));
                    }
                    let ours = labels.get(labels::PROJECT) == Some(&stack.project)
                        && labels.get(labels::SERVICE) == Some(&service.name);
                    if !ours {
                        return Poll::Ready(None);
                    }
                    if !never_started {
                        return Poll::Failed(hinted(
                            format!(
                                "container `{name}` of service `{}` appeared while this run was applying its plan (another irisctl or Compose run of project `{}`?)",
                                service.name, stack.project
                            ),
                            "run `irisctl up` again: it plans from what runs now",
                        ));
                    }
                    match self
                        .engine
                        .remove_container(existing.id.as_deref().unwrap_or(name), name)
                        .await
                    {
                        Ok(()) => Poll::Pending(anyhow::anyhow!("name `{name}` taken")),
                        Err(e) => Poll::Failed(e),
                    }
                }
            },
        )
        .await
        .map_err(Ended::into_inner)?;
        if created.is_none() {
            // A container of that name that is not labelled as ours (e.g. left by an
            // interrupted run before labels existed, or made by hand): refuse, never delete.
            return Err(hinted(
                format!(
                    "a container named `{name}` already exists and does not belong to project `{}`",
                    stack.project
                ),
                format!(
                    "remove or rename it (`docker rm -f {name}`), or use another project name with -p (service `{}`)",
                    service.name
                ),
            ));
        }
        Ok(())
    }

    /// Make `container` answer to the service's aliases on the stack's network (a release's
    /// new container is started without them, so no request reaches it before it is healthy).
    pub(super) async fn ensure_aliases(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        container: &str,
    ) -> Result<()> {
        let c = self.engine.inspect_container(container).await?;
        let endpoint = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| n.get(&stack.network.name));
        let has_all = endpoint.is_some_and(|e| {
            let aliases = e.aliases.clone().unwrap_or_default();
            let dns = e.dns_names.clone().unwrap_or_default();
            service
                .aliases
                .iter()
                .all(|a| aliases.contains(a) || dns.contains(a))
        });
        if has_all {
            return Ok(());
        }
        if endpoint.is_some() {
            self.engine
                .disconnect_network(&stack.network.name, container)
                .await?;
        }
        self.engine
            .connect_network(&stack.network.name, container, &service.aliases)
            .await
    }

    /// The container an operation creates, as the planner decided it; a pending image (the
    /// plan builds it first) is the one `images` says was built.
    pub(super) fn body_of(
        stack: &Stack,
        service: &crate::stack::Service,
        op: &Op,
        images: &BTreeMap<String, String>,
    ) -> Result<(bollard::models::ContainerCreateBody, String)> {
        match &op.spec {
            Some(Spec::Container(record)) => {
                let mut record = (**record).clone();
                if record.image.is_empty() {
                    record.image = images.get(&service.name).cloned().unwrap_or_default();
                }
                if record.image.is_empty() {
                    anyhow::bail!("no image for `{}`: its build did not run", service.name);
                }
                let image = record.image.clone();
                Ok((body::container_body(stack, service, &record), image))
            }
            Some(Spec::Definition(body)) => {
                let image = body.image.clone().unwrap_or_default();
                Ok(((**body).clone(), image))
            }
            _ => anyhow::bail!("operation `{}` carries no container definition", op.text()),
        }
    }

    /// Apply `plan` as it is: network and volumes, orphans, then the services wave by wave (a
    /// service waits for the dependencies it needs healthy), then wait until all are healthy.
    /// Each operation is reported as it starts and ends; `images` are the services' images as
    /// they become known (a service whose image the plan builds waits for its build only).
    pub async fn apply(
        &self,
        stack: &Stack,
        plan: &Plan,
        images: &Built,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Vec<Op>> {
        let mut done = Vec::new();
        for op in plan.ops.iter().filter(|o| o.changes()) {
            let work = async {
                match (op.kind, op.verb, &op.spec) {
                    (Kind::Network, Verb::Create, Some(Spec::Network(req))) => {
                        self.engine.create_network((**req).clone()).await
                    }
                    (Kind::Network, Verb::Remove, _) => {
                        let dup = crate::engine::Listed {
                            id: op.id.clone().unwrap_or_default(),
                            name: op.object.clone(),
                            ..Default::default()
                        };
                        self.engine.remove(Object::Network, &dup).await.map(|_| ())
                    }
                    (Kind::Volume, Verb::Create, Some(Spec::Volume(req))) => {
                        self.engine.create_volume((**req).clone()).await
                    }
                    // Orphans go first; a service's extra containers go with its wave.
                    (Kind::Container, Verb::Remove, _) if op.service.is_none() => {
                        self.engine
                            .remove_container(op.id.as_deref().unwrap_or(&op.object), &op.object)
                            .await
                    }
                    (Kind::Network | Kind::Volume, ..) => {
                        anyhow::bail!("operation `{}` carries no definition", op.text())
                    }
                    _ => Ok(()),
                }
            };
            if matches!(op.kind, Kind::Network | Kind::Volume)
                || (op.kind == Kind::Container && op.verb == Verb::Remove && op.service.is_none())
            {
                step(printer, op, work).await?;
                done.push(op.clone());
            }
        }

        // The container each service runs once the plan is carried out.
        let current: HashMap<String, String> = stack
            .services
            .iter()
            .map(|s| {
                let name = match plan.for_service(&s.name) {
                    Some(op) if matches!(op.verb, Verb::Release | Verb::Canary) => op
                        .replacement
                        .clone()
                        .unwrap_or_else(|| s.container_name.clone()),
                    Some(op) if !matches!(op.verb, Verb::Create | Verb::Recreate) => {
                        op.object.clone()
                    }
                    _ => s.container_name.clone(),
                };
                (s.name.clone(), name)
            })
            .collect();
        let deadline = Instant::now() + timeout;
        for wave in stack.waves() {
            for s in &wave {
                for dep in &s.depends_on {
                    if let (Condition::Healthy, Some(d)) =
                        (dep.condition, stack.service(&dep.service))
                    {
                        if plan.for_service(&s.name).is_some_and(|o| o.changes()) {
                            printer.service(&s.name, format!("waiting for {}", d.name));
                        }
                        printer.enter(format!(
                            "waiting for `{}` to be healthy before starting `{}`",
                            d.name, s.name
                        ));
                        let container = current
                            .get(&d.name)
                            .map_or(d.container_name.as_str(), String::as_str);
                        let kept = !plan.for_service(&d.name).is_some_and(|o| o.changes());
                        wait_healthy(
                            &self.engine,
                            stack,
                            container,
                            &d.name,
                            deadline,
                            timeout,
                            kept,
                        )
                        .await?;
                        if plan.for_service(&d.name).is_some_and(|o| o.changes()) {
                            printer.service(&d.name, "ready");
                        }
                    }
                }
            }
            let names: Vec<&str> = wave.iter().map(|s| s.name.as_str()).collect();
            printer.enter(format!("creating and starting {}", names.join(", ")));
            // Every service of the wave ends what it started before a failure of one of them
            // (a failed build of its image, say) stops the run: what is left is whole.
            let wave_done = futures_util::future::join_all(wave.iter().map(|s| {
                let current = &current;
                async move {
                    self.apply_service(stack, plan, s, current, images, deadline, timeout, printer)
                        .await
                }
            }))
            .await;
            for service_done in wave_done {
                done.extend(service_done?);
            }
        }
        printer.enter("waiting for every service to be healthy");
        let current = &current;
        try_join_all(stack.services.iter().map(|s| async move {
            let container = current
                .get(&s.name)
                .map_or(s.container_name.as_str(), String::as_str);
            let kept = !plan.for_service(&s.name).is_some_and(|o| o.changes());
            wait_healthy(
                &self.engine,
                stack,
                container,
                &s.name,
                deadline,
                timeout,
                kept,
            )
            .await?;
            if plan.for_service(&s.name).is_some_and(|o| o.changes()) {
                printer.service(&s.name, "ready");
            }
            Ok::<_, anyhow::Error>(())
        }))
        .await?;
        Ok(done)
    }

    /// One service's operations of the plan: its extra containers and its own operation.
    #[allow(clippy::too_many_arguments)]
    async fn apply_service<'a>(
        &self,
        stack: &Stack,
        plan: &'a Plan,
        s: &crate::stack::Service,
        current: &HashMap<String, String>,
        images: &Built,
        deadline: Instant,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Vec<Op>> {
        let mut done = Vec::new();
        let released = crate::stack::edge::is_released(stack, s);
        let extras: Vec<&Op> = plan
            .ops
            .iter()
            .filter(|o| o.verb == Verb::Remove && o.service.as_deref() == Some(s.name.as_str()))
            .collect();
        let remove = |extra: &'a Op| {
            self.engine
                .remove_container(extra.id.as_deref().unwrap_or(&extra.object), &extra.object)
        };
        // An image the plan builds is waited for before anything of the service is touched: a
        // failed build leaves the service as it was.
        let op = plan.for_service(&s.name).filter(|o| o.changes());
        let images = match op.map(|o| &o.spec) {
            Some(Some(Spec::Container(record))) if record.image.is_empty() => {
                printer.service(&s.name, "waiting for its image");
                BTreeMap::from([(s.name.clone(), images.id(&s.name).await?)])
            }
            _ => BTreeMap::new(),
        };
        let images = &images;
        // A released service's extra containers may be serving (an interrupted release): they
        // go after the one kept is healthy. Others go first.
        if !released {
            for extra in &extras {
                step(printer, extra, remove(extra)).await?;
                done.push((*extra).clone());
            }
        }
        if let Some(op) = op {
            let id = op.id.as_deref().unwrap_or_default();
            step(printer, op, async {
                match op.verb {
                    Verb::Create => {
                        let (body, _) = Self::body_of(stack, s, op, images)?;
                        self.create_named(stack, s, &s.container_name, body).await
                    }
                    Verb::Recreate => {
                        let (body, _) = Self::body_of(stack, s, op, images)?;
                        printer.service(&s.name, "stopping the old container");
                        self.engine.remove_container(id, &op.object).await?;
                        self.create_named(stack, s, &s.container_name, body).await
                    }
                    Verb::Release => {
                        let (body, image) = Self::body_of(stack, s, op, images)?;
                        self.release(stack, s, op, body, &image, deadline, timeout, printer)
                            .await
                    }
                    Verb::Canary => {
                        let (body, image) = Self::body_of(stack, s, op, images)?;
                        self.canary(stack, s, op, body, &image, deadline, timeout, printer)
                            .await
                    }
                    Verb::Start => self.engine.start_container(id, &op.object).await,
                    Verb::Unpause => self.engine.unpause_container(id, &op.object).await,
                    _ => Ok(()),
                }
            })
            .await?;
            printer.service(
                &s.name,
                if matches!(op.verb, Verb::Release | Verb::Canary) {
                    "released"
                } else {
                    "started"
                },
            );
            done.push(op.clone());
        }
        if released && !extras.is_empty() {
            let kept = current.get(&s.name).cloned().unwrap_or_default();
            printer.enter(format!(
                "releasing {}: waiting for {kept} to be healthy before removing {}",
                s.name,
                extras
                    .iter()
                    .map(|e| e.object.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            wait_healthy(
                &self.engine,
                stack,
                &kept,
                &s.name,
                deadline,
                timeout,
                false,
            )
            .await?;
            self.ensure_aliases(stack, s, &kept).await?;
            // As a release does: the proxies resolve the name afresh before an extra drains
            // (a DNS answer cached while the kept one had no alias would name the extra only).
            self.move_traffic(stack, s, &kept).await;
            let kept_image = self
                .engine
                .inspect_container(&kept)
                .await?
                .image
                .unwrap_or_default();
            for extra in &extras {
                let image = self
                    .engine
                    .inspect_container(extra.id.as_deref().unwrap_or(&extra.object))
                    .await
                    .ok()
                    .and_then(|c| c.image)
                    .unwrap_or_default();
                self.keep_previous(stack, s, &image, &kept_image).await?;
                step(printer, extra, remove(extra)).await?;
                done.push((*extra).clone());
                // An interrupted release, finished: a release like any other (summary, Grafana
                // annotation), though the operation was the removal.
                if !image.is_empty() && image != kept_image {
                    done.push(
                        Op::new(Verb::Release, Kind::Container, &kept)
                            .service(&s.name)
                            .because(format!(
                                "finished an interrupted release, image changed ({} → {})",
                                short_id(&image),
                                short_id(&kept_image)
                            )),
                    );
                }
            }
        }
        Ok(done)
    }
}
