//! Swarm on two nodes: this engine as the manager (a swarm made here and left again), a second
//! engine in a container as the worker (tests/remote-host, reached over SSH for images), no
//! registry. `up --target swarm --api-replicas 4` with `swarm.nodes` sends the built images to
//! the worker: 4 API tasks on both nodes, Prometheus scraping all 4, requests through the web UI
//! answered by replicas on both nodes; the worker drained under load moves its tasks with at most
//! 1 % of requests failing; a rolling update of new API code across both nodes loses none;
//! `down --volumes` leaves nothing on either node.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::remote::Remote;
use common::{docker, docker_cleanup, eventually, run, Project};

const P: &str = "irisctl-test-swarm2";
const PORTS: [u16; 4] = [22870, 22871, 22872, 22873];
const NODE: &str = "irisctl-test-swarm-node2";
const SSH_PORT: u16 = 22860;

/// Leaves what the test made: the stack, the worker's membership and the swarm.
struct Guard<'a> {
    project: &'a Project,
    made_gwbridge: bool,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self
            .project
            .irisctl()
            .args(["down", "--target", "swarm", "--volumes", "--rmi", "-q"])
            .output();
        docker_cleanup(&["swarm", "leave", "--force"]);
        if self.made_gwbridge {
            docker_cleanup(&["network", "rm", "docker_gwbridge"]);
        }
    }
}

/// A load of predictions through the web UI's proxy: sent, failed, and the replicas that
/// answered (their host names: the task containers' short IDs).
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    replicas: Arc<std::sync::Mutex<BTreeSet<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let replicas = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, sent, failed, replicas) =
                    (stop.clone(), sent.clone(), failed.clone(), replicas.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        sent.fetch_add(1, Ordering::Relaxed);
                        match predict() {
                            Some(r) => {
                                replicas.lock().unwrap().insert(r);
                            }
                            None => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failed,
            replicas,
            threads,
        }
    }

    /// Stop; (sent, failed, replicas that answered).
    fn stop(self) -> (usize, usize, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let replicas = self.replicas.lock().unwrap().clone();
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            replicas,
        )
    }
}

/// One prediction through the web UI's `/api/`; the replica that answered.
fn predict() -> Option<String> {
    let (code, _, replica) = common::http_with_header(
        "POST",
        &format!("http://127.0.0.1:{}/api/predict", PORTS[1]),
        Some(
            r#"{"items":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}"#,
        ),
        "x-iris-replica",
    );
    (code == 200).then_some(replica).flatten()
}

/// The short IDs of the running containers of the API service on an engine's `docker ps`.
fn api_containers(ps: &str) -> BTreeSet<String> {
    ps.lines()
        .filter(|l| l.contains(&format!("{P}_api.")))
        .filter_map(|l| l.split_whitespace().next())
        .map(|id| id.chars().take(12).collect())
        .collect()
}

fn running_api_nodes() -> Vec<String> {
    docker(&[
        "service",
        "ps",
        &format!("{P}_api"),
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    ])
    .lines()
    .filter(|l| l.contains("Running"))
    .filter_map(|l| l.split_whitespace().next().map(String::from))
    .collect()
}

