//! Embed the stack's files (stack/, monitoring/, templates/) so an installed `irisctl up` works
//! outside a checkout. Build outputs and local tool folders are left out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const ROOTS: &[&str] = &["stack", "monitoring", "templates"];
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

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for root in ROOTS {
        let dir = manifest.join(root);
        println!("cargo:rerun-if-changed={}", dir.display());
        walk(&dir, &mut files);
    }
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
