//! Render a [`Stack`] as a `docker-compose.yml` that docker-compose 1.29 and Compose v2 both run.
//!
//! Output is deterministic (fixed key order, sorted maps) so it can be checked into a repo and
//! compared with `irisctl compose --check`. No secret is in the file: Grafana's password is
//! mounted from `.irisctl/secrets/`, which `irisctl compose -o` writes from `.env`.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::stack::{Condition, Healthcheck, Mount, Service, Stack};

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

fn seq<I: IntoIterator<Item = String>>(items: I) -> Value {
    Value::Sequence(items.into_iter().map(Value::String).collect())
}

/// `5s`, `1m30s`: the duration form both Compose versions read.
fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// A path as the compose file should name it: `./rel` below `base`, absolute elsewhere.
fn path_from(base: &Path, p: &Path) -> String {
    match p.strip_prefix(base) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => format!("./{}", rel.display()),
        Err(_) => p.display().to_string(),
    }
}

/// `command`, `user` and `environment`: the same in both file forms.
fn runtime_keys(svc: &Service) -> Vec<(&'static str, Value)> {
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

fn healthcheck(h: &Healthcheck) -> Value {
    map(vec![
        ("test", seq(h.test.clone())),
        ("interval", s(duration(h.interval))),
        ("timeout", s(duration(h.timeout))),
        ("retries", Value::Number(h.retries.into())),
        ("start_period", s(duration(h.start_period))),
    ])
}

/// The compose file for `stack`, with paths relative to `base` (the file's folder).
pub fn render(stack: &Stack, base: &Path, header: &str) -> String {
    let mut services = Mapping::new();
    for svc in &stack.services {
        let mut m: Vec<(&str, Value)> = Vec::new();
        if let Some(b) = &svc.build {
            let mut build = vec![
                ("context", s(path_from(base, &b.context))),
                ("dockerfile", s(b.dockerfile.clone())),
            ];
            if !b.args.is_empty() {
                let mut args = Mapping::new();
                for (k, v) in &b.args {
                    args.insert(s(k.clone()), s(v.clone()));
                }
                build.push(("args", Value::Mapping(args)));
            }
            m.push(("build", map(build)));
        }
        m.push(("image", s(svc.image.clone())));
        m.push(("container_name", s(svc.container_name.clone())));
        m.extend(runtime_keys(svc));
        if !svc.ports.is_empty() {
            // Short syntax: docker-compose 1.29 rejects `host_ip` in the long one.
            m.push((
                "ports",
                seq(svc.ports.iter().map(|p| {
                    let ip = match p.host_ip {
                        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                        v4 => v4.to_string(),
                    };
                    format!("{ip}:{}:{}", p.host, p.container)
                })),
            ));
        }
        if let Some(h) = &svc.healthcheck {
            m.push(("healthcheck", healthcheck(h)));
        }
        if !svc.depends_on.is_empty() {
            let mut deps = Mapping::new();
            for d in &svc.depends_on {
                let cond = match d.condition {
                    Condition::Started => "service_started",
                    Condition::Healthy => "service_healthy",
                };
                deps.insert(s(d.service.clone()), map(vec![("condition", s(cond))]));
            }
            m.push(("depends_on", Value::Mapping(deps)));
        }
        let volumes: Vec<String> = svc
            .mounts
            .iter()
            .filter_map(|mnt| match mnt {
                Mount::Bind { source, target } => {
                    Some(format!("{}:{target}:ro", path_from(base, source)))
                }
                Mount::Volume { key, target } => Some(format!("{key}:{target}")),
                Mount::Tmpfs { .. } => None,
            })
            .collect();
        if !volumes.is_empty() {
            m.push(("volumes", seq(volumes)));
        }
        let tmpfs: Vec<String> = svc
            .mounts
            .iter()
            .filter_map(|mnt| {
                if let Mount::Tmpfs { target } = mnt {
                    Some(target.clone())
                } else {
                    None
                }
            })
            .collect();
        if !tmpfs.is_empty() {
            m.push(("tmpfs", seq(tmpfs)));
        }
        if svc.read_only {
            m.push(("read_only", Value::Bool(true)));
        }
        if !svc.cap_drop.is_empty() {
            m.push(("cap_drop", seq(svc.cap_drop.clone())));
        }
        if !svc.security_opt.is_empty() {
            m.push(("security_opt", seq(svc.security_opt.clone())));
        }
        if let Some(bytes) = svc.memory_bytes {
            m.push(("mem_limit", s(format!("{}m", bytes / (1024 * 1024)))));
        }
        if !svc.restart.is_empty() {
            m.push(("restart", s(svc.restart.clone())));
        }
        m.push((
            "networks",
            map(vec![(
                stack.network.key.as_str(),
                map(vec![("aliases", seq(svc.aliases.clone()))]),
            )]),
        ));
        services.insert(s(svc.name.clone()), map(m));
    }
    let mut volumes = Mapping::new();
    for v in &stack.volumes {
        volumes.insert(s(v.key.clone()), Value::Mapping(Mapping::new()));
    }
    let doc = map(vec![
        ("services", Value::Mapping(services)),
        (
            "networks",
            map(vec![(
                stack.network.key.as_str(),
                map(vec![("name", s(stack.network.name.clone()))]),
            )]),
        ),
        ("volumes", Value::Mapping(volumes)),
    ]);
    let body = serde_yaml::to_string(&doc).unwrap_or_default();
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
    }
    out.push_str(&body);
    out
}

