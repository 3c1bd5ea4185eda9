//! `irisctl up --dry-run` on the real engine: it prints the plan with causes and touches
//! nothing (no build, container, image, volume, network or file).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{docker, run, Project};

const PORTS: [u16; 4] = [22300, 22301, 22302, 22303];

/// Everything a dry run must leave as it is: the engine's objects and the project's files.
fn world(p: &Project) -> (String, String, String, String, BTreeMap<String, u64>) {
    let label = format!("label=com.docker.compose.project={}", p.name);
    let containers = docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &label,
        "--format",
        "{{.ID}} {{.State}} {{.Ports}}",
    ]);
    let mut images: Vec<String> = docker(&[
        "images",
        "-a",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Repository}}:{{.Tag}}",
    ])
    .lines()
    .map(str::to_string)
    .collect();
    images.sort();
    let volumes = docker(&["volume", "ls", "-q", "--filter", &label]);
    let networks = docker(&["network", "ls", "-q", "--filter", &label]);
    let mut files = BTreeMap::new();
    fn walk(dir: &Path, out: &mut BTreeMap<String, u64>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                let m = e.metadata().unwrap();
                let mtime = m
                    .modified()
                    .unwrap()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64;
                out.insert(path.display().to_string(), mtime ^ m.len());
            }
        }
    }
    walk(p.path(), &mut files);
    (containers, images.join("\n"), volumes, networks, files)
}

fn dry_run(p: &Project, extra: &[&str]) -> common::Run {
    let r = run(p.irisctl().args(["up", "--dry-run"]).args(extra));
    r.ok();
    r
}

#[test]
fn dry_run_plans_with_causes_and_changes_nothing() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-dryrun", PORTS);

    // A new project: everything is to be created, and nothing is, not even the password.
    let before = world(&p);
    let fresh = dry_run(&p, &[]);
    assert!(
        fresh
            .stdout
            .contains("create network irisctl-test-dryrun-network: not present\n")
            && fresh.stdout.contains("create api: no container\n")
            && fresh.stdout.contains("create grafana: no container\n"),
        "{}",
        fresh.stdout
    );
    assert_eq!(
        world(&p),
        before,
        "a dry run of a new project changed something"
    );
    assert!(
        !p.path().join(".env").exists(),
        "a dry run generated a password"
    );

    run(p.irisctl().arg("up")).ok();

    // Converged: nothing to change, exit 0.
    let converged = dry_run(&p, &[]);
    assert_eq!(
        converged.stdout, "nothing to change\n",
        "{}",
        converged.stderr
    );

    // A changed port: that service only, the port as the cause.
    let before = world(&p);
    let moved = dry_run(&p, &["--prometheus-port", "22399"]);
    assert_eq!(
        moved.stdout, "recreate prometheus: published port 22302 → 22399\n",
        "{}",
        moved.stderr
    );
    assert_eq!(world(&p), before, "a dry run changed something");

    // A changed API source: the API's rebuild and release (a swap behind the edge, not a
    // recreate since the releases of issue 15), the build context as the cause.
    let main_py = p.path().join("stack/api/app/main.py");
    let mut text = std::fs::read_to_string(&main_py).unwrap();
    text.push_str("\n# a comment that changes the build context\n");
    std::fs::write(&main_py, text).unwrap();
    let before = world(&p);
    let edited = dry_run(&p, &[]);
    assert_eq!(
        edited.stdout,
        "rebuild api: build context changed (app/main.py)\nrelease api: its image is rebuilt\n",
        "{}",
        edited.stderr
    );
    assert_eq!(world(&p), before, "a dry run built or changed something");

    // The same plan as JSON.
    let json = dry_run(&p, &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json plan");
    assert_eq!(v["project"], "irisctl-test-dryrun");
    assert_eq!(v["changes"], true);
    let ops = v["ops"].as_array().unwrap();
    let rebuild = ops
        .iter()
        .find(|o| o["verb"] == "rebuild")
        .expect("a rebuild op");
    assert_eq!(rebuild["kind"], "image");
    assert_eq!(rebuild["service"], "api");
    assert_eq!(rebuild["cause"], "build context changed (app/main.py)");
    let kept: Vec<&str> = ops
        .iter()
        .filter(|o| o["verb"] == "keep")
        .map(|o| o["service"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["frontend", "prometheus", "grafana", "edge"]);
    assert_eq!(world(&p), before, "a JSON dry run changed something");
}
