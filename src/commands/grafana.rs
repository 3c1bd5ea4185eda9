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
/// Flags and environment (see [`apply_env_precedence`]) for provisioning.
#[derive(Debug, Default, Clone)]
pub struct ProvisionOptions {
    pub url: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub dashboards: Option<PathBuf>,
    pub prometheus_url: Option<String>,
    pub wait_timeout: Duration,
    /// Where the stack's own Grafana really is (its container's published port), when known;
    /// else where the settings put it.
    pub own_url: Option<String>,
}

pub fn to_anyhow(e: GrafanaError) -> anyhow::Error {
    let hint = e.hint();
    hinted(grafana::redact_urls(&e.to_string()), hint)
}

/// `IRISCTL_<key>` variables that are `grafana provision`'s, not settings.
pub const ENV_KEYS: [&str; 4] = [
    "GRAFANA_URL",
    "GRAFANA_USER",
    "GRAFANA_PASSWORD",
    "GRAFANA_TOKEN",
];

/// The `IRISCTL_`-prefixed names win over the plain ones that other tools set too:
/// flag > `IRISCTL_GRAFANA_*` > `GRAFANA_*`. clap has already read the flag or the plain variable
/// into `opts`; a value equal to the plain variable's is taken as coming from it.
pub fn apply_env_precedence(opts: &mut ProvisionOptions, env: impl Fn(&str) -> Option<String>) {
    let fields: [(&mut Option<String>, &str); 4] = [
        (&mut opts.url, "URL"),
        (&mut opts.user, "USER"),
        (&mut opts.password, "PASSWORD"),
        (&mut opts.token, "TOKEN"),
    ];
    for (field, name) in fields {
        let Some(ours) = env(&format!("IRISCTL_GRAFANA_{name}")).filter(|v| !v.is_empty()) else {
            continue;
        };
        let legacy = env(&format!("GRAFANA_{name}"));
        if field.is_none() || (legacy.is_some() && *field == legacy) {
            *field = Some(ours);
        }
    }
}

/// `http://127.0.0.1:3000`: the stack's Grafana as published on this host (its container's
/// real port when the caller found it, else the settings' port).
pub fn own_url(ctx: &Ctx, opts: &ProvisionOptions) -> String {
    opts.own_url.clone().unwrap_or_else(|| {
        format!(
            "http://{}:{}",
            ctx.settings.client_host(),
            ctx.settings.ports.grafana
        )
    })
}

/// The stack's Grafana as its running container publishes it, if the engine answers and the
/// container runs; a `grafana provision` that cannot ask the engine uses the settings.
pub async fn published_url(ctx: &Ctx) -> Option<String> {
    let backend = tokio::time::timeout(
        Duration::from_secs(5),
        crate::backend::Backend::connect(crate::backend::Target::Docker),
    )
    .await
    .ok()?
    .ok()?;
    let stack = backend.form(&crate::stack::Stack::from_settings(&ctx.settings));
    let host = ctx.settings.client_host();
    let seen = backend.observe(&stack, &host).await.ok()?;
    let port = seen
        .services
        .iter()
        .find(|s| s.name == "grafana")
        .and_then(|s| s.probe_port)?;
    crate::engine::ssh::http_base(&host, port).await.ok()
}

/// Whether `url` (without userinfo) is the stack's own Grafana at `own` (its published URL):
/// same scheme and port, and the same host, `localhost` and every loopback address counting as
/// one when `own` is on loopback.
pub fn is_own_grafana(url: &str, own: &str) -> bool {
    fn parts(url: &str) -> Option<(String, String, String)> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            (
                h.to_string(),
                after.strip_prefix(':').unwrap_or("").to_string(),
            )
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.to_string()),
                None => (authority.to_string(), String::new()),
            }
        };
        let scheme = scheme.to_ascii_lowercase();
        let port = if port.is_empty() {
            if scheme == "https" { "443" } else { "80" }.to_string()
        } else {
            port
        };
        Some((scheme, host.to_ascii_lowercase(), port))
    }
    fn loopback(host: &str) -> bool {
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
    match (parts(url), parts(own)) {
        (Some((s1, h1, p1)), Some((s2, h2, p2))) => {
            s1 == s2 && p1 == p2 && (h1 == h2 || (loopback(&h1) && loopback(&h2)))
        }
        _ => false,
    }
}