#[test]
fn two_nodes_spread_drain_and_update_without_a_registry() {
    if !common::engine_available() || common::already_swarm_manager("swarm_nodes") {
        return;
    }
    let made_gwbridge =
        docker(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"]).is_empty();
    let node2 = Remote::start(NODE, SSH_PORT);
    let p = Project::new(P, PORTS);
    // The manager advertises the bridge's address, which the worker's container reaches.
    let gateway = docker(&[
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]);
    common::init_test_swarm_on(&gateway);
    let _guard = Guard {
        project: &p,
        made_gwbridge,
    };
    let token = docker(&["swarm", "join-token", "-q", "worker"]);
    let (code, out) = node2.sh(&format!("docker swarm join --token {token} {gateway}:2377"));
    assert_eq!(code, 0, "the worker did not join: {out}");
    let worker = node2.sh("docker info -f '{{.Swarm.NodeID}}'").1;
    assert!(
        eventually(60, || {
            docker(&["node", "ls", "--format", "{{.Status}}"])
                .lines()
                .filter(|s| *s == "Ready")
                .count()
                == 2
        }),
        "both nodes ready"
    );
    let irisctl = || {
        let mut c = p.irisctl();
        c.env("IRISCTL_SWARM_NODES", node2.url()).env(
            "IRISCTL_SSH_COMMAND",
            node2.ssh_command(&node2.known_hosts()),
        );
        c
    };

    // Without a registry, a worker the images cannot reach is refused before any service is
    // made: one swarm.nodes leaves out, and one that does not answer.
    let unlisted = run(p
        .irisctl()
        .args(["up", "--target", "swarm", "--api-replicas", "4"]));
    unlisted.user_error("the swarm has 2 ready nodes, and without a registry");
    let unreachable = run(irisctl()
        .env("IRISCTL_SWARM_NODES", "ssh://root@127.0.0.1:1")
        .args(["up", "--target", "swarm", "--api-replicas", "4"]));
    unreachable.user_error("Swarm node `ssh://root@127.0.0.1:1` (swarm.nodes) cannot be reached");
    assert_eq!(
        docker(&[
            "service",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.stack.namespace={P}")
        ]),
        "",
        "a service was made before the refusal"
    );

    // No registry: the built images go to the worker over SSH, by ID.
    let up = run(irisctl().args(["up", "--target", "swarm", "--api-replicas", "4"]));
    assert_eq!(up.code, 0, "{}", up.stderr);
    let pinned = docker(&[
        "service",
        "inspect",
        &format!("{P}_api"),
        "-f",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    ]);
    assert!(
        pinned.contains(":id-"),
        "the API's image is not pinned by ID: {pinned}"
    );
    let manager_id = docker(&["image", "inspect", &pinned, "-f", "{{.Id}}"]);
    let (_, worker_id) = node2.sh(&format!("docker image inspect {pinned} -f '{{{{.Id}}}}'"));
    assert_eq!(manager_id, worker_id, "the nodes run different images");
    // Prometheus and Grafana own volumes, the web UI publishes a port: on the manager only.
    let manager = docker(&["info", "-f", "{{.Swarm.NodeID}}"]);
    for s in ["prometheus", "grafana", "frontend"] {
        let c = docker(&[
            "service",
            "inspect",
            &format!("{P}_{s}"),
            "-f",
            "{{.Spec.TaskTemplate.Placement.Constraints}}",
        ]);
        assert_eq!(
            c,
            format!("[node.id=={manager}]"),
            "{s} is not pinned to the manager"
        );
    }

    // 4 API tasks, on both nodes.
    assert!(
        eventually(120, || { running_api_nodes().len() == 4 }),
        "4 API tasks running"
    );
    let nodes: BTreeSet<String> = running_api_nodes().into_iter().collect();
    assert_eq!(nodes.len(), 2, "the API's tasks are not spread: {nodes:?}");
    // Prometheus scrapes all four, whichever node they run on.
    assert!(
        eventually(90, || { common::api_targets_up(PORTS[2]) == 4 }),
        "Prometheus scraping 4 replicas"
    );
    // Requests through the web UI reach replicas on both nodes.
    let load = Load::start(2);
    std::thread::sleep(Duration::from_secs(8));
    let (sent, failed, replicas) = load.stop();
    assert_eq!(failed, 0, "{failed} of {sent} failed");
    let here = api_containers(&docker(&["ps", "--format", "{{.ID}} {{.Names}}"]));
    let there = api_containers(&node2.sh("docker ps --format '{{.ID}} {{.Names}}'").1);
    assert!(
        replicas.iter().any(|r| here.contains(r)) && replicas.iter().any(|r| there.contains(r)),
        "answered by {replicas:?}; on the manager {here:?}, on the worker {there:?}"
    );
    // `status` names each task's node and the nodes.
    let status = run(irisctl().args(["status", "--target", "swarm", "--format", "json"]));
    let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let api = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "api")
        .unwrap()
        .clone();
    let on: BTreeSet<&str> = api["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert_eq!(on.len(), 2, "{api}");
    assert_eq!(
        report["nodes"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );

    // The worker drained under load: its tasks move, at most 1 % of requests fail.
    let load = Load::start(2);
    std::thread::sleep(Duration::from_secs(3));
    docker(&["node", "update", "--availability", "drain", &worker]);
    assert!(
        eventually(120, || {
            let n = running_api_nodes();
            n.len() == 4 && n.iter().collect::<BTreeSet<_>>().len() == 1
        }),
        "all 4 API tasks on the manager"
    );
    std::thread::sleep(Duration::from_secs(3));
    let (sent, failed, _) = load.stop();
    assert!(sent >= 100, "only {sent} requests");
    assert!(
        failed * 100 <= sent,
        "{failed} of {sent} requests failed while the worker drained"
    );
    eprintln!("drain: {failed} of {sent} requests failed");
    let table = run(irisctl().args(["status", "--target", "swarm"]));
    assert!(table.stdout.contains("draining"), "{}", table.stdout);
    docker(&["node", "update", "--availability", "active", &worker]);

    // A rolling update of new API code, spread over both nodes again: no request lost.
    let main_py = p.path().join("stack/api/app/main.py");
    let mut text = std::fs::read_to_string(&main_py).unwrap();
    text.push_str("\n# a two-node rolling update\n");
    std::fs::write(&main_py, text).unwrap();
    let load = Load::start(2);
    let update = run(irisctl().args(["up", "--target", "swarm", "--api-replicas", "4"]));
    std::thread::sleep(Duration::from_secs(2));
    let (sent, failed, _) = load.stop();
    assert_eq!(update.code, 0, "{}", update.stderr);
    assert_eq!(
        failed, 0,
        "{failed} of {sent} failed during the rolling update"
    );
    eprintln!("rolling update: {failed} of {sent} requests failed");
    // The new image went to the worker too, under its own ID tag.
    let updated = docker(&[
        "service",
        "inspect",
        &format!("{P}_api"),
        "-f",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
    ]);
    assert_ne!(updated, pinned, "the update deployed the old tag");
    let new_id = docker(&["image", "inspect", &updated, "-f", "{{.Id}}"]);
    assert_eq!(
        node2
            .sh(&format!("docker image inspect {updated} -f '{{{{.Id}}}}'"))
            .1,
        new_id
    );
    assert!(
        eventually(60, || {
            running_api_nodes().iter().collect::<BTreeSet<_>>().len() == 2
        }),
        "the new tasks on both nodes"
    );

    // `down --volumes --rmi`: nothing of the stack on either node, the images sent included.
    let down = run(irisctl().args(["down", "--target", "swarm", "--volumes", "--rmi"]));
    assert_eq!(down.code, 0, "{}", down.stderr);
    let ns = format!("label=com.docker.stack.namespace={P}");
    for kind in ["service", "config", "secret", "network"] {
        assert_eq!(
            docker(&[kind, "ls", "-q", "--filter", &ns]),
            "",
            "{kind}s left"
        );
    }
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &ns]), "");
    assert!(
        eventually(30, || {
            node2
                .sh(&format!("docker ps -aq --filter {ns}"))
                .1
                .is_empty()
        }),
        "no task left on the worker"
    );
    assert_eq!(
        node2.sh(&format!("docker volume ls -q --filter {ns}")).1,
        ""
    );
    assert!(
        eventually(30, || node2
            .sh(&format!("docker network ls -q --filter {ns}"))
            .1
            .is_empty()),
        "the stack's network is left on the worker"
    );
}
