//! Whose an object is, from the labels irisctl and Compose write: the project label and the
//! project's directory (`com.docker.compose.project.working_dir`). A project of the same name
//! made from another directory (another checkout, another user's Compose file) is not ours:
//! it is refused, never changed or deleted.

use std::collections::HashMap;
use std::path::Path;

use crate::engine::labels;

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
}
