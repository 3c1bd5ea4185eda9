use super::*;

fn inputs<'a>(cwd: &'a Path, env: &'a [(String, String)], flags: FlagPairs) -> Inputs<'a> {
    Inputs {
        cwd,
        config: None,
        project_dir: Some(cwd),
        env,
        flags,
        data_home: Some(cwd.join("data")),
    }
}

fn err_text(e: anyhow::Error) -> String {
    let hint = crate::error::hint_of(&e).map(str::to_string);
    format!("{e:#} / hint: {}", hint.unwrap_or_default())
}

#[test]
fn defaults_are_pinned_and_loopback() {
    let s = Settings::defaults(PathBuf::from("/x"));
    assert_eq!(s.bind.to_string(), "127.0.0.1");
    for image in [
        &s.images.python,
        &s.images.node,
        &s.images.nginx,
        &s.images.prometheus,
        &s.images.grafana,
        &s.images.alertmanager,
    ] {
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(!tag.is_empty() && tag != "latest", "{image} must be pinned");
    }
    assert_eq!(
        (
            s.ports.api,
            s.ports.frontend,
            s.ports.prometheus,
            s.ports.grafana
        ),
        (8000, 5174, 9090, 3000)
    );
}

#[test]
fn precedence_file_dotenv_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("irisctl.yaml"),
        "ports:\n  api: 8100\n  frontend: 5100\n  prometheus: 9100\n  grafana: 3100\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "IRISCTL_FRONTEND_PORT=5200\nIRISCTL_PROMETHEUS_PORT=9200\nIRISCTL_GRAFANA_PORT=3200\nGRAFANA_ADMIN_PASSWORD=s3cret\nOTHER=ignored\n").unwrap();
    let env = vec![
        ("IRISCTL_PROMETHEUS_PORT".to_string(), "9300".to_string()),
        ("IRISCTL_GRAFANA_PORT".to_string(), "3300".to_string()),
    ];
    let flags = vec![("GRAFANA_PORT", "3400".to_string())];
    let s = resolve(inputs(dir.path(), &env, flags)).unwrap();
    assert_eq!(
        (
            s.ports.api,
            s.ports.frontend,
            s.ports.prometheus,
            s.ports.grafana
        ),
        (8100, 5200, 9300, 3400)
    );
    assert_eq!(s.grafana_admin_password.as_deref(), Some("s3cret"));
}

