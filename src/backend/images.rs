//! The images a stack runs, for every backend: built from a context (skipped when the build
//! inputs are unchanged) or pulled when absent. Planned without building for `--dry-run`.

use std::collections::BTreeMap;

use anyhow::Result;
use futures_util::future::try_join_all;

use super::plan::{Kind, Op, Plan, Verb};
use crate::engine::build::{self, Check};
use crate::engine::Engine;
use crate::output::Printer;
use crate::stack::Stack;

/// What each service's image will be: its ID, or `None` while a build is pending.
pub type ImageIds = BTreeMap<String, Option<String>>;

/// Images known to be on the host: reference → ID.
pub type Known = BTreeMap<String, String>;

/// The image operations `up` would do, and the image IDs known without doing them.
pub async fn plan(engine: &Engine, stack: &Stack) -> Result<(Plan, ImageIds)> {
    let decided = try_join_all(stack.services.iter().map(|s| async move {
        let op = |verb| Op::new(verb, Kind::Image, &s.image).service(&s.name);
        match &s.build {
            Some(b) => {
                let record = build::inputs(engine, &s.name, b, false, &Known::new()).await?;
                let missing: Vec<&str> = record
                    .bases
                    .iter()
                    .filter(|(_, id)| id.is_empty())
                    .map(|(base, _)| base.as_str())
                    .collect();
                let mut ops = Vec::new();
                for base in &missing {
                    ops.push(
                        Op::new(Verb::Pull, Kind::Image, *base)
                            .because(format!("base image of `{}` not on this host", s.name)),
                    );
                }
                Ok::<_, anyhow::Error>(match build::check(engine, &s.image, b, &record).await? {
                    Check::Current { image_id } if missing.is_empty() => (ops, Some(image_id)),
                    Check::Current { .. } => {
                        ops.push(op(Verb::Rebuild).because("its base image is pulled"));
                        (ops, None)
                    }
                    Check::Needed { exists, cause } => {
                        ops.push(
                            op(if exists { Verb::Rebuild } else { Verb::Build }).because(cause),
                        );
                        (ops, None)
                    }
                })
            }
            None => Ok(match engine.image_id(&s.image).await? {
                Some(id) => (vec![], Some(id)),
                None => (vec![op(Verb::Pull).because("not on this host")], None),
            }),
        }
    }))
    .await?;
    let mut plan = Plan::default();
    let mut ids = ImageIds::new();
    for (s, (ops, id)) in stack.services.iter().zip(decided) {
        for op in ops {
            plan.push(op);
        }
        ids.insert(s.name.clone(), id);
    }
    Ok((plan, ids))
}

/// Every image the stack starts from (base images of its builds, images of the services it
/// pulls) is on the host, pulled if absent; when some cannot be had, one error names them all.
/// `up` calls it before it writes anything.
/// Their IDs (`image → ID`) and the pulls done are returned for the rest of `up`.
pub async fn ensure_present(engine: &Engine, stack: &Stack) -> Result<(Known, Vec<Op>)> {
    let mut needed: Vec<(String, String)> = Vec::new();
    for s in &stack.services {
        let images: Vec<(String, String)> = match &s.build {
            Some(b) => build::base_images(b)
                .into_iter()
                .map(|i| (i, format!("the `{}` build", s.name)))
                .collect(),
            None => vec![(s.image.clone(), format!("service `{}`", s.name))],
        };
        for (image, by) in images {
            if !needed.iter().any(|(i, _)| *i == image) {
                needed.push((image, by));
            }
        }
    }
    // (image, its ID if present or pulled, whether it was pulled, why it cannot be had)
    let seen = try_join_all(needed.iter().map(|(image, by)| async move {
        if let Some(id) = engine.image_id(image).await? {
            return Ok::<_, anyhow::Error>((image.clone(), Some(id), false, None));
        }
        Ok(match engine.pull_image(image).await {
            Ok(()) => (image.clone(), engine.image_id(image).await?, true, None),
            Err(why) => (
                image.clone(),
                None,
                false,
                Some(format!(
                    "image `{image}` (needed by {by}) is not on this host and cannot be pulled: {why}"
                )),
            ),
        })
    }))
    .await?;
    let missing: Vec<String> = seen.iter().filter_map(|(.., m)| m.clone()).collect();
    if missing.is_empty() {
        let pulled = seen
            .iter()
            .filter(|(_, _, pulled, _)| *pulled)
            .map(|(image, ..)| Op::new(Verb::Pull, Kind::Image, image).because("not on this host"))
            .collect();
        let known = seen
            .into_iter()
            .filter_map(|(image, id, ..)| id.map(|id| (image, id)))
            .collect();
        return Ok((known, pulled));
    }
    let dir = stack.project_dir.display();
    let local = needed
        .iter()
        .any(|(i, _)| i.starts_with("irisctl-offline/"));
    let hint = if local {
        // The settings already name the local images: they have to be made.
        format!("make the local base images with `sudo {dir}/scripts/offline-base-images` (`irisctl init DIR` writes it), then run `irisctl up` again")
    } else {
        format!("on a host without registry access, make local base images with `sudo {dir}/scripts/offline-base-images` and run `irisctl --config {dir}/examples/offline.yaml up` (both written by `irisctl init DIR`; README: offline mode); or set the images in irisctl.yaml `images:`")
    };
    Err(crate::error::hinted(
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
    ))
}

/// Build the images (in parallel, one progress line each) and pull absent third-party ones;
/// what was done and the image ID per service.
pub async fn ensure(
    engine: &Engine,
    stack: &Stack,
    printer: &Printer,
    known: &Known,
) -> Result<(Vec<Op>, BTreeMap<String, String>)> {
    let results = try_join_all(stack.services.iter().map(|s| {
        let bar = printer.service_bar(&s.name);
        async move {
            match &s.build {
                Some(b) => {
                    let built = build::build_image(engine, &s.name, &s.image, b, &bar, known).await;
                    if built.is_err() {
                        printer.service(&s.name, "build failed");
                    }
                    let built = built?;
                    if built.rebuilt {
                        printer.service(&s.name, "built");
                    }
                    let done = built
                        .rebuilt
                        .then(|| Op::new(Verb::Rebuild, Kind::Image, &s.image).service(&s.name));
                    Ok::<_, anyhow::Error>((s.name.clone(), built.image_id, done))
                }
                None if known.contains_key(&s.image) => {
                    Ok((s.name.clone(), known[&s.image].clone(), None))
                }
                None => {
                    let present = engine.image_id(&s.image).await?;
                    if present.is_none() {
                        printer.service(&s.name, format!("pulling {}", s.image));
                        engine
                            .ensure_image(&s.image, &format!("service `{}`", s.name))
                            .await?;
                    }
                    let id = engine.image_id(&s.image).await?.unwrap_or_default();
                    let done = present
                        .is_none()
                        .then(|| Op::new(Verb::Pull, Kind::Image, &s.image).service(&s.name));
                    Ok((s.name.clone(), id, done))
                }
            }
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
