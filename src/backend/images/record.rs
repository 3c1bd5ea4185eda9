//! The build inputs of a service (context manifest, Dockerfile, args, base image IDs), the hash
//! recorded on the image, and the decision whether an image is current and why it is not.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use std::os::unix::fs::PermissionsExt;

use super::cache::{cached, now_ns, Entry, Stat, StatCache};
use crate::engine::context::{context_items, Item};
use crate::engine::{labels, Engine};
use crate::error::hinted;
use crate::stack::Build;

/// What decides whether an image must be rebuilt: the context (the SHA-256 of its tar), the
/// Dockerfile name, the build args and the IDs of the base images they name.
pub fn build_hash(
    context_digest: &[u8; 32],
    build: &Build,
    base_ids: &BTreeMap<String, String>,
) -> String {
    let mut h = Sha256::new();
    h.update(context_digest);
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

/// The context as a list of entries with a digest of each (mode and content, or a link's
/// text): what the image records, so a later run can name the files that changed without
/// building. A file whose digest `cache` holds for its current metadata is not read (see
/// [`cached`]); `rehash` reads every file. The cache of the digests taken is returned with
/// the manifest. `now_ns` is when the scan starts, before any file is looked at.
pub fn manifest(
    dir: &Path,
    dockerfile: &str,
    cache: &StatCache,
    rehash: bool,
    now_ns: i64,
) -> Result<(BTreeMap<String, String>, StatCache)> {
    let mut out = BTreeMap::new();
    let mut next = StatCache::new(dir);
    for item in context_items(dir, dockerfile)? {
        let digest = match &item {
            Item::File { rel, .. } => {
                let path = dir.join(rel);
                let meta = std::fs::symlink_metadata(&path)
                    .with_context(|| format!("cannot read `{}`", path.display()))?;
                let stat = Stat::of(&meta);
                let entry = cache.entries.get(rel.as_str());
                let (digest, hashed_ns) = match cached(entry, &stat, now_ns, rehash) {
                    Some(digest) => (digest.to_string(), entry.map_or(now_ns, |e| e.hashed_ns)),
                    None => (file_digest(&path)?, now_ns),
                };
                // The metadata recorded is the one read before the content: a change while
                // reading shows as changed metadata (or a racy time) next time.
                next.entries.insert(
                    rel.clone(),
                    Entry {
                        stat,
                        digest: digest.clone(),
                        hashed_ns,
                    },
                );
                digest
            }
            Item::Link { target, .. } => {
                let mut h = Sha256::new();
                h.update(b"link:");
                h.update(target.to_string_lossy().as_bytes());
                format!("{:x}", h.finalize())[..16].to_string()
            }
        };
        out.insert(item.rel().to_string(), digest);
    }
    Ok((out, next))
}

/// A file's digest: its mode (executable or not), then its content.
fn file_digest(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut h = Sha256::new();
    h.update(if meta.permissions().mode() & 0o111 != 0 {
        b"755"
    } else {
        b"644"
    });
    std::io::copy(&mut file, &mut h)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    Ok(format!("{:x}", h.finalize())[..16].to_string())
}

/// Everything a build depends on, recorded on the image it makes (label
/// `io.irisctl.build-record`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildRecord {
    /// Context entry → digest.
    pub files: BTreeMap<String, String>,
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    /// Base image → its ID (empty when it is not on the host yet).
    pub bases: BTreeMap<String, String>,
    /// The SHA-256 of the context's manifest (entries, modes, content digests).
    #[serde(skip)]
    pub digest: [u8; 32],
    /// The build hash, as recorded on an image (empty in a record not yet labelled).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

impl BuildRecord {
    pub fn hash(&self, build: &Build) -> String {
        build_hash(&self.digest, build, &self.bases)
    }

    /// The image label: this record with its build hash.
    pub fn label(&self, build: &Build) -> String {
        let labelled = BuildRecord {
            hash: self.hash(build),
            ..self.clone()
        };
        serde_json::to_string(&labelled).unwrap_or_default()
    }
}

/// The build hash an image was labelled with by irisctl (in its build record, or, on images
/// made before the record carried it, a label of its own).
pub fn labelled_hash(labels: &std::collections::HashMap<String, String>) -> Option<String> {
    labels.get(labels::BUILD_HASH).cloned().or_else(|| {
        labels
            .get(labels::BUILD_RECORD)
            .and_then(|t| serde_json::from_str::<BuildRecord>(t).ok())
            .map(|r| r.hash)
            .filter(|h| !h.is_empty())
    })
}

/// Whether irisctl (or Compose running the file irisctl wrote) built an image with these labels.
pub fn built_by_irisctl(labels: &std::collections::HashMap<String, String>) -> bool {
    labels
        .get(labels::MANAGED_BY)
        .is_some_and(|v| v == "irisctl")
        || labels.contains_key(labels::BUILD_RECORD)
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

/// The build inputs of a service: its context (digest and manifest, read through `cache`) and
/// the IDs of its base images from `known` (`image → ID`; empty for one not on the host).
/// Blocking: it reads the context. The cache of the digests taken is returned with them.
pub fn inputs(
    service: &str,
    build: &Build,
    known: &BTreeMap<String, String>,
    cache: &StatCache,
    rehash: bool,
) -> Result<(BuildRecord, StatCache)> {
    if !build.context.join(&build.dockerfile).is_file() {
        return Err(hinted(
            format!("stack file `{}` is missing (the build context of `{service}`)", build.context.join(&build.dockerfile).display()),
            "restore it, or write the built-in stack into a folder with `irisctl init DIR` and use `--project-dir DIR`",
        ));
    }
    // One pass over the context: the manifest holds every entry's mode and content digest (or
    // link text), so its own digest stands for the whole context.
    let (files, cache) = manifest(&build.context, &build.dockerfile, cache, rehash, now_ns())?;
    let digest: [u8; 32] = Sha256::digest(serde_json::to_vec(&files).unwrap_or_default()).into();
    let bases = base_images(build)
        .into_iter()
        .map(|base| {
            let id = known.get(&base).cloned().unwrap_or_default();
            (base, id)
        })
        .collect();
    Ok((
        BuildRecord {
            files,
            dockerfile: build.dockerfile.clone(),
            args: build.args.clone(),
            bases,
            digest,
            hash: String::new(),
        },
        cache,
    ))
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
        .and_then(labelled_hash)
        .is_some_and(|h| h == record.hash(build));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_image_label_carries_the_build_hash_and_marks_the_image_ours() {
        let build = Build {
            context: "/c".into(),
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::from([("A".into(), "1".into())]),
        };
        let record = BuildRecord {
            files: BTreeMap::from([("app.py".into(), "abc".into())]),
            dockerfile: "Dockerfile".into(),
            digest: [7; 32],
            ..Default::default()
        };
        let labels = std::collections::HashMap::from([(
            labels::BUILD_RECORD.to_string(),
            record.label(&build),
        )]);
        assert_eq!(labelled_hash(&labels), Some(record.hash(&build)));
        assert!(built_by_irisctl(&labels));
        let read: BuildRecord = serde_json::from_str(&labels[labels::BUILD_RECORD]).unwrap();
        assert_eq!(read.files, record.files);
        // Images of an older irisctl: a label per fact.
        let old = std::collections::HashMap::from([
            (labels::BUILD_HASH.to_string(), "h1".to_string()),
            (labels::MANAGED_BY.to_string(), "irisctl".to_string()),
        ]);
        assert_eq!(labelled_hash(&old).as_deref(), Some("h1"));
        assert!(built_by_irisctl(&old));
        // Someone else's image, or a record without a hash, is neither.
        let other = std::collections::HashMap::from([("x".to_string(), "y".to_string())]);
        assert_eq!(labelled_hash(&other), None);
        assert!(!built_by_irisctl(&other));
        let unhashed = std::collections::HashMap::from([(
            labels::BUILD_RECORD.to_string(),
            record.label(&build).replace("\"hash\"", "\"unused\""),
        )]);
        assert_eq!(labelled_hash(&unhashed), None);
    }

    #[test]
    fn build_hash_covers_args_and_bases() {
        let b = Build {
            context: "/c".into(),
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::from([("PYTHON_IMAGE".into(), "py:1".into())]),
        };
        let ids = BTreeMap::from([("py:1".to_string(), "sha256:1".to_string())]);
        let (t, u) = ([1u8; 32], [2u8; 32]);
        let h = build_hash(&t, &b, &ids);
        assert_ne!(h, build_hash(&u, &b, &ids));
        let ids2 = BTreeMap::from([("py:1".to_string(), "sha256:2".to_string())]);
        assert_ne!(h, build_hash(&t, &b, &ids2));
        let mut b2 = b.clone();
        b2.args.insert("PYTHON_IMAGE".into(), "py:2".into());
        assert_ne!(h, build_hash(&t, &b2, &ids));
        assert_eq!(base_images(&b), ["py:1"]);
    }

    const HOUR: i64 = 3600 * 1_000_000_000;

    /// A context whose files were last changed long ago (their ctime is now, though).
    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir(p.join("app")).unwrap();
        std::fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(p.join("app/main.py"), "hello").unwrap();
        std::fs::write(p.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("app/main.py", p.join("link")).unwrap();
        for f in ["Dockerfile", "app/main.py", "run.sh"] {
            set_mtime(&p.join(f), 1_600_000_000);
        }
        dir
    }

    fn set_mtime(path: &Path, secs: u64) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn scan(
        dir: &Path,
        cache: &StatCache,
        rehash: bool,
        at: i64,
    ) -> (BTreeMap<String, String>, StatCache) {
        manifest(dir, "Dockerfile", cache, rehash, at).unwrap()
    }

    #[test]
    fn the_cache_leaves_the_digests_as_they_were() {
        let dir = context();
        let p = dir.path();
        let now = now_ns();
        let (cold, cache) = scan(p, &StatCache::new(p), false, now);
        // The digest of a file is its mode then its content, as before the cache.
        let want = |mode: &[u8], content: &[u8]| {
            let mut h = Sha256::new();
            h.update(mode);
            h.update(content);
            format!("{:x}", h.finalize())[..16].to_string()
        };
        assert_eq!(cold["app/main.py"], want(b"644", b"hello"));
        assert_eq!(cold["run.sh"], want(b"755", b"#!/bin/sh\n"));
        assert_eq!(cold["link"], want(b"link:", b"app/main.py"));
        assert_eq!(
            cache.entries.len(),
            3,
            "files only: {:?}",
            cache.entries.keys()
        );
        let (warm, _) = scan(p, &cache, false, now + HOUR);
        assert_eq!(warm, cold);
    }

    /// The cache entry of `rel` as if its digest were taken an hour before `at`, for the file's
    /// current metadata (no change of it visible), with digest `digest`.
    fn pretend(dir: &Path, cache: &mut StatCache, rel: &str, digest: &str, at: i64) {
        let stat = Stat::of(&std::fs::symlink_metadata(dir.join(rel)).unwrap());
        cache.entries.insert(
            rel.to_string(),
            Entry {
                stat,
                digest: digest.to_string(),
                hashed_ns: at - HOUR,
            },
        );
    }

    #[test]
    fn a_cached_digest_stands_for_the_file_unread() {
        let dir = context();
        let p = dir.path();
        let at = now_ns() + 3 * HOUR;
        let (_, mut cache) = scan(p, &StatCache::new(p), false, at - 2 * HOUR);
        pretend(p, &mut cache, "app/main.py", "0000000000000000", at);
        let (m, next) = scan(p, &cache, false, at);
        assert_eq!(m["app/main.py"], "0000000000000000", "the file was read");
        // The entry keeps the time its digest was taken.
        assert_eq!(next.entries["app/main.py"].hashed_ns, at - HOUR);
    }

    #[test]
    fn a_file_changed_behind_a_restored_mtime_is_seen() {
        let dir = context();
        let p = dir.path();
        let now = now_ns();
        let (before, cache) = scan(p, &StatCache::new(p), false, now + HOUR);
        // Same size, mtime set back: only ctime (which user space cannot set back) changed.
        std::fs::write(p.join("app/main.py"), "HELLO").unwrap();
        set_mtime(&p.join("app/main.py"), 1_600_000_000);
        let (after, _) = scan(p, &cache, false, now + 2 * HOUR);
        assert_ne!(after["app/main.py"], before["app/main.py"]);
        assert_eq!(after["run.sh"], before["run.sh"]);
    }

    #[test]
    fn a_change_no_metadata_shows_is_caught_by_rehash() {
        let dir = context();
        let p = dir.path();
        let at = now_ns() + 3 * HOUR;
        let (before, mut cache) = scan(p, &StatCache::new(p), false, at - 2 * HOUR);
        std::fs::write(p.join("app/main.py"), "HELLO").unwrap();
        set_mtime(&p.join("app/main.py"), 1_600_000_000);
        // As if ctime had been preserved too: the entry matches the new metadata.
        pretend(p, &mut cache, "app/main.py", &before["app/main.py"], at);
        let (unseen, _) = scan(p, &cache, false, at);
        assert_eq!(unseen["app/main.py"], before["app/main.py"]);
        let (full, _) = scan(p, &cache, true, at);
        let (cold, _) = scan(p, &StatCache::new(p), false, at);
        assert_ne!(full["app/main.py"], before["app/main.py"]);
        assert_eq!(full, cold);
        // And the expiry: a day after the digest was taken, the file is read again.
        let (later, _) = scan(
            p,
            &cache,
            false,
            at - HOUR + super::super::cache::MAX_AGE.as_nanos() as i64,
        );
        assert_eq!(later, cold);
    }

    #[test]
    fn a_file_changed_as_it_was_hashed_is_read_again() {
        let dir = context();
        let p = dir.path();
        // Hashed now: main.py's ctime (just set) is not older than the scan less RACY.
        let now = now_ns();
        let (cold, mut cache) = scan(p, &StatCache::new(p), false, now);
        let entry = cache.entries.get_mut("app/main.py").unwrap();
        entry.digest = "0000000000000000".into();
        let (m, _) = scan(p, &cache, false, now + HOUR);
        assert_eq!(m, cold, "a racy entry was trusted");
    }
}