#[test]
fn unknown_file_key_names_file_and_key() {
    let mut s = Settings::defaults(PathBuf::new());
    let e = err_text(
        s.apply_file("ports:\n  apy: 1\n", Path::new("/etc/irisctl.yaml"))
            .unwrap_err(),
    );
    assert!(e.contains("/etc/irisctl.yaml") && e.contains("apy"), "{e}");
    let e = err_text(
        s.apply_file("colour: red\n", Path::new("a.yaml"))
            .unwrap_err(),
    );
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn bad_values_name_origin_and_hint() {
    let cases = [
        ("API_PORT", "0", "a port number"),
        ("API_PORT", "65536", "a port number"),
        ("API_PORT", "http", "a port number"),
        ("BIND", "localhost:80", "an IP address"),
        ("PROJECT_NAME", "Iris", "a valid project name"),
        ("PROJECT_NAME", "", "a valid project name"),
        ("PROJECT_NAME", "a b", "a valid project name"),
        ("PYTHON_IMAGE", "", "an image reference"),
        ("PYTHON_IMAGE", "python 3", "an image reference"),
        ("NGINX_IMAGE", "Nginx:1", "an image reference"),
        ("HEALTH_TIMEOUT", "-1", "a number of seconds"),
        ("HEALTH_TIMEOUT", "0", "a number of seconds"),
        ("NOPE", "1", "unknown setting `IRISCTL_NOPE`"),
        (
            "SWARM_NODES",
            "node2",
            "a comma-separated list of ssh:// engine addresses",
        ),
        (
            "SWARM_NODES",
            "ssh://a,tcp://b:2375",
            "a comma-separated list of ssh:// engine addresses",
        ),
        (
            "SWARM_NODES",
            "ssh://-oProxyCommand=x",
            "a comma-separated list of ssh:// engine addresses",
        ),
    ];
    for (key, value, want) in cases {
        let mut s = Settings::defaults(PathBuf::new());
        let e = err_text(s.apply(key, value, "flag --x").unwrap_err());
        assert!(
            e.contains(want)
                && e.contains("flag --x")
                && e.contains("hint: ")
                && !e.ends_with("hint: "),
            "{key}={value}: {e}"
        );
    }
}

#[test]
fn duplicate_ports_are_rejected() {
    let mut s = Settings::defaults(PathBuf::new());
    s.apply("GRAFANA_PORT", "8000", "flag").unwrap();
    let e = err_text(s.validate().unwrap_err());
    assert!(e.contains("api and grafana") && e.contains("8000"), "{e}");
}

#[test]
fn dotenv_parsing() {
    let got = parse_dotenv(
        "# c\n\nexport A=1\nB=\"two words\"\nC='x'\n",
        Path::new(".env"),
    )
    .unwrap();
    let kv: Vec<_> = got
        .iter()
        .map(|(k, v, _)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(kv, vec![("A", "1"), ("B", "two words"), ("C", "x")]);
    let e = err_text(parse_dotenv("A=1\njunk\n", Path::new("/p/.env")).unwrap_err());
    assert!(e.contains("/p/.env` line 2"), "{e}");
}

#[test]
fn dotenv_errors_never_show_the_line() {
    for text in [
        "A=1\nhunter2-SECRET\n",
        "A=1\nhunter2 SECRET=x\n",
        "A=1\nexport hunter2-SECRET\n",
    ] {
        let e = err_text(parse_dotenv(text, Path::new("/p/.env")).unwrap_err());
        assert!(e.contains("/p/.env` line 2"), "{e}");
        assert!(!e.contains("SECRET"), "the line is shown: {e}");
    }
}

#[test]
fn an_empty_grafana_password_is_refused() {
    for line in [
        "GRAFANA_ADMIN_PASSWORD=",
        "GRAFANA_ADMIN_PASSWORD=   ",
        "GRAFANA_ADMIN_PASSWORD=\"  \"",
        "GRAFANA_ADMIN_PASSWORD=s3cret\nGRAFANA_ADMIN_PASSWORD=",
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), format!("# x\n{line}\n")).unwrap();
        let e = err_text(resolve(inputs(dir.path(), &[], vec![])).unwrap_err());
        assert!(
            e.contains("GRAFANA_ADMIN_PASSWORD is empty")
                && e.contains(".env` line")
                && e.contains("remove the line"),
            "{line}: {e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }
    // The last line wins, as in the generated `.env`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "GRAFANA_ADMIN_PASSWORD=\nGRAFANA_ADMIN_PASSWORD=s3cret\n",
    )
    .unwrap();
    let s = resolve(inputs(dir.path(), &[], vec![])).unwrap();
    assert_eq!(s.grafana_admin_password.as_deref(), Some("s3cret"));
}

#[test]
fn durations_are_bounded() {
    for bad in [
        "0",
        "-1",
        "",
        " ",
        "1.5",
        "86401",
        "18446744073709551615",
        "99999999999999999999999",
        "5m",
    ] {
        let e = err_text(parse_duration_secs("flag --wait-timeout: ", bad).unwrap_err());
        assert!(
            e.contains("flag --wait-timeout: ")
                && e.contains("is not a number of seconds")
                && e.contains("hint: give"),
            "{bad:?}: {e}"
        );
    }
    assert_eq!(
        parse_duration_secs("", " 60 ").unwrap(),
        Duration::from_secs(60)
    );
    assert_eq!(
        parse_duration_secs("", "86400").unwrap(),
        Duration::from_secs(86400)
    );
    let mut s = Settings::defaults(PathBuf::new());
    let e = err_text(
        s.apply(
            "HEALTH_TIMEOUT",
            "18446744073709551615",
            "flag --wait-timeout",
        )
        .unwrap_err(),
    );
    assert!(
        e.contains("flag --wait-timeout: \"18446744073709551615\"") && e.contains("24 hours"),
        "{e}"
    );
    s.apply("HEALTH_TIMEOUT", "7200", "t").unwrap();
    assert_eq!(s.health_timeout, Duration::from_secs(7200));
}

#[test]
fn data_home_never_falls_back_to_a_shared_folder() {
    use std::ffi::OsStr;
    let some = |s: &'static str| Some(OsStr::new(s));
    assert_eq!(
        data_home(some("/x"), some("/h")),
        Some(PathBuf::from("/x/irisctl"))
    );
    assert_eq!(
        data_home(None, some("/h")),
        Some(PathBuf::from("/h/.local/share/irisctl"))
    );
    assert_eq!(
        data_home(some(""), some("/h")),
        Some(PathBuf::from("/h/.local/share/irisctl"))
    );
    // A relative XDG_DATA_HOME is invalid (XDG spec) and ignored.
    assert_eq!(
        data_home(some("rel"), some("/h")),
        Some(PathBuf::from("/h/.local/share/irisctl"))
    );
    assert_eq!(data_home(None, None), None);
    assert_eq!(data_home(some(""), some("")), None);
    assert_eq!(data_home(None, some("relative")), None);
}

#[test]
fn resolve_without_a_data_home_needs_a_project_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = inputs(dir.path(), &[], vec![]);
    i.project_dir = None;
    i.data_home = None;
    let e = err_text(resolve(i).unwrap_err());
    assert!(
        e.contains("neither HOME nor XDG_DATA_HOME is set") && e.contains("--project-dir"),
        "{e}"
    );
    // With a project directory, no data folder is needed.
    let mut i = inputs(dir.path(), &[], vec![]);
    i.data_home = None;
    resolve(i).unwrap();
}

