//! Snapshot checks for output people read (compose files, tables): the expected text lives in
//! `tests/snapshots/`; `UPDATE_SNAPSHOTS=1 cargo test` rewrites it after a deliberate change.

use std::path::PathBuf;

pub fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => {}
        Ok(_) | Err(_) if update => {
            std::fs::write(&path, actual)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        Ok(expected) => panic!(
            "snapshot {name} differs (UPDATE_SNAPSHOTS=1 accepts the new text):\n{}",
            crate::render::diff(&expected, actual, name)
        ),
        Err(e) => panic!(
            "snapshot {} is missing ({e}); run with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        ),
    }
}
