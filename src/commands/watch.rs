//! `irisctl watch`: bring the stack up, then rebuild and redeploy a built service (the API, the
//! web UI) whenever a file of its build context changes. Changes the context's `.dockerignore`
//! leaves out, and metadata-only events (access times, permissions), are ignored; a burst of
//! saves is one deployment (debounced). A change that fails to build or to become ready is
//! reported and watching goes on. Ctrl-C stops watching and leaves the stack running.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify::event::{EventKind, ModifyKind};
use notify::Watcher;

use super::up::{self, UpOptions};
use super::Ctx;
use crate::backend::Target;
use crate::engine::context::Ignore;
use crate::error::hinted;
use crate::stack::Stack;

pub struct WatchOptions {
    pub target: Target,
    /// Quiet time after the last change before it is deployed.
    pub debounce: Duration,
}

/// A built service's context: where its files are and which of them reach the image.
pub struct WatchedContext {
    pub service: String,
    pub dir: PathBuf,
    pub ignore: Ignore,
    pub dockerfile: String,
}

/// The service whose image a filesystem event changes, if any (pure).
pub fn affected<'a>(
    kind: &EventKind,
    path: &Path,
    contexts: &'a [WatchedContext],
) -> Option<&'a str> {
    // Reading a file, or changing only its metadata (atime, mode), changes no image content.
    if matches!(
        kind,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_))
    ) {
        return None;
    }
    contexts.iter().find_map(|c| {
        let rel = path.strip_prefix(&c.dir).ok()?;
        let rel = rel.to_string_lossy().replace('\\', "/");
        if rel.is_empty() {
            return None;
        }
        // The Dockerfile and .dockerignore are always sent, even when they ignore themselves.
        let always = rel == c.dockerfile || rel == ".dockerignore";
        (always || !c.ignore.excludes(&rel)).then_some(c.service.as_str())
    })
}