#[test]
fn data_folders_others_could_write_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("irisctl");
    let uid = super::dirs::current_uid();
    // Missing is fine: irisctl creates it.
    check_private_dir(&data, uid).unwrap();
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    check_private_dir(&data, uid).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = err_text(check_private_dir(&data, uid).unwrap_err());
    assert!(
        e.contains("other users can write to it (mode 777)") && e.contains("hint: "),
        "{e}"
    );
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let e = err_text(check_private_dir(&data, uid + 1).unwrap_err());
    assert!(e.contains("belongs to user ID"), "{e}");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let e = err_text(check_private_dir(&link, uid).unwrap_err());
    assert!(e.contains("not a folder"), "{e}");
    // resolve checks the data folder and the project folder below it.
    let mut i = inputs(dir.path(), &[], vec![]);
    i.project_dir = None;
    i.data_home = Some(data.clone());
    std::fs::create_dir_all(data.join("projects/iris")).unwrap();
    std::fs::set_permissions(
        data.join("projects/iris"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let e = err_text(resolve(i).unwrap_err());
    assert!(e.contains("projects/iris` is not safe"), "{e}");
}

#[test]
fn missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = inputs(dir.path(), &[], vec![]);
    let missing = dir.path().join("nope.yaml");
    i.config = Some(&missing);
    let e = err_text(resolve(i).unwrap_err());
    assert!(e.contains("nope.yaml") && e.contains("cannot read"), "{e}");
}

#[test]
fn build_context_is_relative_to_the_file_and_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("g")).unwrap();
    std::fs::write(dir.path().join("g/Dockerfile"), "FROM x\n").unwrap();
    let mut s = Settings::defaults(PathBuf::new());
    s.apply_file(
        "build:\n  grafana:\n    context: g\n    args: {A: 1}\n",
        &dir.path().join("c.yaml"),
    )
    .unwrap();
    assert_eq!(s.builds["grafana"].context, dir.path().join("g"));
    assert_eq!(s.builds["grafana"].args["A"], "1");
    let e = err_text(
        s.apply_file(
            "build:\n  grafana:\n    context: nowhere\n",
            &dir.path().join("c.yaml"),
        )
        .unwrap_err(),
    );
    assert!(e.contains("no Dockerfile"), "{e}");
    let e = err_text(
        s.apply_file(
            "build:\n  api:\n    context: g\n",
            &dir.path().join("c.yaml"),
        )
        .unwrap_err(),
    );
    assert!(e.contains("cannot be built"), "{e}");
}