/// Where `compose --target swarm` writes the Prometheus config it derives for Swarm.
pub const SWARM_PROMETHEUS: &str = ".irisctl/swarm/prometheus.yml";

/// What `compose --target swarm` writes: the stack file for `docker stack deploy -c`, the
/// Compose-only build override, and derived files the stack file names.
pub struct SwarmFiles {
    pub stack: String,
    pub build_override: String,
    pub extra: Vec<(std::path::PathBuf, Vec<u8>)>,
}

/// Render the Swarm form of `stack` (already adapted by [`crate::swarm::for_swarm`]): no
/// `build`, an image on every service, short `depends_on`, `deploy:` keys, files as configs and
/// the Grafana password as a secret. Paths are relative to `base`.
pub fn render_swarm(
    stack: &Stack,
    base: &Path,
    header: &str,
    api_replicas: u32,
) -> anyhow::Result<SwarmFiles> {
    let mut services = Mapping::new();
    let mut configs = Mapping::new();
    let mut secrets = Mapping::new();
    let mut builds = Mapping::new();
    let mut extra = Vec::new();
    let prefix = format!("{}_", stack.project);
    for svc in &stack.services {
        let mut m: Vec<(&str, Value)> = vec![("image", s(svc.image.clone()))];
        if let Some(b) = &svc.build {
            let mut args = Mapping::new();
            for (k, v) in &b.args {
                args.insert(s(k.clone()), s(v.clone()));
            }
            builds.insert(
                s(svc.name.clone()),
                map(vec![(
                    "build",
                    map(vec![
                        ("context", s(path_from(base, &b.context))),
                        ("dockerfile", s(b.dockerfile.clone())),
                        ("args", Value::Mapping(args)),
                    ]),
                )]),
            );
        }
        m.extend(runtime_keys(svc));
        if !svc.ports.is_empty() {
            let ports = svc
                .ports
                .iter()
                .map(|p| {
                    map(vec![
                        ("target", Value::Number(p.container.into())),
                        ("published", Value::Number(p.host.into())),
                        ("protocol", s("tcp")),
                        ("mode", s("host")),
                    ])
                })
                .collect();
            m.push(("ports", Value::Sequence(ports)));
        }
        if let Some(h) = &svc.healthcheck {
            m.push(("healthcheck", healthcheck(h)));
        }
        if !svc.depends_on.is_empty() {
            m.push((
                "depends_on",
                seq(svc.depends_on.iter().map(|d| d.service.clone())),
            ));
        }
        // Long syntax: `docker stack deploy` applies tmpfs mounts given this way.
        let volumes: Vec<Value> = svc
            .mounts
            .iter()
            .filter_map(|mnt| match mnt {
                Mount::Volume { key, target } => Some(map(vec![
                    ("type", s("volume")),
                    ("source", s(key.clone())),
                    ("target", s(target.clone())),
                ])),
                Mount::Tmpfs { target } => Some(map(vec![
                    ("type", s("tmpfs")),
                    ("target", s(target.clone())),
                ])),
                Mount::Bind { .. } => None,
            })
            .collect();
        if !volumes.is_empty() {
            m.push(("volumes", Value::Sequence(volumes)));
        }
        if svc.read_only {
            m.push(("read_only", Value::Bool(true)));
        }
        if !svc.cap_drop.is_empty() {
            m.push(("cap_drop", seq(svc.cap_drop.clone())));
        }
        let mut svc_configs = Vec::new();
        let mut svc_secrets = Vec::new();
        for f in crate::swarm::file_objects(stack, svc)? {
            let key = f.name.strip_prefix(&prefix).unwrap_or(&f.name).to_string();
            let file = if f.target == "/etc/prometheus/prometheus.yml" {
                extra.push((base.join(SWARM_PROMETHEUS), f.data.clone()));
                format!("./{SWARM_PROMETHEUS}")
            } else {
                path_from(base, &f.source)
            };
            let entry = map(vec![("file", s(file))]);
            if f.secret {
                secrets.insert(s(key.clone()), entry);
                svc_secrets.push(map(vec![
                    ("source", s(key)),
                    (
                        "target",
                        s(f.target.trim_start_matches("/run/secrets/").to_string()),
                    ),
                ]));
            } else {
                configs.insert(s(key.clone()), entry);
                svc_configs.push(map(vec![
                    ("source", s(key)),
                    ("target", s(f.target.clone())),
                    ("mode", Value::Number(0o444.into())),
                ]));
            }
        }
        if !svc_configs.is_empty() {
            m.push(("configs", Value::Sequence(svc_configs)));
        }
        if !svc_secrets.is_empty() {
            m.push(("secrets", Value::Sequence(svc_secrets)));
        }
        m.push((
            "networks",
            map(vec![(
                stack.network.key.as_str(),
                map(vec![("aliases", seq(svc.aliases.clone()))]),
            )]),
        ));
        let mut deploy = vec![
            (
                "replicas",
                Value::Number(crate::swarm::replicas(&svc.name, api_replicas).into()),
            ),
            ("endpoint_mode", s("dnsrr")),
            (
                "update_config",
                map(vec![
                    ("parallelism", Value::Number(1.into())),
                    ("delay", s("1s")),
                    ("failure_action", s("rollback")),
                    ("monitor", s("10s")),
                    ("order", s("start-first")),
                ]),
            ),
            (
                "rollback_config",
                map(vec![
                    ("parallelism", Value::Number(1.into())),
                    ("failure_action", s("pause")),
                    ("order", s("start-first")),
                ]),
            ),
            (
                "restart_policy",
                map(vec![("condition", s("any")), ("delay", s("2s"))]),
            ),
        ];
        if let Some(bytes) = svc.memory_bytes {
            deploy.push((
                "resources",
                map(vec![(
                    "limits",
                    map(vec![("memory", s(format!("{}M", bytes / (1024 * 1024))))]),
                )]),
            ));
        }
        m.push(("deploy", map(deploy)));
        services.insert(s(svc.name.clone()), map(m));
    }
    let mut volumes = Mapping::new();
    for v in &stack.volumes {
        volumes.insert(s(v.key.clone()), Value::Mapping(Mapping::new()));
    }
    let doc = map(vec![
        ("version", s("3.8")),
        ("services", Value::Mapping(services)),
        (
            "networks",
            map(vec![(
                stack.network.key.as_str(),
                map(vec![
                    ("driver", s("overlay")),
                    ("attachable", Value::Bool(true)),
                ]),
            )]),
        ),
        ("volumes", Value::Mapping(volumes)),
        ("configs", Value::Mapping(configs)),
        ("secrets", Value::Mapping(secrets)),
    ]);
    let comment = |text: &str| {
        text.lines()
            .map(|l| format!("# {l}\n").replace("# \n", "#\n"))
            .collect::<String>()
    };
    let stack_file = format!("{}{}", comment(header), serde_yaml::to_string(&doc)?);
    let build_doc = map(vec![
        ("version", s("3.8")),
        ("services", Value::Mapping(builds)),
    ]);
    let build_override = format!(
        "{}{}",
        comment("Compose-only part of the Swarm stack file: how its images are built.\nBuild them with `docker-compose -f STACK_FILE -f THIS_FILE build`; every node needs them\n(push them to a registry for a multi-node swarm)."),
        serde_yaml::to_string(&build_doc)?
    );
    Ok(SwarmFiles {
        stack: stack_file,
        build_override,
        extra,
    })
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
    use crate::settings::Settings;

    fn rendered() -> String {
        let st = Stack::from_settings(&Settings::defaults("/proj".into()));
        render(&st, Path::new("/proj"), "Generated by irisctl")
    }

    #[test]
    fn deterministic_and_relative() {
        let a = rendered();
        assert_eq!(a, rendered());
        assert!(
            a.starts_with("# Generated by irisctl\nservices:\n  api:\n"),
            "{a}"
        );
        assert!(a.contains("context: ./stack/api"));
        assert!(a.contains("- ./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro"));
        assert!(!a.contains("/proj/"));
    }

    #[test]
    fn avoids_what_compose_1_29_rejects() {
        let a = rendered();
        let doc: serde_yaml::Value = serde_yaml::from_str(&a).unwrap();
        assert!(doc.get("name").is_none() && doc.get("version").is_none());
        assert!(
            !a.contains("host_ip") && !a.contains("start_interval") && !a.contains("required:")
        );
        assert!(a.contains("- 127.0.0.1:8000:8000"));
        assert_eq!(
            doc["services"]["frontend"]["depends_on"]["api"]["condition"],
            "service_healthy"
        );
    }

    #[test]
    fn the_secret_is_a_mounted_file() {
        let a = rendered();
        assert!(
            a.contains("GF_SECURITY_ADMIN_PASSWORD__FILE: /run/secrets/grafana_admin_password"),
            "{a}"
        );
        assert!(a.contains("- ./.irisctl/secrets/grafana_admin_password:/run/secrets/grafana_admin_password:ro"), "{a}");
        assert!(!a.contains("GF_SECURITY_ADMIN_PASSWORD:"), "{a}");
        assert!(env_example().contains("GRAFANA_ADMIN_PASSWORD=\n"));
    }

    #[test]
    fn diff_is_empty_for_equal_text() {
        assert!(diff("a\n", "a\n", "f").is_empty());
        let d = diff("a\nb\n", "a\nc\n", "f");
        assert!(d.contains("-b") && d.contains("+c"), "{d}");
    }

    #[test]
    fn swarm_stack_file_has_no_build_and_deploy_keys() {
        let dir = tempfile::tempdir().unwrap();
        crate::assets::write_to(dir.path(), false).unwrap();
        std::fs::create_dir_all(dir.path().join(".irisctl/secrets")).unwrap();
        std::fs::write(crate::stack::grafana_secret_path(dir.path()), "pw").unwrap();
        let st = crate::swarm::for_swarm(&Stack::from_settings(&Settings::defaults(
            dir.path().to_path_buf(),
        )));
        let files = render_swarm(&st, dir.path(), "h", 3).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&files.stack).unwrap();
        for (name, svc) in doc["services"].as_mapping().unwrap() {
            assert!(svc.get("build").is_none(), "{name:?} has build");
            assert!(
                svc["image"].as_str().is_some_and(|i| !i.is_empty()),
                "{name:?} has no image"
            );
            assert!(svc["deploy"]["update_config"]["order"] == "start-first");
        }
        assert_eq!(doc["services"]["api"]["deploy"]["replicas"], 3);
        assert!(doc["services"]["api"].get("ports").is_none());
        assert_eq!(doc["services"]["frontend"]["depends_on"][0], "api");
        assert_eq!(doc["secrets"].as_mapping().unwrap().len(), 1);
        assert!(files.build_override.contains("context: ./stack/api"));
        assert_eq!(files.extra[0].0, dir.path().join(SWARM_PROMETHEUS));
    }

    #[test]
    fn snapshot_of_the_default_compose_file() {
        crate::snapshot::assert_snapshot("compose-default.yml", &rendered());
    }
}
