//! The stack as a Swarm stack file for `docker stack deploy -c` (no `build`, an image on every
//! service, `deploy:` keys, files as configs and the Grafana password as a secret), plus the
//! Compose-only override that builds its images.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::{comment, healthcheck, map, path_from, rollout_keys, runtime_keys, s, seq};
use crate::backend::swarm::spec::file_objects;
use crate::stack::{Mount, Stack};

/// Where `compose --target swarm` writes the Prometheus config it derives for Swarm.
pub const SWARM_PROMETHEUS: &str = ".irisctl/swarm/prometheus.yml";

/// What `compose --target swarm` writes: the stack file for `docker stack deploy -c`, the
/// Compose-only build override, and derived files the stack file names.
pub struct SwarmFiles {
    pub stack: String,
    pub build_override: String,
    pub extra: Vec<(std::path::PathBuf, Vec<u8>)>,
}

/// Render the Swarm form of `stack` (already [`Stack::swarm_form`]): no
/// `build`, an image on every service, short `depends_on`, `deploy:` keys, files as configs and
/// the Grafana password as a secret. Paths are relative to `base`.
pub fn render(stack: &Stack, base: &Path, header: &str) -> anyhow::Result<SwarmFiles> {
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
        for f in file_objects(stack, svc)? {
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
                Value::Number(stack.swarm.replicas_of(&svc.name).into()),
            ),
            ("endpoint_mode", s("dnsrr")),
        ];
        deploy.extend(rollout_keys(&stack.swarm.rollout));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn swarm_stack_file_has_no_build_and_deploy_keys() {
        let dir = tempfile::tempdir().unwrap();
        crate::assets::write_to(dir.path(), false).unwrap();
        std::fs::create_dir_all(dir.path().join(".irisctl/secrets")).unwrap();
        std::fs::write(crate::stack::grafana_secret_path(dir.path()), "pw").unwrap();
        let mut st = Stack::from_settings(&Settings::defaults(dir.path().to_path_buf()));
        st.swarm.replicas.insert("api".into(), 3);
        let files = render(&st.swarm_form(), dir.path(), "h").unwrap();
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
    fn swarm_form_delivers_alerts_through_the_alertmanager() {
        let dir = tempfile::tempdir().unwrap();
        crate::assets::write_to(dir.path(), false).unwrap();
        std::fs::create_dir_all(dir.path().join(".irisctl/secrets")).unwrap();
        std::fs::write(crate::stack::grafana_secret_path(dir.path()), "pw").unwrap();
        let mut settings = Settings::defaults(dir.path().to_path_buf());
        settings
            .apply("ALERTING_WEBHOOK_URL", "http://receiver:8080/", "t")
            .unwrap();
        let st = Stack::from_settings(&settings);
        let files = render(&st.swarm_form(), dir.path(), "h").unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&files.stack).unwrap();
        let am = &doc["services"]["alertmanager"];
        assert_eq!(am["read_only"], true);
        assert_eq!(am["cap_drop"][0], "ALL");
        // The config holds the webhook URL (maybe a token): a secret, not a config.
        assert!(am.get("configs").is_none(), "{am:?}");
        assert_eq!(am["secrets"][0]["target"], "alertmanager.yml");
        let key = am["secrets"][0]["source"].as_str().unwrap();
        assert!(doc["secrets"].get(key).is_some());
        assert!(doc["volumes"].get("alertmanager-data").is_some());
        // Prometheus's Swarm config keeps the alerting section beside the DNS discovery.
        let prom: serde_yaml::Value = serde_yaml::from_slice(&files.extra[0].1).unwrap();
        assert_eq!(
            prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
            "alertmanager:9093"
        );
    }
}
