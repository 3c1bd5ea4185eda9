//! `irisctl logs`: the services' output, prefixed with the service name.

use anyhow::Result;
use futures_util::stream::{self, StreamExt};

use super::Ctx;
use crate::engine::{labels, Engine, Object};
use crate::error::hinted;
use crate::stack::Stack;

pub async fn run(ctx: &Ctx, service: Option<&str>, follow: bool, tail: &str) -> Result<()> {
    let tail = match tail {
        "all" => "all".to_string(),
        n => n.parse::<u32>().map(|n| n.to_string()).map_err(|_| {
            hinted(
                format!("--tail {n:?} is not a number of lines"),
                "give a whole number, or `all`",
            )
        })?,
    };
    let stack = Stack::from_settings(&ctx.settings).docker_form();
    if let Some(name) = service {
        if stack.service(name).is_none() {
            let known: Vec<_> = stack.services.iter().map(|s| s.name.as_str()).collect();
            return Err(hinted(
                format!("no service named `{name}`"),
                format!("services: {}", known.join(", ")),
            ));
        }
    }
    let engine = Engine::connect().await?;
    let label = format!("{}={}", labels::PROJECT, stack.project);
    let observed = engine.list_labelled(Object::Container, &label).await?;
    let service_of =
        |o: &crate::engine::Listed| o.labels.get(labels::SERVICE).cloned().unwrap_or_default();
    let chosen: Vec<_> = observed
        .iter()
        .filter(|o| o.labels.get(labels::ONEOFF).is_none_or(|v| v != "True"))
        .filter(|o| service.is_none_or(|s| service_of(o) == s))
        .collect();
    if chosen.is_empty() {
        return Err(hinted(
            format!(
                "project `{}` has no container{}",
                stack.project,
                service.map(|s| format!(" for `{s}`")).unwrap_or_default()
            ),
            "start the stack with `irisctl up`",
        ));
    }
    let width = chosen
        .iter()
        .map(|o| service_of(o).len())
        .max()
        .unwrap_or(0);
    let streams = chosen.iter().map(|o| {
        let prefix = format!("{:<width$} | ", service_of(o));
        engine
            .logs(&o.id, follow, &tail)
            .map(move |item| (prefix.clone(), item))
    });
    let mut merged = stream::select_all(streams.map(Box::pin));
    while let Some((prefix, item)) = merged.next().await {
        match item {
            Ok(text) => {
                let lines: String = text.lines().map(|l| format!("{prefix}{l}\n")).collect();
                ctx.printer.data(lines.trim_end_matches('\n'));
            }
            Err(e) => ctx.printer.warn(format!("log stream ended: {e}")),
        }
    }
    Ok(())
}
