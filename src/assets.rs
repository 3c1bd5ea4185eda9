//! The built-in stack files, compiled into the binary, and writing them out to a directory.

use std::path::Path;

use anyhow::{Context, Result};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Files whose presence makes a directory a project directory.
pub const MARKERS: &[&str] = &[
    "stack/api/Dockerfile",
    "stack/frontend/Dockerfile",
    "monitoring/prometheus.yml",
];

/// Does `dir` hold a stack of its own?
pub fn holds_stack(dir: &Path) -> bool {
    MARKERS.iter().all(|m| dir.join(m).is_file())
}

/// Files a stack needs beyond the markers (a project directory made before they existed lacks
/// them: `irisctl init DIR` writes the missing ones and keeps the rest).
pub const REQUIRED: &[&str] = &["stack/edge/nginx.conf"];

/// The first marker or required file missing from `dir`, if any.
pub fn missing_marker(dir: &Path) -> Option<&'static str> {
    MARKERS
        .iter()
        .chain(REQUIRED)
        .copied()
        .find(|m| !dir.join(m).is_file())
}

/// What writing the files did.
#[derive(Debug, Default)]
pub struct Written {
    pub written: Vec<String>,
    /// Existing files that differ from the built-in ones, left alone (no `overwrite`).
    pub kept: Vec<String>,
    /// Existing files already identical to the built-in ones.
    pub unchanged: Vec<String>,
}

/// Write the built-in files into `dir`. Existing files that differ are kept unless `overwrite`;
/// `templates/irisctl.yaml` becomes `irisctl.yaml` at the top.
pub fn write_to(dir: &Path, overwrite: bool) -> Result<Written> {
    let mut report = Written::default();
    for (rel, contents, exec) in FILES {
        let target_rel = match *rel {
            "templates/irisctl.yaml" => "irisctl.yaml",
            other => other,
        };
        let target = dir.join(target_rel);
        match std::fs::read(&target) {
            Ok(existing) if existing == *contents => {
                report.unchanged.push(target_rel.to_string());
                continue;
            }
            Ok(_) if !overwrite => {
                report.kept.push(target_rel.to_string());
                continue;
            }
            _ => {}
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create directory `{}`", parent.display()))?;
        }
        std::fs::write(&target, contents)
            .with_context(|| format!("cannot write `{}`", target.display()))?;
        if *exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make `{}` executable", target.display()))?;
        }
        report.written.push(target_rel.to_string());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_stack_is_complete_and_clean() {
        for marker in MARKERS {
            assert!(
                FILES.iter().any(|(p, _, _)| p == marker),
                "{marker} is not embedded"
            );
        }
        assert!(!FILES
            .iter()
            .any(|(p, _, _)| p.contains("node_modules") || p.contains("/.venv/")));
    }

    /// In a git checkout the binary embeds exactly what git tracks under the stack folders:
    /// an untracked local file (a note, a `.env`, a virtualenv) is never shipped.
    #[test]
    #[allow(clippy::print_stderr)]
    fn embedded_files_are_exactly_the_tracked_ones() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        if !manifest.join(".git").exists() {
            eprintln!("skipped: not a git checkout (build.rs embeds by walking the folders)");
            return;
        }
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(manifest)
            // build.rs's ROOTS.
            .args([
                "ls-files",
                "-z",
                "--",
                "stack",
                "monitoring",
                "templates",
                "scripts/offline-base-images",
                "scripts/offline",
                "examples/offline.yaml",
            ])
            .output()
            .expect("run git");
        assert!(out.status.success(), "git ls-files failed");
        let tracked: std::collections::BTreeSet<String> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|r| !r.is_empty())
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .filter(|rel| manifest.join(rel).is_file())
            .collect();
        let embedded: std::collections::BTreeSet<String> =
            FILES.iter().map(|(p, _, _)| p.to_string()).collect();
        let untracked: Vec<_> = embedded.difference(&tracked).collect();
        assert!(
            untracked.is_empty(),
            "untracked files embedded: {untracked:?}"
        );
        let missing: Vec<_> = tracked.difference(&embedded).collect();
        assert!(
            missing.is_empty(),
            "tracked files not embedded: {missing:?}"
        );
    }

    #[test]
    fn write_to_is_idempotent_and_keeps_user_edits() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_to(dir.path(), false).unwrap();
        assert!(holds_stack(dir.path()));
        assert!(!first.written.is_empty());
        std::fs::write(dir.path().join("monitoring/prometheus.yml"), "edited").unwrap();
        let second = write_to(dir.path(), false).unwrap();
        assert!(second.written.is_empty());
        assert_eq!(second.kept, vec!["monitoring/prometheus.yml".to_string()]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("monitoring/prometheus.yml")).unwrap(),
            "edited"
        );
    }
}
