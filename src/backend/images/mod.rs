//! The images a stack runs, for every backend: built from a context (when its build inputs
//! changed) or pulled when absent.
//!
//! One function decides: [`plan`] lists every image operation (a pull of a missing base or
//! service image; a build or rebuild with its cause and its inputs). `up --dry-run` prints
//! those operations; `up` carries out exactly those, pulls first ([`ImagePlan::pull`], before
//! anything is written) then builds ([`ImagePlan::build`]). Nothing is decided anew on the way.

pub mod cache;
pub mod record;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use futures_util::future::try_join_all;

use super::plan::{step, Kind, Op, Plan, Verb};
use crate::engine::{build::build_image, labels, Engine};
use crate::output::Printer;
use crate::stack::{Build, Stack};
use cache::StatCache;
use record::{base_images, check, inputs, BuildRecord, Check};

/// What each service's image will be: its ID, or `None` while a build or pull is pending.
pub type ImageIds = BTreeMap<String, Option<String>>;

/// The image of each service as it becomes known during a run: at once for an image that is
/// there, when its build ends for one being built. `up` starts each service the moment its image
/// is known, so what needs no build (Prometheus, Grafana) starts while the builds run.
#[derive(Clone)]
pub struct Built(tokio::sync::watch::Receiver<BTreeMap<String, Option<String>>>);

/// Where the builds publish each service's image (`None`: its build failed).
pub struct BuiltSender(tokio::sync::watch::Sender<BTreeMap<String, Option<String>>>);

impl BuiltSender {
    pub fn publish(&self, service: &str, id: Option<String>) {
        self.0.send_modify(|m| {
            m.insert(service.to_string(), id);
        });
    }
}

impl Built {
    pub fn channel() -> (BuiltSender, Built) {
        let (tx, rx) = tokio::sync::watch::channel(BTreeMap::new());
        (BuiltSender(tx), Built(rx))
    }

    /// Every image known already.
    pub fn known(ids: &BTreeMap<String, String>) -> Built {
        let (tx, rx) = Self::channel();
        for (service, id) in ids {
            tx.publish(service, Some(id.clone()));
        }
        rx
    }

    /// The image of `service`, once it is known. An error when its build failed or the builds
    /// stopped first (the build's own error is the one `up` reports).
    pub async fn id(&self, service: &str) -> Result<String> {
        let mut rx = self.0.clone();
        let known = rx
            .wait_for(|m| m.contains_key(service))
            .await
            .ok()
            .and_then(|m| m.get(service).cloned().flatten());
        known.ok_or_else(|| anyhow::anyhow!("`{service}` was not started: its image was not built"))
    }

    /// The images of all `services`, once all are known.
    pub async fn all(&self, services: &[String]) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for s in services {
            out.insert(s.clone(), self.id(s).await?);
        }
        Ok(out)
    }
}

/// Images known to be on the host: reference → ID.
pub type Known = BTreeMap<String, String>;

/// One image operation.
#[derive(Debug, Clone)]
pub enum ImageOp {
    /// An image not on the host, pulled: a base image of builds, or a service's own image.
    Pull {
        image: String,
        /// Who needs it (`the \`api\` build`, `service \`grafana\``), for errors.
        needed_by: String,
        /// The (first) service that needs it.
        service: String,
        /// It is the service's own image, not a base image of its build.
        own: bool,
    },
    /// A service's image built from its context.
    Build {
        service: String,
        tag: String,
        build: Build,
        /// The inputs: context manifest and digest, Dockerfile, args, base image IDs (a base
        /// pulled by this plan gets its ID when it is pulled).
        record: Box<BuildRecord>,
        /// An older image of the tag is there: a rebuild.
        exists: bool,
        cause: String,
    },
}

impl ImageOp {
    /// The operation as a plan prints it.
    pub fn op(&self) -> Op {
        match self {
            ImageOp::Pull {
                image,
                service,
                own: true,
                ..
            } => Op::new(Verb::Pull, Kind::Image, image)
                .service(service)
                .because("not on this host"),
            ImageOp::Pull { image, service, .. } => Op::new(Verb::Pull, Kind::Image, image)
                .because(format!("base image of `{service}` not on this host")),
            ImageOp::Build {
                service,
                tag,
                exists,
                cause,
                ..
            } => Op::new(
                if *exists { Verb::Rebuild } else { Verb::Build },
                Kind::Image,
                tag,
            )
            .service(service)
            .because(cause.clone()),
        }
    }
}

