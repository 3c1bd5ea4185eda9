//! Build contexts (a deterministic tar honouring `.dockerignore`) and image builds with progress.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use globset::{GlobBuilder, GlobMatcher};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use super::{labels, root_message, Engine};
use crate::error::hinted;
use crate::stack::Build;

/// A fixed modification time keeps the tar (and so its hash) the same for the same files.
const MTIME: u64 = 1_700_000_000;

/// `.dockerignore` rules: the last pattern that matches a path (or one of its parent folders)
/// decides; `!pattern` re-includes.
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<(GlobMatcher, bool)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Result<Ignore> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pattern = pattern
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/');
            if pattern.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .with_context(|| format!("bad .dockerignore pattern {line:?}"))?;
            rules.push((glob.compile_matcher(), negate));
        }
        Ok(Ignore { rules })
    }

    /// Is this context-relative path (with `/` separators) left out? As Docker decides: the
    /// last pattern that matches the path or one of the folders above it wins.
    pub fn excludes(&self, rel: &str) -> bool {
        let prefixes: Vec<&str> = rel
            .match_indices('/')
            .map(|(i, _)| &rel[..i])
            .chain([rel])
            .collect();
        self.rules
            .iter()
            .rev()
            .find(|(m, _)| prefixes.iter().any(|p| m.is_match(p)))
            .is_some_and(|(_, negate)| !negate)
    }

    /// Could an exception re-include something below an excluded folder? Then keep walking.
    fn reincludes_below(&self, folder: &str) -> bool {
        self.rules
            .iter()
            .any(|(m, negate)| *negate && m.glob().glob().starts_with(&format!("{folder}/")))
    }
}

/// The build context as a tar archive, with the files sorted and metadata normalised. Like the
/// docker CLI, it always sends the Dockerfile and `.dockerignore`, even when they are ignored.
pub fn context_tar(dir: &Path, dockerfile: &str) -> Result<Vec<u8>> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text)?,
        Err(_) => Ignore::default(),
    };
    let mut files = Vec::new();
    collect(dir, dir, &ignore, &mut files)?;
    for always in [dockerfile, ".dockerignore"] {
        if dir.join(always).is_file() && !files.iter().any(|f| f == always) {
            files.push(always.to_string());
        }
    }
    files.sort();
    let mut builder = tar::Builder::new(Vec::new());
    for rel in files {
        let path = dir.join(&rel);
        let data =
            std::fs::read(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(&path)?.permissions().mode();
            if m & 0o111 != 0 {
                0o755
            } else {
                0o644
            }
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, &rel, data.as_slice())
            .with_context(|| format!("cannot add `{rel}` to the build context"))?;
    }
    builder
        .into_inner()
        .context("cannot finish the build context archive")
}

fn collect(root: &Path, dir: &Path, ignore: &Ignore, out: &mut Vec<String>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read build context folder `{}`", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if ignore.excludes(&rel) && !ignore.reincludes_below(&rel) {
                continue;
            }
            collect(root, &path, ignore, out)?;
        } else if (kind.is_file() || kind.is_symlink() && path.is_file()) && !ignore.excludes(&rel)
        {
            out.push(rel);
        }
    }
    Ok(())
}

/// What decides whether an image must be rebuilt: the context, the Dockerfile name, the build
/// args and the IDs of the base images they name.
pub fn build_hash(tar: &[u8], build: &Build, base_ids: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(Sha256::digest(tar));
    h.update(build.dockerfile.as_bytes());
    for (k, v) in &build.args {
        h.update(format!("\0{k}={v}"));
    }
    for (k, v) in base_ids {
        h.update(format!("\0{k}@{v}"));
    }
    format!("{:x}", h.finalize())
}

