//! The verbs. Each takes resolved settings, its own options struct and a [`Printer`]; none
//! sees clap types or asks which backend it runs on.

pub mod compose;
pub mod down;
pub mod grafana;
pub mod init;
pub mod logs;
pub mod rollback;
pub mod shadow;
pub mod status;
pub mod tunnel;
pub mod up;
pub mod watch;

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::error::hinted;
use crate::output::Printer;
use crate::settings::{Settings, GRAFANA_PASSWORD_KEY};

/// Print a verb's plan (`--dry-run`): one line per operation with its cause, or JSON
/// (`{"project", "changes", "ops"}`); `verb` is the command that would carry it out.
pub fn print_plan(
    ctx: &Ctx,
    project: &str,
    plan: &crate::backend::plan::Plan,
    format: crate::output::Format,
    verb: &str,
) -> Result<()> {
    match format {
        crate::output::Format::Json => {
            ctx.printer
                .data(&serde_json::to_string_pretty(&serde_json::json!({
                    "project": project,
                    "changes": !plan.is_noop(),
                    "ops": plan.ops,
                }))?)
        }
        crate::output::Format::Table => {
            ctx.printer.data(&plan.text());
            if !plan.is_noop() {
                ctx.printer.info(format!(
                    "dry run: nothing was changed; `irisctl {verb}` does this"
                ));
            }
        }
    }
    Ok(())
}

/// What every command gets.
pub struct Ctx {
    pub settings: Settings,
    pub printer: Printer,
    /// The project directory is irisctl's own copy of the built-in stack.
    pub embedded: bool,
}

impl Ctx {
    /// Make sure the project directory holds the stack: refresh the built-in copy, or check a
    /// user's directory and name the first missing file.
    pub fn ensure_stack_files(&self) -> Result<()> {
        let dir = &self.settings.project_dir;
        if self.embedded {
            crate::assets::write_to(dir, true).with_context(|| {
                format!("cannot write the built-in stack into `{}`", dir.display())
            })?;
            return Ok(());
        }
        if let Some(missing) = crate::assets::missing_marker(dir) {
            return Err(hinted(
                format!(
                    "stack file `{}` is missing from project directory `{}`",
                    missing,
                    dir.display()
                ),
                restore_hint(missing, dir),
            ));
        }
        Ok(())
    }