/// The client the options describe, defaulting to the stack's Grafana. The stack's generated
/// admin password only ever goes to the stack's own Grafana: any other URL needs credentials given
/// for it (flags, variables, or the URL's own `user:password@`).
pub fn client(ctx: &Ctx, opts: &ProvisionOptions) -> Result<Client> {
    let own = own_url(ctx, opts);
    let raw = opts.url.clone().unwrap_or_else(|| own.clone());
    if !(raw.starts_with("http://") || raw.starts_with("https://")) {
        return Err(hinted(
            format!(
                "Grafana URL {:?} is not an http(s) URL",
                grafana::redact_urls(&raw)
            ),
            "write it like http://localhost:3000",
        ));
    }
    let (url, in_url) = grafana::split_userinfo(&raw);
    let user = || {
        opts.user
            .clone()
            .unwrap_or_else(|| ctx.settings.grafana_admin_user.clone())
    };
    let auth = match (&opts.token, &opts.password, in_url) {
        (Some(t), _, _) if !t.is_empty() => Auth::Token(t.clone()),
        (_, Some(p), _) => Auth::Basic {
            user: user(),
            password: p.clone(),
        },
        (_, _, Some((u, p))) => Auth::Basic {
            user: opts.user.clone().unwrap_or(u),
            password: p,
        },
        _ if !is_own_grafana(&url, &own) => {
            return Err(hinted(
                format!(
                    "no credentials for the Grafana at {url}: it is not this stack's Grafana ({own}), and irisctl sends the stack's generated admin password only to the stack's own Grafana"
                ),
                "pass --user/--password or --token for that Grafana (IRISCTL_GRAFANA_USER, IRISCTL_GRAFANA_PASSWORD, IRISCTL_GRAFANA_TOKEN), or leave out --url (and unset IRISCTL_GRAFANA_URL / GRAFANA_URL) to provision this stack's Grafana",
            ));
        }
        _ => match &ctx.settings.grafana_admin_password {
            Some(p) => Auth::Basic {
                user: user(),
                password: p.clone(),
            },
            None => {
                return Err(hinted(
                    format!(
                        "no Grafana credentials: `{}` has no GRAFANA_ADMIN_PASSWORD",
                        ctx.settings.project_dir.join(".env").display()
                    ),
                    "run `irisctl up` first (it generates one), or pass --password / --token (IRISCTL_GRAFANA_PASSWORD, IRISCTL_GRAFANA_TOKEN)",
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
    // The stack's own Grafana file-provisions the datasource and the dashboards in the background
    // once its port is open: what is missing gets the time to appear, rather than be created in
    // a race with it.
    let own = own_url(ctx, opts);
    let grace = if opts
        .url
        .as_deref()
        .is_none_or(|url| is_own_grafana(&grafana::split_userinfo(url).0, &own))
    {
        grafana::FILE_PROVISIONING_GRACE
    } else {
        Duration::ZERO
    };
    grafana::provision_waiting(&client, &spec, &dashboards, grace)
        .await
        .map_err(to_anyhow)
}

pub fn render(outcomes: &[Outcome]) -> String {
    let mut b = tabled::builder::Builder::default();
    b.push_record(["OBJECT", "ACTION", "URL"]);
    for o in outcomes {
        b.push_record([
            o.object.clone(),
            o.action.to_string(),
            grafana::redact_urls(&o.url),
        ]);
    }
    let mut t = b.build();
    t.with(tabled::settings::Style::blank());
    t.to_string()
}

pub async fn run(ctx: &Ctx, opts: &ProvisionOptions) -> Result<()> {
    let mut opts = opts.clone();
    apply_env_precedence(&mut opts, |k| std::env::var(k).ok());
    if opts.url.is_none() && opts.own_url.is_none() {
        opts.own_url = published_url(ctx).await;
    }
    let target = opts.url.clone().unwrap_or_else(|| own_url(ctx, &opts));
    ctx.printer.info(format!(
        "provisioning the Grafana at {} (waiting up to {} s for it to be ready)",
        grafana::redact_urls(&target),
        opts.wait_timeout.as_secs()
    ));
    let outcomes = provision(ctx, &opts).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_grafana_is_the_published_loopback_url() {
        let own = "http://127.0.0.1:3000";
        for url in [
            "http://127.0.0.1:3000",
            "http://localhost:3000/",
            "http://[::1]:3000",
            "HTTP://LOCALHOST:3000",
        ] {
            assert!(is_own_grafana(url, own), "{url}");
        }
        for url in [
            "http://127.0.0.1:3001",
            "https://127.0.0.1:3000",
            "http://grafana.example.com:3000",
            "http://10.0.0.5:3000",
            "http://127.0.0.1",
        ] {
            assert!(!is_own_grafana(url, own), "{url}");
        }
        assert!(is_own_grafana(
            "http://192.168.1.9:3000",
            "http://192.168.1.9:3000"
        ));
        assert!(!is_own_grafana(
            "http://localhost:3000",
            "http://192.168.1.9:3000"
        ));
    }

    #[test]
    fn irisctl_prefixed_variables_win_over_the_plain_ones_but_not_over_flags() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        // clap read GRAFANA_URL into opts.url: IRISCTL_GRAFANA_URL replaces it.
        let mut o = ProvisionOptions {
            url: Some("http://ambient:3000".into()),
            ..Default::default()
        };
        apply_env_precedence(
            &mut o,
            env(&[
                ("GRAFANA_URL", "http://ambient:3000"),
                ("IRISCTL_GRAFANA_URL", "http://mine:3000"),
                ("IRISCTL_GRAFANA_TOKEN", "tok"),
            ]),
        );
        assert_eq!(o.url.as_deref(), Some("http://mine:3000"));
        assert_eq!(o.token.as_deref(), Some("tok"));
        // a flag (differs from GRAFANA_URL) wins
        let mut o = ProvisionOptions {
            url: Some("http://flag:3000".into()),
            ..Default::default()
        };
        apply_env_precedence(
            &mut o,
            env(&[
                ("GRAFANA_URL", "http://ambient:3000"),
                ("IRISCTL_GRAFANA_URL", "http://mine:3000"),
            ]),
        );
        assert_eq!(o.url.as_deref(), Some("http://flag:3000"));
    }
}
