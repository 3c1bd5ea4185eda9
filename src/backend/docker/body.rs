//! A service as the engine's container-create request (pure): Compose's labels, the record of
//! its configuration, hardening, ports, mounts, health check, network alias.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
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

/// The definition a container was created with, as a create request for the same thing: its
/// configuration and host configuration as the engine reports them, its image by ID. Left out:
/// what belongs to the one container (host name, container number) and the previous release
/// it carries itself (so definitions do not nest). `None` when the engine reported no
/// configuration.
pub fn definition_of(c: &ContainerInspectResponse) -> Option<ContainerCreateBody> {
    let mut def = serde_json::to_value(c.config.as_ref()?).ok()?;
    let obj = def.as_object_mut()?;
    obj.remove("Hostname");
    obj.remove("Domainname");
    if let Some(image) = c.image.as_ref().filter(|i| !i.is_empty()) {
        obj.insert("Image".into(), image.clone().into());
    }
    if let Some(l) = obj.get_mut("Labels").and_then(|l| l.as_object_mut()) {
        l.remove(labels::PREVIOUS_RELEASE);
        l.remove(labels::NUMBER);
    }
    obj.insert(
        "HostConfig".into(),
        serde_json::to_value(c.host_config.as_ref()?).ok()?,
    );
    serde_json::from_value(def).ok()
}

/// The previous release a container carries ([`labels::PREVIOUS_RELEASE`]), if any.
pub fn previous_release(container_labels: &HashMap<String, String>) -> Option<ContainerCreateBody> {
    serde_json::from_str(container_labels.get(labels::PREVIOUS_RELEASE)?).ok()
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

    /// A container as Docker 20.10 inspects it (abridged), and the definition a rollback
    /// recreates from it.
    #[test]
    fn definition_of_a_container_is_its_create_request() {
        let inspected: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Id": "4cc67234a810aa",
            "Image": "sha256:0842",
            "Config": {
                "Hostname": "4cc67234a810", "Domainname": "", "User": "10001:10001",
                "ExposedPorts": {"8000/tcp": {}},
                "Env": ["PATH=/opt/venv/bin:/usr/bin", "IRIS_MODEL_PATH=/opt/iris/model.json"],
                "Cmd": ["/opt/venv/bin/uvicorn", "--port", "8000"],
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5_000_000_000_i64, "Retries": 3},
                "Image": "iris-api:dev", "Volumes": null, "WorkingDir": "/app", "Entrypoint": null,
                "Labels": {
                    "com.docker.compose.service": "api",
                    "com.docker.compose.container-number": "2",
                    "io.irisctl.record": "{\"image\":\"sha256:0842\"}",
                    "io.irisctl.previous-release": "{\"Image\":\"sha256:0001\"}"
                }
            },
            "HostConfig": {
                "Binds": [], "NetworkMode": "iris-network", "PortBindings": {},
                "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
                "CapDrop": ["ALL"], "CgroupnsMode": "host", "ReadonlyRootfs": true,
                "SecurityOpt": ["no-new-privileges:true"], "Tmpfs": {"/tmp": ""},
                "ConsoleSize": [0, 0], "Isolation": "", "Memory": 671088640,
                "MemorySwap": 1342177280, "MemorySwappiness": null, "KernelMemory": 0
            }
        }))
        .expect("an inspect response");
        let def = definition_of(&inspected).expect("a definition");
        assert_eq!(def.image.as_deref(), Some("sha256:0842"), "the image by ID");
        assert_eq!(def.hostname, None);
        assert_eq!(def.user.as_deref(), Some("10001:10001"));
        assert_eq!(def.cmd.as_ref().map(Vec::len), Some(3));
        assert!(def
            .env
            .as_ref()
            .unwrap()
            .contains(&"IRIS_MODEL_PATH=/opt/iris/model.json".to_string()));
        let l = def.labels.clone().unwrap();
        assert_eq!(l[labels::SERVICE], "api");
        assert!(l.contains_key(record::LABEL));
        assert!(!l.contains_key(labels::NUMBER));
        assert!(
            !l.contains_key(labels::PREVIOUS_RELEASE),
            "definitions do not nest"
        );
        let hc = def.host_config.clone().unwrap();
        assert_eq!(hc.memory, Some(640 * 1024 * 1024));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.tmpfs.unwrap()["/tmp"], "");
        // As carried in a label, it reads back the same.
        let carried = HashMap::from([(
            labels::PREVIOUS_RELEASE.to_string(),
            serde_json::to_string(&def).unwrap(),
        )]);
        assert_eq!(previous_release(&carried), Some(def));
        assert_eq!(previous_release(&HashMap::new()), None);
        let garbled = HashMap::from([(labels::PREVIOUS_RELEASE.to_string(), "{".to_string())]);
        assert_eq!(previous_release(&garbled), None);
    }
}
