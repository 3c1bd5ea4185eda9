//! The CLI as users meet it: help, settings resolution and every bad input's error (one paragraph,
//! a `hint:`, a non-zero exit, no panic). None of these needs a Docker engine.

mod common;

use std::io::{Read, Write};

use common::{irisctl, repo, run};

#[test]
fn help_lists_the_verbs() {
    let r = run(irisctl(&repo()).arg("--help"));
    r.ok();
    for verb in [
        "up",
        "status",
        "down",
        "logs",
        "grafana",
        "compose",
        "init",
        "shadow",
        "completions",
    ] {
        assert!(
            r.stdout.contains(verb),
            "{verb} missing from --help:\n{}",
            r.stdout
        );
    }
}

#[test]
fn completions_are_printed() {
    let r = run(irisctl(&repo()).args(["completions", "bash"]));
    r.ok();
    assert!(r.stdout.contains("_irisctl"), "{}", r.stdout);
}

/// `--print-settings` shows each value with the layer it came from: default, settings file,
/// `.env`, environment variable or flag.
#[test]
fn print_settings_shows_precedence_and_each_source() {
    let dir = tempfile::tempdir().unwrap();
    run(irisctl(dir.path()).args(["init", "-q"])).ok();
    std::fs::write(
        dir.path().join("irisctl.yaml"),
        "ports:\n  api: 8100\n  grafana: 3100\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "IRISCTL_GRAFANA_PORT=3200\n").unwrap();
    let r = run(irisctl(dir.path())
        .args(["--print-settings", "status", "--frontend-port", "5300"])
        .env("IRISCTL_PROMETHEUS_PORT", "9300"));
    r.ok();
    let line = |key: &str| {
        r.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no `{key}:` line:\n{}", r.stdout))
            .to_string()
    };
    let file = dir.path().join("irisctl.yaml");
    let dotenv = dir.path().join(".env");
    for (key, value, from) in [
        (
            "api",
            "8100",
            format!("# settings file `{}`", file.display()),
        ),
        ("frontend", "5300", "# flag --frontend-port".to_string()),
        (
            "prometheus",
            "9300",
            "# environment variable IRISCTL_PROMETHEUS_PORT".to_string(),
        ),
        (
            "grafana",
            "3200",
            format!("# `{}` line 1", dotenv.display()),
        ),
        ("bind", "127.0.0.1", "# default".to_string()),
        ("project", "iris", "# default".to_string()),
    ] {
        let l = line(key);
        assert!(
            l.contains(&format!("{key}: {value} ")) && l.ends_with(&from),
            "`{key}` should be {value} from {from}: {l}"
        );
    }
    // What it prints is a settings file irisctl reads back to the same values.
    std::fs::write(dir.path().join("again.yaml"), &r.stdout).unwrap();
    let again =
        run(irisctl(dir.path()).args(["--config", "again.yaml", "--print-settings", "status"]));
    again.ok();
    assert!(
        again.stdout.contains("frontend: 5300") && again.stdout.contains("again.yaml"),
        "{}",
        again.stdout
    );
}

/// (what, args, extra files, env, expected text in the error)
type Case = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn bad_inputs_get_clear_errors() {
    let cases: &[Case] = &[
        (
            "port not a number",
            &["status", "--api-port", "http"],
            &[],
            &[],
            "flag --api-port: \"http\" is not a port number",
        ),
        (
            "port zero",
            &["status", "--frontend-port", "0"],
            &[],
            &[],
            "is not a port number",
        ),
        (
            "port too big",
            &["up", "--grafana-port", "70000"],
            &[],
            &[],
            "is not a port number",
        ),
        (
            "same port twice",
            &["status", "--api-port", "9090"],
            &[],
            &[],
            "api and prometheus services are both set to host port 9090",
        ),
        (
            "bad bind",
            &["status", "--bind", "here-and-there"],
            &[],
            &[],
            "is not an IP address",
        ),
        (
            "bad project name",
            &["-p", "Iris!", "status"],
            &[],
            &[],
            "is not a valid project name",
        ),
        (
            "bad wait timeout",
            &["up", "--wait-timeout", "soon"],
            &[],
            &[],
            "is not a number of seconds",
        ),
        (
            "unknown key in file",
            &["status"],
            &[("irisctl.yaml", "porst:\n  api: 1\n")],
            &[],
            "unknown key `porst`",
        ),
        (
            "unknown nested key",
            &["status"],
            &[("irisctl.yaml", "ports:\n  web: 1\n")],
            &[],
            "unknown key `web`",
        ),
        (
            "wrong type in file",
            &["status"],
            &[("irisctl.yaml", "ports: 8000\n")],
            &[],
            "irisctl.yaml`, key `ports`: expected a mapping of keys",
        ),
        (
            "bad port in file",
            &["status"],
            &[("irisctl.yaml", "ports:\n  api: -5\n")],
            &[],
            "key `ports.api`",
        ),
        (
            "bad image in file",
            &["status"],
            &[("irisctl.yaml", "images:\n  python: \"py thon:3\"\n")],
            &[],
            "key `images.python`",
        ),
        (
            "yaml syntax",
            &["status"],
            &[("irisctl.yaml", "ports: [\n")],
            &[],
            "is not valid",
        ),
        (
            "unbuildable service",
            &["status"],
            &[("irisctl.yaml", "build:\n  api:\n    context: .\n")],
            &[],
            "cannot be built from a context",
        ),
        (
            "missing build context",
            &["status"],
            &[("irisctl.yaml", "build:\n  grafana:\n    context: nowhere\n")],
            &[],
            "no Dockerfile in build context",
        ),
        (
            "missing config file",
            &["--config", "nope.yaml", "status"],
            &[],
            &[],
            "cannot read settings file",
        ),
        (
            "unknown env setting",
            &["status"],
            &[],
            &[("IRISCTL_API_PROT", "1")],
            "unknown setting `IRISCTL_API_PROT`",
        ),
        (
            "bad env value",
            &["status"],
            &[],
            &[("IRISCTL_BIND", "300.1.1.1")],
            "environment variable IRISCTL_BIND",
        ),
        (
            "bad .env line",
            &["status"],
            &[(".env", "IRISCTL_API_PORT=8100\nthis is not a pair\n")],
            &[],
            ".env` line 2",
        ),
        (
            "bad .env value",
            &["status"],
            &[(".env", "IRISCTL_API_PORT=eighty\n")],
            &[],
            ".env` line 1",
        ),
        (
            "missing project dir",
            &["--project-dir", "does/not/exist", "status"],
            &[],
            &[],
            "project directory",
        ),
        (
            "unknown logs service",
            &["logs", "web"],
            &[],
            &[],
            "no service named `web`",
        ),
        (
            "bad logs tail",
            &["logs", "--tail", "many"],
            &[],
            &[],
            "--tail \"many\" is not a number",
        ),
        (
            "grafana url",
            &["grafana", "provision", "--url", "ftp://x"],
            &[],
            &[],
            "is not an http(s) URL",
        ),
        (
            "grafana wait",
            &["grafana", "provision", "--wait-timeout", "x"],
            &[],
            &[],
            "is not a number of seconds",
        ),
        (
            "no grafana password",
            &["grafana", "provision"],
            &[],
            &[],
            "no Grafana credentials",
        ),
        (
            "compose check of a missing file",
            &["compose", "--check", "missing.yml"],
            &[],
            &[],
            "cannot read",
        ),
        (
            "zero replicas",
            &["status", "--api-replicas", "0"],
            &[],
            &[],
            "is not a number of replicas",
        ),
        (
            "registry with a scheme",
            &["status"],
            &[],
            &[("IRISCTL_REGISTRY", "https://registry.example.com")],
            "is not a registry address",
        ),
        (
            "unknown swarm key",
            &["status"],
            &[("irisctl.yaml", "swarm:\n  replicas: 3\n")],
            &[],
            "key `swarm.replicas`: unknown key `replicas`",
        ),
        (
            "empty Grafana user",
            &["status"],
            &[("irisctl.yaml", "grafana:\n  admin_user: \"\"\n")],
            &[],
            "key `grafana.admin_user`",
        ),
        // Durations: every one is bounded (1 s to 24 h); a huge one used to overflow a deadline.
        (
            "overflowing up wait timeout",
            &["up", "--wait-timeout", "18446744073709551615"],
            &[],
            &[],
            "flag --wait-timeout: \"18446744073709551615\" is not a number of seconds",
        ),
        (
            "overflowing grafana wait timeout",
            &[
                "grafana",
                "provision",
                "--url",
                "http://127.0.0.1:9",
                "--user",
                "admin",
                "--password",
                "s3cret-flag",
                "--wait-timeout",
                "18446744073709551615",
            ],
            &[],
            &[],
            "flag --wait-timeout: \"18446744073709551615\" is not a number of seconds",
        ),
        (
            "zero grafana wait timeout",
            &["grafana", "provision", "--wait-timeout", "0"],
            &[],
            &[],
            "is not a number of seconds from 1 to 86400",
        ),
        (
            "health timeout over 24 hours",
            &["status"],
            &[],
            &[("IRISCTL_HEALTH_TIMEOUT", "86401")],
            "environment variable IRISCTL_HEALTH_TIMEOUT",
        ),
        (
            "overflowing health timeout in file",
            &["status"],
            &[(
                "irisctl.yaml",
                "timeouts:\n  health: 18446744073709551615\n",
            )],
            &[],
            "key `timeouts.health`",
        ),
        // Empty and blank values.
        (
            "blank port in env",
            &["status"],
            &[],
            &[("IRISCTL_API_PORT", " ")],
            "environment variable IRISCTL_API_PORT: \" \" is not a port number",
        ),
        (
            "empty bind",
            &["status", "--bind", ""],
            &[],
            &[],
            "flag --bind: \"\" is not an IP address",
        ),
        (
            "empty project name",
            &["-p", "", "status"],
            &[],
            &[],
            "is not a valid project name (it is empty)",
        ),
        (
            "blank Grafana user in env",
            &["status"],
            &[],
            &[("IRISCTL_GRAFANA_ADMIN_USER", "   ")],
            "is not a user name",
        ),
        (
            "empty Grafana password",
            &["status"],
            &[(".env", "GRAFANA_ADMIN_PASSWORD=\n")],
            &[],
            ".env` line 1: GRAFANA_ADMIN_PASSWORD is empty",
        ),
        (
            "blank Grafana password",
            &["up"],
            &[(
                ".env",
                "GRAFANA_ADMIN_PASSWORD=s3cret-old\nGRAFANA_ADMIN_PASSWORD=\"   \"\n",
            )],
            &[],
            ".env` line 2: GRAFANA_ADMIN_PASSWORD is empty",
        ),
        // Newlines inside values stay inside one quoted value of one paragraph.
        (
            "newline in project name",
            &["-p", "a\nb", "status"],
            &[],
            &[],
            "flag --project-name: \"a\\nb\" is not a valid project name",
        ),
        (
            "escaped newline in a .env value",
            &["status"],
            &[(".env", "IRISCTL_BIND=\"127.0.0.1\\nhost\"\n")],
            &[],
            ".env` line 1: IRISCTL_BIND=\"127.0.0.1\\\\nhost\" is not an IP address",
        ),
        // A `.env` line that does not parse is never echoed: it may be a pasted secret.
        (
            "pasted secret in .env",
            &["status"],
            &[(".env", "IRISCTL_API_PORT=8100\ns3cret-pasted-token\n")],
            &[],
            ".env` line 2: expected KEY=value (the line is not shown",
        ),
        (
            "secret before = in .env",
            &["status"],
            &[(".env", "# k\ns3cret token+/=x==\n")],
            &[],
            ".env` line 2: the text before `=` is not a variable name",
        ),
        (
            "stack file missing",
            &["up"],
            &[("stack/api/Dockerfile", "")],
            &[],
            "stack file `stack/frontend/Dockerfile` is missing",
        ),
    ];
    for (what, args, files, env, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        if *what != "stack file missing" {
            run(irisctl(dir.path()).args(["init", "-q"])).ok();
            std::fs::remove_file(dir.path().join("irisctl.yaml")).unwrap();
        }
        for (path, text) in *files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let mut cmd = irisctl(dir.path());
        // "stack file missing" needs a project directory that exists but is incomplete.
        if *what == "stack file missing" {
            cmd.args(["--project-dir", "."]);
        }
        cmd.args(*args)
            .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock")
            .env("XDG_DATA_HOME", dir.path());
        for (k, v) in *env {
            cmd.env(k, v);
        }
        let r = run(&mut cmd);
        assert!(
            r.code != 0,
            "{what}: expected failure, got success\n{}",
            r.stderr
        );
        if !r.stderr.contains(want) || !r.stderr.contains("hint: ") || r.stderr.contains("panicked")
        {
            panic!("{what}: expected {want:?} and a hint in\n{}", r.stderr);
        }
        r.user_error(want);
        assert_eq!(
            r.stderr.matches("error: ").count(),
            1,
            "{what}: expected one error in\n{}",
            r.stderr
        );
        // One paragraph: no blank line between `error:` and `hint:`.
        assert!(
            !r.stderr.trim().contains("\n\n"),
            "{what}: expected one paragraph in\n{}",
            r.stderr
        );
        assert!(
            !r.stderr.contains("s3cret"),
            "{what}: a secret value is shown in\n{}",
            r.stderr
        );
    }
    assert!(cases.len() >= 40, "{} cases", cases.len());
}

/// `.env.example` holds `GRAFANA_ADMIN_PASSWORD=`; copied to `.env`, it must not become an empty
/// secret file (and a Grafana whose admin password is empty).
#[test]
fn an_empty_grafana_password_is_refused_not_written() {
    let dir = tempfile::tempdir().unwrap();
    run(irisctl(dir.path()).args(["init", "-q"])).ok();
    run(irisctl(dir.path()).args(["compose", "-o", "docker-compose.yml"])).ok();
    let example = std::fs::read_to_string(dir.path().join(".env.example")).unwrap();
    assert!(example.contains("GRAFANA_ADMIN_PASSWORD=\n"), "{example}");
    std::fs::remove_dir_all(dir.path().join(".irisctl")).unwrap();
    std::fs::remove_file(dir.path().join(".env")).unwrap();
    std::fs::copy(dir.path().join(".env.example"), dir.path().join(".env")).unwrap();
    let r = run(irisctl(dir.path()).args(["compose", "-o", "docker-compose.yml"]));
    r.user_error("GRAFANA_ADMIN_PASSWORD is empty");
    assert!(r.stderr.contains("remove the line"), "{}", r.stderr);
    assert!(
        !dir.path().join(".irisctl").exists(),
        "a secret file was written from an empty password"
    );
}

fn bare_irisctl(cwd: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_irisctl"));
    cmd.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock");
    cmd
}

/// Under cron, systemd or `env -i` there is neither HOME nor XDG_DATA_HOME: irisctl used to put
/// the project (and a generated password) under the shared `/tmp/irisctl`.
#[test]
fn without_home_there_is_no_shared_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(bare_irisctl(dir.path()).arg("status"));
    r.user_error("neither HOME nor XDG_DATA_HOME is set");
    assert!(
        r.stderr
            .contains("hint: set HOME or XDG_DATA_HOME, or pass --project-dir"),
        "{}",
        r.stderr
    );
    // A project directory needs no data folder.
    let project = dir.path().join("p");
    run(bare_irisctl(dir.path()).args(["init", "-q", "p"])).ok();
    run(bare_irisctl(dir.path()).args(["--project-dir", project.to_str().unwrap(), "compose"]))
        .ok();
}

