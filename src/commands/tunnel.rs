//! `irisctl tunnel`: the stack's published ports of a remote engine's host (on its loopback),
//! opened on this machine's loopback over the run's one SSH connection, until Ctrl-C.

use anyhow::Result;

use super::Ctx;
use crate::error::hinted;
use crate::stack::Stack;

pub async fn run(ctx: &Ctx) -> Result<()> {
    let Some(ssh) = crate::engine::ssh::connection().await? else {
        return Err(hinted(
            "the engine is on this machine: the stack's ports are published here already, there is nothing to tunnel",
            "point DOCKER_HOST at a remote engine (ssh://USER@HOST[:PORT]) or select a docker context that does",
        ));
    };
    let stack = Stack::from_settings(&ctx.settings);
    let mut table = tabled::builder::Builder::default();
    table.push_record(["SERVICE", "ON THE REMOTE", "HERE"]);
    for service in &stack.services {
        for p in &service.ports {
            // The name users know: the probe on that port (the edge publishes the API's and
            // the web UI's), else the service.
            let name = stack
                .services
                .iter()
                .flat_map(|s| s.probes.iter())
                .find(|pr| pr.port == p.host)
                .map_or(service.name.as_str(), |pr| pr.name.as_str());
            // The same number unless it is taken here.
            let listener = match tokio::net::TcpListener::bind(("127.0.0.1", p.host)).await {
                Ok(l) => l,
                Err(_) => tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?,
            };
            let local = listener.local_addr()?.port();
            let remote_host = match p.host_ip {
                std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
                std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            ssh.relay(listener, &remote_host, p.host).await?;
            let moved = if local == p.host {
                String::new()
            } else {
                format!(" (port {} is taken here)", p.host)
            };
            table.push_record([
                name.to_string(),
                format!("{remote_host}:{}", p.host),
                format!("http://127.0.0.1:{local}/{moved}"),
            ]);
        }
    }
    let mut table = table.build();
    table.with(tabled::settings::Style::blank());
    ctx.printer.data(&table.to_string());
    ctx.printer.info(format!(
        "forwarding over one SSH connection to `{}`; Ctrl-C stops",
        ssh.target.destination()
    ));
    std::future::pending::<()>().await;
    Ok(())
}
