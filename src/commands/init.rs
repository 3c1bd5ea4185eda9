//! `irisctl init [DIR]`: write the built-in stack out for customising.

use std::path::Path;

use anyhow::Result;

use crate::output::Printer;

pub fn run(dir: &Path, force: bool, printer: &Printer) -> Result<()> {
    let report = crate::assets::write_to(dir, force)?;
    for f in &report.written {
        printer.verbose(format!("wrote {f}"));
    }
    for f in &report.kept {
        printer.warn(format!(
            "kept your {f} (it differs from the built-in one; --force overwrites)"
        ));
    }
    printer.success(format!(
        "wrote {} file(s) into {}; run `irisctl up` there (or pass --project-dir {})",
        report.written.len(),
        dir.display(),
        dir.display()
    ));
    Ok(())
}
