//! Build contexts: the entries a context sends (honouring `.dockerignore`), written as a
//! deterministic tar, streamed to the engine or hashed.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use bytes::Bytes;
use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};

/// A fixed modification time keeps the tar (and so its hash) the same for the same files.
const MTIME: u64 = 1_700_000_000;

/// `.dockerignore` rules: the last pattern that matches a path (or one of its parent folders)
/// decides; `!pattern` re-includes.
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<(GlobMatcher, bool)>,
}

impl Ignore {
    /// The rules of a build context's `.dockerignore` (none when it has none).
    pub fn of_context(dir: &Path) -> Result<Ignore> {
        match std::fs::read_to_string(dir.join(".dockerignore")) {
            Ok(text) => Ignore::parse(&text),
            Err(_) => Ok(Ignore::default()),
        }
    }

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

/// One entry of a build context, in the order it is archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A regular file: its size when listed (the archive holds exactly that many bytes).
    File { rel: String, size: u64, exec: bool },
    /// A symbolic link, archived as a link with its text, as the docker CLI does. It is never
    /// followed: a link to `/proc/self/environ` or to a folder outside the context stays a link.
    Link {
        rel: String,
        target: std::path::PathBuf,
    },
}

impl Item {
    pub fn rel(&self) -> &str {
        match self {
            Item::File { rel, .. } | Item::Link { rel, .. } => rel,
        }
    }
}

/// List the context's entries, sorted, honouring `.dockerignore`. Like the docker CLI, the
/// Dockerfile and `.dockerignore` are always sent, even when they are ignored.
pub fn context_items(dir: &Path, dockerfile: &str) -> Result<Vec<Item>> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text)?,
        Err(_) => Ignore::default(),
    };
    let mut items = Vec::new();
    collect(dir, dir, &ignore, &mut items)?;
    for always in [dockerfile, ".dockerignore"] {
        if !items.iter().any(|i| i.rel() == always) {
            if let Some(item) = item_for(&dir.join(always), always.to_string())? {
                items.push(item);
            }
        }
    }
    items.sort_by(|a, b| a.rel().cmp(b.rel()));
    Ok(items)
}

/// The entry for one path, from its own metadata (a link is not followed). Sockets, FIFOs and
/// devices are left out, as they cannot be sent.
fn item_for(path: &Path, rel: String) -> Result<Option<Item>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read `{}`", path.display()));
        }
    };
    let kind = meta.file_type();
    Ok(if kind.is_symlink() {
        let target = std::fs::read_link(path)
            .with_context(|| format!("cannot read link `{}`", path.display()))?;
        Some(Item::Link { rel, target })
    } else if kind.is_file() {
        Some(Item::File {
            rel,
            size: meta.len(),
            exec: meta.permissions().mode() & 0o111 != 0,
        })
    } else {
        None
    })
}

fn collect(root: &Path, dir: &Path, ignore: &Ignore, out: &mut Vec<Item>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read build context folder `{}`", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        // `file_type` does not follow links: a link to a folder is a link, not a folder.
        if entry.file_type()?.is_dir() {
            if ignore.excludes(&rel) && !ignore.reincludes_below(&rel) {
                continue;
            }
            collect(root, &path, ignore, out)?;
        } else if !ignore.excludes(&rel) {
            out.extend(item_for(&path, rel)?);
        }
    }
    Ok(())
}