#[test]
fn the_webhook_url_is_validated_and_never_shown_whole() {
    let mut s = Settings::defaults(PathBuf::new());
    assert!(s.alerting.webhook_url.is_none());
    s.apply_file(
        "alerting:\n  webhook_url: https://bob:hunter2@hooks.example.com:8443/T0K3N?x=SECRET\n",
        Path::new("/p/irisctl.yaml"),
    )
    .unwrap();
    let url = s.alerting.webhook_url.clone().unwrap();
    assert_eq!(
        url.expose(),
        "https://bob:hunter2@hooks.example.com:8443/T0K3N?x=SECRET"
    );
    assert_eq!(url.shown(), "https://***@hooks.example.com:8443/…");
    let printed = to_yaml(&s) + &format!("{s:?}");
    for secret in ["hunter2", "bob", "T0K3N", "SECRET"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    // Empty turns delivery off again (a variable overriding the file).
    s.apply(
        "ALERTING_WEBHOOK_URL",
        "",
        "environment variable IRISCTL_ALERTING_WEBHOOK_URL",
    )
    .unwrap();
    assert!(s.alerting.webhook_url.is_none());
    for bad in [
        "ftp://u:hunter2@host/x",
        "file:///etc/passwd",
        "hooks.example.com/hunter2",
        "http://",
        "not a url hunter2",
    ] {
        let e = err_text(
            s.apply_file(
                &format!("alerting:\n  webhook_url: \"{bad}\"\n"),
                Path::new("/p/irisctl.yaml"),
            )
            .unwrap_err(),
        );
        assert!(
            e.contains("key `alerting.webhook_url`")
                && e.contains("is not an http or https URL")
                && e.contains("hint: give the full address"),
            "{bad}: {e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "IRISCTL_ALERTING_WEBHOOK_URL=smtp://x:hunter2@y\n",
    )
    .unwrap();
    let e = err_text(resolve(inputs(dir.path(), &[], vec![])).unwrap_err());
    assert!(
        e.contains(".env` line 1: IRISCTL_ALERTING_WEBHOOK_URL=") && !e.contains("hunter2"),
        "{e}"
    );
}

#[test]
fn prometheus_durations() {
    for (text, ms) in [
        ("30m", 1_800_000),
        ("0s", 0),
        ("1h30m", 5_400_000),
        ("90s", 90_000),
        ("500ms", 500),
        ("1m30s500ms", 90_500),
        (" 2d ", 172_800_000),
    ] {
        assert_eq!(parse_prometheus_duration(text), Some(ms), "{text}");
    }
    for bad in [
        "",
        "30",
        "m",
        "1.5m",
        "-1m",
        "30m1h",
        "1m1m",
        "5 m",
        "1y",
        "1M",
        "ms5",
        "99999999999999w",
    ] {
        assert_eq!(parse_prometheus_duration(bad), None, "{bad:?}");
    }
}

#[test]
fn drift_settings_are_validated() {
    let mut s = Settings::defaults(PathBuf::new());
    assert_eq!(
        (
            s.alerting.drift_window.as_str(),
            s.alerting.drift_for.as_str(),
            s.alerting.drift_stddevs.as_str()
        ),
        ("30m", "15m", "1")
    );
    s.apply_file(
        "alerting:\n  drift_window: 1m\n  drift_for: 0s\n  drift_stddevs: 2.50\n",
        Path::new("/p/c.yaml"),
    )
    .unwrap();
    assert_eq!(
        (
            s.alerting.drift_window.as_str(),
            s.alerting.drift_for.as_str(),
            s.alerting.drift_stddevs.as_str()
        ),
        ("1m", "0s", "2.5")
    );
    for (yaml, needle) in [
        (
            "drift_window: 10s",
            "key `alerting.drift_window`: \"10s\" is not a Prometheus duration from 30s to 24h",
        ),
        ("drift_window: 30", "is not a Prometheus duration"),
        (
            "drift_for: 2d",
            "key `alerting.drift_for`: \"2d\" is not a Prometheus duration from 0s to 24h",
        ),
        (
            "drift_stddevs: 0",
            "key `alerting.drift_stddevs`: \"0\" is not a number of standard deviations",
        ),
        (
            "drift_stddevs: .nan",
            "is not a number of standard deviations",
        ),
        (
            "drift_stddevs: 1e9",
            "is not a number of standard deviations",
        ),
    ] {
        let e = err_text(
            s.apply_file(&format!("alerting:\n  {yaml}\n"), Path::new("/p/c.yaml"))
                .unwrap_err(),
        );
        assert!(
            e.contains(needle) && e.contains("hint: give"),
            "{yaml}: {e}"
        );
    }
    let e = err_text(
        s.apply(
            "ALERTING_DRIFT_FOR",
            "soon",
            "environment variable IRISCTL_ALERTING_DRIFT_FOR",
        )
        .unwrap_err(),
    );
    assert!(
        e.starts_with("environment variable IRISCTL_ALERTING_DRIFT_FOR: \"soon\""),
        "{e}"
    );
}

/// monitoring/test-rules tests the rules rendered with these defaults.
#[test]
fn test_rules_renders_the_default_drift_settings() {
    let script = include_str!("../../monitoring/test-rules");
    let d = Settings::defaults(PathBuf::new()).alerting;
    for (name, value) in [
        ("drift_window", &d.drift_window),
        ("drift_for", &d.drift_for),
        ("drift_stddevs", &d.drift_stddevs),
    ] {
        let sed = format!("'s/\\${{{name}}}/{value}/g'");
        assert!(script.contains(&sed), "monitoring/test-rules lacks {sed}");
    }
}

#[test]
fn memory_limits_take_mib_or_gib_within_bounds() {
    let mut s = Settings::defaults(PathBuf::new());
    assert_eq!(s.memory.api, 512 * MIB);
    s.apply_file(
        "memory:\n  api: 1g\n  frontend: 96M\n",
        Path::new("/p/c.yaml"),
    )
    .unwrap();
    assert_eq!((s.memory.api, s.memory.frontend), (1024 * MIB, 96 * MIB));
    let shown = serde_json::to_value(&s.memory).unwrap();
    assert_eq!(shown, serde_json::json!({"api": "1g", "frontend": "96m"}));
    s.apply("API_MEMORY", " 768MiB ", "t").unwrap();
    assert_eq!(s.memory.api, 768 * MIB);
    for bad in [
        "",
        "512",
        "0m",
        "15m",
        "257g",
        "1.5g",
        "-1m",
        "1t",
        "m",
        "99999999999999999999g",
    ] {
        let e = s.apply("API_MEMORY", bad, "flag").unwrap_err();
        assert!(crate::error::hint_of(&e).is_some(), "{bad:?}");
        assert!(
            err_text(e).contains("is not a memory limit from 16m to 256g"),
            "{bad:?}"
        );
    }
    let e = err_text(
        s.apply_file("memory:\n  api: lots\n", Path::new("/p/c.yaml"))
            .unwrap_err(),
    );
    assert!(
        e.contains("key `memory.api`: \"lots\" is not a memory limit"),
        "{e}"
    );
}

#[test]
fn the_alertmanager_port_conflicts_only_when_it_runs() {
    let mut s = Settings::defaults(PathBuf::new());
    s.apply("ALERTMANAGER_PORT", "9090", "t").unwrap();
    s.validate().unwrap();
    s.apply("ALERTING_WEBHOOK_URL", "http://r:8080/", "t")
        .unwrap();
    let e = err_text(s.validate().unwrap_err());
    assert!(
        e.contains("the prometheus and alertmanager services are both set to host port 9090"),
        "{e}"
    );
    s.apply_file(
            "ports:\n  alertmanager: 9193\nimages:\n  alertmanager: irisctl-offline/alertmanager:0.25\n",
            Path::new("/p/c.yaml"),
        )
        .unwrap();
    s.validate().unwrap();
    assert_eq!(s.images.alertmanager, "irisctl-offline/alertmanager:0.25");
}

#[test]
fn client_host_for_wildcard_binds() {
    let mut s = Settings::defaults(PathBuf::new());
    s.apply("BIND", "0.0.0.0", "t").unwrap();
    assert_eq!(s.client_host(), "127.0.0.1");
    s.apply("BIND", "::", "t").unwrap();
    assert_eq!(s.client_host(), "[::1]");
}

/// Fuzz: random documents built from real keys, wrong keys, odd values and raw bytes. The
/// parser must never panic, and every refusal must carry a hint.
#[test]
fn fuzz_settings_parsers_never_panic() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let keys = [
        "project",
        "bind",
        "ports",
        "api",
        "frontend",
        "prometheus",
        "grafana",
        "images",
        "python",
        "node",
        "nginx",
        "build",
        "context",
        "args",
        "timeouts",
        "health",
        "admin_user",
        "alerting",
        "webhook_url",
        "alertmanager",
        "x",
        "",
    ];
    let values = [
        "8000",
        "-1",
        "0",
        "65536",
        "1e9",
        "~",
        "null",
        "true",
        "[1, 2]",
        "{a: b}",
        "\"\"",
        "'",
        "\"",
        "127.0.0.1",
        "::1",
        "http://u:p@h:1/x",
        "ftp://h",
        "iris",
        "Iris!",
        "python:3.11",
        "a b",
        "&anchor",
        "*alias",
        "!!binary x",
        "|",
        ">",
        "- item",
        "\t",
        "🙂",
        "%",
        "@",
        ":",
    ];
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..4000 {
        let mut doc = String::new();
        for _ in 0..(next() % 8) {
            let depth = (next() % 3) as usize;
            let key = keys[(next() % keys.len() as u64) as usize];
            let value = values[(next() % values.len() as u64) as usize];
            match next() % 4 {
                0 => doc.push_str(&format!("{}{key}:\n", "  ".repeat(depth))),
                1 => doc.push_str(&format!("{}{key}: {value}\n", "  ".repeat(depth))),
                2 => doc.push_str(&format!("{}- {value}\n", "  ".repeat(depth))),
                _ => doc.extend((0..(next() % 12)).map(|_| char::from((next() % 95 + 32) as u8))),
            }
        }
        let mut s = Settings::defaults(PathBuf::new());
        if let Err(e) = s.apply_file(&doc, &dir.path().join("f.yaml")) {
            assert!(
                crate::error::hint_of(&e).is_some(),
                "no hint for {doc:?}: {e:#}"
            );
        }
        if let Err(e) = parse_dotenv(&doc, Path::new(".env")) {
            assert!(
                crate::error::hint_of(&e).is_some(),
                "no hint for {doc:?}: {e:#}"
            );
        }
        for key in keys::KEYS.iter().map(|k| k.var) {
            let value = values[(next() % values.len() as u64) as usize];
            if let Err(e) = s.apply(key, value, "fuzz") {
                assert!(
                    crate::error::hint_of(&e).is_some(),
                    "no hint for {key}={value:?}"
                );
            }
        }
    }
}

/// templates/irisctl.yaml is what the key table generates: every key, its variable, flag,
/// default and documentation, written in one place. `IRISCTL_BLESS=1` rewrites the file.
#[test]
fn the_template_is_generated_from_the_key_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/irisctl.yaml");
    let want = keys::template();
    if std::env::var_os("IRISCTL_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
            have, want,
            "templates/irisctl.yaml differs from keys::template(); run `IRISCTL_BLESS=1 cargo test --lib template` and review the diff"
        );
    // Uncommented, the template is a settings file every key of which parses.
    let start = want.find("# project:").expect("a `project:` line");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("my-grafana")).unwrap();
    std::fs::write(dir.path().join("my-grafana/Dockerfile"), "FROM x\n").unwrap();
    let uncommented: String = want[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| format!("{}\n", l))
        .collect();
    let mut s = Settings::defaults(PathBuf::new());
    s.apply_file(&uncommented, &dir.path().join("irisctl.yaml"))
        .unwrap_or_else(|e| panic!("{e:#}\n{uncommented}"));
    for key in keys::KEYS.iter() {
        assert!(
            s.origins.contains_key(key.var),
            "the template does not set `{}`",
            key.file
        );
        assert!(
            want.contains(&key.variable()),
            "{} is not documented",
            key.variable()
        );
    }
    assert!(s.builds.contains_key("grafana"));
    assert_eq!(
        s.release.canary.gates.len(),
        1,
        "the template's example gate"
    );
}

