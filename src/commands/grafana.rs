//! `irisctl grafana provision`: the datasource and dashboards, through Grafana's HTTP API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use crate::error::hinted;
use crate::grafana::{
    self, Auth, Client, DatasourceSpec, GrafanaError, Outcome, DATASOURCE_NAME, DATASOURCE_UID,
};

/// Flags and environment for provisioning; `None` means the stack's own value.
#[derive(Debug, Default, Clone)]
pub struct ProvisionOptions {
    pub url: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub dashboards: Option<PathBuf>,
    pub prometheus_url: Option<String>,
    pub wait_timeout: Duration,
}

pub fn to_anyhow(e: GrafanaError) -> anyhow::Error {
    let hint = e.hint();
    hinted(e.to_string(), hint)
}

/// The client the options describe, defaulting to the stack's Grafana and `.env` credentials.
pub fn client(ctx: &Ctx, opts: &ProvisionOptions) -> Result<Client> {
    let url = opts.url.clone().unwrap_or_else(|| {
        format!(
            "http://{}:{}",
            ctx.settings.client_host(),
            ctx.settings.ports.grafana
        )
    });
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(hinted(
            format!("Grafana URL {url:?} is not an http(s) URL"),
            "write it like http://localhost:3000",
        ));
    }
    let auth = match (&opts.token, &opts.password) {
        (Some(t), _) if !t.is_empty() => Auth::Token(t.clone()),
        (_, Some(p)) => Auth::Basic { user: opts.user.clone().unwrap_or_else(|| ctx.settings.grafana_admin_user.clone()), password: p.clone() },
        _ => match &ctx.settings.grafana_admin_password {
            Some(p) => Auth::Basic { user: opts.user.clone().unwrap_or_else(|| ctx.settings.grafana_admin_user.clone()), password: p.clone() },
            None => {
                return Err(hinted(
                    format!("no Grafana credentials: `{}` has no GRAFANA_ADMIN_PASSWORD", ctx.settings.project_dir.join(".env").display()),
                    "run `irisctl up` first (it generates one), or pass --password / --token (GRAFANA_PASSWORD, GRAFANA_TOKEN)",
                ))
            }
        },
    };
    Ok(Client::new(&url, auth))
}

pub async fn provision(ctx: &Ctx, opts: &ProvisionOptions) -> Result<Vec<Outcome>> {
    let client = client(ctx, opts)?;
    let dir = opts
        .dashboards
        .clone()
        .unwrap_or_else(|| ctx.settings.project_dir.join("monitoring/dashboards"));
    let dashboards = grafana::load_dashboards(&dir, DATASOURCE_UID).map_err(to_anyhow)?;
    let spec = DatasourceSpec {
        uid: DATASOURCE_UID.into(),
        name: DATASOURCE_NAME.into(),
        url: opts
            .prometheus_url
            .clone()
            .unwrap_or_else(|| "http://prometheus:9090".into()),
    };
    client
        .wait_ready(opts.wait_timeout)
        .await
        .map_err(to_anyhow)?;
    grafana::provision(&client, &spec, &dashboards)
        .await
        .map_err(to_anyhow)
}

pub fn render(outcomes: &[Outcome]) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["OBJECT", "ACTION", "URL"]);
    for o in outcomes {
        b.push_record([o.object.clone(), o.action.to_string(), o.url.clone()]);
    }
    let mut t = b.build();
    t.with(tabled::settings::Style::blank());
    t.to_string()
}

pub async fn run(ctx: &Ctx, opts: &ProvisionOptions) -> Result<()> {
    let outcomes = provision(ctx, opts).await?;
    ctx.printer.data(&render(&outcomes));
    let changed = outcomes
        .iter()
        .filter(|o| o.action != grafana::Action::Unchanged)
        .count();
    ctx.printer.success(format!(
        "grafana provisioned: {changed} change(s), {} unchanged",
        outcomes.len() - changed
    ));
    Ok(())
}
