//! The whole deployment as one plain value, computed from [`Settings`] without I/O.
//!
//! Every backend applies it and every renderer writes it out, so they agree by construction.
//! The Swarm view (replicas, registry, rollout policy) is part of it: nothing travels beside it.

pub mod edge;
pub mod files;
pub mod record;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::settings::Settings;

/// Where Grafana reads its admin password (`GF_SECURITY_ADMIN_PASSWORD__FILE`).
pub const GRAFANA_SECRET_TARGET: &str = "/run/secrets/grafana_admin_password";

/// The host file that holds Grafana's admin password, written from `.env` by `up` and `compose`.
pub fn grafana_secret_path(project_dir: &std::path::Path) -> PathBuf {
    project_dir.join(files::SECRET_FILE)
}

/// The network every service joins; its compose key and its engine name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Network {
    pub key: String,
    pub name: String,
}

/// A named volume; `name` is what the engine calls it (`<project>_<key>`, as Compose does).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Volume {
    pub key: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    pub project: String,
    pub project_dir: PathBuf,
    pub network: Network,
    pub volumes: Vec<Volume>,
    pub services: Vec<Service>,
    /// How the stack runs on Docker Swarm (`--target swarm`).
    pub swarm: SwarmView,
}

/// What only Swarm needs: replicas, the registry images travel through, the rollout policy.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SwarmView {
    /// Tasks per service (services not named run one).
    pub replicas: BTreeMap<String, u32>,
    /// A registry every node pulls from; built images are pushed there as `<registry>/<image>`.
    pub registry: Option<String>,
    /// How a changed service rolls out, and back.
    pub rollout: Rollout,
    /// The service whose tasks Prometheus's `iris-api` job finds by DNS service discovery.
    pub scraped_service: String,
}

/// A rolling update: one task at a time, the new one started first, rolled back on failure.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rollout {
    pub parallelism: u32,
    pub delay: Duration,
    pub monitor: Duration,
    /// `start-first`: the new task runs before the old one stops.
    pub order: &'static str,
    /// What a failed update does (`rollback`), and what a failed rollback does (`pause`).
    pub failure_action: &'static str,
    pub rollback_failure_action: &'static str,
    /// Restart policy of the tasks.
    pub restart_delay: Duration,
    pub stop_grace_period: Duration,
}

impl Rollout {
    pub const DEFAULT: Rollout = Rollout {
        parallelism: 1,
        delay: Duration::from_secs(1),
        monitor: Duration::from_secs(10),
        order: "start-first",
        failure_action: "rollback",
        rollback_failure_action: "pause",
        restart_delay: Duration::from_secs(2),
        stop_grace_period: Duration::from_secs(10),
    };
}

impl SwarmView {
    pub fn replicas_of(&self, service: &str) -> u32 {
        self.replicas.get(service).copied().unwrap_or(1)
    }

