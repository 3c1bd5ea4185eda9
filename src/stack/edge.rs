//! The single-engine form of the stack: an `edge` container publishes the API's and the web UI's
//! host ports and proxies to the `api` and `frontend` network aliases, so those two can be
//! released (a new container beside the old one, then the old one drained) without a dropped
//! request. A host port is bound by one container at a time; the edge outlives every release.

use std::time::Duration;

use super::{Condition, Dependency, Healthcheck, Mount, Port, Service, Stack};

/// The edge's service name.
pub const EDGE: &str = "edge";
/// The edge's configuration in the project directory.
pub const EDGE_CONFIG: &str = "stack/edge/nginx.conf";
/// Where the edge reads it.
pub const EDGE_CONFIG_TARGET: &str = "/etc/irisctl-edge/nginx.conf";
/// The file, mounted into the web UI's nginx, that sends its `/api/` through the edge.
const FRONTEND_API_ROUTE: &str = "frontend-api.conf";
/// The services the edge fronts. The edge listens on each one's container port.
pub const FRONTED: &[&str] = &["api", "frontend"];

impl Stack {
    /// The stack as the single engine runs it (and as `irisctl compose` writes it): the ports
    /// of `api` and `frontend` are the edge's. Without a web UI image to take nginx from, or
    /// when already in that form, the stack as it is.
    pub fn docker_form(&self) -> Stack {
        if self.service(EDGE).is_some() {
            return self.clone();
        }
        let Some(nginx) = self
            .service("frontend")
            .and_then(|f| f.build.as_ref())
            .and_then(|b| b.args.get("NGINX_IMAGE"))
            .cloned()
        else {
            return self.clone();
        };
        let mut stack = self.clone();
        let mut ports: Vec<Port> = Vec::new();
        for s in stack
            .services
            .iter_mut()
            .filter(|s| FRONTED.contains(&s.name.as_str()))
        {
            ports.append(&mut s.ports);
        }
        // The web UI's `/api/` goes through the edge too: a canary release's split holds for it.
        if let Some(frontend) = stack.services.iter_mut().find(|s| s.name == "frontend") {
            let path = self
                .project_dir
                .join(super::DERIVED_DIR)
                .join(FRONTEND_API_ROUTE);
            frontend.derived.push(super::Derived {
                path: path.clone(),
                base: None,
                fill: vec![],
                text: format!("set $api_upstream http://{EDGE}:8000;\n"),
            });
            frontend.mounts.push(Mount::Bind {
                source: path,
                target: format!("/etc/nginx/irisctl/{FRONTEND_API_ROUTE}"),
            });
        }
        let template = stack.services.first().cloned();
        let Some(mut edge) = template else {
            return self.clone();
        };
        edge.name = EDGE.into();
        edge.container_name = format!("{}-{EDGE}-1", stack.project);
        edge.image = nginx;
        edge.build = None;
        // Not the image's entrypoint (which wants to edit conf.d as root): nginx itself.
        edge.command = [
            "/usr/sbin/nginx",
            "-c",
            EDGE_CONFIG_TARGET,
            "-e",
            "/dev/stderr",
            "-g",
            "daemon off;",
        ]
        .map(String::from)
        .to_vec();
        edge.env = Default::default();
        edge.ports = ports;
        edge.healthcheck = Some(Healthcheck {
            test: [
                "CMD",
                "wget",
                "-q",
                "-O",
                "/dev/null",
                "http://127.0.0.1:8081/healthz",
            ]
            .map(String::from)
            .to_vec(),
            interval: Duration::from_secs(3),
            timeout: Duration::from_secs(3),
            retries: 3,
            start_period: Duration::from_secs(5),
        });
        // Started after them: a stack from before the edge frees its ports first (the old
        // `api` and `frontend` containers published them).
        edge.depends_on = FRONTED
            .iter()
            .filter(|f| stack.service(f).is_some())
            .map(|f| Dependency {
                service: (*f).to_string(),
                condition: Condition::Started,
            })
            .collect();
        edge.mounts = vec![
            Mount::Bind {
                source: stack.project_dir.join(EDGE_CONFIG),
                target: EDGE_CONFIG_TARGET.into(),
            },
            Mount::Tmpfs {
                target: "/tmp".into(),
            },
        ];
        edge.user = Some("101".into());
        edge.read_only = true;
        edge.memory_bytes = Some(64 * 1024 * 1024);
        edge.aliases = vec![EDGE.into()];
        edge.probes = vec![];
        edge.ready = Some(crate::stack::Ready {
            port: 8081,
            path: "/healthz".into(),
        });
        stack.services.push(edge);
        stack
    }
}

/// Is `service` released (swapped with no dropped request) rather than recreated? A service
/// irisctl builds whose host ports, if any, the edge publishes; the others keep host ports or
/// volumes that two containers cannot share.
pub fn is_released(stack: &Stack, service: &Service) -> bool {
    stack.service(EDGE).is_some()
        && FRONTED.contains(&service.name.as_str())
        && service.build.is_some()
        && service.ports.is_empty()
}

/// The edge's host port for a fronted service (the first one that service's probes use).
pub fn edge_port<'a>(stack: &'a Stack, service: &Service) -> Option<&'a Port> {
    let edge = stack.service(EDGE)?;
    let probe = service.probes.first()?;
    edge.ports.iter().find(|p| p.host == probe.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn the_edge_publishes_the_api_and_the_web_ui() {
        let st = Stack::from_settings(&Settings::defaults("/p".into())).docker_form();
        let names: Vec<_> = st.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "frontend", "prometheus", "grafana", "edge"]);
        let edge = st.service(EDGE).unwrap();
        let ports: Vec<_> = edge.ports.iter().map(|p| (p.host, p.container)).collect();
        assert_eq!(ports, [(8000, 8000), (5174, 8080)]);
        assert!(st.service("api").unwrap().ports.is_empty());
        assert!(st.service("frontend").unwrap().ports.is_empty());
        assert_eq!(edge.cap_drop, ["ALL"]);
        assert!(edge.read_only && edge.user.as_deref() == Some("101"));
        assert_eq!(edge.container_name, "iris-edge-1");
        assert!(is_released(&st, st.service("api").unwrap()));
        assert!(!is_released(&st, st.service("prometheus").unwrap()));
        assert!(!is_released(&st, edge));
        assert_eq!(
            edge_port(&st, st.service("frontend").unwrap()).map(|p| p.host),
            Some(5174)
        );
        // Idempotent.
        assert_eq!(st.docker_form().services.len(), 5);
    }
}