/// Base images a build uses: the values of build args named `*_IMAGE`.
pub fn base_images(build: &Build) -> Vec<String> {
    build
        .args
        .iter()
        .filter(|(k, _)| k.ends_with("_IMAGE"))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The context as a list of files with a digest of each (mode and content): what the build
/// hash covers and what the image records, so a later run can name the files that changed
/// without building.
pub fn manifest(dir: &Path, dockerfile: &str) -> Result<BTreeMap<String, String>> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text)?,
        Err(_) => Ignore::default(),
    };
    let mut files = Vec::new();
    collect(dir, dir, &ignore, &mut files)?;
    for always in [dockerfile, ".dockerignore"] {
        if dir.join(always).is_file() && !files.iter().any(|f| f == always) {
            files.push(always.to_string());
        }
    }
    let mut out = BTreeMap::new();
    for rel in files {
        let path = dir.join(&rel);
        let mut h = Sha256::new();
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let exec = {
            use std::os::unix::fs::PermissionsExt;
            file.metadata()?.permissions().mode() & 0o111 != 0
        };
        h.update(if exec { b"755" } else { b"644" });
        std::io::copy(&mut file, &mut h)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        out.insert(rel, format!("{:x}", h.finalize())[..16].to_string());
    }
    Ok(out)
}

/// Everything a build depends on, recorded on the image it makes (label
/// `io.irisctl.build-record`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildRecord {
    /// Context file → digest.
    pub files: BTreeMap<String, String>,
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    /// Base image → its ID (empty when it is not on the host yet).
    pub bases: BTreeMap<String, String>,
}

impl BuildRecord {
    pub fn hash(&self, build: &Build) -> String {
        build_hash(
            serde_json::to_string(&self.files)
                .unwrap_or_default()
                .as_bytes(),
            build,
            &self.bases,
        )
    }

