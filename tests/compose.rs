//! "Equivalent" shown, not claimed: the stack `irisctl up` makes and the stack docker-compose
//! 1.29 makes from `irisctl compose` are compared through the engine's own inspection, on the
//! same engine; both become healthy, both Grafanas are provisioned, and each tool sees the other's.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{docker, eventually, run, Project};
use serde_json::{json, Value};

const A: &str = "irisctl-test-eqa";
const B: &str = "irisctl-test-eqb";

/// What matters of a container, with project names, host ports, secrets and paths that
/// legitimately differ between the two stacks replaced by placeholders.
fn normalized(container: &str, project: &str, dir: &std::path::Path) -> Value {
    let raw = docker(&["inspect", container]);
    let v: Value =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("inspect {container}: {e}: {raw}"));
    let c = &v[0];
    let text = |s: &str| {
        s.replace(project, "PROJECT")
            .replace(&dir.display().to_string(), "DIR")
    };
    let strings = |v: &Value| -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .map(text)
            .collect();
        out.sort();
        out
    };
    let env: Vec<String> = strings(&c["Config"]["Env"])
        .into_iter()
        .map(|e| {
            if e.starts_with("GF_SECURITY_ADMIN_PASSWORD=") {
                "GF_SECURITY_ADMIN_PASSWORD=SECRET".into()
            } else {
                e
            }
        })
        .collect();
    let ports: BTreeMap<String, Vec<String>> = c["HostConfig"]["PortBindings"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, b)| {
            (
                k.clone(),
                b.as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| x["HostIp"].as_str().unwrap_or("").to_string())
                    .collect(),
            )
        })
        .collect();
    let mut mounts: Vec<Value> = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            json!({
                "type": m["Type"],
                "source": if m["Type"] == "volume" { json!(text(m["Name"].as_str().unwrap_or(""))) } else { json!(text(m["Source"].as_str().unwrap_or(""))) },
                "target": m["Destination"],
                "rw": m["RW"],
            })
        })
        .collect();
    mounts.sort_by_key(|m| m["target"].to_string());
    let networks: BTreeMap<String, Vec<String>> = c["NetworkSettings"]["Networks"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, n)| {
            let mut aliases: Vec<String> = strings(&n["Aliases"])
                .into_iter()
                .filter(|a| !a.chars().all(|ch| ch.is_ascii_hexdigit()))
                .collect();
            aliases.retain(|a| !a.starts_with("PROJECT-"));
            (text(name), aliases)
        })
        .collect();
    let label = |k: &str| c["Config"]["Labels"][k].as_str().map(text);
    json!({
        "image": text(c["Config"]["Image"].as_str().unwrap_or("")),
        "cmd": c["Config"]["Cmd"],
        "entrypoint": c["Config"]["Entrypoint"],
        "env": env,
        "user": c["Config"]["User"],
        "healthcheck": c["Config"]["Healthcheck"],
        "exposed": c["Config"]["ExposedPorts"],
        "ports": ports,
        "restart": c["HostConfig"]["RestartPolicy"]["Name"],
        "read_only": c["HostConfig"]["ReadonlyRootfs"],
        "cap_drop": c["HostConfig"]["CapDrop"],
        "security_opt": c["HostConfig"]["SecurityOpt"],
        "memory": c["HostConfig"]["Memory"],
        "tmpfs": c["HostConfig"]["Tmpfs"],
        "mounts": mounts,
        "networks": networks,
        "labels": [label("com.docker.compose.project"), label("com.docker.compose.service"), label("com.docker.compose.container-number"), label("com.docker.compose.oneoff")],
    })
}

fn all_healthy(project: &str) -> bool {
    let states = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Status}}",
    ]);
    // The four services and the edge.
    states.lines().count() == 5 && states.lines().all(|s| s.contains("(healthy)"))
}

#[test]
fn compose_file_is_equivalent_to_up() {
    if !common::engine_available() {
        return;
    }
    let a = Project::new(A, [21500, 21501, 21502, 21503]);
    let b = Project::new(B, [21600, 21601, 21602, 21603]);

    run(a.irisctl().arg("up")).ok();

    run(b.irisctl().args(["compose", "-o", "docker-compose.yml"])).ok();
    // `compose -o` generated the password into .env and the secret file the compose file mounts.
    assert!(b
        .path()
        .join(".irisctl/secrets/grafana_admin_password")
        .is_file());
    let out = Command::new("docker-compose")
        .args(["-p", B, "up", "-d", "--build"])
        .current_dir(b.path())
        .output()
        .expect("docker-compose");
    assert!(
        out.status.success(),
        "docker-compose up failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        eventually(180, || all_healthy(B)),
        "the compose-made stack never became healthy"
    );
    assert!(all_healthy(A));

    // Compose names its containers itself (no `container_name` in the file): find them by label.
    let container_of = |project: &str, service: &str| {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
        .trim()
        .to_string()
    };
    for service in ["api", "frontend", "prometheus", "grafana", "edge"] {
        let left = normalized(&container_of(A, service), A, a.path());
        let right = normalized(&container_of(B, service), B, b.path());
        assert_eq!(
            left, right,
            "{service} differs between `irisctl up` (left) and docker-compose (right)"
        );
    }

    // Both Grafanas are provisioned: irisctl sees the compose-made one's dashboard and finds
    // nothing to change in it.
    let st = run(b.irisctl().args(["status", "--format", "json"]));
    st.ok();
    let report: Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(report["grafana_dashboards"][0]["present"], true, "{report}");
    let prov = run(b.irisctl().args(["grafana", "provision"]));
    prov.ok();
    assert!(
        !prov.stdout.contains("created") && !prov.stdout.contains("updated"),
        "{}",
        prov.stdout
    );

    // docker-compose lists the stack irisctl made.
    run(a.irisctl().args(["compose", "-o", "docker-compose.yml"])).ok();
    let ps = Command::new("docker-compose")
        .args(["-p", A, "ps"])
        .current_dir(a.path())
        .output()
        .expect("docker-compose ps");
    let listing = String::from_utf8_lossy(&ps.stdout);
    assert!(
        ps.status.success(),
        "{}",
        String::from_utf8_lossy(&ps.stderr)
    );
    for service in ["api", "frontend", "prometheus", "grafana", "edge"] {
        assert!(
            listing.contains(&format!("{A}-{service}-1")) && listing.contains("Up (healthy)"),
            "{listing}"
        );
    }
    // `--check`: the file just written is current; once the settings move on (another port)
    // it is stale, and the difference is shown.
    let check = run(a
        .irisctl()
        .args(["compose", "--check", "docker-compose.yml"]));
    check.ok();
    let stale = run(a.irisctl().args([
        "compose",
        "--check",
        "docker-compose.yml",
        "--prometheus-port",
        "21599",
    ]));
    assert_ne!(stale.code, 0, "a stale file passed --check");
    assert!(
        format!("{}{}", stale.stdout, stale.stderr).contains("21599"),
        "the diff does not show the new port:\n{}\n{}",
        stale.stdout,
        stale.stderr
    );

    // `irisctl down` removes the compose-made stack too, images included: they share the
    // labels.
    run(b.irisctl().args(["down", "--volumes", "--rmi"])).ok();
    assert!(b.container_ids().is_empty());
    assert_eq!(b.leftovers(), Vec::<String>::new());
}