    /// Write the files irisctl derives from the stack's own (the dashboards with their inputs
    /// resolved, for Grafana's file provider) and from the settings (the alert rules, and
    /// Alertmanager's and Prometheus's configs when alerts are delivered). A file of
    /// `.irisctl/derived` the settings no longer call for is removed: an old Alertmanager
    /// config may hold a webhook's token.
    pub fn write_derived_files(&self) -> Result<()> {
        let dir = &self.settings.project_dir;
        // The single engine's form adds the web UI's route through the edge (Swarm's does not
        // mount it: an extra file there is harmless).
        let stack = crate::stack::Stack::from_settings(&self.settings).docker_form();
        let derived: Vec<_> = stack.services.iter().flat_map(|s| &s.derived).collect();
        for d in &derived {
            write_derived(&d.path, &d.content()?)?;
        }
        if let Ok(entries) = std::fs::read_dir(dir.join(crate::stack::DERIVED_DIR)) {
            for path in entries.flatten().map(|e| e.path()) {
                if path.is_file() && !derived.iter().any(|d| d.path == path) {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("cannot remove `{}`", path.display()))?;
                }
            }
        }
        crate::grafana::write_resolved_dashboards(
            &dir.join("monitoring/dashboards"),
            &dir.join(crate::grafana::RESOLVED_DASHBOARDS_DIR),
            crate::grafana::DATASOURCE_UID,
        )
        .map_err(grafana::to_anyhow)?;
        Ok(())
    }

    /// Check, without writing anything, that the project directory holds the stack (for
    /// `--dry-run`).
    pub fn check_stack_files(&self) -> Result<()> {
        let dir = &self.settings.project_dir;
        if let Some(missing) = crate::assets::missing_marker(dir) {
            return Err(hinted(
                format!(
                    "stack file `{}` is missing from project directory `{}`",
                    missing,
                    dir.display()
                ),
                if self.embedded {
                    "run `irisctl up` once (it writes the built-in stack there), or `irisctl init DIR` and `--project-dir DIR`".to_string()
                } else {
                    restore_hint(missing, dir)
                },
            ));
        }
        Ok(())
    }

    /// The Grafana admin password from `.env`, generated and stored (mode 0600) the first time,
    /// and the file Grafana reads it from, kept in step with `.env`. The settings stay as
    /// resolved: the password is returned.
    pub fn ensure_grafana_password(&self) -> Result<String> {
        // Read `.env` again: another irisctl may have generated the password since the settings
        // were resolved (callers hold the project lock, so none can do so now).
        let path = self.settings.project_dir.join(".env");
        let stored = match &self.settings.grafana_admin_password {
            Some(pw) => Some(pw.clone()),
            None => std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| crate::settings::parse_dotenv(&text, &path).ok())
                .and_then(|pairs| {
                    pairs
                        .into_iter()
                        .rev()
                        .find(|(k, v, _)| k == GRAFANA_PASSWORD_KEY && !v.trim().is_empty())
                        .map(|(_, v, _)| v)
                }),
        };
        let pw = match stored {
            Some(pw) => pw,
            None => {
                let pw = generate_password()?;
                append_dotenv(&path, GRAFANA_PASSWORD_KEY, &pw)?;
                self.printer.info(format!(
                    "generated a Grafana admin password into {} (mode 0600; never printed)",
                    path.display()
                ));
                pw
            }
        };
        write_secret(
            &crate::stack::grafana_secret_path(&self.settings.project_dir),
            &pw,
        )?;
        Ok(pw)
    }
}

/// Held while a verb changes the project: two `up`s (or an `up` and a `down`) of one project
/// directory run one after the other, never interleaved. An advisory `flock` on
/// `.irisctl/lock`, released by the kernel when the process ends, however it ends.
pub struct ProjectLock {
    _file: std::fs::File,
}

impl Ctx {
    /// Take the project's lock, waiting (and saying so) while another irisctl holds it.
    pub async fn lock_project(&self) -> Result<ProjectLock> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        let dir = self.settings.project_dir.join(".irisctl");
        private_dirs(&dir.join("lock"))?;
        let path = dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open the project lock `{}`", path.display()))?;
        let fd = file.as_raw_fd();
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            self.printer.info(format!(
                "waiting for another irisctl{} working on project `{}` in {}",
                match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                },
                self.settings.project,
                self.settings.project_dir.display()
            ));
            let waited = tokio::task::spawn_blocking(move || {
                // SAFETY: as above; the descriptor outlives the call (the file moves back).
                let rc = unsafe { libc::flock(fd, libc::LOCK_EX) };
                (rc, file)
            })
            .await
            .context("the lock task failed")?;
            if waited.0 != 0 {
                return Err(anyhow::anyhow!(
                    "cannot lock `{}`: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
            file = waited.1;
        }
        file.set_len(0).ok();
        let _ = write!(file, "{}", std::process::id());
        Ok(ProjectLock { _file: file })
    }
}

/// Create the private folders (`.irisctl`, `.irisctl/secrets`, `.irisctl/derived`) above `path`,
/// mode 0700.
fn private_dirs(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut dirs = Vec::new();
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.file_name()
            .is_some_and(|n| n == ".irisctl" || n == "secrets" || n == "derived")
        {
            dirs.push(d.to_path_buf());
            dir = d.parent();
        } else {
            break;
        }
    }
    for d in dirs.iter().rev() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create `{}`", d.display()))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make `{}` private (mode 0700)", d.display()))?;
    }
    Ok(())
}

