//! Whose an object is, from the labels irisctl and Compose write: the project label and the
//! project's directory (`com.docker.compose.project.working_dir`). A project of the same name
//! made from another directory (another checkout, another user's Compose file) is not ours:
//! it is refused, never changed or deleted.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;

use crate::engine::{labels, Engine, Object};
use crate::error::hinted;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Ours,
    /// The same project name, managed from another directory.
    OtherDir(String),
    /// Another project, or none (`None`: no project label).
    OtherProject(Option<String>),
}

fn same_dir(a: &str, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(Path::new(a)) == canon(b)
}

/// Whose an object with these labels is. Objects without a directory label (made by an older
/// irisctl) count as the project's.
pub fn owner(object_labels: &HashMap<String, String>, project: &str, dir: &Path) -> Owner {
    match object_labels.get(labels::PROJECT) {
        Some(p) if p == project => {}
        other => return Owner::OtherProject(other.cloned()),
    }
    match object_labels.get(labels::WORKING_DIR) {
        Some(d) if !d.is_empty() && !same_dir(d, dir) => Owner::OtherDir(d.clone()),
        _ => Owner::Ours,
    }
}

/// Where the project is managed from when that is not `dir`: the directory its objects name,
/// and one of them ("volume `iris_grafana-data`"). Containers, networks and volumes all count
/// (a stack taken down without `--volumes` still holds its name through its volumes); a project
/// with any object of its own here is managed here, whatever a foreign object of its name says
/// (`up` and `down` report those one by one).
pub async fn managed_elsewhere_by(
    engine: &Engine,
    project: &str,
    dir: &Path,
) -> Result<Option<(String, String)>> {
    let label = format!("{}={project}", labels::PROJECT);
    let mut elsewhere = None;
    for kind in [Object::Container, Object::Network, Object::Volume] {
        for o in engine.list_labelled(kind, &label).await? {
            match owner(&o.labels, project, dir) {
                Owner::Ours => return Ok(None),
                Owner::OtherDir(other) => {
                    elsewhere =
                        elsewhere.or(Some((other, format!("{} `{}`", kind.word(), o.name))));
                }
                Owner::OtherProject(_) => {}
            }
        }
    }
    Ok(elsewhere)
}

/// The one message for "this project name is held by a stack managed from another directory",
/// for every verb that meets it (`up`, `down`, `status`): where it is managed from, what says
/// so, and the two ways out, including the one that frees the name.
pub fn managed_elsewhere(project: &str, other: &str, what: &str, dir: &Path) -> anyhow::Error {
    hinted(
        managed_elsewhere_message(project, other, what, dir),
        managed_elsewhere_hint(project, other),
    )
}

/// The sentence of [`managed_elsewhere`].
pub fn managed_elsewhere_message(project: &str, other: &str, what: &str, dir: &Path) -> String {
    format!(
        "project `{project}` is managed from `{other}` ({what} was made there), not from this project directory `{}`",
        dir.display()
    )
}

/// The hint of [`managed_elsewhere`]. The commands name the project too: that directory's own
/// settings may give it another name.
pub fn managed_elsewhere_hint(project: &str, other: &str) -> String {
    let d = shell_path(other);
    format!(
        "run irisctl there (`irisctl --project-dir {d} -p {project} status`) to see or change that stack; `irisctl --project-dir {d} -p {project} down --volumes` removes it with its data and frees the name; or give this one its own name with -p NAME"
    )
}

fn shell_path(p: &str) -> String {
    if p.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c))
    {
        p.to_string()
    } else {
        format!("'{}'", p.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn project_and_directory_decide() {
        let dir = Path::new("/srv/iris");
        assert_eq!(
            owner(
                &l(&[
                    (labels::PROJECT, "iris"),
                    (labels::WORKING_DIR, "/srv/iris")
                ]),
                "iris",
                dir
            ),
            Owner::Ours
        );
        assert_eq!(
            owner(&l(&[(labels::PROJECT, "iris")]), "iris", dir),
            Owner::Ours
        );
        assert_eq!(
            owner(
                &l(&[
                    (labels::PROJECT, "iris"),
                    (labels::WORKING_DIR, "/home/x/iris")
                ]),
                "iris",
                dir
            ),
            Owner::OtherDir("/home/x/iris".into())
        );
        assert_eq!(
            owner(&l(&[(labels::PROJECT, "other")]), "iris", dir),
            Owner::OtherProject(Some("other".into()))
        );
        assert_eq!(owner(&l(&[]), "iris", dir), Owner::OtherProject(None));
    }

    #[test]
    fn the_managed_elsewhere_message_names_the_way_to_free_the_name() {
        let e = managed_elsewhere(
            "iris",
            "/home/x/my iris",
            "volume `iris_grafana-data`",
            Path::new("/tmp/here"),
        );
        let hint = crate::error::hint_of(&e).unwrap().to_string();
        assert_eq!(
            e.to_string(),
            "project `iris` is managed from `/home/x/my iris` (volume `iris_grafana-data` was made there), not from this project directory `/tmp/here`"
        );
        assert!(
            hint.contains("`irisctl --project-dir '/home/x/my iris' -p iris down --volumes` removes it with its data and frees the name"),
            "{hint}"
        );
        assert!(
            hint.contains("--project-dir '/home/x/my iris' -p iris status"),
            "{hint}"
        );
    }
}
