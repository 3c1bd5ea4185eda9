//! `irisctl init [DIR]`: write the built-in stack out for customising.

use std::path::Path;

use anyhow::{Context, Result};

use crate::output::Printer;

/// What `.gitignore` must hold so the project's secrets are not committed: `.env` (the Grafana
/// admin password) and `.irisctl/` (the secret files mounted into the containers).
const GITIGNORE: &[&str] = &[".env", ".irisctl/"];

pub fn run(dir: &Path, force: bool, printer: &Printer) -> Result<()> {
    let report = crate::assets::write_to(dir, force)?;
    for f in &report.written {
        printer.verbose(format!("wrote {f}"));
    }
    let added = ensure_gitignore(dir)?;
    if !added.is_empty() {
        printer.info(format!(
            "added {} to {} so the project's secrets are not committed",
            added.join(" and "),
            dir.join(".gitignore").display()
        ));
    }
    if !report.kept.is_empty() {
        printer.warn(format!(
            "kept your {} (they differ from the built-in ones); `irisctl init {} --force` overwrites them",
            report.kept.join(", "),
            dir.display()
        ));
    }
    let mut summary = format!(
        "wrote {} file(s) into {}",
        report.written.len(),
        dir.display()
    );
    if !report.unchanged.is_empty() {
        summary.push_str(&format!(
            "; {} file(s) were already there and identical to the built-in ones",
            report.unchanged.len()
        ));
    }
    if !report.kept.is_empty() {
        summary.push_str(&format!(
            "; skipped {} existing file(s) you changed: {} (--force overwrites them)",
            report.kept.len(),
            report.kept.join(", ")
        ));
    }
    printer.success(format!(
        "{summary}; run `irisctl up` there (or pass --project-dir {})",
        dir.display()
    ));
    Ok(())
}

/// Make `dir/.gitignore` list [`GITIGNORE`]: create it, or append the missing entries to the
/// user's file (never rewriting what is there). Returns the entries added.
pub fn ensure_gitignore(dir: &Path) -> Result<Vec<&'static str>> {
    let path = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(crate::error::hinted(
                format!("cannot read `{}`: {e}", path.display()),
                "make it readable by this user, or add `.env` and `.irisctl/` to it yourself",
            ))
        }
    };
    let listed = |entry: &str| {
        let bare = entry.trim_end_matches('/');
        existing.lines().map(str::trim).any(|line| {
            let line = line.trim_start_matches('/').trim_end_matches('/');
            line == bare
        })
    };
    let missing: Vec<&'static str> = GITIGNORE.iter().copied().filter(|e| !listed(e)).collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let mut text = existing.clone();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(
        "# irisctl: the Grafana admin password and the secret files (never commit them)\n",
    );
    for entry in &missing {
        text.push_str(entry);
        text.push('\n');
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_is_created_then_appended_to_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".gitignore");
        assert_eq!(ensure_gitignore(dir.path()).unwrap(), [".env", ".irisctl/"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(".env\n.irisctl/\n"), "{text}");
        assert!(ensure_gitignore(dir.path()).unwrap().is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // A user's file keeps its lines; only what is missing is added.
        std::fs::write(&path, "target\n/.env").unwrap();
        assert_eq!(ensure_gitignore(dir.path()).unwrap(), [".irisctl/"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("target\n/.env\n#") && text.ends_with("\n.irisctl/\n"),
            "{text}"
        );
    }
}
