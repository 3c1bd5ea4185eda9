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
    /// Without a registry: the other nodes' engines over SSH, which built images are sent to.
    pub nodes: Vec<String>,
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

/// How irisctl decides that a service is ready, without waiting for Docker's health-check
/// interval: an HTTP GET of `path` on the container's `port` that answers 2xx.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ready {
    pub port: u16,
    pub path: String,
}

/// An HTTP check of a published endpoint, run from this host.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Probe {
    pub name: String,
    pub port: u16,
    pub path: String,
}

/// A file irisctl writes below `.irisctl/` before the service mounts it (with a [`Mount::Bind`]
/// of `path`): a stack file, if any, with its `${name}` placeholders filled, followed by text
/// computed from the settings. Hashed from what it will hold, so a plan is right before the
/// file is (re)written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub path: PathBuf,
    /// The stack file the content starts with.
    pub base: Option<PathBuf>,
    /// `(name, value)`: every `${name}` of the base becomes `value`; the base must have no other
    /// `${…}` left.
    pub fill: Vec<(String, String)>,
    pub text: String,
}

impl Derived {
    /// What the file will hold.
    pub fn content(&self) -> anyhow::Result<Vec<u8>> {
        let mut data = match &self.base {
            Some(base) => {
                let text = std::fs::read_to_string(base).map_err(|e| {
                    crate::error::hinted(
                        format!("stack file `{}` cannot be read: {e}", base.display()),
                        "restore it, or write the built-in stack into a folder with `irisctl init DIR` and use `--project-dir DIR`",
                    )
                })?;
                fill(&text, &self.fill).map_err(|name| {
                    crate::error::hinted(
                        format!(
                            "stack file `{}` has a placeholder irisctl does not fill: `${{{name}}}`",
                            base.display()
                        ),
                        format!(
                            "the placeholders irisctl fills there are {}; remove or fix that one",
                            self.fill
                                .iter()
                                .map(|(n, _)| format!("`${{{n}}}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?
                .into_bytes()
            }
            None => Vec::new(),
        };
        if !data.is_empty() && !data.ends_with(b"\n") {
            data.push(b'\n');
        }
        data.extend_from_slice(self.text.as_bytes());
        Ok(data)
    }
}

/// `text` with every `${name}` of `values` replaced; `Err(name)` for the first `${…}` left.
pub fn fill(text: &str, values: &[(String, String)]) -> Result<String, String> {
    let mut out = text.to_string();
    for (name, value) in values {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    match out.find("${") {
        None => Ok(out),
        Some(at) => {
            let rest = &out[at + 2..];
            let name: String = rest.chars().take_while(|c| *c != '}').take(40).collect();
            Err(name)
        }
    }
}

/// Where, below the project directory, irisctl writes the files it derives from the settings.
/// Where irisctl keeps what it knows of a project (below the project directory).
pub const STATE_DIR: &str = ".irisctl";
pub const DERIVED_DIR: &str = ".irisctl/derived";

/// Prometheus's config when alerts are delivered: monitoring/prometheus.yml and this.
pub const PROMETHEUS_ALERTING: &str = "\
# Added by irisctl because alerting.webhook_url is set: send alerts to the stack's Alertmanager.
alerting:
  alertmanagers:
    - static_configs:
        - targets: [\"alertmanager:9093\"]
";

/// Alertmanager's config: every alert to one webhook, firing and resolved, grouped by alert name
/// and job, with waits short enough for a small stack. Credentials in the URL become
/// `basic_auth` (the same header), whose password Alertmanager masks on its status page.
pub fn alertmanager_config(webhook_url: &str) -> String {
    // A JSON string is a YAML double-quoted scalar: any character is safe in it.
    let quoted = |v: &str| serde_json::Value::String(v.to_string()).to_string();
    let (url, userinfo) = crate::grafana::split_userinfo(webhook_url);
    let auth = match userinfo {
        None => String::new(),
        Some((user, password)) => format!(
            "        http_config:\n          basic_auth:\n            username: {}\n            password: {}\n",
            quoted(&user),
            quoted(&password)
        ),
    };
    format!(
        "\
# Generated by irisctl from alerting.webhook_url (rewritten by every `up`; edits are lost).
route:
  receiver: webhook
  group_by: [alertname, job]
  group_wait: 10s
  group_interval: 30s
  repeat_interval: 4h
receivers:
  - name: webhook
    webhook_configs:
      - url: {}
        send_resolved: true
{auth}",
        quoted(&url)
    )
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
    /// irisctl's own readiness check (not part of the definition: it changes no container).
    #[serde(skip)]
    pub ready: Option<Ready>,
    /// Files below `.irisctl/` the service mounts; their content counts through the mounts.
    #[serde(skip)]
    pub derived: Vec<Derived>,
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
            ready: None,
            derived: vec![],
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
        api.memory_bytes = Some(s.memory.api);
        api.probes = vec![Probe {
            name: "api".into(),
            port: s.ports.api,
            path: "/health".into(),
        }];
        api.ready = Some(Ready {
            port: 8000,
            path: "/health".into(),
        });

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
        frontend.memory_bytes = Some(s.memory.frontend);
        frontend.ready = Some(Ready {
            port: 8080,
            path: "/".into(),
        });
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
        // With alert delivery on, Prometheus reads a copy of monitoring/prometheus.yml that
        // points at the Alertmanager; without it, nothing points at one.
        let prometheus_config = match &s.alerting.webhook_url {
            None => dir.join("monitoring/prometheus.yml"),
            Some(_) => {
                let path = dir.join(DERIVED_DIR).join("prometheus.yml");
                prometheus.derived.push(Derived {
                    path: path.clone(),
                    base: Some(dir.join("monitoring/prometheus.yml")),
                    fill: vec![],
                    text: PROMETHEUS_ALERTING.into(),
                });
                path
            }
        };
        // The rules: monitoring/alerts.yml is a template of the drift rule's settings.
        let rules = dir.join(DERIVED_DIR).join("alerts.yml");
        prometheus.derived.push(Derived {
            path: rules.clone(),
            base: Some(dir.join("monitoring/alerts.yml")),
            fill: vec![
                ("drift_window".into(), s.alerting.drift_window.clone()),
                ("drift_for".into(), s.alerting.drift_for.clone()),
                ("drift_stddevs".into(), s.alerting.drift_stddevs.clone()),
            ],
            text: String::new(),
        });
        prometheus.mounts = vec![
            Mount::Bind {
                source: prometheus_config,
                target: "/etc/prometheus/prometheus.yml".into(),
            },
            Mount::Bind {
                source: rules,
                target: "/etc/prometheus/alerts.yml".into(),
            },
            Mount::Volume {
                key: "prometheus-data".into(),
                target: "/prometheus".into(),
            },
        ];
        prometheus.memory_bytes = Some(512 * MIB);
        prometheus.ready = Some(Ready {
            port: 9090,
            path: "/-/ready".into(),
        });
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
        grafana.ready = Some(Ready {
            port: 3000,
            path: "/api/health".into(),
        });
        grafana.probes = vec![Probe {
            name: "grafana".into(),
            port: s.ports.grafana,
            path: "/api/health".into(),
        }];

        let alertmanager = s.alerting.webhook_url.as_ref().map(|url| {
            let mut am = base("alertmanager");
            am.image = s.images.alertmanager.clone();
            am.healthcheck = Some(wget_check("http://127.0.0.1:9093/-/ready"));
            // The image's own command, and no cluster listener: one Alertmanager, no peers.
            am.command = [
                "--config.file=/run/secrets/alertmanager.yml",
                "--storage.path=/alertmanager",
                "--cluster.listen-address=",
            ]
            .map(String::from)
            .to_vec();
            am.ports = vec![port(s.ports.alertmanager, 9093)];
            am.read_only = true;
            let config = dir.join(DERIVED_DIR).join("alertmanager.yml");
            am.derived = vec![Derived {
                path: config.clone(),
                base: None,
                fill: vec![],
                text: alertmanager_config(url.expose()),
            }];
            am.mounts = vec![
                Mount::Bind {
                    source: config,
                    // Under /run/secrets: on Swarm it travels as a secret (the webhook URL
                    // may hold a token), not as a config anyone can inspect.
                    target: "/run/secrets/alertmanager.yml".into(),
                },
                Mount::Volume {
                    key: "alertmanager-data".into(),
                    target: "/alertmanager".into(),
                },
            ];
            am.memory_bytes = Some(128 * MIB);
            am.probes = vec![Probe {
                name: "alertmanager".into(),
                port: s.ports.alertmanager,
                path: "/-/ready".into(),
            }];
            am.ready = Some(Ready {
                port: 9093,
                path: "/-/ready".into(),
            });
            am
        });
        let mut volume_keys = vec!["grafana-data", "prometheus-data"];
        if alertmanager.is_some() {
            volume_keys.push("alertmanager-data");
        }

        Stack {
            network: Network {
                key: "iris-network".into(),
                name: format!("{project}-network"),
            },
            volumes: volume_keys
                .iter()
                .map(|k| Volume {
                    key: (*k).into(),
                    name: format!("{project}_{k}"),
                })
                .collect(),
            services: [api, frontend, prometheus, grafana]
                .into_iter()
                .chain(alertmanager)
                .map(hardened)
                .collect(),
            swarm: SwarmView {
                replicas: BTreeMap::from([("api".to_string(), s.api_replicas)]),
                registry: s.registry.clone(),
                nodes: s.swarm_nodes.clone(),
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
    fn alert_delivery_adds_a_hardened_alertmanager_and_points_prometheus_at_it() {
        let dir = tempfile::tempdir().unwrap();
        crate::assets::write_to(dir.path(), false).unwrap();
        let mut s = Settings::defaults(dir.path().to_path_buf());
        // Without a webhook: no Alertmanager, Prometheus reads the stack's own config.
        let st = Stack::from_settings(&s);
        assert!(st.service("alertmanager").is_none());
        assert!(st.volumes.iter().all(|v| v.key != "alertmanager-data"));
        let prom = files::mounted_files(st.service("prometheus").unwrap()).unwrap();
        assert_eq!(prom[0].source, dir.path().join("monitoring/prometheus.yml"));
        assert!(!String::from_utf8_lossy(&prom[0].data).contains("alertmanager"));

        s.apply(
            "ALERTING_WEBHOOK_URL",
            "https://u:p%40ss@hooks.example.com/T0K\"EN",
            "t",
        )
        .unwrap();
        let st = Stack::from_settings(&s);
        let am = st.service("alertmanager").unwrap();
        assert_eq!(am.image, "prom/alertmanager:v0.27.0");
        assert_eq!(am.cap_drop, ["ALL"]);
        assert!(am.read_only && am.memory_bytes.is_some());
        assert!(am
            .ports
            .iter()
            .all(|p| p.host_ip.is_loopback() && p.container == 9093));
        assert!(am
            .healthcheck
            .as_ref()
            .unwrap()
            .test
            .contains(&"http://127.0.0.1:9093/-/ready".to_string()));
        assert!(st
            .volumes
            .iter()
            .any(|v| v.name == format!("{}_alertmanager-data", st.project)));
        let files = files::mounted_files(am).unwrap();
        assert_eq!(files[0].target, "/run/secrets/alertmanager.yml");
        let config: serde_yaml::Value = serde_yaml::from_slice(&files[0].data).unwrap();
        let hook = &config["receivers"][0]["webhook_configs"][0];
        assert_eq!(hook["url"], "https://hooks.example.com/T0K\"EN");
        assert_eq!(hook["http_config"]["basic_auth"]["username"], "u");
        assert_eq!(hook["http_config"]["basic_auth"]["password"], "p@ss");
        assert_eq!(hook["send_resolved"], true);
        let plain: serde_yaml::Value =
            serde_yaml::from_str(&alertmanager_config("http://r:8080/")).unwrap();
        let hook = &plain["receivers"][0]["webhook_configs"][0];
        assert_eq!(hook["url"], "http://r:8080/");
        assert!(hook.get("http_config").is_none());
        assert_eq!(config["route"]["receiver"], "webhook");
        assert_eq!(config["route"]["group_by"][0], "alertname");

        let prom = files::mounted_files(st.service("prometheus").unwrap()).unwrap();
        assert_eq!(prom[0].target, "/etc/prometheus/prometheus.yml");
        assert_eq!(
            prom[0].source,
            dir.path().join(".irisctl/derived/prometheus.yml")
        );
        let config: serde_yaml::Value = serde_yaml::from_slice(&prom[0].data).unwrap();
        assert_eq!(
            config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
            "alertmanager:9093"
        );
        assert_eq!(config["rule_files"][0], "/etc/prometheus/alerts.yml");
        assert_eq!(config["scrape_configs"][0]["job_name"], "iris-api");
    }

    #[test]
    fn the_rules_are_rendered_with_the_drift_settings() {
        let dir = tempfile::tempdir().unwrap();
        crate::assets::write_to(dir.path(), false).unwrap();
        let rules = |s: &Settings| -> String {
            let st = Stack::from_settings(s);
            let files = files::mounted_files(st.service("prometheus").unwrap()).unwrap();
            let f = files
                .iter()
                .find(|f| f.target == "/etc/prometheus/alerts.yml")
                .unwrap();
            assert_eq!(f.source, dir.path().join(".irisctl/derived/alerts.yml"));
            String::from_utf8(f.data.clone()).unwrap()
        };
        let drift = |text: &str| -> serde_yaml::Value {
            let doc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
            doc["groups"]
                .as_sequence()
                .unwrap()
                .iter()
                .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
                .find(|r| r["alert"] == "IrisInputDrift")
                .unwrap()
        };
        let mut s = Settings::defaults(dir.path().to_path_buf());
        let default = rules(&s);
        assert!(!default.contains("${"), "{default}");
        let r = drift(&default);
        assert_eq!(r["for"], "15m");
        let words = |r: &serde_yaml::Value| {
            r["expr"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let expr = words(&r);
        assert!(
            expr.contains("[30m]") && expr.contains(") > 1 and on"),
            "{expr}"
        );

        s.apply_file(
            "alerting:\n  drift_window: 1m\n  drift_for: 20s\n  drift_stddevs: 0.75\n",
            &dir.path().join("irisctl.yaml"),
        )
        .unwrap();
        let r = drift(&rules(&s));
        assert_eq!(r["for"], "20s");
        let expr = words(&r);
        assert!(
            expr.contains("[1m]") && !expr.contains("[30m]") && expr.contains(") > 0.75 and on"),
            "{expr}"
        );
        assert!(r["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("the last 1m is"));

        // A placeholder irisctl does not know is refused with its name, not passed on.
        let path = dir.path().join("monitoring/alerts.yml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("${drift_for}", "${drift_four}")).unwrap();
        let st = Stack::from_settings(&s);
        let e = files::mounted_files(st.service("prometheus").unwrap()).unwrap_err();
        let hint = crate::error::hint_of(&e).unwrap_or("").to_string();
        assert!(
            e.to_string()
                .contains("placeholder irisctl does not fill: `${drift_four}`")
                && hint.contains("`${drift_window}`"),
            "{e} / {hint}"
        );
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
