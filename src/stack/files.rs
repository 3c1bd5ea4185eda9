//! The files a service mounts from the project directory: the one walk every consumer shares
//! (the config hash, Swarm configs and secrets, the Swarm stack file).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Mount, Service};
use crate::error::hinted;

/// The repository of the local base images `scripts/offline-base-images` makes.
pub const OFFLINE_PREFIX: &str = "irisctl-offline/";

/// Where, below the project directory, the Grafana password file is.
pub const SECRET_FILE: &str = ".irisctl/secrets/grafana_admin_password";

/// One file a service sees: where it is on this host, where the container sees it, what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedFile {
    pub source: PathBuf,
    pub target: String,
    pub data: Vec<u8>,
}

/// Every file below the service's bind mounts (folders walked recursively, in sorted order).
pub fn mounted_files(service: &Service) -> Result<Vec<MountedFile>> {
    let mut out = Vec::new();
    for m in &service.mounts {
        let Mount::Bind { source, target } = m else {
            continue;
        };
        if let Some(d) = service.derived.iter().find(|d| &d.path == source) {
            out.push(MountedFile {
                source: source.clone(),
                target: target.clone(),
                data: d.content()?,
            });
        } else if source.ends_with(crate::grafana::RESOLVED_DASHBOARDS_DIR) {
            // Derived from monitoring/dashboards: hashed from what it will hold, so a plan is
            // right before the copy is (re)written.
            let project_dir = source.ancestors().nth(2).unwrap_or(source);
            let resolved = crate::grafana::resolved_dashboards(
                &project_dir.join("monitoring/dashboards"),
                crate::grafana::DATASOURCE_UID,
            )
            .map_err(crate::error::from_grafana)?;
            for (name, data) in resolved {
                out.push(MountedFile {
                    source: source.join(&name),
                    target: format!("{target}/{name}"),
                    data,
                });
            }
        } else if source.is_dir() {
            let mut found = Vec::new();
            walk(source, &mut found)?;
            found.sort();
            for path in found {
                let rel = path.strip_prefix(source).unwrap_or(&path);
                let data = std::fs::read(&path)
                    .with_context(|| format!("cannot read `{}`", path.display()))?;
                out.push(MountedFile {
                    target: format!("{target}/{}", rel.display()),
                    source: path,
                    data,
                });
            }
        } else if !source.exists() && source.ends_with(SECRET_FILE) {
            // The password file is written by `up` before anything starts; a dry run of a new
            // project plans without it.
            out.push(MountedFile {
                source: source.clone(),
                target: target.clone(),
                data: Vec::new(),
            });
        } else {
            let data = std::fs::read(source).map_err(|e| {
                hinted(
                    format!(
                        "stack file `{}` (mounted into `{}`) cannot be read: {e}",
                        source.display(),
                        service.name
                    ),
                    "restore it, or write the built-in stack into a folder with `irisctl init DIR` and use `--project-dir DIR`",
                )
            })?;
            out.push(MountedFile {
                source: source.clone(),
                target: target.clone(),
                data,
            });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("cannot read `{}`", dir.display()))?
            .path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// `(path, content)` pairs, sorted, as the config hash takes them.
pub fn hash_inputs(files: &[MountedFile]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| (f.source.display().to_string(), f.data.clone()))
        .collect();
    out.sort();
    out
}

/// The offline kit's script, below a project directory (`irisctl init` writes it, as does the
/// built-in copy once `up` has written the stack's files).
pub const OFFLINE_SCRIPT: &str = "scripts/offline-base-images";

/// The next step when base images are missing and cannot be pulled, naming only files that
/// exist: the project directory's own offline script if it is there, else `irisctl init DIR`,
/// which writes it. `local`: the settings already name the `irisctl-offline/*` images.
pub fn offline_images_hint(project_dir: &Path, local: bool) -> String {
    let script = project_dir.join(OFFLINE_SCRIPT);
    let config = project_dir.join("examples/offline.yaml");
    let make = if script.is_file() {
        format!(
            "make the local base images with `{}` (as root: prefix sudo unless you are root)",
            script.display()
        )
    } else {
        format!(
            "make the local base images: `irisctl init DIR` writes the offline kit into a folder of yours, then run `DIR/{OFFLINE_SCRIPT}` as root (prefix sudo unless you are root)"
        )
    };
    if local {
        format!("{make}, then run `irisctl up` again")
    } else if config.is_file() {
        format!(
            "on a host without registry access, {make} and run `irisctl --config {} up` (README: offline mode); or set the images in irisctl.yaml `images:`",
            config.display()
        )
    } else {
        format!(
            "on a host without registry access, {make} and run `irisctl --project-dir DIR --config DIR/examples/offline.yaml up` (README: offline mode); or set the images in irisctl.yaml `images:`"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_and_targets_follow_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        crate::assets::write_to(dir.path(), false).unwrap();
        let st = super::super::Stack::from_settings(&crate::settings::Settings::defaults(
            dir.path().to_path_buf(),
        ));
        let files = mounted_files(st.service("prometheus").unwrap()).unwrap();
        let targets: Vec<&str> = files.iter().map(|f| f.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "/etc/prometheus/prometheus.yml",
                "/etc/prometheus/alerts.yml"
            ]
        );
        std::fs::create_dir_all(dir.path().join(".irisctl/secrets")).unwrap();
        std::fs::write(super::super::grafana_secret_path(dir.path()), "pw").unwrap();
        let g = mounted_files(st.service("grafana").unwrap()).unwrap();
        assert!(g
            .iter()
            .any(|f| f.target == "/etc/grafana/provisioning/datasources/prometheus.yaml"));
        assert!(g
            .iter()
            .any(|f| f.target == "/etc/grafana/dashboards/grafana-fastapi-dashboard.json"));
        assert!(mounted_files(st.service("api").unwrap())
            .unwrap()
            .is_empty());
    }

    /// The hint names the project's offline script only where it exists (issue 23: it named
    /// `~/.local/share/irisctl/projects/iris/scripts/offline-base-images` before any file was
    /// written there).
    #[test]
    fn the_offline_hint_names_only_files_that_exist() {
        let empty = tempfile::tempdir().unwrap();
        for local in [true, false] {
            let h = offline_images_hint(empty.path(), local);
            assert!(
                !h.contains(&empty.path().display().to_string()),
                "names a missing file: {h}"
            );
            assert!(h.contains("`irisctl init DIR`"), "{h}");
        }
        let kit = tempfile::tempdir().unwrap();
        crate::assets::write_to(kit.path(), false).unwrap();
        let h = offline_images_hint(kit.path(), false);
        let script = kit.path().join(OFFLINE_SCRIPT);
        let config = kit.path().join("examples/offline.yaml");
        assert!(script.is_file() && config.is_file());
        assert!(h.contains(&format!("`{}`", script.display())), "{h}");
        assert!(
            h.contains(&format!("`irisctl --config {} up`", config.display())),
            "{h}"
        );
        assert!(offline_images_hint(kit.path(), true).ends_with("then run `irisctl up` again"));
    }
}