    pub fn label(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why an image recorded as `old` must be built again for `new`.
pub fn rebuild_cause(old: Option<&BuildRecord>, new: &BuildRecord) -> String {
    let Some(old) = old else {
        return "made without a record of its build inputs".to_string();
    };
    let mut why = Vec::new();
    let mut files: Vec<String> = new
        .files
        .iter()
        .filter(|(k, v)| old.files.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    files.extend(
        old.files
            .keys()
            .filter(|k| !new.files.contains_key(*k))
            .map(|k| format!("{k} (gone)")),
    );
    if !files.is_empty() {
        let more = if files.len() > 5 {
            format!(" and {} more", files.len() - 5)
        } else {
            String::new()
        };
        files.truncate(5);
        why.push(format!(
            "build context changed ({}{more})",
            files.join(", ")
        ));
    }
    if old.dockerfile != new.dockerfile {
        why.push(format!(
            "Dockerfile {} → {}",
            old.dockerfile, new.dockerfile
        ));
    }
    let args: Vec<&str> = new
        .args
        .iter()
        .filter(|(k, v)| old.args.get(*k) != Some(*v))
        .map(|(k, _)| k.as_str())
        .collect();
    if !args.is_empty() {
        why.push(format!("build args changed ({})", args.join(", ")));
    }
    let bases: Vec<&str> = new
        .bases
        .iter()
        .filter(|(k, v)| old.bases.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k.as_str())
        .collect();
    if !bases.is_empty() {
        why.push(format!("base image changed ({})", bases.join(", ")));
    }
    if why.is_empty() {
        "build inputs changed".to_string()
    } else {
        why.join(", ")
    }
}

/// The build inputs of a service: its context manifest and the IDs of its base images.
/// `pull` fetches absent base images first (a dry run does not).
pub async fn inputs(
    engine: &Engine,
    service: &str,
    build: &Build,
    pull: bool,
) -> Result<BuildRecord> {
    if !build.context.join(&build.dockerfile).is_file() {
        return Err(hinted(
            format!("stack file `{}` is missing (the build context of `{service}`)", build.context.join(&build.dockerfile).display()),
            "restore it, or write the built-in stack into a folder with `irisctl init DIR` and use `--project-dir DIR`",
        ));
    }
    let (context, dockerfile) = (build.context.clone(), build.dockerfile.clone());
    let files = tokio::task::spawn_blocking(move || manifest(&context, &dockerfile))
        .await
        .context("build context task failed")??;
    let mut bases = BTreeMap::new();
    for base in base_images(build) {
        if pull {
            engine
                .ensure_image(&base, &format!("the `{service}` build"))
                .await?;
        }
        let id = engine.image_id(&base).await?.unwrap_or_default();
        bases.insert(base, id);
    }
    Ok(BuildRecord {
        files,
        dockerfile: build.dockerfile.clone(),
        args: build.args.clone(),
        bases,
    })
}

/// Is the image current for these inputs?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Current {
        image_id: String,
    },
    /// `exists`: an older image of the tag is there (a rebuild, not a first build).
    Needed {
        exists: bool,
        cause: String,
    },
}

pub async fn check(
    engine: &Engine,
    tag: &str,
    build: &Build,
    record: &BuildRecord,
) -> Result<Check> {
    let Some(existing) = engine.image_exists(tag).await? else {
        return Ok(Check::Needed {
            exists: false,
            cause: format!("no image `{tag}`"),
        });
    };
    let image_labels = existing.config.as_ref().and_then(|c| c.labels.as_ref());
    let same = image_labels
        .and_then(|l| l.get(labels::BUILD_HASH))
        .is_some_and(|h| *h == record.hash(build));
    if same {
        return Ok(Check::Current {
            image_id: existing.id.unwrap_or_default(),
        });
    }
    let old = image_labels
        .and_then(|l| l.get(labels::BUILD_RECORD))
        .and_then(|t| serde_json::from_str::<BuildRecord>(t).ok());
    Ok(Check::Needed {
        exists: true,
        cause: rebuild_cause(old.as_ref(), record),
    })
}

/// The outcome of [`build_image`].
#[derive(Debug, Clone)]
pub struct Built {
    pub image_id: String,
    pub rebuilt: bool,
}

/// Build `tag` from `build` unless an image with the same build hash exists.
pub async fn build_image(
    engine: &Engine,
    service: &str,
    tag: &str,
    build: &Build,
    bar: &ProgressBar,
) -> Result<Built> {
    bar.set_message("reading context");
    let record = inputs(engine, service, build, true).await?;
    if let Check::Current { image_id } = check(engine, tag, build, &record).await? {
        bar.finish_with_message(format!("{tag} up to date"));
        return Ok(Built {
            image_id,
            rebuilt: false,
        });
    }
    let hash = record.hash(build);
    let (context, dockerfile) = (build.context.clone(), build.dockerfile.clone());
    let tar = tokio::task::spawn_blocking(move || context_tar(&context, &dockerfile))
        .await
        .context("build context task failed")??;

    let options = bollard::query_parameters::BuildImageOptions {
        dockerfile: build.dockerfile.clone(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        buildargs: Some(
            build
                .args
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ),
        labels: Some(HashMap::from([
            (labels::BUILD_HASH.to_string(), hash.clone()),
            (labels::BUILD_RECORD.to_string(), record.label()),
            (labels::MANAGED_BY.to_string(), "irisctl".to_string()),
        ])),
        ..Default::default()
    };
    let body = futures_util::stream::once(async move { bytes::Bytes::from(tar) });
    let mut stream = std::pin::pin!(engine.build_image(options, body));
    let mut tail: Vec<String> = Vec::new();
    let mut step = String::new();
    let mut image_id = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => {
                return Err(build_failed(service, tag, &step, &root_message(&e), &tail));
            }
        };
        if let Some(text) = info.stream.as_deref() {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if line.starts_with("Step ") {
                    step = line.to_string();
                    bar.set_message(line.to_string());
                }
                tail.push(line.to_string());
                if tail.len() > 25 {
                    tail.remove(0);
                }
            }
        }
        if let Some(id) = info.aux.and_then(|a| a.id) {
            image_id = Some(id);
        }
        if let Some(detail) = info.error_detail {
            let message = detail.message.unwrap_or_else(|| "unknown error".into());
            return Err(build_failed(service, tag, &step, &message, &tail));
        }
    }
    let image_id = match image_id {
        Some(id) => id,
        None => engine.image_id(tag).await?.ok_or_else(|| {
            build_failed(
                service,
                tag,
                &step,
                "the build ended without an image",
                &tail,
            )
        })?,
    };
    bar.finish_with_message(format!("built {tag}"));
    Ok(Built {
        image_id,
        rebuilt: true,
    })
}