/// Everything `up` does to images, decided once.
#[derive(Debug)]
pub struct ImagePlan {
    pub ops: Vec<ImageOp>,
    /// Each service's image ID when no operation changes it.
    pub ids: ImageIds,
    /// The context digests taken while planning, where they differ from the caches read:
    /// [`ImagePlan::build`] keeps them (a dry run writes nothing).
    caches: Vec<StatCache>,
    cache_dir: PathBuf,
}

impl ImagePlan {
    /// The build hash of the inputs the plan builds `service` from, when it builds it.
    pub fn build_hash(&self, service: &str) -> Option<String> {
        self.ops.iter().find_map(|op| match op {
            ImageOp::Build {
                service: s,
                build,
                record,
                ..
            } if s == service => Some(record.hash(build)),
            _ => None,
        })
    }

    /// Run `service` on the image `id` as it is: no build of it (`shadow promote`: the
    /// challenger's image; `up` while a shadow runs: the champion's).
    pub fn pin(&mut self, service: &str, id: &str) {
        self.ops
            .retain(|op| !matches!(op, ImageOp::Build { service: s, .. } if s == service));
        self.ids.insert(service.to_string(), Some(id.to_string()));
    }

    /// The operations as a plan prints them.
    pub fn plan(&self) -> Plan {
        let mut plan = Plan::default();
        for op in &self.ops {
            plan.push(op.op());
        }
        plan
    }