/// Write a secret file for a bind mount. The folders above it are private to this user (0700);
/// the file itself is world-readable (0644) because the container reads it as its own user
/// (Grafana: uid 472), which sees only the file, not the folders.
fn write_secret(path: &Path, value: &str) -> Result<()> {
    write_derived(path, value.as_bytes())
}

/// Write a derived file below `.irisctl/` (folders 0700). The file is 0644: the container reads
/// it as its own user (Alertmanager: nobody), which sees only the file, not the folders. A file
/// that already holds `data` is left alone.
fn write_derived(path: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read(path).is_ok_and(|v| v == data) {
        return Ok(());
    }
    private_dirs(path)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot set the mode of `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

fn generate_password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read the system's random source: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// Append `KEY=value` to a `.env`, creating it with mode 0600 and tightening an existing one.
fn append_dotenv(path: &Path, key: &str, value: &str) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make `{}` private (mode 0600)", path.display()))?;
    let sep = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(
        file,
        "{sep}# Grafana admin password, generated by irisctl on first `up`\n{key}={value}"
    )
    .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

/// Human form of a duration: `3s`, `5m`, `2h`, `4d`.
pub fn short_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// What to do about a missing stack file: a file newer than the project directory (the edge's
/// configuration) is written by `irisctl init DIR`, which keeps the files that differ.
fn restore_hint(missing: &str, dir: &std::path::Path) -> String {
    if crate::assets::REQUIRED.contains(&missing) {
        format!(
            "this directory predates it: `irisctl init {}` writes the missing files and keeps the ones you changed",
            dir.display()
        )
    } else {
        format!(
            "restore it, or write the built-in stack there with `irisctl init {} --force`",
            dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_and_long() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }

    #[test]
    fn dotenv_is_private_and_appended() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        std::fs::write(&p, "IRISCTL_API_PORT=8100").unwrap();
        append_dotenv(&p, "K", "v").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("IRISCTL_API_PORT=8100\n#") && text.ends_with("K=v\n"),
            "{text}"
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn secret_file_is_reachable_only_through_private_folders() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = crate::stack::grafana_secret_path(dir.path());
        write_secret(&path, "s3cret").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s3cret");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(".irisctl")), 0o700);
        assert_eq!(mode(&dir.path().join(".irisctl/secrets")), 0o700);
        assert_eq!(mode(&path), 0o644);
        write_secret(&path, "changed").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "changed");
    }

    #[test]
    fn derived_files_follow_the_settings() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        crate::assets::write_to(dir.path(), false).unwrap();
        let mut settings = Settings::defaults(dir.path().to_path_buf());
        settings
            .apply(
                "ALERTING_WEBHOOK_URL",
                "https://hooks.example.com/T0K3N",
                "t",
            )
            .unwrap();
        let ctx = |settings: &Settings| Ctx {
            settings: settings.clone(),
            printer: Printer::new(crate::output::Verbosity::Quiet),
            embedded: false,
        };
        ctx(&settings).write_derived_files().unwrap();
        let derived = dir.path().join(crate::stack::DERIVED_DIR);
        let am = derived.join("alertmanager.yml");
        assert!(std::fs::read_to_string(&am).unwrap().contains("T0K3N"));
        assert!(derived.join("prometheus.yml").is_file() && derived.join("alerts.yml").is_file());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&derived), 0o700);
        assert_eq!(mode(&am), 0o644);
        // Delivery off: the Alertmanager's config (and its token) and Prometheus's copy go.
        settings.apply("ALERTING_WEBHOOK_URL", "", "t").unwrap();
        ctx(&settings).write_derived_files().unwrap();
        assert!(!am.exists() && !derived.join("prometheus.yml").exists());
        assert!(derived.join("alerts.yml").is_file());
    }

    #[test]
    fn durations() {
        assert_eq!(short_duration(5), "5s");
        assert_eq!(short_duration(300), "5m");
        assert_eq!(short_duration(7200), "2h");
        assert_eq!(short_duration(200000), "2d");
    }
}