fn build_failed(
    service: &str,
    tag: &str,
    step: &str,
    message: &str,
    tail: &[String],
) -> anyhow::Error {
    let step = if step.is_empty() {
        "before the first step".to_string()
    } else {
        format!("at `{step}`")
    };
    hinted(
        format!(
            "building `{tag}` for service `{service}` failed {step}: {}\n--- last lines of the build log ---\n{}",
            message.trim(),
            tail.join("\n")
        ),
        "fix the failing step in the Dockerfile or the files it copies, then run `irisctl up` again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_names(tar: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect()
    }

    #[test]
    fn dockerignore_rules() {
        let ig =
            Ignore::parse("# c\nnode_modules\n*.log\n!keep.log\n**/__pycache__\ndist/\n").unwrap();
        assert!(ig.excludes("node_modules"));
        assert!(ig.excludes("node_modules/a/b.js"));
        assert!(ig.excludes("x.log"));
        assert!(!ig.excludes("keep.log"));
        assert!(
            !ig.excludes("sub/x.log"),
            "*.log is anchored at the root like Docker's"
        );
        assert!(ig.excludes("a/b/__pycache__/m.pyc"));
        assert!(ig.excludes("dist/index.html"));
        assert!(!ig.excludes("src/main.ts"));
        // An exception below an excluded folder re-includes only what it names.
        let ig = Ignore::parse("dist\n!dist/keep.html\n").unwrap();
        assert!(ig.excludes("dist/other.html"));
        assert!(!ig.excludes("dist/keep.html"));
        assert!(ig.reincludes_below("dist"));
    }

    #[test]
    fn context_tar_is_deterministic_and_honours_dockerignore() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("node_modules/x")).unwrap();
        std::fs::create_dir_all(p.join("src")).unwrap();
        std::fs::write(
            p.join(".dockerignore"),
            "node_modules\nDockerfile\n.dockerignore\n",
        )
        .unwrap();
        std::fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(p.join("node_modules/x/i.js"), "x").unwrap();
        std::fs::write(p.join("src/b.ts"), "b").unwrap();
        std::fs::write(p.join("src/a.ts"), "a").unwrap();
        let one = context_tar(p, "Dockerfile").unwrap();
        assert_eq!(
            tar_names(&one),
            [".dockerignore", "Dockerfile", "src/a.ts", "src/b.ts"]
        );
        assert_eq!(one, context_tar(p, "Dockerfile").unwrap());
        std::fs::write(p.join("src/a.ts"), "changed").unwrap();
        assert_ne!(one, context_tar(p, "Dockerfile").unwrap());
    }

    #[test]
    fn build_hash_covers_args_and_bases() {
        let b = Build {
            context: "/c".into(),
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::from([("PYTHON_IMAGE".into(), "py:1".into())]),
        };
        let ids = BTreeMap::from([("py:1".to_string(), "sha256:1".to_string())]);
        let h = build_hash(b"t", &b, &ids);
        assert_ne!(h, build_hash(b"u", &b, &ids));
        let ids2 = BTreeMap::from([("py:1".to_string(), "sha256:2".to_string())]);
        assert_ne!(h, build_hash(b"t", &b, &ids2));
        let mut b2 = b.clone();
        b2.args.insert("PYTHON_IMAGE".into(), "py:2".into());
        assert_ne!(h, build_hash(b"t", &b2, &ids));
        assert_eq!(base_images(&b), ["py:1"]);
    }
}