    /// Carry out the plan's pulls (all of them, at once); when some image cannot be had, one
    /// error names them all. `up` does it before it writes anything. The pulls done.
    pub async fn pull(&mut self, engine: &Engine, stack: &Stack) -> Result<Vec<Op>> {
        let pulls: Vec<(&String, &String)> = self
            .ops
            .iter()
            .filter_map(|op| match op {
                ImageOp::Pull {
                    image, needed_by, ..
                } => Some((image, needed_by)),
                ImageOp::Build { .. } => None,
            })
            .collect();
        let seen = try_join_all(pulls.iter().map(|(image, by)| async move {
            Ok::<_, anyhow::Error>(match engine.pull_image(image).await {
                Ok(()) => (engine.image_id(image).await?, None),
                Err(why) => (
                    None,
                    Some(format!(
                        "image `{image}` (needed by {by}) is not on this host and cannot be pulled: {why}"
                    )),
                ),
            })
        }))
        .await?;
        let missing: Vec<String> = seen.iter().filter_map(|(_, m)| m.clone()).collect();
        if !missing.is_empty() {
            let images: Vec<&str> = pulls.iter().map(|(i, _)| i.as_str()).collect();
            return Err(missing_images(stack, &images, &missing));
        }
        let pulled: Known = pulls
            .iter()
            .zip(&seen)
            .filter_map(|((image, _), (id, _))| Some(((*image).clone(), id.clone()?)))
            .collect();
        let mut done = Vec::new();
        for op in &mut self.ops {
            match op {
                ImageOp::Pull {
                    image,
                    service,
                    own,
                    ..
                } => {
                    if let Some(id) = pulled.get(image.as_str()).filter(|_| *own) {
                        self.ids.insert(service.clone(), Some(id.clone()));
                    }
                    done.push(op.op());
                }
                // The build's inputs now hold the IDs of the bases just pulled.
                ImageOp::Build { record, .. } => {
                    for (base, id) in record.bases.iter_mut() {
                        if let Some(pulled) = pulled.get(base).filter(|_| id.is_empty()) {
                            *id = pulled.clone();
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    /// Carry out the plan's builds (in parallel, one progress line each); the builds done and
    /// every service's image ID. The context digests taken while planning are kept first
    /// (best effort: a cache that cannot be written only costs the next run a full read).
    pub async fn build(
        &self,
        engine: &Engine,
        stack: &Stack,
        printer: &Printer,
        built: &BuiltSender,
    ) -> Result<(Vec<Op>, BTreeMap<String, String>)> {
        for c in &self.caches {
            let _ = c.save(&self.cache_dir);
        }
        let results = try_join_all(stack.services.iter().map(|s| {
            let bar = printer.service_bar(&s.name);
            async move {
                let op = self.ops.iter().find_map(|op| match op {
                    ImageOp::Build {
                        service,
                        tag,
                        build,
                        record,
                        ..
                    } if *service == s.name => Some((op, tag, build, record)),
                    _ => None,
                });
                let Some((op, tag, build, record)) = op else {
                    if s.build.is_some() {
                        bar.set_message(format!("{} up to date", s.image));
                    }
                    let id = self.ids.get(&s.name).cloned().flatten();
                    let id = match id {
                        Some(id) => id,
                        None => engine.image_id(&s.image).await?.unwrap_or_default(),
                    };
                    built.publish(&s.name, Some(id.clone()));
                    return Ok::<_, anyhow::Error>((s.name.clone(), id, None));
                };
                bar.set_message("building");
                let image_labels =
                    HashMap::from([(labels::BUILD_RECORD.to_string(), record.label(build))]);
                let planned = op.op();
                let done = step(
                    printer,
                    &planned,
                    build_image(engine, &s.name, tag, build, image_labels, &bar, printer),
                )
                .await;
                let id = match done {
                    Ok(id) => id,
                    Err(e) => {
                        printer.service(&s.name, "build failed");
                        built.publish(&s.name, None);
                        return Err(e);
                    }
                };
                built.publish(&s.name, Some(id.clone()));
                printer.service(&s.name, "built");
                Ok((s.name.clone(), id, Some(planned)))
            }
        }))
        .await?;
        let mut ops = Vec::new();
        let mut ids = BTreeMap::new();
        for (name, id, done) in results {
            ids.insert(name, id);
            ops.extend(done);
        }
        Ok((ops, ids))
    }
}

/// Decide every image operation of `stack`: which images to pull, which to build and why.
/// Reads the build contexts (through the stat cache of `.irisctl/cache`; `rehash` reads every
/// file) and asks the engine which images it has; changes nothing.
pub async fn plan(engine: &Engine, stack: &Stack, rehash: bool) -> Result<ImagePlan> {
    let cache_dir = stack.project_dir.join(cache::CACHE_DIR);
    // Every image the stack starts from: base images of its builds, images of the services it
    // pulls; each once, with who needs it first.
    let mut needed: Vec<(String, String, String, bool)> = Vec::new();
    for s in &stack.services {
        let images: Vec<(String, String, bool)> = match &s.build {
            Some(b) => base_images(b)
                .into_iter()
                .map(|i| (i, format!("the `{}` build", s.name), false))
                .collect(),
            None => vec![(s.image.clone(), format!("service `{}`", s.name), true)],
        };
        for (image, by, own) in images {
            if !needed.iter().any(|(i, ..)| *i == image) {
                needed.push((image, by, s.name.clone(), own));
            }
        }
    }
    let present = try_join_all(needed.iter().map(|(image, ..)| async move {
        Ok::<_, anyhow::Error>(engine.image_id(image).await?.map(|id| (image.clone(), id)))
    }))
    .await?;
    let known: Known = present.into_iter().flatten().collect();

    let decided = try_join_all(stack.services.iter().map(|s| {
        let (known, cache_dir) = (&known, &cache_dir);
        async move {
            let Some(b) = &s.build else {
                return Ok::<_, anyhow::Error>((None, known.get(&s.image).cloned(), None));
            };
            let (service, build, known_ids) = (s.name.clone(), b.clone(), known.clone());
            let cache_dir = cache_dir.clone();
            let (record, cache) = tokio::task::spawn_blocking(move || {
                let old = StatCache::load(&cache_dir, &build.context);
                let (record, new) = inputs(&service, &build, &known_ids, &old, rehash)?;
                // A cache that holds what it held already is not written again.
                Ok::<_, anyhow::Error>((record, (new != old).then_some(new)))
            })
            .await
            .context("build context task failed")??;
            let base_missing = record.bases.values().any(String::is_empty);
            let (exists, cause) = match check(engine, &s.image, b, &record).await? {
                Check::Current { image_id } if !base_missing => {
                    return Ok((None, Some(image_id), cache));
                }
                Check::Current { .. } => (true, "its base image is pulled".to_string()),
                Check::Needed { exists, cause } => (exists, cause),
            };
            let op = ImageOp::Build {
                service: s.name.clone(),
                tag: s.image.clone(),
                build: b.clone(),
                record: Box::new(record),
                exists,
                cause,
            };
            Ok((Some(op), None, cache))
        }
    }))
    .await?;

    let mut plan = ImagePlan {
        ops: Vec::new(),
        ids: ImageIds::new(),
        caches: Vec::new(),
        cache_dir,
    };
    for (s, (build, id, cache)) in stack.services.iter().zip(decided) {
        // The pulls this service needs first (a base of its build, or its own image).
        for (image, by, _, own) in needed
            .iter()
            .filter(|(image, _, first, _)| *first == s.name && !known.contains_key(image))
        {
            plan.ops.push(ImageOp::Pull {
                image: image.clone(),
                needed_by: by.clone(),
                service: s.name.clone(),
                own: *own,
            });
        }
        plan.ops.extend(build);
        plan.ids.insert(s.name.clone(), id);
        plan.caches.extend(cache);
    }
    Ok(plan)
}

/// One error for every image that cannot be had, with the way to make or choose them.
fn missing_images(stack: &Stack, images: &[&str], missing: &[String]) -> anyhow::Error {
    // The settings already name the local images: they have to be made. The hint names only
    // files that exist (an installed binary's built-in stack has no offline kit).
    let offline = |i: &str| i.starts_with(crate::stack::files::OFFLINE_PREFIX);
    let local = images.iter().any(|i| offline(i));
    // `offline-base-images` makes the builds' base images and Prometheus's and the
    // Alertmanager's; not Grafana's. When only such images are missing, `docker load` is the way.
    const KIT_MAKES: &[&str] = &["prometheus", "alertmanager"];
    let unmakeable = !images.is_empty()
        && images.iter().all(|i| {
            stack.services.iter().any(|s| {
                s.build.is_none() && s.image == *i && !KIT_MAKES.contains(&s.name.as_str())
            })
        });
    let hint = if unmakeable {
        let wanted: Vec<&str> = images.iter().copied().filter(|i| !offline(i)).collect();
        format!(
            "this host reaches no registry: on a machine that does, `docker save {} -o images.tar`; here `docker load -i images.tar`, then run the same command again; or name an image this host has in irisctl.yaml `images:`",
            wanted.join(" ")
        )
    } else {
        crate::stack::files::offline_images_hint(&stack.project_dir, local)
    };
    crate::error::hinted(
        format!(
            "{} missing: {}",
            if missing.len() == 1 {
                "an image is"
            } else {
                "images are"
            },
            missing.join("; ")
        ),
        hint,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_image_offline_base_images_cannot_make_is_to_be_loaded() {
        let mut stack = Stack::from_settings(&crate::settings::Settings::defaults("/p".into()));
        for s in &mut stack.services {
            match s.name.as_str() {
                "prometheus" => s.image = "irisctl-offline/prometheus:2.42".into(),
                "grafana" => {
                    s.build = None;
                    s.image = "grafana/grafana:11.4.0".into();
                }
                _ => {}
            }
        }
        let hint = crate::error::hint_of(&missing_images(
            &stack,
            &["grafana/grafana:11.4.0"],
            &["image `grafana/grafana:11.4.0` … cannot be pulled".into()],
        ))
        .unwrap_or_default()
        .to_string();
        assert!(
            hint.contains("docker save grafana/grafana:11.4.0 -o images.tar")
                && hint.contains("docker load -i images.tar"),
            "{hint}"
        );
        // Local images that are missing are made by the offline kit.
        let hint = crate::error::hint_of(&missing_images(
            &stack,
            &["irisctl-offline/prometheus:2.42"],
            &["…".into()],
        ))
        .unwrap_or_default()
        .to_string();
        assert!(hint.contains("offline"), "{hint}");
        assert!(!hint.contains("docker load"), "{hint}");
    }

    use super::*;

    #[test]
    fn image_ops_print_with_their_causes() {
        let pull = |own| ImageOp::Pull {
            image: "img:1".into(),
            needed_by: "x".into(),
            service: "api".into(),
            own,
        };
        assert_eq!(pull(true).op().text(), "pull image img:1: not on this host");
        assert_eq!(pull(true).op().service.as_deref(), Some("api"));
        assert_eq!(
            pull(false).op().text(),
            "pull image img:1: base image of `api` not on this host"
        );
        let build = |exists| ImageOp::Build {
            service: "api".into(),
            tag: "iris-api:dev".into(),
            build: Build {
                context: "/c".into(),
                dockerfile: "Dockerfile".into(),
                args: BTreeMap::new(),
            },
            record: Box::default(),
            exists,
            cause: "build context changed (app/main.py)".into(),
        };
        assert_eq!(
            build(true).op().text(),
            "rebuild api: build context changed (app/main.py)"
        );
        assert_eq!(build(false).op().verb, Verb::Build);
        assert_eq!(build(false).op().object, "iris-api:dev");
    }
}
