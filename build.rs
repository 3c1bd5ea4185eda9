//! Embed the stack's files (stack/, monitoring/, templates/) so an installed `irisctl up` works
//! outside a checkout.
//!
//! In a git checkout the embedded files are exactly the ones git tracks under those folders
//! (`git ls-files`): an untracked local file (a virtualenv, `node_modules`, a note, a `.env`)
//! never ends up in the binary. Building from a source tarball without `.git` (e.g. a crate
//! package) falls back to walking the folders and leaving out build outputs and local tool
//! folders by name.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The stack's files, and what the offline path needs (`irisctl init` writes them out too).
const ROOTS: &[&str] = &[
    "stack",
    "monitoring",
    "templates",
    "scripts/offline-base-images",
    "scripts/offline",
    "examples/offline.yaml",
];
/// Left out by the fallback walk (no git): build outputs and local tool folders.
const SKIP: &[&str] = &[
    "node_modules",
    ".venv",
    "venv",
    "dist",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".hypothesis",
    "coverage",
    ".vite",
];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if SKIP.contains(&name) || name.ends_with(".pyc") {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

fn git(manifest: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(manifest)
        .args(args)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// The files git tracks under ROOTS, and the index file whose change means that list changed.
/// `None` without `.git` or without a working `git`.
fn tracked(manifest: &Path) -> Option<(Vec<PathBuf>, PathBuf)> {
    // `.git` is a folder in a clone and a file in a worktree.
    if !manifest.join(".git").exists() {
        return None;
    }
    let mut args = vec!["ls-files", "-z", "--"];
    args.extend(ROOTS);
    let Some(listing) = git(manifest, &args) else {
        println!("cargo:warning=`.git` exists but `git ls-files` failed; embedding every file not on the skip list");
        return None;
    };
    let index = git(
        manifest,
        &["rev-parse", "--path-format=absolute", "--git-path", "index"],
    )
    .map(|o| PathBuf::from(String::from_utf8_lossy(&o).trim()))
    .unwrap_or_else(|| manifest.join(".git/index"));
    let mut files = Vec::new();
    for rel in listing.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rel = String::from_utf8_lossy(rel).into_owned();
        let path = manifest.join(&rel);
        // A tracked file deleted from the work tree (not yet committed) is not embedded.
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Some((files, index))
}

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    let files = match tracked(&manifest) {
        Some((files, index)) => {
            // Adding, removing or staging a file changes the index; editing one changes the file.
            println!("cargo:rerun-if-changed={}", index.display());
            for path in &files {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            files
        }
        None => {
            let mut files = Vec::new();
            for root in ROOTS {
                let dir = manifest.join(root);
                println!("cargo:rerun-if-changed={}", dir.display());
                if dir.is_file() {
                    files.push(dir);
                } else {
                    walk(&dir, &mut files);
                }
            }
            files
        }
    };
    let mut code = String::from("/// Files of the built-in stack: (relative path, contents, executable).\npub static FILES: &[(&str, &[u8], bool)] = &[\n");
    for path in &files {
        let rel = path
            .strip_prefix(&manifest)
            .expect("walked below the manifest");
        let exec = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        };
        let _ = writeln!(
            code,
            "    ({:?}, include_bytes!({:?}), {exec}),",
            rel.to_string_lossy(),
            path.display().to_string()
        );
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("assets.rs");
    std::fs::write(out, code).expect("write OUT_DIR/assets.rs");
}