#[test]
fn canary_settings_are_validated() {
    let mut s = Settings::defaults(PathBuf::new());
    s.apply_file(
        "release:\n  strategy: canary\n  canary:\n    steps: 5, 25,50\n    step_duration: 2m\n    max_p95_increase: 50ms\n    gates:\n      - name: p99\n        query: x{track=\"$track\"}\n        max_increase: 0.1\n",
        Path::new("/p/c.yaml"),
    )
    .unwrap();
    let c = &s.release.canary;
    assert!(s.release.canary_strategy);
    assert_eq!(c.steps, vec![5, 25, 50]);
    assert_eq!(c.step_duration, Duration::from_secs(120));
    assert_eq!(c.max_p95_increase, Duration::from_millis(50));
    assert_eq!(c.gates[0].name, "p99");
    s.apply("RELEASE_CANARY_STEPS", "10,50", "t").unwrap();
    assert_eq!(s.release.canary.steps, vec![10, 50]);
    s.apply("SHADOW_SAMPLE", "25%", "t").unwrap();
    assert_eq!(s.shadow.sample, 25);
    for (var, value, needle) in [
        (
            "RELEASE_STRATEGY",
            "blue-green",
            "write `swap` (the default) or `canary`",
        ),
        ("RELEASE_CANARY_STEPS", "50,10", "increasing percentages"),
        ("RELEASE_CANARY_STEPS", "10,100", "increasing percentages"),
        ("RELEASE_CANARY_STEPS", "", "increasing percentages"),
        ("RELEASE_CANARY_STEP_DURATION", "5s", "from 10s to 24h"),
        ("RELEASE_CANARY_MIN_REQUESTS", "0", "from 1 to 1000000"),
        ("SHADOW_SAMPLE", "0", "from 1 to 100"),
        ("SHADOW_SAMPLE", "101 %", "from 1 to 100"),
        (
            "RELEASE_CANARY_MAX_5XX_INCREASE",
            "2",
            "a share from 0 to 1",
        ),
        (
            "RELEASE_CANARY_MAX_SPECIES_DISTANCE",
            "NaN",
            "a share from 0 to 1",
        ),
    ] {
        let e = err_text(s.apply(var, value, "t").unwrap_err());
        assert!(
            e.contains(needle) && e.contains("hint:"),
            "{var}={value}: {e}"
        );
    }
    for (gates, needle) in [
        ("- name: p99\n        query: up\n        max_increase: 1", "does not name `$track`"),
        ("- name: p99\n        query: x{track=\"$track\"}", "missing field `max_increase`"),
        ("- name: p99\n        query: x{track=\"$track\"}\n        max_increase: 1\n        min: 2", "unknown field `min`"),
        ("- name: \"\"\n        query: x{track=\"$track\"}\n        max_increase: 1", "`name` must be a short line"),
        ("7", "invalid type"),
    ] {
        let e = err_text(
            s.apply_file(
                &format!("release:\n  canary:\n    gates:\n      {gates}\n"),
                Path::new("/p/c.yaml"),
            )
            .unwrap_err(),
        );
        assert!(
            e.contains("key `release.canary.gates`") && e.contains(needle) && e.contains("hint:"),
            "{gates}: {e}"
        );
    }
    let e = err_text(
        s.apply_file(
            "release:\n  canary:\n    step: 10\n",
            Path::new("/p/c.yaml"),
        )
        .unwrap_err(),
    );
    assert!(
        e.contains("known keys here: steps, step_duration") && e.contains("gates"),
        "{e}"
    );
}

/// Every flag the table names exists on the command line (`up` takes them all).
#[test]
fn the_flags_the_table_names_exist() {
    use clap::CommandFactory;
    let cli = crate::cli::Cli::command();
    let up = cli.find_subcommand("up").unwrap();
    for key in keys::KEYS.iter() {
        let Some(flag) = key.flag else { continue };
        let long = flag.trim_start_matches("--");
        assert!(
            up.get_arguments().any(|a| a.get_long() == Some(long))
                || cli.get_arguments().any(|a| a.get_long() == Some(long)),
            "{flag} (for {}) is not a flag of `irisctl up`",
            key.variable()
        );
    }
}