/// Reads exactly `size` bytes of a file: a file that shrinks or grows while it is archived is
/// an error rather than a corrupt archive.
struct Exact<R> {
    inner: std::io::Take<R>,
    left: u64,
    path: std::path::PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::other(format!(
                "`{}` shrank while it was being read",
                self.path.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Write the context's tar to `out`, file by file (no file is held in memory). The files are
/// sorted and their metadata normalised, so the same files give the same bytes.
fn write_tar<W: Write>(dir: &Path, items: &[Item], out: W) -> Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        match item {
            Item::File { rel, size, exec } => {
                let path = dir.join(rel);
                let file = std::fs::File::open(&path)
                    .with_context(|| format!("cannot read `{}`", path.display()))?;
                header.set_size(*size);
                header.set_mode(if *exec { 0o755 } else { 0o644 });
                header.set_entry_type(tar::EntryType::Regular);
                let reader = Exact {
                    inner: file.take(*size),
                    left: *size,
                    path: path.clone(),
                };
                builder
                    .append_data(&mut header, rel, reader)
                    .with_context(|| format!("cannot add `{rel}` to the build context"))?;
            }
            Item::Link { rel, target } => {
                header.set_size(0);
                header.set_mode(0o777);
                header.set_entry_type(tar::EntryType::Symlink);
                builder
                    .append_link(&mut header, rel, target)
                    .with_context(|| format!("cannot add link `{rel}` to the build context"))?;
            }
        }
    }
    builder
        .into_inner()
        .context("cannot finish the build context archive")
}

/// A writer that feeds what passes through it to a SHA-256.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The build context as a tar archive in memory (small contexts and tests; builds stream it).
pub fn context_tar(dir: &Path, dockerfile: &str) -> Result<Vec<u8>> {
    write_tar(dir, &context_items(dir, dockerfile)?, Vec::new())
}

/// The SHA-256 of the context's tar, computed by streaming it through the hash: memory stays
/// small however large the files are.
pub fn context_digest(dir: &Path, dockerfile: &str) -> Result<[u8; 32]> {
    let items = context_items(dir, dockerfile)?;
    let out = Hashing {
        inner: std::io::sink(),
        hash: Sha256::new(),
    };
    let out = write_tar(dir, &items, std::io::BufWriter::with_capacity(CHUNK, out))?;
    let out = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot hash the build context: {}", e.error()))?;
    Ok(out.hash.finalize().into())
}

/// Bytes per chunk sent to the engine, and how many chunks may wait: at most about 1 MiB of
/// the context is in memory at a time.
const CHUNK: usize = 128 * 1024;
const CHUNKS_IN_FLIGHT: usize = 8;

/// Sends what is written to it as chunks into a channel (from a blocking thread).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the engine stopped reading the build context",
                )
            })?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The context's tar as a stream of chunks, written on a blocking thread as the receiver reads