    /// Where a service's image comes from on every node.
    pub fn image_ref(&self, service: &Service) -> String {
        match (&self.registry, &service.build) {
            (Some(r), Some(_)) => format!("{r}/{}", service.image),
            _ => service.image.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Build {
    pub context: PathBuf,
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Port {
    pub host_ip: IpAddr,
    pub host: u16,
    pub container: u16,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Condition {
    Started,
    Healthy,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum Mount {
    /// A file or folder of the project directory, read-only.
    Bind {
        source: PathBuf,
        target: String,
    },
    /// A named volume, by its key in [`Stack::volumes`].
    Volume {
        key: String,
        target: String,
    },
    Tmpfs {
        target: String,
    },
}

/// An HTTP check of a published endpoint, run from this host.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Probe {
    pub name: String,
    pub port: u16,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub container_name: String,
    pub image: String,
    pub build: Option<Build>,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    /// `None`: the image's own HEALTHCHECK applies (services built from this repo bring one).
    pub healthcheck: Option<Healthcheck>,
    pub depends_on: Vec<Dependency>,
    pub mounts: Vec<Mount>,
    pub user: Option<String>,
    pub read_only: bool,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub memory_bytes: Option<u64>,
    pub restart: String,
    pub aliases: Vec<String>,
    #[serde(skip)]
    pub probes: Vec<Probe>,
}

const MIB: u64 = 1024 * 1024;

fn wget_check(url: &str) -> Healthcheck {
    Healthcheck {
        test: ["CMD", "wget", "-q", "-O", "/dev/null", url]
            .map(String::from)
            .to_vec(),
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(3),
        retries: 5,
        start_period: Duration::from_secs(10),
    }
}

impl Stack {
    /// The stack the settings describe.
    pub fn from_settings(s: &Settings) -> Stack {
        let project = s.project.clone();
        let dir = &s.project_dir;
        let port = |host: u16, container: u16| Port {
            host_ip: s.bind,
            host,
            container,
        };
        let hardened = |mut svc: Service| {
            svc.cap_drop = vec!["ALL".into()];
            svc.security_opt = vec!["no-new-privileges:true".into()];
            svc.restart = "unless-stopped".into();
            svc.aliases = vec![svc.name.clone()];
            svc
        };
        let base = |name: &str| Service {
            name: name.into(),
            container_name: format!("{project}-{name}-1"),
            image: String::new(),
            build: None,
            command: vec![],
            env: BTreeMap::new(),
            ports: vec![],
            healthcheck: None,
            depends_on: vec![],
            mounts: vec![],
            user: None,
            read_only: false,
            cap_drop: vec![],
            security_opt: vec![],
            memory_bytes: None,
            restart: String::new(),
            aliases: vec![],
            probes: vec![],
        };
        // A third-party service: pulled image with our health check, or built from a context
        // given in the settings (which brings its own HEALTHCHECK).
        let third_party =
            |svc: &mut Service, image: &str, check: Healthcheck| match s.builds.get(&svc.name) {
                Some(b) => {
                    svc.image = s.built_tag(&svc.name);
                    svc.build = Some(Build {
                        context: b.context.clone(),
                        dockerfile: b.dockerfile.clone(),
                        args: b.args.clone(),
                    });
                }
                None => {
                    svc.image = image.to_string();
                    svc.healthcheck = Some(check);
                }
            };

        let mut api = base("api");
        api.image = s.built_tag("api");
        api.build = Some(Build {
            context: dir.join("stack/api"),
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::from([("PYTHON_IMAGE".into(), s.images.python.clone())]),
        });
        api.ports = vec![port(s.ports.api, 8000)];
        api.read_only = true;
        api.mounts = vec![Mount::Tmpfs {
            target: "/tmp".into(),
        }];
        api.memory_bytes = Some(512 * MIB);
        api.probes = vec![Probe {
            name: "api".into(),
            port: s.ports.api,
            path: "/health".into(),
        }];

        let mut frontend = base("frontend");
        frontend.image = s.built_tag("frontend");
        frontend.build = Some(Build {
            context: dir.join("stack/frontend"),
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::from([
                ("NGINX_IMAGE".into(), s.images.nginx.clone()),
                ("NODE_IMAGE".into(), s.images.node.clone()),
            ]),
        });
        frontend.ports = vec![port(s.ports.frontend, 8080)];
        frontend.depends_on = vec![Dependency {
            service: "api".into(),
            condition: Condition::Healthy,
        }];
        frontend.read_only = true;
        frontend.mounts = vec![Mount::Tmpfs {
            target: "/tmp".into(),
        }];
        frontend.memory_bytes = Some(128 * MIB);
        frontend.probes = vec![
            Probe {
                name: "frontend".into(),
                port: s.ports.frontend,
                path: "/".into(),
            },
            Probe {
                name: "frontend → api".into(),
                port: s.ports.frontend,
                path: "/api/health".into(),
            },
        ];

        let mut prometheus = base("prometheus");
        third_party(
            &mut prometheus,
            &s.images.prometheus,
            wget_check("http://127.0.0.1:9090/-/ready"),
        );
        prometheus.ports = vec![port(s.ports.prometheus, 9090)];
        prometheus.read_only = true;
        prometheus.mounts = vec![
            Mount::Bind {
                source: dir.join("monitoring/prometheus.yml"),
                target: "/etc/prometheus/prometheus.yml".into(),
            },
            Mount::Bind {
                source: dir.join("monitoring/alerts.yml"),
                target: "/etc/prometheus/alerts.yml".into(),
            },
            Mount::Volume {
                key: "prometheus-data".into(),
                target: "/prometheus".into(),
            },
        ];
        prometheus.memory_bytes = Some(512 * MIB);
        prometheus.probes = vec![Probe {
            name: "prometheus".into(),
            port: s.ports.prometheus,
            path: "/-/ready".into(),
        }];

        let mut grafana = base("grafana");
        third_party(
            &mut grafana,
            &s.images.grafana,
            wget_check("http://127.0.0.1:3000/api/health"),
        );
        grafana.ports = vec![port(s.ports.grafana, 3000)];
        // The admin password reaches Grafana as a file, so it is not in `docker inspect`'s env.
        grafana.env = BTreeMap::from([
            ("GF_AUTH_ANONYMOUS_ENABLED".into(), "false".into()),
            (
                "GF_SECURITY_ADMIN_PASSWORD__FILE".into(),
                GRAFANA_SECRET_TARGET.into(),
            ),
            (
                "GF_SECURITY_ADMIN_USER".into(),
                s.grafana_admin_user.clone(),
            ),
            ("GF_USERS_ALLOW_SIGN_UP".into(), "false".into()),
        ]);
        grafana.mounts = vec![
            Mount::Bind {
                source: grafana_secret_path(dir),
                target: GRAFANA_SECRET_TARGET.into(),
            },
            Mount::Volume {
                key: "grafana-data".into(),
                target: "/var/lib/grafana".into(),
            },
            Mount::Bind {
                source: dir.join("monitoring/grafana/provisioning"),
                target: "/etc/grafana/provisioning".into(),
            },
            // Grafana's file provider reads every *.json below it. Only the dashboards: mounting all of
            // monitoring/ would tie Grafana's config hash to prometheus.yml.
            // The dashboards with `${DS_*}` inputs resolved (Grafana's file provider does not
            // resolve them): a copy irisctl writes from monitoring/dashboards.
            Mount::Bind {
                source: dir.join(crate::grafana::RESOLVED_DASHBOARDS_DIR),
                target: "/etc/grafana/dashboards".into(),
            },
        ];
        grafana.memory_bytes = Some(512 * MIB);
        grafana.probes = vec![Probe {
            name: "grafana".into(),
            port: s.ports.grafana,
            path: "/api/health".into(),
        }];

        Stack {
            network: Network {
                key: "iris-network".into(),
                name: format!("{project}-network"),
            },
            volumes: ["grafana-data", "prometheus-data"]
                .iter()
                .map(|k| Volume {
                    key: (*k).into(),
                    name: format!("{project}_{k}"),
                })
                .collect(),
            services: [api, frontend, prometheus, grafana]
                .into_iter()
                .map(hardened)
                .collect(),
            swarm: SwarmView {
                replicas: BTreeMap::from([("api".to_string(), s.api_replicas)]),
                registry: s.registry.clone(),
                rollout: Rollout::DEFAULT,
                scraped_service: "api".into(),
            },
            project,
            project_dir: dir.clone(),
        }
    }

    /// The stack as it runs on Swarm: ports are published on the node that runs the task (no
    /// routing mesh), so the replicated API is not published; it is reached through the web
    /// UI's `/api/` proxy, which spreads requests over the replicas.
    pub fn swarm_form(&self) -> Stack {
        let mut stack = self.clone();
        for s in stack
            .services
            .iter_mut()
            .filter(|s| self.swarm.replicas.contains_key(&s.name))
        {
            s.ports.clear();
            s.probes.clear();
        }
        stack
    }

    /// A Swarm object's name: `<project>_<name>`, as `docker stack deploy` names them.
    pub fn swarm_name(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn volume_name(&self, key: &str) -> String {
        self.volumes
            .iter()
            .find(|v| v.key == key)
            .map_or_else(|| format!("{}_{key}", self.project), |v| v.name.clone())
    }

    /// Services grouped into start waves: each wave depends only on earlier ones.
    pub fn waves(&self) -> Vec<Vec<&Service>> {
        let mut placed: Vec<&str> = Vec::new();
        let mut waves = Vec::new();
        let mut rest: Vec<&Service> = self.services.iter().collect();
        while !rest.is_empty() {
            let (ready, blocked): (Vec<&Service>, Vec<&Service>) =
                rest.into_iter().partition(|s| {
                    s.depends_on
                        .iter()
                        .all(|d| placed.contains(&d.service.as_str()))
                });
            if ready.is_empty() {
                // A cycle cannot come from `from_settings`; start the rest together rather than hang.
                waves.push(blocked);
                break;
            }
            placed.extend(ready.iter().map(|s| s.name.as_str()));
            waves.push(ready);
            rest = blocked;
        }
        waves
    }
}

/// The config hash stored in `com.docker.compose.config-hash`: a digest of the service's
/// [`record::Record`] (its definition, the image ID it runs and the content of the files it
/// mounts).
pub fn config_hash(
    service: &Service,
    image_id: &str,
    mounted_files: &[(String, Vec<u8>)],
) -> String {
    record::Record::of(service, image_id, mounted_files).hash()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        Stack::from_settings(&Settings::defaults(PathBuf::from("/p")))
    }

    #[test]
    fn four_services_hardened_on_loopback() {
        let st = stack();
        let names: Vec<_> = st.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "frontend", "prometheus", "grafana"]);
        for s in &st.services {
            assert_eq!(s.cap_drop, ["ALL"], "{}", s.name);
            assert!(s
                .security_opt
                .contains(&"no-new-privileges:true".to_string()));
            assert!(s.ports.iter().all(|p| p.host_ip.is_loopback()));
            assert_eq!(s.restart, "unless-stopped");
            assert!(s.memory_bytes.is_some());
            assert_eq!(s.container_name, format!("iris-{}-1", s.name));
        }
        assert_eq!(st.network.name, "iris-network");
        assert_eq!(st.service("api").unwrap().image, "iris-api:dev");
    }

    #[test]
    fn waves_follow_dependencies() {
        let st = stack();
        let waves: Vec<Vec<&str>> = st
            .waves()
            .iter()
            .map(|w| w.iter().map(|s| s.name.as_str()).collect())
            .collect();
        assert_eq!(
            waves,
            vec![vec!["api", "prometheus", "grafana"], vec!["frontend"]]
        );
    }

    #[test]
    fn built_third_party_service_uses_its_own_healthcheck() {
        let mut s = Settings::defaults(PathBuf::from("/p"));
        s.builds.insert(
            "grafana".into(),
            crate::settings::BuildSpec {
                context: "/g".into(),
                dockerfile: "Dockerfile".into(),
                args: BTreeMap::new(),
            },
        );
        let st = Stack::from_settings(&s);
        let g = st.service("grafana").unwrap();
        assert_eq!(g.image, "iris-grafana:dev");
        assert!(g.healthcheck.is_none() && g.build.is_some());
        assert!(st.service("prometheus").unwrap().healthcheck.is_some());
    }

    #[test]
    fn config_hash_changes_with_definition_image_and_files() {
        let st = stack();
        let api = st.service("api").unwrap();
        let h = config_hash(api, "sha256:a", &[]);
        assert_eq!(h, config_hash(api, "sha256:a", &[]));
        assert_ne!(h, config_hash(api, "sha256:b", &[]));
        assert_ne!(
            h,
            config_hash(api, "sha256:a", &[("f".into(), b"x".to_vec())])
        );
        let mut changed = api.clone();
        changed.ports[0].host = 8001;
        assert_ne!(h, config_hash(&changed, "sha256:a", &[]));
    }
}