#[test]
fn a_data_folder_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("irisctl");
    std::fs::create_dir_all(folder.join("projects/iris")).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let r = run(irisctl(cwd.path())
        .arg("status")
        .env("XDG_DATA_HOME", data.path())
        .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock"));
    r.user_error("is not safe to use: other users can write to it (mode 777)");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = run(irisctl(cwd.path())
        .arg("status")
        .env("XDG_DATA_HOME", data.path())
        .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock"));
    r.user_error("cannot reach the Docker engine");
}

#[test]
fn binding_every_interface_warns() {
    let dir = tempfile::tempdir().unwrap();
    run(irisctl(dir.path()).args(["init", "-q"])).ok();
    let r = run(irisctl(dir.path())
        .args(["up", "--bind", "0.0.0.0"])
        .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock"));
    assert!(r.stderr.contains("warning: publishing on 0.0.0.0 makes the API, Prometheus and Grafana reachable from other hosts"), "{}", r.stderr);
    let compose = run(irisctl(dir.path()).args(["compose", "--bind", "0.0.0.0"]));
    compose.ok();
    assert!(
        compose.stderr.contains("warning: publishing on 0.0.0.0"),
        "{}",
        compose.stderr
    );
    // The Swarm stack file publishes on every interface of the node: said as `up` says it.
    let swarm = run(irisctl(dir.path()).args(["compose", "--target", "swarm"]));
    swarm.ok();
    assert!(
        swarm
            .stderr
            .contains("warning: on Swarm, ports are published on every interface"),
        "{}",
        swarm.stderr
    );
    assert!(
        compose.stdout.contains("- 0.0.0.0:5174:8080"),
        "{}",
        compose.stdout
    );
}

#[test]
fn usage_errors_exit_2() {
    let r = run(irisctl(&repo()).args(["up", "--no-such-flag"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(irisctl(&repo()).args(["frobnicate"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(irisctl(&repo()).args(["status", "--target", "k8s"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("possible values: docker, swarm"),
        "{}",
        r.stderr
    );
    // Like every other error, a usage error ends with a hint.
    assert_eq!(r.stderr.matches("\nhint: ").count(), 1, "{}", r.stderr);
}

/// What a new user hit (issue 18), each a bad input that now gets a clear answer.
#[test]
fn new_user_traps_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    run(irisctl(dir.path()).args(["init", "-q"])).ok();
    let no_engine = |args: &[&str]| {
        run(irisctl(dir.path())
            .args(args)
            .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock"))
    };
    // --api-replicas without the Swarm target is not silently ignored.
    no_engine(&["up", "--api-replicas", "3"])
        .user_error("--api-replicas applies to the Swarm target only");
    // A canary needs the edge: refused on Swarm, by flag or by setting, before any engine call.
    no_engine(&["up", "--canary", "--target", "swarm"])
        .user_error("canary releases run on a single engine only");
    run(irisctl(dir.path())
        .args(["up", "--target", "swarm"])
        .env("IRISCTL_RELEASE_STRATEGY", "canary")
        .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock"))
    .user_error("canary releases run on a single engine only");
    // Shadow traffic needs the edge: refused on Swarm before any engine call; a sample out of
    // range is named with its setting.
    no_engine(&["shadow", "start", "--target", "swarm"])
        .user_error("shadow traffic runs on the single engine only");
    run(irisctl(dir.path())
        .args(["shadow", "start"])
        .env("IRISCTL_SHADOW_SAMPLE", "0")
        .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock"))
    .user_error("IRISCTL_SHADOW_SAMPLE");
    // localhost is a bind address.
    let r = run(irisctl(dir.path()).args(["--print-settings", "status", "--bind", "localhost"]));
    r.ok();
    assert!(r.stdout.contains("bind: 127.0.0.1"), "{}", r.stdout);
    // Errors name what the user wrote, not internal names.
    let r = no_engine(&["up", "--api-port", "eighty"]);
    r.user_error("flag --api-port: \"eighty\" is not a port number");
    assert!(!r.stderr.contains("API_PORT="), "{}", r.stderr);
    std::fs::write(dir.path().join("bad.yaml"), "ports: 5\n").unwrap();
    let r = no_engine(&["--config", "bad.yaml", "status"]);
    r.user_error("expected a mapping of keys");
    assert!(!r.stderr.contains("Layer"), "{}", r.stderr);
    // The hint names what exists in an `init` directory (issue 23: it named templates/irisctl.yaml,
    // which `init` does not write): a command that prints the same documented file.
    assert!(!r.stderr.contains("templates/"), "{}", r.stderr);
    assert!(
        r.stderr.contains("`irisctl init --print-template`"),
        "{}",
        r.stderr
    );
    let template = run(irisctl(dir.path()).args(["init", "--print-template"]));
    template.ok();
    assert_eq!(
        template.stdout,
        std::fs::read_to_string(dir.path().join("irisctl.yaml")).unwrap()
    );
    // compose -o into a folder that does not exist: an error, and no folder made.
    let r = no_engine(&["compose", "-o", "/nonexistent-irisctl/dir/x.yml"]);
    r.user_error("folder `/nonexistent-irisctl/dir` does not exist");
    assert!(!std::path::Path::new("/nonexistent-irisctl").exists());
    // An ssh:// engine that does not resolve: what ssh said, and how to check by hand.
    let r = run(irisctl(dir.path())
        .arg("status")
        .env("DOCKER_HOST", "ssh://someone@example.invalid:2222"));
    r.user_error(
        "cannot reach the Docker engine at `ssh://someone@example.invalid:2222` over SSH: ",
    );
    assert!(
        r.stderr.contains("example.invalid")
            && r.stderr
                .contains("`ssh -p 2222 someone@example.invalid docker version`"),
        "{}",
        r.stderr
    );
    // A malformed one, before any connection.
    let r = run(irisctl(dir.path())
        .arg("status")
        .env("DOCKER_HOST", "ssh://someone@host:port"));
    r.user_error("is not an SSH engine address");
    assert!(
        r.stderr
            .contains("hint: write it as ssh://[USER@]HOST[:PORT]"),
        "{}",
        r.stderr
    );
    // `tunnel` with a local engine: nothing to tunnel, said before any connection.
    let r = run(irisctl(dir.path())
        .arg("tunnel")
        .env("DOCKER_HOST", "unix:///var/run/docker.sock"));
    r.user_error("the engine is on this machine");
    assert!(
        r.stderr
            .contains("hint: point DOCKER_HOST at a remote engine"),
        "{}",
        r.stderr
    );
    // A docker context that does not exist.
    let r = run(irisctl(dir.path())
        .arg("status")
        .env_remove("DOCKER_HOST")
        .env("DOCKER_CONTEXT", "irisctl-no-such-context"));
    r.user_error("docker context `irisctl-no-such-context` (from DOCKER_CONTEXT) does not exist");
    // An unreachable TCP engine says why (the cause is not empty).
    let r = run(irisctl(dir.path())
        .arg("status")
        .env("DOCKER_HOST", "tcp://127.0.0.1:1"));
    r.user_error("cannot reach the Docker engine at `tcp://127.0.0.1:1`: ");
    let cause = r.stderr.split("`tcp://127.0.0.1:1`: ").nth(1).unwrap_or("");
    assert!(
        cause.lines().next().is_some_and(|l| l.trim().len() > 5),
        "{}",
        r.stderr
    );
    // The compose file names no container: it runs under another project name too.
    let compose = run(irisctl(dir.path()).arg("compose"));
    compose.ok();
    assert!(
        !compose.stdout.contains("container_name"),
        "{}",
        compose.stdout
    );
    // --print-settings is documented, and global options are apart from the verb's.
    let help = run(irisctl(dir.path()).args(["up", "--help"]));
    help.ok();
    assert!(help.stdout.contains("--print-settings"), "{}", help.stdout);
    assert!(help.stdout.contains("Global options:"), "{}", help.stdout);
    assert!(help.stdout.contains("[default: 180"), "{}", help.stdout);
}

/// `irisctl compose` outside a project directory names the built-in copy's files absolutely.
#[test]
fn compose_outside_a_project_directory_names_files_absolutely() {
    let cwd = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let r = run(irisctl(cwd.path())
        .arg("compose")
        .env("XDG_DATA_HOME", data.path()));
    r.ok();
    let project = data.path().join("irisctl/projects/iris");
    assert!(
        r.stdout
            .contains(&format!("context: {}", project.join("stack/api").display())),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("context: ./"), "{}", r.stdout);
    assert!(
        r.stderr.contains("names them by absolute path"),
        "{}",
        r.stderr
    );
    assert!(project.join("stack/api/Dockerfile").is_file());
}

/// Every repository file a message or hint names exists.
#[test]
fn every_file_a_hint_names_exists() {
    let mut named = Vec::new();
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split('`') {
                    let piece = piece.trim_start_matches("./");
                    if ["examples/", "templates/", "scripts/", "tests/ci.yaml"]
                        .iter()
                        .any(|p| piece.starts_with(p))
                        && !piece.contains(' ')
                        && !piece.contains('{')
                    {
                        named.push((path.clone(), piece.to_string()));
                    }
                }
            }
        }
    }
    assert!(!named.is_empty());
    for (file, name) in named {
        assert!(
            repo().join(&name).exists(),
            "{} names `{name}`, which does not exist",
            file.display()
        );
    }
}

#[test]
fn unreachable_engine_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    for verb in [&["status"][..], &["down"], &["logs"], &["up"]] {
        let r = run(irisctl(dir.path())
            .args(verb)
            .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock")
            .env("XDG_DATA_HOME", dir.path()));
        r.user_error("cannot reach the Docker engine at `unix:///nonexistent/irisctl-test.sock`");
        assert!(r.stderr.contains("DOCKER_HOST"), "{}", r.stderr);
    }
}

/// A fake engine that answers `/version` like Docker 18.09 (API 1.39).
#[test]
fn too_old_engine_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = r#"{"Version":"18.09.9","ApiVersion":"1.39","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}"#;
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let r = run(irisctl(dir.path())
        .arg("status")
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .env("XDG_DATA_HOME", dir.path()));
    r.user_error("is too old: it speaks API 1.39 (Docker 18.09.9)");
}

#[test]
fn init_writes_a_working_project_and_keeps_edits() {
    let dir = tempfile::tempdir().unwrap();
    run(irisctl(dir.path()).arg("init")).ok();
    for f in [
        "stack/api/Dockerfile",
        "stack/frontend/Dockerfile",
        "monitoring/prometheus.yml",
        "monitoring/dashboards/grafana-fastapi-dashboard.json",
        "irisctl.yaml",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} not written");
    }
    let gitignore = std::fs::read_to_string(dir.path().join(".gitignore")).unwrap();
    assert!(
        gitignore.lines().any(|l| l == ".env") && gitignore.lines().any(|l| l == ".irisctl/"),
        "{gitignore}"
    );
    // A second init says what it skipped rather than "wrote 0 file(s)".
    let r = run(irisctl(dir.path()).arg("init"));
    r.ok();
    assert!(
        r.stderr
            .contains("file(s) were already there and identical to the built-in ones")
            && !r.stderr.contains("added .env"),
        "{}",
        r.stderr
    );
    std::fs::write(dir.path().join("monitoring/prometheus.yml"), "# mine\n").unwrap();
    let r = run(irisctl(dir.path()).arg("init"));
    r.ok();
    assert!(
        r.stderr.contains("kept your monitoring/prometheus.yml")
            && r.stderr.contains(
                "skipped 1 existing file(s) you changed: monitoring/prometheus.yml (--force overwrites them)"
            ),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".gitignore")).unwrap(),
        gitignore
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("monitoring/prometheus.yml")).unwrap(),
        "# mine\n"
    );
}

#[test]
fn init_appends_to_an_existing_gitignore() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".gitignore"), "target/\n/.env").unwrap();
    let r = run(irisctl(dir.path()).arg("init"));
    r.ok();
    assert!(r.stderr.contains("added .irisctl/ to"), "{}", r.stderr);
    let text = std::fs::read_to_string(dir.path().join(".gitignore")).unwrap();
    assert!(
        text.starts_with("target/\n/.env\n") && text.ends_with("\n.irisctl/\n"),
        "{text}"
    );
}

