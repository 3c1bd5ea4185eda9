//! A second Docker engine in a container, reached only over SSH (Debian's `docker.io` and
//! `openssh-server` on the offline Debian base; tests/remote-host): a remote host for
//! tests/remote.rs, a second Swarm node for tests/swarm_nodes.rs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::docker;

const IMAGE: &str = "irisctl-test-remote-host";

/// The remote host: its container, the key irisctl logs in with and the known_hosts that
/// holds its host key.
pub struct Remote {
    pub dir: tempfile::TempDir,
    /// Its container (and image and volume names' stem).
    pub name: String,
    pub ssh_port: u16,
}

impl Remote {
    /// Build the image if needed and start the container `name`, its sshd on `ssh_port` here.
    pub fn start(name: &str, ssh_port: u16) -> Remote {
        remove(name);
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("id");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .expect("run ssh-keygen");
        assert!(made.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        docker(&[
            "build",
            "-q",
            "-t",
            IMAGE,
            super::repo().join("tests/remote-host").to_str().unwrap(),
        ]);
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "irisctl.test=remote",
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--cgroupns",
            "host",
            "-v",
            &format!("{name}-docker:/var/lib/docker"),
            "-p",
            &format!("127.0.0.1:{ssh_port}:2222"),
            "-e",
            &format!("AUTHORIZED_KEY={}", public.trim()),
            IMAGE,
        ]);
        let remote = Remote {
            dir,
            name: name.to_string(),
            ssh_port,
        };
        // Its engine answers (asked from inside), then its host key is recorded.
        let deadline = Instant::now() + Duration::from_secs(60);
        while remote
            .sh("docker version --format '{{.Server.APIVersion}}'")
            .0
            != 0
        {
            assert!(
                Instant::now() < deadline,
                "the remote's engine did not start"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        let scan = Command::new("ssh-keyscan")
            .args(["-p", &ssh_port.to_string(), "127.0.0.1"])
            .output()
            .expect("run ssh-keyscan");
        std::fs::write(remote.known_hosts(), &scan.stdout).unwrap();
        assert!(
            !scan.stdout.is_empty(),
            "no host key from the remote's sshd"
        );
        remote
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// `ssh` with the test's key and known_hosts (irisctl adds the rest).
    pub fn ssh_command(&self, known_hosts: &Path) -> String {
        format!(
            "ssh -i {} -o UserKnownHostsFile={} -o IdentitiesOnly=yes",
            self.dir.path().join("id").display(),
            known_hosts.display()
        )
    }

    /// Its engine's address over SSH.
    pub fn url(&self) -> String {
        format!("ssh://root@127.0.0.1:{}", self.ssh_port)
    }

    /// `cmd` aimed at the remote engine.
    pub fn aim<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("DOCKER_HOST", self.url())
            .env("IRISCTL_SSH_COMMAND", self.ssh_command(&self.known_hosts()))
    }

    /// A shell command on the remote host (through the local engine: the test's own look).
    pub fn sh(&self, script: &str) -> (i32, String) {
        let out = Command::new("docker")
            .args(["exec", &self.name, "sh", "-c", script])
            .output()
            .expect("docker exec");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    }

    /// SSH logins the remote's sshd accepted so far.
    pub fn logins(&self) -> usize {
        self.sh("grep -c 'Accepted publickey' /var/log/sshd.log || true")
            .1
            .parse()
            .unwrap_or(0)
    }
}

/// Remove the container `name` and its engine's volume.
fn remove(name: &str) {
    let _ = Command::new("docker")
        .args(["rm", "-f", "-v", name])
        .output();
    let _ = Command::new("docker")
        .args(["volume", "rm", &format!("{name}-docker")])
        .output();
}

impl Drop for Remote {
    fn drop(&mut self) {
        remove(&self.name);
        let _ = Command::new("docker").args(["rmi", IMAGE]).output();
    }
}
