//! irisctl's data folder (where the built-in stack is written outside a project directory) and
//! the checks that keep another local user from preparing it.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::hinted;

/// irisctl's data folder from the values of `XDG_DATA_HOME` and `HOME`:
/// `$XDG_DATA_HOME/irisctl`, else `$HOME/.local/share/irisctl`. Empty or relative values count
/// as unset (as the XDG spec says). With neither there is no data folder: there is deliberately
/// no fallback into a shared folder such as `/tmp`, where another local user could create the
/// project folder first and plant a `.env` or links in it.
pub fn data_home(
    xdg_data_home: Option<&std::ffi::OsStr>,
    home: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    let usable = |v: Option<&std::ffi::OsStr>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    usable(xdg_data_home)
        .or_else(|| usable(home).map(|h| h.join(".local/share")))
        .map(|base| base.join("irisctl"))
}

/// The effective user ID of this process.
pub(super) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuse a folder that another user could have prepared: if it exists it must be a real
/// folder (not a link), owned by `uid`, and writable by nobody else.
pub fn check_private_dir(dir: &Path, uid: u32) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(hinted(
                format!(
                    "cannot inspect irisctl's data folder `{}`: {e}",
                    dir.display()
                ),
                "make it readable by this user, or pass --project-dir DIR",
            ))
        }
    };
    let shown = dir.display();
    let why = if !meta.file_type().is_dir() {
        Some("it is not a folder (a link or a file)".to_string())
    } else if meta.uid() != uid {
        Some(format!(
            "it belongs to user ID {}, not to you (user ID {uid})",
            meta.uid()
        ))
    } else if meta.permissions().mode() & 0o022 != 0 {
        Some(format!(
            "other users can write to it (mode {:03o})",
            meta.permissions().mode() & 0o777
        ))
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(hinted(
            format!("irisctl's data folder `{shown}` is not safe to use: {why}; another user could have planted files in it"),
            format!("check what is in it, then remove it (or `chmod go-w {shown}` if it is yours), or pass --project-dir DIR"),
        )),
    }
}
