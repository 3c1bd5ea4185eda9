//! `irisctl down`: remove the project's containers and network; volumes and images only on request.

use std::collections::HashMap;

use anyhow::{Context, Result};
use futures_util::future::try_join_all;

use super::Ctx;
use crate::engine::converge::remove_container;
use crate::engine::{is_conflict, is_not_found, labels, observe, Engine};
use crate::stack::Stack;

pub struct DownOptions {
    pub volumes: bool,
    pub rmi: bool,
    pub target: crate::cli::Target,
}

pub async fn run(ctx: &Ctx, opts: DownOptions) -> Result<()> {
    let engine = Engine::connect().await?;
    let stack = Stack::from_settings(&ctx.settings);
    let project = &stack.project;
    let printer = &ctx.printer;
    let project_filter = format!("{}={project}", labels::PROJECT);

    if opts.target == crate::cli::Target::Swarm {
        let removed = crate::swarm::remove(&engine, project, opts.volumes, printer).await?;
        let images = if opts.rmi {
            remove_images(&engine, &stack, printer).await?
        } else {
            0
        };
        if removed + images == 0 {
            printer.info(format!(
                "nothing to remove: project `{project}` has no Swarm services"
            ));
        } else {
            printer.success(format!("Swarm stack `{project}` is down"));
        }
        return Ok(());
    }
    let containers = observe::project_containers(&engine, project).await?;
    try_join_all(
        containers
            .iter()
            .map(|c| remove_container(&engine, &c.id, &c.name)),
    )
    .await?;
    for c in &containers {
        printer.info(format!("removed container {}", c.name));
    }

    let filters = HashMap::from([("label".to_string(), vec![project_filter.clone()])]);
    let networks = engine
        .docker
        .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .context("failed to list networks")?;
    let mut removed_networks = 0;
    for n in networks {
        let name = n.name.unwrap_or_default();
        match engine.docker.remove_network(&name).await {
            Ok(()) => {
                removed_networks += 1;
                printer.info(format!("removed network {name}"));
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("failed to remove network `{name}`"))
                )
            }
        }
    }

    let removed_volumes = if opts.volumes {
        let names = engine.remove_volumes(&project_filter).await?;
        for name in &names {
            printer.warn(format!("deleted volume {name} and the data in it"));
        }
        names.len()
    } else {
        0
    };

    let removed_images = if opts.rmi {
        remove_images(&engine, &stack, printer).await?
    } else {
        0
    };

    if containers.is_empty() && removed_networks == 0 && removed_volumes == 0 && removed_images == 0
    {
        printer.info(format!(
            "nothing to remove: project `{project}` has no containers or network"
        ));
    } else {
        let kept = if opts.volumes {
            String::new()
        } else {
            " (volumes kept; `down --volumes` deletes them)".to_string()
        };
        printer.success(format!("stack `{project}` is down{kept}"));
    }
    Ok(())
}

/// Remove the images irisctl built for the project (kept when a container still uses one).
async fn remove_images(
    engine: &Engine,
    stack: &Stack,
    printer: &crate::output::Printer,
) -> Result<usize> {
    let mut removed = 0;
    for s in stack.services.iter().filter(|s| s.build.is_some()) {
        match engine
            .docker
            .remove_image(
                &s.image,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
        {
            Ok(_) => {
                removed += 1;
                printer.info(format!("removed image {}", s.image));
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) if is_conflict(&e) => {
                printer.warn(format!("kept image {}: another container uses it", s.image))
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("failed to remove image `{}`", s.image))
                )
            }
        }
    }
    Ok(removed)
}
