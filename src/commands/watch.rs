//! `irisctl watch`: bring the stack up, then rebuild and redeploy a built service (the API, the
//! web UI) whenever a file of its build context changes. Changes the context's `.dockerignore`
//! leaves out, editors' temporary files, and metadata-only events (access times, permissions)
//! are ignored; a burst of saves is one deployment (debounced). A change that fails to build or
//! to become ready is reported and watching goes on. Ctrl-C stops watching and leaves the stack
//! running.
//!
//! "live N s after the save" is measured from the first change event of the burst until a new
//! API process (another `X-Iris-Replica`) answers `/predict`; for a change of the web UI only,
//! until the deployment is done.

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
use crate::poll::{poll_until, Backoff, Poll};
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

/// Is this context-relative path (`/` separators) an editor's or a tool's temporary file, or
/// below `.git/`? Saving with sed -i, vim, emacs or a JetBrains IDE writes such files beside
/// the one saved; the save itself shows as an event on the file saved (pure).
pub fn editor_temp(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or_default();
    if rel.split('/').any(|p| p == ".git") {
        return true;
    }
    // mkstemp's `sedXXXXXX`; a word such as `sediments` is not one.
    let sed = name.len() == 9
        && name.starts_with("sed")
        && name[3..].bytes().all(|b| b.is_ascii_alphanumeric())
        && !name[3..].bytes().all(|b| b.is_ascii_lowercase());
    let vim = name == "4913"
        || name.ends_with('~')
        || [".swp", ".swx", ".swo"].iter().any(|s| name.ends_with(s));
    let emacs =
        (name.len() > 2 && name.starts_with('#') && name.ends_with('#')) || name.starts_with(".#");
    let jetbrains = name.contains("___jb_tmp___") || name.contains("___jb_old___");
    let partial = [".tmp", ".part"].iter().any(|s| name.ends_with(s));
    sed || vim || emacs || jetbrains || partial
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
        if rel.is_empty() || editor_temp(&rel) {
            return None;
        }
        // The Dockerfile and .dockerignore are always sent, even when they ignore themselves.
        let always = rel == c.dockerfile || rel == ".dockerignore";
        (always || !c.ignore.excludes(&rel)).then_some(c.service.as_str())
    })
}

/// A request `/predict` answers.
const PREDICT_BODY: &str =
    r#"{"items":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}"#;

/// The API process that answers `/predict` at `url` now (its `X-Iris-Replica`), if one does.
async fn answering_replica(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(PREDICT_BODY)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let replica = r.headers().get("x-iris-replica")?.to_str().ok()?;
    Some(replica.to_string())
}

/// Is `now` (the replica that answered, if one did) a new API process, `before` the one that
/// served before the change? (pure)
pub fn is_new_replica(before: Option<&str>, now: Option<&str>) -> bool {
    match (before, now) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(b), Some(n)) => b != n,
    }
}

/// When a new API process (not `before`) first answers `/predict` at `url`.
async fn new_replica_answers(client: &reqwest::Client, url: &str, before: Option<&str>) -> Instant {
    let far = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
    let seen = poll_until(far, Backoff::fixed(Duration::from_millis(25)), || async {
        if is_new_replica(before, answering_replica(client, url).await.as_deref()) {
            Poll::Ready(Instant::now())
        } else {
            Poll::Pending(())
        }
    })
    .await;
    seen.unwrap_or_else(|_| Instant::now())
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
        // Each save live in seconds: the canary strategy is for `up`.
        swap_only: true,
        api_image: None,
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

    let client = crate::probe::client(Duration::from_secs(2));
    let predict = format!(
        "{}/predict",
        ctx.settings.http_base(ctx.settings.ports.api).await?
    );
    loop {
        // Wait for a change that reaches an image, then for a quiet moment.
        let mut changed: Vec<(String, String)> = Vec::new();
        let mut first = Instant::now();
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
                            if changed.is_empty() {
                                first = Instant::now();
                            }
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
        // The API process serving now; a change of the API only is live when another one
        // answers (a change of the web UI, when its deployment is done).
        let api_changed = changed.iter().all(|(s, _)| s == "api");
        let before = if api_changed {
            answering_replica(&client, &predict).await
        } else {
            None
        };
        let again = UpOptions {
            provision: false,
            ..up_opts.clone()
        };
        let converge = up::converge(ctx, &again);
        let answered = async {
            if api_changed {
                new_replica_answers(&client, &predict, before.as_deref()).await
            } else {
                std::future::pending().await
            }
        };
        tokio::pin!(converge, answered);
        let mut live = None;
        let result = loop {
            tokio::select! {
                r = &mut converge => break r,
                at = &mut answered, if live.is_none() => live = Some(at),
            }
        };
        ctx.printer.finish_board();
        match result {
            Ok(_) => {
                if api_changed && live.is_none() {
                    // Deployed: the new API answers at once (or the deployment is the measure).
                    live = tokio::time::timeout(Duration::from_secs(10), &mut answered)
                        .await
                        .ok();
                }
                let live = live.unwrap_or_else(Instant::now);
                let mut services: Vec<&str> = changed.iter().map(|(s, _)| s.as_str()).collect();
                services.sort_unstable();
                services.dedup();
                ctx.printer.success(format!(
                    "{} live {:.1}s after the save",
                    services.join(", "),
                    live.duration_since(first).as_secs_f64()
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

    #[test]
    fn editors_temporary_files_are_not_changes() {
        for temp in [
            "app/sedAb12Cd",
            "sed0x9ZqQ",
            "app/.main.py.swp",
            "app/.main.py.swx",
            "app/4913",
            "app/main.py~",
            "app/#main.py#",
            "app/.#main.py",
            "app/main.py___jb_tmp___",
            "app/main.py___jb_old___",
            "model.joblib.tmp",
            "data/iris.csv.part",
            ".git/index",
            "vendor/lib/.git/HEAD",
        ] {
            assert!(editor_temp(temp), "{temp} is a temporary file");
        }
        for real in [
            "app/main.py",
            "sediments",
            "app/sed.py",
            "app/49130",
            "app/#notes",
            "app/swp.py",
            "app/tmp/x.py",
            ".gitignore",
            "app/git/x.py",
        ] {
            assert!(!editor_temp(real), "{real} is a real file");
        }
        // And so they reach no service, though .dockerignore does not list them.
        let c = contexts();
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        for temp in [
            "app/sedAb12Cd",
            "app/.main.py.swp",
            "app/4913",
            "app/main.py~",
        ] {
            let path = Path::new("/p/stack/api").join(temp);
            assert_eq!(affected(&write, &path, &c), None, "{temp}");
        }
    }

    #[test]
    fn live_means_another_api_process_answers() {
        assert!(!is_new_replica(Some("abc"), Some("abc")));
        assert!(!is_new_replica(Some("abc"), None));
        assert!(is_new_replica(Some("abc"), Some("def")));
        assert!(is_new_replica(None, Some("def")));
        assert!(!is_new_replica(None, None));
    }
}
