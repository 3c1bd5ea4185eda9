//! A stat cache of build context file digests, as git's index keeps one: a file whose metadata
//! (size, mtime, ctime, inode, mode) is what it was when its content was hashed keeps its
//! digest without being read again, so a no-op `up` does not read every byte of every context.
//!
//! It is only ever a shortcut to the same digests: a missing, corrupt or foreign cache is an
//! empty one. A file is hashed again when
//! - any of its metadata changed (ctime cannot be set back from user space);
//! - its mtime or ctime is not older than the moment its digest was taken, less [`RACY`]
//!   (a change in the same timestamp tick as the hashing would not show in the metadata);
//! - its digest is older than [`MAX_AGE`] (a change hidden from every metadata field, e.g.
//!   on a filesystem without ctime, is seen within a day);
//! - `irisctl up --rehash` asks for a full check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Where the caches live, below the project directory (one file per build context).
pub const CACHE_DIR: &str = ".irisctl/cache";
/// The format; a cache of another version is ignored.
const VERSION: u32 = 1;
/// A digest older than this is taken again.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Timestamps this close to (or after) the moment a digest was taken are not trusted:
/// filesystem timestamps are coarse (a kernel tick; 2 s on FAT).
pub const RACY: Duration = Duration::from_secs(2);

/// The metadata of a file that, unchanged, stands for unchanged content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub mode: u32,
}

impl Stat {
    pub fn of(meta: &std::fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stat {
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }
}

/// One file's digest and the metadata it had when it was taken.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub stat: Stat,
    pub digest: String,
    /// When the digest was taken (ns since the epoch), read before the file's metadata.
    pub hashed_ns: i64,
}

/// The digests of one build context's files, by context-relative path.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatCache {
    version: u32,
    /// The context folder the paths are relative to.
    root: String,
    pub entries: BTreeMap<String, Entry>,
}

/// Nanoseconds since the epoch (0 for a clock set before it).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The recorded digest of a file with metadata `stat`, if it can stand for its content now
/// (`now_ns`); `None` when the file must be read (pure).
pub fn cached<'a>(
    entry: Option<&'a Entry>,
    stat: &Stat,
    now_ns: i64,
    rehash: bool,
) -> Option<&'a str> {
    let entry = entry?;
    let racy = stat.mtime_ns.max(stat.ctime_ns) >= entry.hashed_ns.saturating_sub(ns(RACY));
    let age = now_ns.saturating_sub(entry.hashed_ns);
    // A clock that went back makes the age meaningless: hash again.
    let expired = !(0..ns(MAX_AGE)).contains(&age);
    (!rehash && entry.stat == *stat && !racy && !expired).then_some(entry.digest.as_str())
}

impl StatCache {
    pub fn new(root: &Path) -> StatCache {
        StatCache {
            version: VERSION,
            root: root.to_string_lossy().into_owned(),
            entries: BTreeMap::new(),
        }
    }

    /// The cache read from `text`, or an empty one when it is not a cache of this version for
    /// this context (pure).
    pub fn parse(text: &[u8], root: &Path) -> StatCache {
        match serde_json::from_slice::<StatCache>(text) {
            Ok(c) if c.version == VERSION && c.root == root.to_string_lossy() => c,
            _ => StatCache::new(root),
        }
    }

    /// The file that holds the cache of context `root` in `cache_dir`.
    pub fn path(cache_dir: &Path, root: &Path) -> PathBuf {
        let id = format!("{:x}", Sha256::digest(root.to_string_lossy().as_bytes()));
        cache_dir.join(format!("context-{}.json", &id[..16]))
    }

    /// The cache of context `root` kept in `cache_dir` (empty when there is none or it cannot
    /// be read).
    pub fn load(cache_dir: &Path, root: &Path) -> StatCache {
        match std::fs::read(StatCache::path(cache_dir, root)) {
            Ok(text) => StatCache::parse(&text, root),
            Err(_) => StatCache::new(root),
        }
    }