#[test]
fn compose_check_reports_drift() {
    let dir = tempfile::tempdir().unwrap();
    run(irisctl(dir.path()).args(["init", "-q"])).ok();
    run(irisctl(dir.path()).args(["compose", "-o", "docker-compose.yml"])).ok();
    assert!(dir.path().join(".env.example").is_file());
    run(irisctl(dir.path()).args(["compose", "--check", "docker-compose.yml"])).ok();
    let r = run(irisctl(dir.path()).args([
        "compose",
        "--check",
        "docker-compose.yml",
        "--api-port",
        "8111",
    ]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.contains("-    - 127.0.0.1:8000:8000")
            && r.stdout.contains("+    - 127.0.0.1:8111:8000"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("is out of date") && r.stderr.contains("hint: "),
        "{}",
        r.stderr
    );
}

/// A loopback webhook is Alertmanager's own container, never the host's receiver (issue 23): it
/// is refused, from any layer, with a hint naming an address that reaches the host.
#[test]
fn a_loopback_webhook_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (i, url) in [
        "http://127.0.0.1:9999/alerts",
        "http://localhost:9999/x",
        "http://[::1]:9999/",
        "https://u:hunter2@127.0.0.2/T0K3N",
    ]
    .iter()
    .enumerate()
    {
        let r = if i % 2 == 0 {
            std::fs::write(
                dir.path().join("irisctl.yaml"),
                format!("alerting:\n  webhook_url: \"{url}\"\n"),
            )
            .unwrap();
            run(irisctl(dir.path()).args(["--print-settings", "status"]))
        } else {
            std::fs::write(dir.path().join("irisctl.yaml"), "").unwrap();
            run(irisctl(dir.path())
                .args(["--print-settings", "status"])
                .env("IRISCTL_ALERTING_WEBHOOK_URL", url))
        };
        r.user_error(
            "its host is loopback, which inside the Alertmanager container is the container itself",
        );
        assert!(r.stderr.contains("gateway"), "{url}: {}", r.stderr);
        assert!(
            !r.stderr.contains("hunter2") && !r.stderr.contains("T0K3N"),
            "{}",
            r.stderr
        );
    }
    // A host name of the stack's network is fine.
    std::fs::write(
        dir.path().join("irisctl.yaml"),
        "alerting:\n  webhook_url: http://receiver:8080/alerts\n",
    )
    .unwrap();
    run(irisctl(dir.path()).args(["--print-settings", "status"])).ok();
}

/// `grafana provision --help` names the `IRISCTL_GRAFANA_*` variables that win over the plain
/// ones (issue 23: it showed only `GRAFANA_URL`…), and `logs --help` lists every service.
#[test]
fn help_names_the_variables_and_services_that_apply() {
    // clap wraps help to the terminal: compare with white space collapsed.
    let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let r = run(irisctl(&repo()).args(["grafana", "provision", "--help"]));
    r.ok();
    let help = flat(&r.stdout);
    for name in ["URL", "USER", "PASSWORD", "TOKEN"] {
        let line = format!("[env: IRISCTL_GRAFANA_{name}, else GRAFANA_{name}]");
        assert!(help.contains(&line), "{line} missing:\n{}", r.stdout);
    }
    // clap's own `[env: GRAFANA_URL=]` would say the plain variable is the one read.
    assert!(!help.contains("[env: GRAFANA_"), "{}", r.stdout);
    let r = run(irisctl(&repo()).args(["logs", "--help"]));
    r.ok();
    assert!(
        flat(&r.stdout).contains("(api, frontend, edge, prometheus, grafana; alertmanager"),
        "{}",
        r.stdout
    );
}

/// A hint that suggests running irisctl again keeps the options that chose the project (issue
/// 23: after `irisctl --config examples/offline.yaml up` it said "then `irisctl up` again").
#[test]
fn suggested_reruns_keep_config_and_project_options() {
    let dir = tempfile::tempdir().unwrap();
    run(irisctl(dir.path()).args(["init", "-q"])).ok();
    std::fs::write(dir.path().join("my settings.yaml"), "ports:\n  api: 8100\n").unwrap();
    // An empty password in `.env`: the hint suggests `irisctl up`.
    std::fs::write(dir.path().join(".env"), "GRAFANA_ADMIN_PASSWORD=\n").unwrap();
    let r = run(irisctl(dir.path())
        .args(["--config", "my settings.yaml", "-p", "demo", "up"])
        .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock"));
    r.user_error("GRAFANA_ADMIN_PASSWORD is empty");
    assert!(
        r.stderr
            .contains("`irisctl --config 'my settings.yaml' -p demo up` generates one"),
        "{}",
        r.stderr
    );
    // Without those options the hint is as written.
    let r = run(irisctl(dir.path())
        .arg("up")
        .env("DOCKER_HOST", "unix:///nonexistent/irisctl-test.sock"));
    assert!(
        r.stderr.contains("`irisctl up` generates one"),
        "{}",
        r.stderr
    );
}

/// An installed binary can make the offline base images: `irisctl init DIR` writes the script,
/// its Dockerfiles and the offline settings, and the script runs from there.
#[test]
fn init_writes_a_runnable_offline_kit() {
    let dir = tempfile::tempdir().unwrap();
    run(irisctl(dir.path()).args(["init", "-q", "kit"])).ok();
    let kit = dir.path().join("kit");
    for f in [
        "scripts/offline-base-images",
        "scripts/offline/python.Dockerfile",
        "examples/offline.yaml",
    ] {
        assert!(kit.join(f).is_file(), "{f} not written");
    }
    let out = std::process::Command::new(kit.join("scripts/offline-base-images"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && help.contains("irisctl-offline/python:3.11"),
        "{help}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The offline settings it wrote are valid where init wrote them.
    run(irisctl(&kit).args([
        "--config",
        "examples/offline.yaml",
        "--print-settings",
        "status",
    ]))
    .ok();
}
