//! Releases and rollbacks: the new container beside the old one, the swap, the drain.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::super::plan::{step, Kind, Op, Plan, Spec, Verb};
use super::*;
use crate::engine::labels;
use crate::error::hinted;
use crate::output::Printer;
use crate::poll::{poll_until, Backoff, Poll};
use crate::stack::files::{hash_inputs, mounted_files};
use crate::stack::record::{self, Record};
use crate::stack::Stack;

impl Docker {
    /// A release: the new container (`body`, running image `new_image`) starts beside the old
    /// one without the service's alias, must become healthy by the deadline, then takes the
    /// alias (both serve for a moment), and the old one drains (its stop signal: uvicorn and
    /// nginx finish what they hold and refuse new connections, which the proxies retry on the
    /// new one) and goes. The new container carries the old one's definition (label
    /// [`labels::PREVIOUS_RELEASE`]) and the old image is tagged `:previous`: `irisctl rollback`
    /// needs both. A new container that does not become healthy is removed after its last log
    /// lines are shown; the old one serves on, untouched.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn release(
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
        let started = self
            .start_beside(stack, service, op, body, deadline, timeout, printer)
            .await?;
        self.swap(stack, service, op, &started, new_image, printer)
            .await
    }

    /// The first half of a release (and of a canary): the new container starts beside the
    /// serving one, on the stack's network without the service's alias (no request reaches it
    /// before it is healthy), and must become healthy by the deadline; if it does not, it is
    /// removed after its last log lines are shown and the old one serves on, untouched.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn start_beside(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        op: &Op,
        mut body: bollard::models::ContainerCreateBody,
        deadline: Instant,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Beside> {
        let old = &op.object;
        let old_container = self
            .engine
            .inspect_container(op.id.as_deref().unwrap_or(old))
            .await?;
        let old_image = old_container.image.clone().unwrap_or_default();
        let new = op
            .replacement
            .clone()
            .unwrap_or_else(|| format!("{}-{}-2", stack.project, service.name));
        let name = &service.name;
        printer.enter(format!("releasing {name}: starting {new} beside {old}"));
        let number = new.rsplit('-').next().unwrap_or("1").to_string();
        let labels = body.labels.get_or_insert_with(HashMap::new);
        labels.insert(labels::NUMBER.to_string(), number);
        labels.remove(labels::PREVIOUS_RELEASE);
        if let Some(previous) =
            body::definition_of(&old_container).and_then(|d| serde_json::to_string(&d).ok())
        {
            labels.insert(labels::PREVIOUS_RELEASE.to_string(), previous);
        }
        // On the stack's network without the alias: no request reaches it before it is healthy.
        body.networking_config = Some(bollard::models::NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                stack.network.name.clone(),
                bollard::models::EndpointSettings {
                    aliases: Some(vec![]),
                    ..Default::default()
                },
            )])),
        });
        self.create_named(stack, service, &new, body).await?;
        printer.enter(format!("releasing {name}: waiting for {new} to be healthy"));
        if let Err(e) =
            wait_healthy(&self.engine, stack, &new, name, deadline, timeout, false).await
        {
            // Never reached by a request (no alias yet): removed at once.
            let _ = self.engine.kill_and_remove(&new).await;
            return Err(hinted(
                format!(
                    "release of `{name}` failed; `{old}` (the release that was serving) keeps serving and the new container `{new}` was removed: {e:#}"
                ),
                format!("fix the cause and run the command again; `irisctl logs {name}` shows the serving container"),
            ));
        }
        Ok(Beside { new, old_image })
    }

    /// The second half: the new container takes the alias (both serve for a moment), and the
    /// old one drains (its stop signal: uvicorn and nginx finish what they hold and refuse new
    /// connections, which the proxies retry on the new one) and goes. The new container carries
    /// the old one's definition (label [`labels::PREVIOUS_RELEASE`]) and the old image is
    /// tagged `:previous`: `irisctl rollback` needs both.
    pub(super) async fn swap(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        op: &Op,
        started: &Beside,
        new_image: &str,
        printer: &Printer,
    ) -> Result<()> {
        let (name, old, new) = (&service.name, &op.object, &started.new);
        printer.enter(format!("releasing {name}: moving traffic to {new}"));
        self.ensure_aliases(stack, service, new).await?;
        self.move_traffic(stack, service, new).await;
        self.keep_previous(stack, service, &started.old_image, new_image)
            .await?;
        printer.enter(format!("releasing {name}: draining {old}"));
        self.engine
            .remove_container(op.id.as_deref().unwrap_or(old), old)
            .await
    }

    /// Tag the image a release replaces as `<project>-<service>:previous`, so that `irisctl
    /// rollback` finds it offline (and `down --rmi` removes it).
    pub(super) async fn keep_previous(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        old_image: &str,
        new_image: &str,
    ) -> Result<()> {
        if old_image.is_empty() || old_image == new_image {
            return Ok(());
        }
        self.engine
            .tag_image(
                old_image,
                &previous_repo(stack, &service.name),
                PREVIOUS_TAG,
            )
            .await
    }

    /// `irisctl rollback`, as a plan: for each service, a release of its previous release —
    /// the definition of the container its last release replaced (label
    /// [`labels::PREVIOUS_RELEASE`]: configuration and image by ID, kept as
    /// `<project>-<service>:previous`) — through the same swap; the release it replaces becomes
    /// the previous one. A container not started by a release (after `down`, say) has no
    /// recorded definition: the previous image then runs with the current settings (the cause
    /// says so). A service without a previous release is kept (`explicit`: an error).
    pub async fn plan_rollback(
        &self,
        stack: &Stack,
        services: &[String],
        explicit: bool,
    ) -> Result<Plan> {
        let mut plan = Plan::default();
        let observed = self.observe(stack).await?;
        for name in services {
            let Some(service) = stack.service(name) else {
                continue;
            };
            if !crate::stack::edge::is_released(stack, service) {
                return Err(hinted(
                    format!("`{name}` has no releases to roll back: only the services irisctl builds behind the edge do ({})", crate::stack::edge::FRONTED.join(", ")),
                    "name one of them, or none for all",
                ));
            }
            let mine: Vec<_> = observed
                .containers
                .iter()
                .filter(|c| c.service == *name)
                .collect();
            if mine.len() > 1 {
                // A canary in progress: rolling back is aborting it.
                if let Some(canary) = self.canary_among(stack, &mine).await {
                    let stable = mine
                        .iter()
                        .find(|c| c.id != canary.id)
                        .map(|c| c.name.clone())
                        .unwrap_or_default();
                    plan.push(
                        Op::new(Verb::Remove, Kind::Container, &canary.name)
                            .service(name)
                            .id(&canary.id)
                            .because(format!(
                                "aborts the canary in progress: every request goes back to `{stable}`"
                            )),
                    );
                    continue;
                }
                return Err(hinted(
                    format!(
                        "`{name}` has {} containers ({}): a release was interrupted before it finished",
                        mine.len(),
                        mine.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    "run `irisctl up` to finish it, then `irisctl rollback` if you still want the previous release",
                ));
            }
            let Some(current) = mine.first().copied() else {
                return Err(hinted(
                    format!("`{name}` has no container to roll back"),
                    "run `irisctl up` first",
                ));
            };
            let serving_container = self.engine.inspect_container(&current.id).await?;
            let serving = serving_container.image.clone().unwrap_or_default();
            let kept_tag = format!("{}:{PREVIOUS_TAG}", previous_repo(stack, name));
            let recorded = serving_container
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(body::previous_release)
                .filter(|d| d.image.as_deref().is_some_and(|i| !i.is_empty()));
            let mut notes = Vec::new();
            let (body, previous) = match recorded {
                Some(def) => {
                    let image = def.image.clone().unwrap_or_default();
                    if self.engine.image_id(&image).await?.is_none() {
                        return Err(hinted(
                            format!("`{name}`'s previous release runs image {}, which is no longer on the engine", short_id(&image)),
                            format!("it was kept as `{kept_tag}`; something removed it (`docker image prune -a`, `docker rmi`). Release a change with `irisctl up` instead"),
                        ));
                    }
                    (def, image)
                }
                None => {
                    let Some(previous) = self.engine.image_id(&kept_tag).await? else {
                        if explicit {
                            return Err(hinted(
                                format!("`{name}` has no previous release to roll back to (one is kept from its second release on, as image `{kept_tag}`)"),
                                "release a change with `irisctl up` first",
                            ));
                        }
                        plan.push(
                            Op::new(Verb::Keep, Kind::Container, &current.name)
                                .service(name)
                                .id(&current.id)
                                .because("no previous release"),
                        );
                        continue;
                    };
                    notes.push(format!(
                        "`{}` was not started by a release, so the previous release's configuration is not known: its image runs with the current settings",
                        current.name
                    ));
                    let files = hash_inputs(&mounted_files(service)?);
                    let record = Record::of(service, &previous, &files);
                    let mut body = body::container_body(stack, service, &record);
                    body.image = Some(previous.clone());
                    (body, previous)
                }
            };
            // What else changes besides the image, from the records both definitions carry.
            let record_in = |l: Option<&HashMap<String, String>>| {
                l.and_then(|l| l.get(record::LABEL))
                    .and_then(|l| Record::from_label(l))
            };
            let definition = match (
                record_in(
                    serving_container
                        .config
                        .as_ref()
                        .and_then(|c| c.labels.as_ref()),
                ),
                record_in(body.labels.as_ref()),
            ) {
                (Some(from), Some(to)) => record::causes(&from, &to, &stack.project_dir)
                    .into_iter()
                    .filter(|c| !c.starts_with("image changed"))
                    .collect::<Vec<_>>(),
                _ => vec![],
            };
            let mut what = format!(
                "rollback to the previous release (image {} → {}",
                short_id(&serving),
                short_id(&previous)
            );
            for cause in definition.iter().chain(&notes) {
                what.push_str("; ");
                what.push_str(cause);
            }
            what.push(')');
            plan.push(
                Op::new(Verb::Release, Kind::Container, &current.name)
                    .service(name)
                    .id(&current.id)
                    .because(what)
                    .replaced_by(plan::free_name(stack, name, &observed.containers))
                    .spec(Spec::Definition(Box::new(body))),
            );
        }
        Ok(plan)
    }

    /// Carry out a rollback plan: each release through the health-gated swap, in turn.
    pub async fn apply_rollback(
        &self,
        stack: &Stack,
        plan: &Plan,
        timeout: Duration,
        printer: &Printer,
    ) -> Result<Vec<Op>> {
        let deadline = Instant::now() + timeout;
        let mut done = Vec::new();
        for op in plan.changes() {
            let Some(service) = op.service.as_deref().and_then(|s| stack.service(s)) else {
                continue;
            };
            if op.verb == Verb::Remove {
                step(printer, op, self.abort_canary(stack, op)).await?;
                done.push(op.clone());
                continue;
            }
            let (body, image) = Self::body_of(stack, service, op, &BTreeMap::new())?;
            step(
                printer,
                op,
                self.release(stack, service, op, body, &image, deadline, timeout, printer),
            )
            .await?;
            done.push(op.clone());
        }
        Ok(done)
    }

    /// Move the proxies in front of `service` to `new` (which has the alias now), before the
    /// other container drains. They resolve the alias again every second (nginx `valid=1s`,
    /// which its one-second clock makes up to two); told to reload, new workers resolve afresh
    /// at once and old ones finish what they hold, so `new` answers within milliseconds (seen
    /// as it happens where the API names its replica). Yet a worker may resolve a moment before
    /// the engine's DNS has the new alias (it lags the connect a little: one 502 in ~6,000
    /// requests under load, to a draining address cached alone): the old container keeps
    /// answering until every answer cached since the reload has expired.
    pub(super) async fn move_traffic(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        new: &str,
    ) {
        let reloaded = Instant::now();
        self.reload_proxies(stack, service).await;
        self.proxies_reach(stack, service, new).await;
        tokio::time::sleep_until((reloaded + RELEASE_SETTLE).into()).await;
    }

    /// Ask every proxy in front of `service` (the edge; for the API also the web UI, whose nginx
    /// proxies `/api/`) to reload: nginx's master (the container's PID 1) starts workers that
    /// resolve the service's name afresh, and the old workers finish their requests and go. Best
    /// effort: a proxy that cannot be asked picks up the new address within its DNS period.
    pub(super) async fn reload_proxies(&self, stack: &Stack, service: &crate::stack::Service) {
        let mut proxies: Vec<&str> = Vec::new();
        if let Some(edge) = stack.service(crate::stack::edge::EDGE) {
            proxies.push(&edge.container_name);
        }
        let current = self.containers(stack).await.unwrap_or_default();
        if service.name == "api" {
            proxies.extend(
                current
                    .iter()
                    .filter(|c| c.service == "frontend")
                    .map(|c| c.name.as_str()),
            );
        }
        futures_util::future::join_all(proxies.iter().map(|p| {
            self.engine
                .exec_detached(p, &["/bin/sh", "-c", "kill -HUP 1"])
        }))
        .await;
    }

    /// Wait until every proxy in front of `service` has answered from container `new` (its
    /// `X-Iris-Replica`, the container's host name), asked through the published ports — the
    /// edge's, and the web UI's `/api/` — every 25 ms for up to [`RELEASE_SETTLE`]. Returns at
    /// once where it cannot be seen from here (a remote engine, a service that names no
    /// replica, no published port): [`Docker::move_traffic`] waits the settle time anyway.
    pub(super) async fn proxies_reach(
        &self,
        stack: &Stack,
        service: &crate::stack::Service,
        new: &str,
    ) {
        if !(self.engine.is_local() || self.engine.is_remote()) || service.name != "api" {
            return;
        }
        let Ok(hostname) = self
            .engine
            .inspect_container(new)
            .await
            .map(|c| c.config.and_then(|c| c.hostname).unwrap_or_default())
        else {
            return;
        };
        let mut urls: Vec<String> = Vec::new();
        if let Some(p) = crate::stack::edge::edge_port(stack, service) {
            let Ok(base) = published_base(p).await else {
                return;
            };
            urls.push(format!("{base}/health"));
        }
        if let Some(ui) = stack
            .service("frontend")
            .and_then(|f| crate::stack::edge::edge_port(stack, f))
        {
            let Ok(base) = published_base(ui).await else {
                return;
            };
            urls.push(format!("{base}/api/health"));
        }
        if hostname.is_empty() || urls.is_empty() {
            return;
        }
        let client = crate::probe::client(Duration::from_millis(500));
        let seen = std::sync::Mutex::new(vec![false; urls.len()]);
        let (client, seen, urls, hostname) = (&client, &seen, &urls, &hostname);
        let _ = poll_until(
            (Instant::now() + RELEASE_SETTLE).into(),
            Backoff::fixed(Duration::from_millis(25)),
            || async move {
                for (i, url) in urls.iter().enumerate() {
                    if seen.lock().map(|s| s[i]).unwrap_or(false) {
                        continue;
                    }
                    let replica = client.get(url).send().await.ok().and_then(|r| {
                        r.headers()
                            .get("x-iris-replica")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    });
                    if replica.as_deref() == Some(hostname.as_str()) {
                        if let Ok(mut s) = seen.lock() {
                            s[i] = true;
                        }
                    }
                }
                if seen.lock().is_ok_and(|s| s.iter().all(|x| *x)) {
                    Poll::Ready(())
                } else {
                    Poll::Pending(())
                }
            },
        )
        .await;
        // Seen, or the settle time is over either way.
    }
}

/// Where a published port is reached from this host: `ip:port` (IPv6 in brackets); an
/// unspecified address is reached on loopback.
/// `http://…` for a published port as this machine reaches it (over the SSH connection when
/// the engine is remote).
pub(super) async fn published_base(p: &crate::stack::Port) -> Result<String> {
    let addr = local_address(p);
    let host = match addr.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    crate::engine::ssh::http_base(&host, addr.port()).await
}

pub(super) fn local_address(p: &crate::stack::Port) -> std::net::SocketAddr {
    let ip = match p.host_ip {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    std::net::SocketAddr::new(ip, p.host)
}

/// A new container started beside the serving one, healthy, not yet serving.
pub(super) struct Beside {
    /// Its name.
    pub new: String,
    /// The image of the container it replaces.
    pub old_image: String,
}