    /// Write the cache (mode 0600, in a 0700 folder) atomically: a temporary file renamed over
    /// the old one, so a reader sees the old cache or the new one, never half of one.
    pub fn save(&self, cache_dir: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(cache_dir)
            .with_context(|| format!("cannot create `{}`", cache_dir.display()))?;
        let path = StatCache::path(cache_dir, Path::new(&self.root));
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::Error::from(e).context(format!("cannot write `{}`", path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * 1_000_000_000;

    fn stat(mtime_ns: i64) -> Stat {
        Stat {
            size: 10,
            mtime_ns,
            ctime_ns: mtime_ns,
            ino: 7,
            mode: 0o100644,
        }
    }

    fn entry(stat: Stat, hashed_ns: i64) -> Entry {
        Entry {
            stat,
            digest: "d1".into(),
            hashed_ns,
        }
    }

    #[test]
    fn an_unchanged_file_keeps_its_digest() {
        let e = entry(stat(100 * HOUR), 101 * HOUR);
        assert_eq!(
            cached(Some(&e), &stat(100 * HOUR), 102 * HOUR, false),
            Some("d1")
        );
    }

    #[test]
    fn any_metadata_change_means_reading_the_file() {
        let e = entry(stat(100 * HOUR), 101 * HOUR);
        let now = 102 * HOUR;
        let changes: [fn(&mut Stat); 5] = [
            |s| s.size += 1,
            |s| s.mtime_ns += 1,
            |s| s.ctime_ns += 1,
            |s| s.ino += 1,
            |s| s.mode |= 0o111,
        ];
        for change in changes {
            let mut s = stat(100 * HOUR);
            change(&mut s);
            assert_eq!(cached(Some(&e), &s, now, false), None, "{s:?}");
        }
        assert_eq!(cached(None, &stat(100 * HOUR), now, false), None);
    }

    #[test]
    fn rehash_reads_every_file() {
        let e = entry(stat(100 * HOUR), 101 * HOUR);
        assert_eq!(cached(Some(&e), &stat(100 * HOUR), 102 * HOUR, true), None);
    }

    #[test]
    fn a_file_changed_as_it_was_hashed_is_hashed_again() {
        // Modified less than RACY before the digest was taken (or after it): its metadata
        // could stay the same through a later change in the same timestamp tick.
        let hashed = 101 * HOUR;
        let now = 102 * HOUR;
        let just_before = stat(hashed - ns(RACY) + 1);
        assert_eq!(
            cached(Some(&entry(just_before, hashed)), &just_before, now, false),
            None
        );
        let after = stat(hashed + 5);
        assert_eq!(
            cached(Some(&entry(after, hashed)), &after, now, false),
            None
        );
        let older = stat(hashed - ns(RACY) - 1);
        assert_eq!(
            cached(Some(&entry(older, hashed)), &older, now, false),
            Some("d1")
        );
    }

    #[test]
    fn digests_expire() {
        let e = entry(stat(100 * HOUR), 101 * HOUR);
        let s = stat(100 * HOUR);
        assert_eq!(
            cached(Some(&e), &s, 101 * HOUR + ns(MAX_AGE) - 1, false),
            Some("d1")
        );
        assert_eq!(cached(Some(&e), &s, 101 * HOUR + ns(MAX_AGE), false), None);
        // A clock set back: the age cannot be told.
        assert_eq!(cached(Some(&e), &s, 100 * HOUR, false), None);
    }

    #[test]
    fn a_corrupt_or_foreign_cache_is_an_empty_one() {
        let root = Path::new("/p/stack/api");
        let mut c = StatCache::new(root);
        c.entries.insert("a".into(), entry(stat(1), 2));
        let text = serde_json::to_vec(&c).unwrap();
        assert_eq!(StatCache::parse(&text, root), c);
        assert!(StatCache::parse(&text, Path::new("/q/stack/api"))
            .entries
            .is_empty());
        assert!(StatCache::parse(&text[..text.len() / 2], root)
            .entries
            .is_empty());
        assert!(StatCache::parse(b"\xff\x00garbage", root)
            .entries
            .is_empty());
        let other = String::from_utf8(text)
            .unwrap()
            .replace("\"version\":1", "\"version\":99");
        assert!(StatCache::parse(other.as_bytes(), root).entries.is_empty());
    }

    #[test]
    fn saved_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join(".irisctl/cache");
        let root = Path::new("/p/stack/api");
        let mut c = StatCache::new(root);
        c.entries.insert("a".into(), entry(stat(1), 2));
        c.save(&cache_dir).unwrap();
        assert_eq!(StatCache::load(&cache_dir, root), c);
        assert!(StatCache::load(&cache_dir, Path::new("/other"))
            .entries
            .is_empty());
        // Only the cache is left: no temporary file.
        assert_eq!(std::fs::read_dir(&cache_dir).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(".irisctl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
