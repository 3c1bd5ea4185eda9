//! The stack as a `docker-compose.yml` that docker-compose 1.29 and Compose v2 both run.
//! Grafana's password is mounted from `.irisctl/secrets/`, which `irisctl compose -o` writes
//! from `.env`.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::{comment, healthcheck, map, path_from, runtime_keys, s, seq};
use crate::stack::{Condition, Mount, Stack};

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
            // As on the images irisctl builds: `irisctl down --rmi` removes these too.
            build.push((
                "labels",
                map(vec![(
                    crate::engine::labels::MANAGED_BY,
                    s("irisctl".to_string()),
                )]),
            ));
            m.push(("build", map(build)));
        }
        m.push(("image", s(svc.image.clone())));
        // No `container_name`: Compose names containers by project (`<project>-<service>-1`
        // in v2, as irisctl does), so the file also runs under another project name.
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
    format!(
        "{}{}",
        comment(header),
        serde_yaml::to_string(&doc).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn rendered() -> String {
        let st = Stack::from_settings(&Settings::defaults("/proj".into())).docker_form();
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
        // Compose names the containers by project: the file runs under another project name.
        assert!(!a.contains("container_name"), "{a}");
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
        assert!(super::super::env_example().contains("GRAFANA_ADMIN_PASSWORD=\n"));
    }

    #[test]
    fn alert_delivery_adds_the_alertmanager_hardened_and_keeps_the_webhook_out() {
        let mut settings = Settings::defaults("/proj".into());
        settings
            .apply(
                "ALERTING_WEBHOOK_URL",
                "https://hooks.example.com/T0K3N",
                "t",
            )
            .unwrap();
        let st = Stack::from_settings(&settings);
        let a = render(&st, Path::new("/proj"), "Generated by irisctl");
        assert!(!a.contains("T0K3N"), "{a}");
        let doc: serde_yaml::Value = serde_yaml::from_str(&a).unwrap();
        let am = &doc["services"]["alertmanager"];
        assert_eq!(am["image"], "prom/alertmanager:v0.27.0");
        assert_eq!(am["read_only"], true);
        assert_eq!(am["cap_drop"][0], "ALL");
        assert_eq!(am["security_opt"][0], "no-new-privileges:true");
        assert_eq!(am["ports"][0], "127.0.0.1:9093:9093");
        assert!(am["healthcheck"]["test"]
            .as_sequence()
            .unwrap()
            .contains(&"http://127.0.0.1:9093/-/ready".into()));
        assert!(doc["volumes"].get("alertmanager-data").is_some());
        assert!(
            a.contains("- ./.irisctl/derived/alertmanager.yml:/run/secrets/alertmanager.yml:ro")
        );
        assert!(a.contains("- ./.irisctl/derived/prometheus.yml:/etc/prometheus/prometheus.yml:ro"));
        crate::snapshot::assert_snapshot("compose-alerting.yml", &a);
    }

    #[test]
    fn snapshot_of_the_default_compose_file() {
        crate::snapshot::assert_snapshot("compose-default.yml", &rendered());
    }
}
