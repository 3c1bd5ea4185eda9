//! A remote engine over SSH: one `ssh` connection per irisctl run, however many engine calls
//! and HTTP requests it makes. The system's `ssh` is used, so the user's `~/.ssh/config`, keys,
//! agent and `known_hosts` apply as they do for `ssh` itself; the host key is always checked
//! (`StrictHostKeyChecking=yes`: an unknown or changed key is an error, never accepted).
//!
//! The connection is a control master that forwards the remote engine's socket to a socket in a
//! private folder here (bollard speaks HTTP to it). A port of the remote host (the stack's
//! published ports are on *its* loopback) is reached by adding a forward to the same master
//! (`ssh -O forward`: no new connection) and relaying a local TCP port to it.
//!
//! The remote command is `cat`: it ends when irisctl's end of its input closes, so the
//! connection ends with irisctl however irisctl ends (a kill included).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UnixStream};
use tokio::process::{Child, ChildStdin, Command};

use super::endpoint::{self, Endpoint, SshTarget};
use crate::error::hinted;

/// The run's connections, by engine URL (the engine's own, and a Swarm's other nodes).
static OPEN: tokio::sync::Mutex<Vec<Arc<Ssh>>> = tokio::sync::Mutex::const_new(Vec::new());

/// `http://HOST:PORT` as this machine reaches `host:port` of the engine's host: directly for a
/// local engine, through a port relayed over the SSH connection for a remote one (its published
/// ports are on its own loopback, its containers' addresses on its own bridges).
pub async fn http_base(host: &str, port: u16) -> Result<String> {
    match connection().await? {
        Some(ssh) => Ok(format!(
            "http://127.0.0.1:{}",
            ssh.local_port(host, port).await?
        )),
        None => Ok(format!("http://{host}:{port}")),
    }
}

pub struct Ssh {
    pub target: SshTarget,
    pub url: String,
    dir: PathBuf,
    /// The local end of the remote engine's socket.
    pub socket: PathBuf,
    master: Mutex<Option<(Child, ChildStdin)>>,
    /// What ssh said on its standard error (the last 8 KiB).
    said: Arc<Mutex<Vec<u8>>>,
    /// (host, port) as the remote sees it → the local TCP port relayed to it.
    forwards: tokio::sync::Mutex<HashMap<(String, u16), u16>>,
}

/// The SSH connection to the engine when the engine is remote (`ssh://`), opened on first use
/// and kept for the rest of the run; `None` for a local or TCP engine.
pub async fn connection() -> Result<Option<Arc<Ssh>>> {
    let chosen = endpoint::chosen()?;
    let Endpoint::Ssh(target) = endpoint::endpoint(&chosen.url)? else {
        return Ok(None);
    };
    to(target, &chosen.url).await.map(Some)
}

/// The connection to the engine at `url` (`ssh://…`), opened on first use.
pub async fn to(target: SshTarget, url: &str) -> Result<Arc<Ssh>> {
    let mut open = OPEN.lock().await;
    if let Some(ssh) = open.iter().find(|s| s.url == url) {
        return Ok(ssh.clone());
    }
    let ssh = Arc::new(Ssh::open(target, url.to_string()).await?);
    open.push(ssh.clone());
    Ok(ssh)
}

/// The engine's connection if one was opened (no engine call is made).
pub fn opened() -> Option<Arc<Ssh>> {
    let url = endpoint::chosen().ok()?.url;
    OPEN.try_lock().ok()?.iter().find(|s| s.url == url).cloned()
}

/// End every connection and remove their folders (at the end of the run).
pub fn close() {
    let Ok(open) = OPEN.try_lock() else {
        return;
    };
    for ssh in open.iter() {
        if let Ok(mut master) = ssh.master.lock() {
            if let Some((mut child, stdin)) = master.take() {
                drop(stdin);
                let _ = child.start_kill();
            }
        }
        let _ = std::fs::remove_dir_all(&ssh.dir);
    }
}

/// `IRISCTL_SSH_COMMAND` (split on spaces, like `GIT_SSH_COMMAND`), or `ssh`.
fn ssh_program() -> Vec<String> {
    std::env::var("IRISCTL_SSH_COMMAND")
        .ok()
        .map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec!["ssh".into()])
}

