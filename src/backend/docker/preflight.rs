//! Preflight: refuse what is not the project's and host ports held by others, before anything
//! is built or touched.

use std::collections::HashMap;

use anyhow::Result;
use futures_util::future::try_join_all;

use super::super::owner::{owner, Owner};
use super::*;
use crate::engine::{labels, Engine};
use crate::error::hinted;
use crate::stack::Stack;

impl Docker {
    /// Refuse what is not the project's — a network or volume of its names that another
    /// project (or the same project name in another directory) made, containers of the project
    /// made from another directory — and host ports another program or project holds, before
    /// anything is built or touched. Every lookup goes to the engine at once.
    pub async fn preflight(&self, stack: &Stack) -> Result<()> {
        self.check(stack, true).await
    }

    /// The ownership part of [`Docker::preflight`] alone: for verbs that publish no new port
    /// (`rollback` keeps the edge as it is).
    pub async fn preflight_ownership(&self, stack: &Stack) -> Result<()> {
        self.check(stack, false).await
    }

    async fn check(&self, stack: &Stack, ports: bool) -> Result<()> {
        let (all, networks, volumes) = tokio::try_join!(
            self.engine.containers_with(&[]),
            self.engine.networks_named(&stack.network.name),
            try_join_all(
                stack
                    .volumes
                    .iter()
                    .map(|v| self.engine.inspect_volume(&v.name))
            ),
        )?;
        let mut objects = Vec::new();
        for c in &all {
            let labels = c.labels.clone().unwrap_or_default();
            if labels.get(labels::PROJECT) == Some(&stack.project) {
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                objects.push((format!("container `{name}`"), labels, name));
            }
        }
        for n in networks {
            objects.push((format!("network `{}`", n.name), n.labels, n.name));
        }
        for (v, found) in stack.volumes.iter().zip(volumes) {
            if let Some(found) = found {
                objects.push((format!("volume `{}`", v.name), found.labels, v.name.clone()));
            }
        }
        check_ownership(stack, objects)?;
        if ports {
            preflight_ports(&self.engine, stack, &all)?;
            if self.engine.is_remote() {
                remote_ports(stack, &all).await?;
            }
        }
        Ok(())
    }
}

/// The project's containers, its network and volumes, as (what, labels, name): each must be
/// this project's, made from this directory.
pub(super) fn check_ownership(
    stack: &Stack,
    objects: Vec<(String, HashMap<String, String>, String)>,
) -> Result<()> {
    for (what, object_labels, name) in objects {
        match owner(&object_labels, &stack.project, &stack.project_dir) {
            Owner::Ours => {}
            Owner::OtherDir(dir) => return Err(managed_elsewhere(stack, &dir, &what)),
            Owner::OtherProject(other) => {
                let kind = what.split(' ').next().unwrap_or("object");
                return Err(hinted(
                    format!(
                        "{what} exists but does not belong to project `{}` ({})",
                        stack.project,
                        other.map_or("it has no project label".to_string(), |o| format!(
                            "it belongs to `{o}`"
                        ))
                    ),
                    format!(
                        "remove it (`docker {kind} rm {name}`) or use another project name with -p"
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn managed_elsewhere(stack: &Stack, dir: &str, what: &str) -> anyhow::Error {
    super::super::owner::managed_elsewhere(&stack.project, dir, what, &stack.project_dir)
}

/// Refuse, before anything is built or touched, when a host port the stack publishes is taken by
/// a container of another project or by another program. Ports the project's own containers
/// hold are fine: converging frees or keeps them.
/// On a remote engine: a port no container publishes that a program of the remote host
/// listens on (asked through the SSH connection) is taken.
async fn remote_ports(stack: &Stack, all: &[bollard::models::ContainerSummary]) -> Result<()> {
    let Some(ssh) = crate::engine::ssh::connection().await? else {
        return Ok(());
    };
    for service in &stack.services {
        for p in &service.ports {
            let published = all.iter().any(|c| {
                c.ports
                    .iter()
                    .flatten()
                    .any(|cp| cp.public_port == Some(p.host))
            });
            if published {
                continue;
            }
            let host = match p.host_ip {
                std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
                std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            if ssh.listening(&host, p.host).await? {
                return Err(hinted(
                    format!(
                        "host port {} on {} of `{}` (for `{}`) is already in use by another program",
                        p.host, p.host_ip, ssh.target.host, service.name
                    ),
                    "stop what uses it on that host, or give irisctl another port (--api-port, --frontend-port, --prometheus-port, --grafana-port or `ports:` in irisctl.yaml)",
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn preflight_ports(
    engine: &Engine,
    stack: &Stack,
    all: &[bollard::models::ContainerSummary],
) -> Result<()> {
    let taken = |conflict: String| {
        hinted(
            conflict,
            "stop what uses it, or give irisctl another port (--api-port, --frontend-port, --prometheus-port, --grafana-port or `ports:` in irisctl.yaml)",
        )
    };
    for service in &stack.services {
        // A container of ours for this service that publishes the port already (in any state:
        // one being started, say by an interrupted `up`, may hold its port before the engine
        // lists it as published): converging keeps or frees it. A port the service does not
        // publish yet (a changed port) is checked like any other, before anything is stopped.
        let ours_on = |ip: std::net::IpAddr, port: u16| {
            all.iter().any(|c| {
                c.labels.as_ref().is_some_and(|l| {
                    l.get(labels::PROJECT) == Some(&stack.project)
                        && l.get(labels::SERVICE) == Some(&service.name)
                        && l.get(crate::stack::record::LABEL)
                            .and_then(|r| crate::stack::record::Record::from_label(r))
                            .is_some_and(|r| {
                                // `127.0.0.1:9090->9090`: the same address and port.
                                r.ports.iter().any(|p| {
                                    p.rsplit_once("->")
                                        .and_then(|(host, _)| host.rsplit_once(':'))
                                        .is_some_and(|(a, h)| {
                                            a == ip.to_string()
                                                && h.parse::<u16>().ok() == Some(port)
                                        })
                                })
                            })
                })
            })
        };
        for p in &service.ports {
            let ours = ours_on(p.host_ip, p.host);
            // The edge publishes a port for `api` or `frontend`: name that service.
            let for_service = stack
                .services
                .iter()
                .find(|f| crate::stack::edge::edge_port(stack, f).is_some_and(|e| e.host == p.host))
                .map_or(service.name.as_str(), |f| f.name.as_str());
            // Any state: a paused container keeps its ports (a stopped one lists none).
            let holder = all.iter().find(|c| {
                c.ports
                    .iter()
                    .flatten()
                    .any(|cp| cp.public_port == Some(p.host))
            });
            match holder {
                Some(c)
                    if c.labels.as_ref().and_then(|l| l.get(labels::PROJECT))
                        == Some(&stack.project) => {}
                Some(c) => {
                    let name = c
                        .names
                        .as_ref()
                        .and_then(|n| n.first())
                        .map(|n| n.trim_start_matches('/'))
                        .unwrap_or("?");
                    return Err(taken(format!(
                        "host port {} (for `{for_service}`) is already published by container `{name}`",
                        p.host
                    )));
                }
                None if !ours
                    && engine.is_local()
                    && std::net::TcpListener::bind((p.host_ip, p.host)).is_err() =>
                {
                    return Err(taken(format!(
                        "host port {} on {} (for `{for_service}`) is already in use by another program",
                        p.host, p.host_ip
                    )));
                }
                None => {}
            }
        }
    }
    Ok(())
}
