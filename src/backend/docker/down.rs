//! `down` on the single engine.

use std::time::Duration;

use anyhow::Result;
use futures_util::future::try_join_all;

use super::super::owner::{owner, Owner};
use super::super::Down;
use super::*;
use crate::engine::Object;
use crate::stack::Stack;

impl Docker {
    /// Remove the project's containers and networks, and its volumes when asked. A project of
    /// the same name managed from another directory is refused; objects of the name that are
    /// not the project's are left and reported.
    pub async fn down(&self, stack: &Stack, volumes: bool) -> Result<Down> {
        let label = project_label(stack);
        let mut out = Down::default();
        for c in self.engine.list_labelled(Object::Container, &label).await? {
            if let Owner::OtherDir(dir) = owner(&c.labels, &stack.project, &stack.project_dir) {
                return Err(managed_elsewhere(
                    stack,
                    &dir,
                    &format!("container `{}`", c.name),
                ));
            }
        }
        let ours = |o: &crate::engine::Listed| {
            owner(&o.labels, &stack.project, &stack.project_dir) == Owner::Ours
        };
        let containers = self.containers(stack).await?;
        try_join_all(
            containers
                .iter()
                .map(|c| self.engine.remove_container(&c.id, &c.name)),
        )
        .await?;
        out.removed
            .extend(containers.iter().map(|c| format!("container {}", c.name)));
        let nets = self
            .engine
            .remove_labelled(Object::Network, &label, ours, Duration::ZERO)
            .await?;
        out.removed
            .extend(nets.removed.iter().map(|n| format!("network {n}")));
        out.kept.extend(
            nets.refused
                .iter()
                .map(|n| format!("network {n}: not this directory's project")),
        );
        if volumes {
            let vols = self
                .engine
                .remove_labelled(Object::Volume, &label, ours, Duration::ZERO)
                .await?;
            out.deleted_volumes = vols.removed;
            out.kept.extend(
                vols.refused
                    .iter()
                    .map(|v| format!("volume {v}: not this directory's project")),
            );
        }
        Ok(out)
    }
}
