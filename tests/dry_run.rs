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
    // The project's images (what a build or pull of the plan would tag); other images on the
    // host are other tests' and users' business.
    .filter(|l| {
        l.split_once(' ')
            .is_some_and(|(_, name)| name.starts_with(&format!("{}-", p.name)))
    })
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

/// Make the API context's stat cache (which `up` wrote) record `rel`'s current metadata with
/// its old digest: what a change invisible to every metadata field would leave. The racy-git
/// rule distrusts a digest taken less than 2 s after the file's ctime, so the file's ctime is
/// first let age past that (the only way to make it older).
fn hide_change_from_the_stat_cache(p: &Project, rel: &str) {
    use std::os::unix::fs::MetadataExt;
    let file = p.path().join("stack/api").join(rel);
    let ctime = || {
        let m = std::fs::metadata(&file).unwrap();
        std::time::UNIX_EPOCH + std::time::Duration::new(m.ctime() as u64, m.ctime_nsec() as u32)
    };
    let aged = ctime() + std::time::Duration::from_millis(2100);
    if let Ok(left) = aged.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left);
    }
    let dir = p.path().join(".irisctl/cache");
    let mut found = false;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        let mut cache: serde_json::Value = serde_json::from_str(&text).unwrap();
        if !cache["root"].as_str().unwrap().ends_with("stack/api") {
            continue;
        }
        let m = std::fs::metadata(&file).unwrap();
        let ns = |s: i64, n: i64| s * 1_000_000_000 + n;
        let entry = &mut cache["entries"][rel];
        entry["stat"] = serde_json::json!({
            "size": m.size(),
            "mtime_ns": ns(m.mtime(), m.mtime_nsec()),
            "ctime_ns": ns(m.ctime(), m.ctime_nsec()),
            "ino": m.ino(),
            "mode": m.mode(),
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        entry["hashed_ns"] = now.into();
        std::fs::write(e.path(), serde_json::to_vec(&cache).unwrap()).unwrap();
        found = true;
    }
    assert!(found, "no stat cache of stack/api in {}", dir.display());
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

    // A change behind a preserved mtime: ctime (which cannot be set back) still shows it.
    let main_py = p.path().join("stack/api/app/main.py");
    let original = std::fs::read(&main_py).unwrap();
    let mtime = std::fs::metadata(&main_py).unwrap().modified().unwrap();
    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'\n' { b' ' } else { b'\n' };
    let rewrite = |content: &[u8]| {
        std::fs::write(&main_py, content).unwrap();
        let f = std::fs::File::options().write(true).open(&main_py).unwrap();
        f.set_modified(mtime).unwrap();
    };
    rewrite(&flipped);
    let rebuild = "rebuild api: build context changed (app/main.py)\n\
                   release api: its image is rebuilt (build context changed (app/main.py))\n";
    assert_eq!(dry_run(&p, &[]).stdout, rebuild);
    // A change no metadata shows (as if ctime had been kept too): the stat cache trusts the
    // digest it recorded, so only the full check of `--rehash` sees the change.
    hide_change_from_the_stat_cache(&p, "app/main.py");
    let cached = dry_run(&p, &[]);
    assert_eq!(cached.stdout, "nothing to change\n", "{}", cached.stderr);
    let full = dry_run(&p, &["--rehash"]);
    assert_eq!(full.stdout, rebuild, "{}", full.stderr);
    rewrite(&original);
    assert_eq!(dry_run(&p, &[]).stdout, "nothing to change\n");

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
        "rebuild api: build context changed (app/main.py)\nrelease api: its image is rebuilt (build context changed (app/main.py))\n",
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

/// The operations that change something, as (verb, kind, object), sorted: from a dry run's JSON
/// plan, or from the `done` events of a real run's `--progress json` (which must report no
/// failure, and start exactly what it finishes).
fn planned(plan_json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(plan_json).expect("a JSON plan");
    let mut ops: Vec<String> = v["ops"]
        .as_array()
        .expect("ops")
        .iter()
        .filter(|o| o["verb"] != "keep" && o["verb"] != "orphan")
        .map(|o| format!("{} {} {}", o["verb"], o["kind"], o["object"]))
        .collect();
    ops.sort();
    ops
}

fn reported(stderr: &str) -> Vec<String> {
    let mut by_status: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stderr.lines() {
        let e: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON event ({err}): {line}"));
        if e["event"] == "op" {
            by_status
                .entry(e["status"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push(format!("{} {} {}", e["verb"], e["kind"], e["object"]));
        }
    }
    assert!(
        !by_status.contains_key("failed"),
        "an operation failed: {stderr}"
    );
    let mut started = by_status.remove("started").unwrap_or_default();
    let mut done = by_status.remove("done").unwrap_or_default();
    started.sort();
    done.sort();
    assert_eq!(started, done, "started but not done: {stderr}");
    done
}

/// `irisctl ARGS --dry-run --format json` changes nothing; `irisctl ARGS --progress json` then
/// carries out exactly the operations it printed (a non-empty plan).
fn plan_is_what_runs(p: &Project, args: &[&str], what: &str) -> Vec<String> {
    let before = world(p);
    let dry = run(p
        .irisctl()
        .args(args)
        .args(["--dry-run", "--format", "json"]));
    dry.ok();
    assert_eq!(world(p), before, "{what}: the dry run changed something");
    let plan = planned(&dry.stdout);
    assert!(!plan.is_empty(), "{what}: an empty plan: {}", dry.stdout);
    let real = run(p.irisctl().args(args).args(["--progress", "json"]));
    real.ok();
    assert_eq!(
        reported(&real.stderr),
        plan,
        "{what}: the operations carried out are not the ones planned"
    );
    plan
}

#[test]
fn every_verb_carries_out_exactly_its_printed_plan() {
    if !common::engine_available() {
        return;
    }
    let p = Project::new("irisctl-test-planruns", [22310, 22311, 22312, 22313]);

    // A new project: network, volumes, images and every container.
    let ops = plan_is_what_runs(&p, &["up"], "a new project");
    assert!(
        ops.contains(&r#""create" "network" "irisctl-test-planruns-network""#.to_string()),
        "{ops:?}"
    );

    // A changed port: that service only.
    let ops = plan_is_what_runs(&p, &["up", "--prometheus-port", "22319"], "a changed port");
    assert_eq!(
        ops,
        [r#""recreate" "container" "irisctl-test-planruns-prometheus-1""#],
        "{ops:?}"
    );

    // A changed API source: its rebuild and release.
    let main_py = p.path().join("stack/api/app/main.py");
    let mut text = std::fs::read_to_string(&main_py).unwrap();
    text.push_str("\n# changed by the plan test\n");
    std::fs::write(&main_py, text).unwrap();
    let ops = plan_is_what_runs(
        &p,
        &["up", "--prometheus-port", "22319"],
        "a changed API source",
    );
    assert!(
        ops.iter().any(|o| o.starts_with(r#""rebuild" "image""#))
            && ops
                .iter()
                .any(|o| o.starts_with(r#""release" "container""#)),
        "{ops:?}"
    );

    // An orphan: a container of the project that no service defines, removed when asked.
    let orphan = "irisctl-test-planruns-worker-1";
    docker(&["rm", "-f", orphan]);
    let id = docker(&[
        "run",
        "-d",
        "--name",
        orphan,
        "--label",
        "com.docker.compose.project=irisctl-test-planruns",
        "--label",
        "com.docker.compose.service=worker",
        "irisctl-offline/debian:bookworm",
        "sleep",
        "600",
    ]);
    assert!(!id.is_empty(), "could not start the orphan");
    let ops = plan_is_what_runs(
        &p,
        &["up", "--prometheus-port", "22319", "--remove-orphans"],
        "an orphan",
    );
    assert_eq!(
        ops,
        [format!(r#""remove" "container" "{orphan}""#)],
        "{ops:?}"
    );

    // `rollback api`: the previous release, through the swap.
    let ops = plan_is_what_runs(&p, &["rollback", "api"], "rollback api");
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert!(ops[0].starts_with(r#""release" "container""#), "{ops:?}");

    // `down --volumes --rmi`: containers, network, volumes and the images irisctl built.
    let ops = plan_is_what_runs(&p, &["down", "--volumes", "--rmi"], "down");
    for kind in ["container", "network", "volume", "image"] {
        assert!(
            ops.iter()
                .any(|o| o.starts_with(&format!(r#""remove" "{kind}""#))),
            "down removes no {kind}: {ops:?}"
        );
    }
    assert!(p.leftovers().is_empty(), "{:?}", p.leftovers());
}
