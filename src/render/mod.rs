//! Renderers: the [`Stack`](crate::stack::Stack) as text other tools run. Each is one walk
//! of the Stack: [`compose`] (a `docker-compose.yml` for docker-compose 1.29 and Compose v2)
//! and [`swarm`] (a stack file for `docker stack deploy`). Output is deterministic (fixed key
//! order, sorted maps) so it can be checked into a repo and compared with
//! `irisctl compose --check`. No secret is in either file.

pub mod compose;
pub mod swarm;

use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::stack::{Healthcheck, Rollout, Service};

pub(crate) fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

pub(crate) fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

pub(crate) fn seq<I: IntoIterator<Item = String>>(items: I) -> Value {
    Value::Sequence(items.into_iter().map(Value::String).collect())
}

/// `5s`, `1m30s`: the duration form both Compose versions read.
pub(crate) fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// A path as the compose file should name it: `./rel` below `base`, absolute elsewhere.
/// An empty `base` names every path absolutely.
pub(crate) fn path_from(base: &Path, p: &Path) -> String {
    if base.as_os_str().is_empty() {
        return p.display().to_string();
    }
    match p.strip_prefix(base) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => format!("./{}", rel.display()),
        Err(_) => p.display().to_string(),
    }
}

/// `command`, `user` and `environment`: the same in both file forms.
pub(crate) fn runtime_keys(svc: &Service) -> Vec<(&'static str, Value)> {
    let mut m = Vec::new();
    if !svc.command.is_empty() {
        m.push(("command", seq(svc.command.clone())));
    }
    if let Some(u) = &svc.user {
        m.push(("user", s(u.clone())));
    }
    if !svc.env.is_empty() {
        let env = svc
            .env
            .iter()
            .map(|(k, v)| (s(k.clone()), s(v.clone())))
            .collect();
        m.push(("environment", Value::Mapping(env)));
    }
    m
}

pub(crate) fn healthcheck(h: &Healthcheck) -> Value {
    map(vec![
        ("test", seq(h.test.clone())),
        ("interval", s(duration(h.interval))),
        ("timeout", s(duration(h.timeout))),
        ("retries", Value::Number(h.retries.into())),
        ("start_period", s(duration(h.start_period))),
    ])
}

/// A Swarm rollout policy as `deploy:` keys (`update_config`, `rollback_config`,
/// `restart_policy`).
pub(crate) fn rollout_keys(r: &Rollout) -> Vec<(&'static str, Value)> {
    vec![
        (
            "update_config",
            map(vec![
                ("parallelism", Value::Number(r.parallelism.into())),
                ("delay", s(duration(r.delay))),
                ("failure_action", s(r.failure_action)),
                ("monitor", s(duration(r.monitor))),
                ("order", s(r.order)),
            ]),
        ),
        (
            "rollback_config",
            map(vec![
                ("parallelism", Value::Number(r.parallelism.into())),
                ("failure_action", s(r.rollback_failure_action)),
                ("order", s(r.order)),
            ]),
        ),
        (
            "restart_policy",
            map(vec![
                ("condition", s("any")),
                ("delay", s(duration(r.restart_delay))),
            ]),
        ),
    ]
}

/// Header lines as YAML comments.
pub(crate) fn comment(text: &str) -> String {
    text.lines()
        .map(|l| format!("# {l}\n").replace("# \n", "#\n"))
        .collect()
}

/// `.env.example`: the variables the compose file reads, without their values.
pub fn env_example() -> String {
    format!(
                "# The settings irisctl reads from .env (mode 0600; `irisctl up` creates it with a generated\n# password). Grafana reads the password from .irisctl/secrets/grafana_admin_password, which\n# `irisctl up` and `irisctl compose -o` write from here: after changing it, run one of them.\n# Any IRISCTL_* setting may be set here too, e.g. IRISCTL_API_PORT=8000.\n{}=\n",
        crate::settings::GRAFANA_PASSWORD_KEY
    )
}

/// A unified diff of `old` against `new`, empty when they are the same.
pub fn diff(old: &str, new: &str, old_name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, "irisctl compose")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_is_empty_for_equal_text() {
        assert!(diff("a\n", "a\n", "f").is_empty());
        let d = diff("a\nb\n", "a\nc\n", "f");
        assert!(d.contains("-b") && d.contains("+c"), "{d}");
    }
}
