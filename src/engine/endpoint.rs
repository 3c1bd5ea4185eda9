//! Which engine irisctl talks to, chosen as the docker CLI chooses it: `DOCKER_HOST`, then
//! `DOCKER_CONTEXT`, then the current context of the docker CLI's config (`~/.docker`, or
//! `DOCKER_CONFIG`), then the local socket. Pure but for reading the CLI's files.

use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::error::hinted;

pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// An engine reached over SSH: `ssh://[user@]host[:port][/socket]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The engine's socket on the remote host.
    pub socket: String,
}

impl SshTarget {
    /// `user@host` (or `host`), as ssh takes it.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix://` or `tcp://`: bollard connects itself.
    Direct(String),
    Ssh(SshTarget),
}

/// The engine's URL and where it was chosen (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub url: String,
    pub source: String,
}

/// The engine the docker CLI would use, from the environment and the CLI's config folder.
///
/// Read once per run (the environment does not change under it): every HTTP request to the
/// stack asks it, readiness polls every 25–50 ms among them.
pub fn chosen() -> Result<Chosen> {
    static CHOSEN: std::sync::OnceLock<Chosen> = std::sync::OnceLock::new();
    if let Some(c) = CHOSEN.get() {
        return Ok(c.clone());
    }
    let c = read_chosen()?;
    Ok(CHOSEN.get_or_init(|| c).clone())
}

fn read_chosen() -> Result<Chosen> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let config_dir = var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".docker")));
    choose(
        var("DOCKER_HOST"),
        var("DOCKER_CONTEXT"),
        config_dir.as_deref(),
    )
}

/// [`chosen`] from its inputs.
pub fn choose(
    docker_host: Option<String>,
    docker_context: Option<String>,
    config_dir: Option<&Path>,
) -> Result<Chosen> {
    if let Some(url) = docker_host {
        return Ok(Chosen {
            url,
            source: "DOCKER_HOST".into(),
        });
    }
    let (context, source) = match docker_context {
        Some(c) => (c, "DOCKER_CONTEXT"),
        None => {
            let current = config_dir
                .map(|d| d.join("config.json"))
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["currentContext"].as_str().map(String::from))
                .filter(|c| !c.is_empty());
            match current {
                Some(c) => (c, "the docker CLI's current context"),
                None => {
                    return Ok(Chosen {
                        url: DEFAULT_SOCKET.into(),
                        source: "the default socket".into(),
                    })
                }
            }
        }
    };
    if context == "default" {
        return Ok(Chosen {
            url: DEFAULT_SOCKET.into(),
            source: format!("context `default` ({source})"),
        });
    }
    let hex: String = Sha256::digest(context.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let meta = config_dir.map(|d| d.join("contexts/meta").join(hex).join("meta.json"));
    let host = meta
        .as_ref()
        .and_then(|m| std::fs::read_to_string(m).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["Endpoints"]["docker"]["Host"].as_str().map(String::from));
    match host {
        Some(url) => Ok(Chosen {
            url,
            source: format!("context `{context}` ({source})"),
        }),
        None => Err(hinted(
            format!("docker context `{context}` (from {source}) does not exist or names no Docker endpoint"),
            "list the contexts with `docker context ls`; create it with `docker context create NAME --docker host=ssh://USER@HOST`, or set DOCKER_HOST",
        )),
    }
}

/// How to reach the engine at `url`.
pub fn endpoint(url: &str) -> Result<Endpoint> {
    if let Some(rest) = url.strip_prefix("ssh://") {
        return parse_ssh(rest).map(Endpoint::Ssh).ok_or_else(|| {
            hinted(
                format!("`{url}` is not an SSH engine address"),
                "write it as ssh://[USER@]HOST[:PORT], e.g. ssh://deploy@build.example.com:2222",
            )
        });
    }
    if url.starts_with("unix://") || url.starts_with("tcp://") || url.starts_with("http://") {
        return Ok(Endpoint::Direct(url.to_string()));
    }
    Err(hinted(
        format!("`{url}` is not an engine address irisctl can use"),
        "use unix:///PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT]",
    ))
}