pub async fn run(ctx: &Ctx, opts: WatchOptions) -> Result<()> {
    if opts.target != Target::Docker {
        return Err(hinted(
            "`irisctl watch` works on the single engine, not on Swarm",
            "run `irisctl up --target swarm` after a change instead",
        ));
    }
    let up_opts = UpOptions {
        remove_orphans: false,
        provision: true,
        target: Target::Docker,
        dry_run: None,
        rehash: false,
    };
    let first = up::converge(ctx, &up_opts).await;
    ctx.printer.finish_board();
    let (summary, urls) = first?;
    ctx.printer.success(summary);
    ctx.printer.data(&urls);

    let stack = Stack::from_settings(&ctx.settings);
    let mut contexts = Vec::new();
    for s in &stack.services {
        if let Some(b) = &s.build {
            contexts.push(WatchedContext {
                service: s.name.clone(),
                dir: std::fs::canonicalize(&b.context).unwrap_or_else(|_| b.context.clone()),
                ignore: Ignore::of_context(&b.context)?,
                dockerfile: b.dockerfile.clone(),
            });
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = tx.send(event);
    })
    .context("cannot watch the build contexts for changes")?;
    for c in &contexts {
        watcher
            .watch(&c.dir, notify::RecursiveMode::Recursive)
            .with_context(|| format!("cannot watch `{}` for changes", c.dir.display()))?;
    }
    let shown: Vec<String> = contexts
        .iter()
        .map(|c| {
            c.dir
                .strip_prefix(&ctx.settings.project_dir)
                .unwrap_or(&c.dir)
                .display()
                .to_string()
        })
        .collect();
    ctx.printer.info(format!(
        "watching {} for changes (Ctrl-C stops watching; the stack keeps running)",
        shown.join(" and ")
    ));

    loop {
        // Wait for a change that reaches an image, then for a quiet moment.
        let mut changed: Vec<(String, String)> = Vec::new();
        let mut last = Instant::now();
        loop {
            let wait = if changed.is_empty() {
                Duration::from_secs(3600)
            } else {
                opts.debounce.saturating_sub(last.elapsed())
            };
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(Ok(event))) => {
                    for path in &event.paths {
                        if let Some(service) = affected(&event.kind, path, &contexts) {
                            let file = contexts
                                .iter()
                                .find(|c| c.service == service)
                                .and_then(|c| path.strip_prefix(&c.dir).ok())
                                .map(|p| p.display().to_string())
                                .unwrap_or_default();
                            if !changed.iter().any(|(s, f)| s == service && *f == file) {
                                changed.push((service.to_string(), file));
                            }
                            last = Instant::now();
                        }
                    }
                }
                Ok(Some(Err(e))) => ctx.printer.warn(format!("watching: {e}")),
                Ok(None) => return Ok(()),
                Err(_) if changed.is_empty() => {}
                Err(_) => break,
            }
        }
        let files: Vec<String> = changed.iter().map(|(s, f)| format!("{s}: {f}")).collect();
        ctx.printer.info(format!("changed: {}", files.join(", ")));
        let result = up::converge(
            ctx,
            &UpOptions {
                provision: false,
                ..up_opts.clone()
            },
        )
        .await;
        ctx.printer.finish_board();
        match result {
            Ok(_) => {
                let mut services: Vec<&str> = changed.iter().map(|(s, _)| s.as_str()).collect();
                services.dedup();
                ctx.printer.success(format!(
                    "{} live {:.1}s after the save",
                    services.join(", "),
                    last.elapsed().as_secs_f64()
                ));
            }
            Err(e) => {
                ctx.printer.error(format!("{e:#}"));
                ctx.printer.hint(
                    "fix it and save again: the version that was running keeps serving, and watching goes on",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, DataChange, MetadataKind};

    fn contexts() -> Vec<WatchedContext> {
        vec![
            WatchedContext {
                service: "api".into(),
                dir: "/p/stack/api".into(),
                ignore: Ignore::parse("tests\n**/__pycache__\nDockerfile\n.dockerignore\n")
                    .unwrap(),
                dockerfile: "Dockerfile".into(),
            },
            WatchedContext {
                service: "frontend".into(),
                dir: "/p/stack/frontend".into(),
                ignore: Ignore::parse("node_modules\n").unwrap(),
                dockerfile: "Dockerfile".into(),
            },
        ]
    }

    #[test]
    fn a_source_change_affects_its_service_only() {
        let c = contexts();
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        assert_eq!(
            affected(&write, Path::new("/p/stack/api/app/main.py"), &c),
            Some("api")
        );
        assert_eq!(
            affected(&write, Path::new("/p/stack/frontend/src/App.tsx"), &c),
            Some("frontend")
        );
        assert_eq!(
            affected(
                &EventKind::Create(CreateKind::File),
                Path::new("/p/stack/api/app/new.py"),
                &c
            ),
            Some("api")
        );
        assert_eq!(
            affected(&write, Path::new("/p/monitoring/prometheus.yml"), &c),
            None
        );
    }

    #[test]
    fn ignored_files_and_metadata_changes_are_not_changes() {
        let c = contexts();
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        assert_eq!(
            affected(&write, Path::new("/p/stack/api/tests/test_x.py"), &c),
            None
        );
        assert_eq!(
            affected(&write, Path::new("/p/stack/api/app/__pycache__/m.pyc"), &c),
            None
        );
        assert_eq!(
            affected(
                &write,
                Path::new("/p/stack/frontend/node_modules/x/i.js"),
                &c
            ),
            None
        );
        let touch = EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime));
        assert_eq!(
            affected(&touch, Path::new("/p/stack/api/app/main.py"), &c),
            None
        );
        let read = EventKind::Access(AccessKind::Any);
        assert_eq!(
            affected(&read, Path::new("/p/stack/api/app/main.py"), &c),
            None
        );
        // The Dockerfile is always part of the context, even when .dockerignore lists it.
        assert_eq!(
            affected(&write, Path::new("/p/stack/api/Dockerfile"), &c),
            Some("api")
        );
    }
}