impl Ssh {
    fn command(&self) -> Command {
        let program = ssh_program();
        let mut cmd = Command::new(&program[0]);
        // First: ssh keeps the first value of an option, so IRISCTL_SSH_COMMAND cannot turn
        // the host key check off.
        cmd.args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]);
        cmd.args(&program[1..]);
        cmd.arg("-S").arg(self.dir.join("ctl"));
        if let Some(p) = self.target.port {
            cmd.args(["-p", &p.to_string()]);
        }
        cmd
    }

    async fn open(target: SshTarget, url: String) -> Result<Ssh> {
        let dir = std::env::temp_dir().join(format!(
            "irisctl-ssh-{}-{:08x}",
            std::process::id(),
            rand_u32()
        ));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        let socket = dir.join("docker.sock");
        let mut ssh = Ssh {
            target,
            url,
            dir,
            socket,
            master: Mutex::new(None),
            said: Arc::new(Mutex::new(Vec::new())),
            forwards: tokio::sync::Mutex::new(HashMap::new()),
        };
        let mut cmd = ssh.command();
        cmd.args(["-M", "-T"])
            .args(["-o", "ControlPersist=no"])
            .args(["-o", "ExitOnForwardFailure=yes"])
            .args(["-o", "ConnectTimeout=10"])
            .args(["-o", "ServerAliveInterval=15"])
            .arg("-L")
            .arg(format!("{}:{}", ssh.socket.display(), ssh.target.socket))
            .arg("--")
            .arg(ssh.target.destination())
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            let _ = std::fs::remove_dir_all(&ssh.dir);
            hinted(
                format!("cannot run `{}` to reach the engine at `{}`: {e}", ssh_program()[0], ssh.url),
                "install the OpenSSH client (`apt-get install openssh-client`), or name it in IRISCTL_SSH_COMMAND",
            )
        })?;
        let stdin = child.stdin.take().context("ssh's input")?;
        if let Some(mut err) = child.stderr.take() {
            let said = ssh.said.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = said.lock() {
                        s.extend_from_slice(&buf[..n]);
                        let excess = s.len().saturating_sub(8192);
                        s.drain(..excess);
                    }
                }
            });
        }
        // Ready when the forwarded socket exists; an ssh that exits first says why.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if ssh.socket.exists() && ssh.dir.join("ctl").exists() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the reader take the last words.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = std::fs::remove_dir_all(&ssh.dir);
                return Err(ssh.failure(&format!("ssh exited ({status})")));
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.start_kill();
                let _ = std::fs::remove_dir_all(&ssh.dir);
                return Err(ssh.failure("no connection within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        ssh.master = Mutex::new(Some((child, stdin)));
        Ok(ssh)
    }

    /// What ssh said, trimmed to its last lines.
    pub fn last_words(&self) -> String {
        let said = self.said.lock().map(|s| s.clone()).unwrap_or_default();
        let text = String::from_utf8_lossy(&said);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
            .collect();
        lines[lines.len().saturating_sub(4)..].join("; ")
    }

    /// The error for a connection that could not be made, from what ssh said.
    fn failure(&self, fallback: &str) -> anyhow::Error {
        failure(&self.target, &self.url, &self.last_words(), fallback)
    }

    /// A local TCP port that reaches `host:remote_port` as the remote host sees it.
    pub async fn local_port(&self, host: &str, remote_port: u16) -> Result<u16> {
        let mut forwards = self.forwards.lock().await;
        let key = (host.to_string(), remote_port);
        if let Some(p) = forwards.get(&key) {
            return Ok(*p);
        }
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot listen on a local port")?;
        let port = listener.local_addr()?.port();
        self.relay(listener, host, remote_port).await?;
        forwards.insert(key, port);
        Ok(port)
    }

    /// Relay the connections `listener` accepts to `host:remote_port` as the remote host sees
    /// it (its loopback, usually).
    pub async fn relay(&self, listener: TcpListener, host: &str, remote_port: u16) -> Result<()> {
        let sock = self.forward(host, remote_port).await?;
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let sock = sock.clone();
                tokio::spawn(async move {
                    if let Ok(mut remote) = UnixStream::connect(&sock).await {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut remote).await;
                    }
                });
            }
        });
        Ok(())
    }

    /// A socket here forwarded to `host:remote_port` as the remote sees it, through the master.
    async fn forward(&self, host: &str, remote_port: u16) -> Result<PathBuf> {
        let name: String = host
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let sock = self.dir.join(format!("{name}-{remote_port}.sock"));
        if sock.exists() {
            return Ok(sock);
        }
        let out = self
            .command()
            .args(["-O", "forward", "-L"])
            .arg(format!("{}:{host}:{remote_port}", sock.display()))
            .arg("--")
            .arg(self.target.destination())
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run ssh")?;
        if !out.status.success() || !sock.exists() {
            return Err(hinted(
                format!(
                    "cannot forward port {remote_port} of `{}` over the SSH connection: {}",
                    self.target.host,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                "the host's sshd must allow forwarding (AllowTcpForwarding and AllowStreamLocalForwarding, both on by default)",
            ));
        }
        Ok(sock)
    }

    /// Whether something on the remote host accepts connections on `host:port` (the forwarded
    /// connection stays open), as opposed to refusing them (ssh closes it at once).
    pub async fn listening(&self, host: &str, port: u16) -> Result<bool> {
        let sock = self.forward(host, port).await?;
        let mut s = UnixStream::connect(&sock)
            .await
            .context("the forwarded socket")?;
        let mut buf = [0u8; 1];
        Ok(
            // A refusal comes back within a round trip; a listener keeps the channel open.
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
                Err(_) => true,
                Ok(Ok(0)) | Ok(Err(_)) => false,
                Ok(Ok(_)) => true,
            },
        )
    }

    /// The folder of this connection's sockets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The error for a connection that could not be made, from what ssh said (`said`).