/// `[user@]host[:port][/socket]`, after `ssh://`.
fn parse_ssh(rest: &str) -> Option<SshTarget> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
        Some(_) => return None,
        None => (None, authority),
    };
    // `[::1]:2222`, `host:2222`, `host`
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (h, after) = inner.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p.parse::<u16>().ok().filter(|p| *p > 0)?)),
            None if after.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p > 0)?)),
            None => (hostport, None),
        }
    };
    let valid = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:%".contains(c))
    };
    if !valid(host) || user.as_deref().is_some_and(|u| !valid(u)) {
        return None;
    }
    Some(SshTarget {
        user,
        host: host.to_string(),
        port,
        socket: if path.is_empty() || path == "/" {
            "/var/run/docker.sock".into()
        } else {
            path.to_string()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(url: &str) -> SshTarget {
        match endpoint(url).unwrap() {
            Endpoint::Ssh(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_ssh_url_keeps_its_user_host_and_port() {
        let t = ssh("ssh://deploy@build.example.com:2222");
        assert_eq!(t.user.as_deref(), Some("deploy"));
        assert_eq!(t.host, "build.example.com");
        assert_eq!(t.port, Some(2222));
        assert_eq!(t.socket, "/var/run/docker.sock");
        assert_eq!(t.destination(), "deploy@build.example.com");
        let t = ssh("ssh://host");
        assert_eq!((t.user, t.port), (None, None));
        let t = ssh("ssh://root@[::1]:22/run/user/1000/docker.sock");
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, Some(22));
        assert_eq!(t.socket, "/run/user/1000/docker.sock");
    }

    #[test]
    fn a_malformed_ssh_url_is_refused_with_a_hint() {
        for url in [
            "ssh://",
            "ssh://@host",
            "ssh://host:0",
            "ssh://host:99999",
            "ssh://host:abc",
            "ssh://-oProxyCommand=x",
            "ssh://u@-host",
            "ssh://a b",
        ] {
            let e = endpoint(url).unwrap_err();
            assert!(
                format!("{e:#}").contains("not an SSH engine address"),
                "{url}: {e:#}"
            );
            assert!(crate::error::hint_of(&e).is_some(), "{url}");
        }
        assert!(endpoint("npipe:////./pipe/docker").is_err());
        assert_eq!(
            endpoint("tcp://10.0.0.1:2375").unwrap(),
            Endpoint::Direct("tcp://10.0.0.1:2375".into())
        );
    }

    #[test]
    fn the_engine_is_chosen_as_the_docker_cli_chooses_it() {
        let dir = tempfile::tempdir().unwrap();
        // No config at all: the local socket.
        assert_eq!(
            choose(None, None, Some(dir.path())).unwrap().url,
            DEFAULT_SOCKET
        );
        // The CLI's current context, from its meta file (named by the SHA-256 of the name).
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"prod"}"#,
        )
        .unwrap();
        let hex: String = Sha256::digest(b"prod")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let meta = dir.path().join("contexts/meta").join(hex);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"prod","Endpoints":{"docker":{"Host":"ssh://ops@prod:2200","SkipTLSVerify":false}}}"#,
        )
        .unwrap();
        let c = choose(None, None, Some(dir.path())).unwrap();
        assert_eq!(c.url, "ssh://ops@prod:2200");
        assert!(c.source.contains("context `prod`"), "{}", c.source);
        // DOCKER_CONTEXT before the config's; `default` is the local socket.
        assert_eq!(
            choose(None, Some("default".into()), Some(dir.path()))
                .unwrap()
                .url,
            DEFAULT_SOCKET
        );
        // DOCKER_HOST before any context.
        assert_eq!(
            choose(
                Some("tcp://h:1".into()),
                Some("prod".into()),
                Some(dir.path())
            )
            .unwrap()
            .url,
            "tcp://h:1"
        );
        // A context that does not exist.
        let e = choose(None, Some("nope".into()), Some(dir.path())).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("context `nope`"), "{text}");
        let hint = crate::error::hint_of(&e).unwrap_or_default();
        assert!(hint.contains("docker context ls"), "{hint}");
    }
}
