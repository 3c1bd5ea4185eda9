//! A service as the engine's container-create request (pure): Compose's labels, the record of
//! its configuration, hardening, ports, mounts, health check, network alias.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};

use crate::engine::{health_config, labels};
use crate::stack::record::{self, Record};
use crate::stack::{Mount, Service, Stack};

/// The engine's create request for a service.
pub fn container_body(stack: &Stack, service: &Service, record: &Record) -> ContainerCreateBody {
    let hash = record.hash();
    let env: Vec<String> = service
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut port_bindings = HashMap::new();
    let mut exposed = Vec::new();
    for p in &service.ports {
        let key = format!("{}/tcp", p.container);
        exposed.push(key.clone());
        port_bindings.insert(
            key,
            Some(vec![PortBinding {
                host_ip: Some(p.host_ip.to_string()),
                host_port: Some(p.host.to_string()),
            }]),
        );
    }
    let mut binds = Vec::new();
    let mut tmpfs = HashMap::new();
    for m in &service.mounts {
        match m {
            Mount::Bind { source, target } => {
                binds.push(format!("{}:{target}:ro", source.display()))
            }
            Mount::Volume { key, target } => {
                binds.push(format!("{}:{target}:rw", stack.volume_name(key)))
            }
            Mount::Tmpfs { target } => {
                tmpfs.insert(target.clone(), String::new());
            }
        }
    }
    let healthcheck = service.healthcheck.as_ref().map(health_config);
    let restart = match service.restart.as_str() {
        "always" => RestartPolicyNameEnum::ALWAYS,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        "no" | "" => RestartPolicyNameEnum::NO,
        _ => RestartPolicyNameEnum::UNLESS_STOPPED,
    };
    let container_labels = HashMap::from([
        (labels::PROJECT.to_string(), stack.project.clone()),
        (labels::SERVICE.to_string(), service.name.clone()),
        (labels::NUMBER.to_string(), "1".to_string()),
        (labels::ONEOFF.to_string(), "False".to_string()),
        (labels::CONFIG_HASH.to_string(), hash),
        (record::LABEL.to_string(), record.label()),
        (
            labels::VERSION.to_string(),
            labels::COMPOSE_VERSION.to_string(),
        ),
        (
            labels::WORKING_DIR.to_string(),
            stack.project_dir.display().to_string(),
        ),
        (labels::MANAGED_BY.to_string(), "irisctl".to_string()),
    ]);
    ContainerCreateBody {
        image: Some(service.image.clone()),
        cmd: (!service.command.is_empty()).then(|| service.command.clone()),
        env: Some(env),
        user: service.user.clone(),
        labels: Some(container_labels),
        healthcheck,
        exposed_ports: Some(exposed),
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            binds: Some(binds),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            readonly_rootfs: Some(service.read_only),
            cap_drop: Some(service.cap_drop.clone()),
            security_opt: Some(service.security_opt.clone()),
            memory: service.memory_bytes.and_then(|m| i64::try_from(m).ok()),
            network_mode: Some(stack.network.name.clone()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                stack.network.name.clone(),
                EndpointSettings {
                    aliases: Some(service.aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_body_is_labelled_like_compose_and_hardened() {
        let st = Stack::from_settings(&crate::settings::Settings::defaults("/p".into()));
        let g = st.service("grafana").unwrap();
        let record = Record::of(g, "sha256:g", &[]);
        let body = container_body(&st, g, &record);
        let l = body.labels.unwrap();
        assert_eq!(l[labels::PROJECT], "iris");
        assert_eq!(l[labels::SERVICE], "grafana");
        assert_eq!(l[labels::NUMBER], "1");
        assert_eq!(l[labels::CONFIG_HASH], record.hash());
        assert_eq!(Record::from_label(&l[record::LABEL]), Some(record));
        let env = body.env.unwrap();
        assert!(env.contains(
            &"GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/grafana_admin_password".to_string()
        ));
        assert!(
            !env.iter()
                .any(|e| e.starts_with("GF_SECURITY_ADMIN_PASSWORD=")),
            "the secret must not be in the env"
        );
        let hc = body.host_config.unwrap();
        assert_eq!(hc.cap_drop.unwrap(), ["ALL"]);
        assert!(hc.binds.unwrap().contains(
            &"/p/.irisctl/secrets/grafana_admin_password:/run/secrets/grafana_admin_password:ro"
                .to_string()
        ));
        let pb = hc.port_bindings.unwrap();
        assert_eq!(
            pb["3000/tcp"].as_ref().unwrap()[0].host_ip.as_deref(),
            Some("127.0.0.1")
        );
    }
}
