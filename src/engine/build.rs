//! Image builds: the context streamed to the engine, progress, and an error that names the
//! failing step. Whether to build, and with which labels, is decided by the caller.

use std::collections::HashMap;

use anyhow::Result;
use futures_util::StreamExt;
use indicatif::ProgressBar;

use super::context::context_stream;
use super::{root_message, Engine};
use crate::error::hinted;
use crate::stack::Build;

/// Build `tag` from `build`, with these labels on the image; its ID. The context is streamed
/// to the engine as it is read, never held whole in memory.
///
/// For a remote engine the build runs on this machine's engine when there is one of the same
/// platform (its cache, its network for pip and npm), and the image is then sent to the remote
/// without the layers the remote has: a one-line change sends one small layer. Otherwise the
/// remote builds from the streamed context.
pub async fn build_image(
    engine: &Engine,
    service: &str,
    tag: &str,
    build: &Build,
    image_labels: HashMap<String, String>,
    bar: &ProgressBar,
    printer: &crate::output::Printer,
) -> Result<String> {
    if engine.is_remote() {
        if let Some(here) = engine.here_for().await {
            let id = build_on(&here, service, tag, build, image_labels, bar).await?;
            bar.set_message(format!("sending {tag} to the remote"));
            let sent = engine.receive_image(&here, tag).await.map_err(|e| {
                hinted(
                    format!("image `{tag}` of `{service}` was built here but could not be sent to the remote engine: {e:#}"),
                    "check the remote's free disk space (`docker system df` there), then run `irisctl up` again",
                )
            })?;
            printer.verbose(format!("{tag}: {}", sent.text()));
            return Ok(id);
        }
    }
    build_on(engine, service, tag, build, image_labels, bar).await
}

async fn build_on(
    engine: &Engine,
    service: &str,
    tag: &str,
    build: &Build,
    image_labels: HashMap<String, String>,
    bar: &ProgressBar,
) -> Result<String> {
    let options = bollard::query_parameters::BuildImageOptions {
        dockerfile: build.dockerfile.clone(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        buildargs: Some(
            build
                .args
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ),
        labels: Some(image_labels),
        ..Default::default()
    };
    // Second pass: stream the context to the engine as it is written.
    let (body, sender) = context_stream(&build.context, &build.dockerfile);
    let mut stream = Box::pin(engine.build_image(options, body));
    let mut tail: Vec<String> = Vec::new();
    let mut step = String::new();
    let mut image_id = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => {
                drop(stream);
                // A context that could not be read fails the request: name the file instead.
                if let Some(err) = context_error(sender).await {
                    return Err(err);
                }
                return Err(build_failed(service, tag, &step, &root_message(&e), &tail));
            }
        };
        if let Some(text) = info.stream.as_deref() {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if line.starts_with("Step ") {
                    step = line.to_string();
                    bar.set_message(format!("building: {line}"));
                }
                tail.push(line.to_string());
                if tail.len() > 25 {
                    tail.remove(0);
                }
            }
        }
        if let Some(id) = info.aux.and_then(|a| a.id) {
            image_id = Some(id);
        }
        if let Some(detail) = info.error_detail {
            let message = detail.message.unwrap_or_else(|| "unknown error".into());
            return Err(build_failed(service, tag, &step, &message, &tail));
        }
    }
    drop(stream);
    if let Some(err) = context_error(sender).await {
        return Err(err);
    }
    let image_id = match image_id {
        Some(id) => id,
        None => engine.image_id(tag).await?.ok_or_else(|| {
            build_failed(
                service,
                tag,
                &step,
                "the build ended without an image",
                &tail,
            )
        })?,
    };
    bar.set_message(format!("built {tag}"));
    Ok(image_id)
}

/// The error of the task that wrote the context, unless it only stopped because the engine
/// stopped reading. It is not waited for long: if the engine answered without reading the whole
/// context and the request body is still held somewhere, the engine's own error is the story.
async fn context_error(sender: tokio::task::JoinHandle<Result<()>>) -> Option<anyhow::Error> {
    let err = match tokio::time::timeout(std::time::Duration::from_secs(5), sender).await {
        Err(_) | Ok(Ok(Ok(()))) => return None,
        Ok(Ok(Err(e))) => e,
        Ok(Err(e)) => anyhow::anyhow!("the build context task failed: {e}"),
    };
    let broken_pipe = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    (!broken_pipe).then(|| {
        hinted(
            format!("cannot send the build context: {err:#}"),
            "make every file of the build context readable by this user, or list it in `.dockerignore`",
        )
    })
}

fn build_failed(
    service: &str,
    tag: &str,
    step: &str,
    message: &str,
    tail: &[String],
) -> anyhow::Error {
    let step = if step.is_empty() {
        "before the first step".to_string()
    } else {
        format!("at `{step}`")
    };
    hinted(
        format!(
            "building `{tag}` for service `{service}` failed {step}: {}\n--- last lines of the build log ---\n{}",
            message.trim(),
            tail.join("\n")
        ),
        "fix the failing step in the Dockerfile or the files it copies, then run `irisctl up` again",
    )
}