fn failure(target: &SshTarget, url: &str, said: &str, fallback: &str) -> anyhow::Error {
    let detail = if said.is_empty() { fallback } else { said };
    let host = &target.host;
    let port = target.port.unwrap_or(22);
    let known = if port == 22 {
        host.clone()
    } else {
        format!("[{host}]:{port}")
    };
    let ssh_once = match target.port {
        Some(p) => format!("ssh -p {p} {}", target.destination()),
        None => format!("ssh {}", target.destination()),
    };
    if said.contains("IDENTIFICATION HAS CHANGED") || said.contains("has changed") {
        return hinted(
                   format!("the SSH host key of `{known}` is not the one recorded in known_hosts: irisctl does not connect ({detail})"),
                   format!("if the host was reinstalled, check the new key's fingerprint, then `ssh-keygen -R '{known}'` and connect once with `{ssh_once}`; otherwise the connection may be intercepted"),
               );
    }
    if said.contains("Host key verification failed") || said.contains("host key is known") {
        return hinted(
                   format!("the SSH host key of `{known}` is unknown (not in known_hosts): irisctl does not accept a key it cannot check ({detail})"),
                   format!("check the host's key fingerprint and accept it once with `{ssh_once}` (or add it to ~/.ssh/known_hosts), then run irisctl again"),
               );
    }
    if said.contains("Permission denied") {
        return hinted(
                   format!("SSH refused the login to `{}` ({detail})", target.destination()),
                   "irisctl logs in without prompting (keys or the agent): load the key with `ssh-add`, or name it in ~/.ssh/config (IdentityFile)",
               );
    }
    hinted(
        format!(
            "cannot reach the Docker engine at `{}` over SSH: {detail}",
            url
        ),
        format!("check that `{ssh_once} docker version` works from this machine"),
    )
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ssh_failure_says_what_happened_and_what_to_do() {
        let target = SshTarget {
            user: Some("ops".into()),
            host: "prod".into(),
            port: Some(2222),
            socket: "/var/run/docker.sock".into(),
        };
        let url = "ssh://ops@prod:2222";
        let cases = [
            (
                "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@; Host key verification failed.",
                "is not the one recorded in known_hosts",
                "ssh-keygen -R '[prod]:2222'",
            ),
            (
                "No ED25519 host key is known for [prod]:2222 and you have requested strict checking.; Host key verification failed.",
                "the SSH host key of `[prod]:2222` is unknown",
                "accept it once with `ssh -p 2222 ops@prod`",
            ),
            (
                "ops@prod: Permission denied (publickey).",
                "SSH refused the login to `ops@prod`",
                "ssh-add",
            ),
            (
                "ssh: Could not resolve hostname prod: Name or service not known",
                "cannot reach the Docker engine at `ssh://ops@prod:2222` over SSH",
                "`ssh -p 2222 ops@prod docker version`",
            ),
            (
                "",
                "over SSH: no connection within 30 s",
                "`ssh -p 2222 ops@prod docker version`",
            ),
        ];
        for (said, message, hint) in cases {
            let e = failure(&target, url, said, "no connection within 30 s");
            let text = format!("{e:#}");
            assert!(text.contains(message), "{said}: {text}");
            let h = crate::error::hint_of(&e).unwrap_or_default();
            assert!(h.contains(hint), "{said}: {h}");
        }
    }
}