/// it, and the task's outcome (which names the file when writing failed).
pub fn context_stream(
    dir: &Path,
    dockerfile: &str,
) -> (
    impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    tokio::task::JoinHandle<Result<()>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let (dir, dockerfile) = (dir.to_path_buf(), dockerfile.to_string());
    let task = tokio::task::spawn_blocking(move || {
        let result = context_items(&dir, &dockerfile).and_then(|items| {
            let out = std::io::BufWriter::with_capacity(CHUNK, ChannelWriter { tx: tx.clone() });
            let mut out = write_tar(&dir, &items, out)?;
            out.flush().context("cannot send the build context")?;
            Ok(())
        });
        if let Err(e) = &result {
            // Make the request fail rather than send a truncated context as if it were whole.
            let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
        }
        result
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (stream, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

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

    /// (path, entry type, link text, content) of every entry.
    fn tar_entries(tar: &[u8]) -> Vec<(String, tar::EntryType, Option<String>, Vec<u8>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().to_string();
                let kind = e.header().entry_type();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().to_string());
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, kind, link, data)
            })
            .collect()
    }

    fn context_with_dockerfile() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        dir
    }

    #[test]
    fn a_link_to_a_file_outside_is_archived_as_a_link_not_its_content() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.txt");
        std::fs::write(&secret, "TOP-SECRET-CONTENT").unwrap();
        let dir = context_with_dockerfile();
        std::os::unix::fs::symlink(&secret, dir.path().join("env.txt")).unwrap();
        std::os::unix::fs::symlink("/proc/self/environ", dir.path().join("environ")).unwrap();
        let tar = context_tar(dir.path(), "Dockerfile").unwrap();
        let entries = tar_entries(&tar);
        let find = |name: &str| entries.iter().find(|e| e.0 == name).cloned();
        let (_, kind, link, data) = find("env.txt").expect("env.txt is archived");
        assert_eq!(kind, tar::EntryType::Symlink);
        assert_eq!(link.as_deref(), Some(secret.to_str().unwrap()));
        assert!(data.is_empty());
        let (_, kind, link, _) = find("environ").expect("environ is archived");
        assert_eq!(kind, tar::EntryType::Symlink);
        assert_eq!(link.as_deref(), Some("/proc/self/environ"));
        let needle = b"TOP-SECRET-CONTENT";
        assert!(
            !tar.windows(needle.len()).any(|w| w == needle),
            "the link's target was read into the context"
        );
    }

    #[test]
    fn a_linked_folder_is_archived_as_a_link() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("inner.txt"), "inner").unwrap();
        let dir = context_with_dockerfile();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).unwrap();
        // A dangling link is sent too, as docker does.
        std::os::unix::fs::symlink("nowhere", dir.path().join("dangling")).unwrap();
        let entries = tar_entries(&context_tar(dir.path(), "Dockerfile").unwrap());
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["Dockerfile", "dangling", "linked"]);
        assert_eq!(entries[2].1, tar::EntryType::Symlink);
        assert_eq!(
            entries[2].2.as_deref(),
            Some(outside.path().to_str().unwrap())
        );
        assert_eq!(entries[1].1, tar::EntryType::Symlink);
        assert_eq!(entries[1].2.as_deref(), Some("nowhere"));
    }

    #[test]
    fn the_hash_changes_with_a_link_text() {
        let dir = context_with_dockerfile();
        std::fs::write(dir.path().join("a"), "same").unwrap();
        std::fs::write(dir.path().join("b"), "same").unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("link")).unwrap();
        let one = context_digest(dir.path(), "Dockerfile").unwrap();
        assert_eq!(one, context_digest(dir.path(), "Dockerfile").unwrap());
        // The streamed hash is the hash of the archive's bytes.
        let whole: [u8; 32] = Sha256::digest(context_tar(dir.path(), "Dockerfile").unwrap()).into();
        assert_eq!(one, whole);
        std::fs::remove_file(dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("b", dir.path().join("link")).unwrap();
        assert_ne!(one, context_digest(dir.path(), "Dockerfile").unwrap());
    }

    #[test]
    fn ignored_links_are_left_out() {
        let dir = context_with_dockerfile();
        std::fs::write(dir.path().join(".dockerignore"), "secrets\n").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("secrets")).unwrap();
        assert_eq!(
            tar_names(&context_tar(dir.path(), "Dockerfile").unwrap()),
            [".dockerignore", "Dockerfile"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_streamed_context_is_the_same_archive() {
        let dir = context_with_dockerfile();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        // Larger than a chunk, so it spans several.
        let big: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("src/big.bin"), &big).unwrap();
        std::os::unix::fs::symlink("big.bin", dir.path().join("src/link")).unwrap();
        let (stream, task) = context_stream(dir.path(), "Dockerfile");
        let chunks: Vec<_> = stream.collect().await;
        task.await.unwrap().unwrap();
        let streamed: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect();
        assert_eq!(streamed, context_tar(dir.path(), "Dockerfile").unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_context_fails_the_stream() {
        let dir = context_with_dockerfile();
        // A folder the walk cannot read (root reads everything, so use a missing context).
        let missing = dir.path().join("missing");
        let (stream, task) = context_stream(&missing, "Dockerfile");
        let chunks: Vec<_> = stream.collect().await;
        assert!(chunks.last().is_some_and(|c| c.is_err()));
        let err = task.await.unwrap().unwrap_err();
        assert!(format!("{err:#}").contains("cannot read build context folder"));
    }

    #[test]
    fn a_file_that_shrinks_while_archived_is_an_error_not_a_corrupt_archive() {
        let dir = context_with_dockerfile();
        std::fs::write(dir.path().join("data"), "0123456789").unwrap();
        let items = context_items(dir.path(), "Dockerfile").unwrap();
        std::fs::write(dir.path().join("data"), "01234").unwrap();
        let e = write_tar(dir.path(), &items, Vec::new()).unwrap_err();
        assert!(
            format!("{e:#}").contains("shrank while it was being read"),
            "{e:#}"
        );
    }
}
