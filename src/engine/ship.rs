//! What a remote engine cannot take from this machine's file system or a registry, sent
//! through its API instead:
//!
//! - **Files** a container bind-mounts from the project (Prometheus's config, Grafana's
//!   provisioning and password file, the Alertmanager's config): on a remote engine each
//!   mounted folder becomes an anonymous volume of the container (the image's content copied
//!   in, as Docker does), and the files are uploaded into it before the container starts. The
//!   volume goes with the container.
//! - **Images** the remote lacks and this machine's engine has (the offline base images on an
//!   air-gapped remote): `docker save` streamed to the remote's `docker load`, without the
//!   layers the remote already has (a load opens a layer's file only when its chain is
//!   missing), so a new top layer sends only that layer. Streamed: memory stays bounded and no
//!   file of the whole image is written.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bollard::models::ContainerCreateBody;
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

/// A bind mount of a local path, replaced on a remote engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipped {
    pub source: PathBuf,
    pub target: String,
}

/// The folder of the container that receives a mount's files: the target itself for a folder,
/// its parent for a file.
fn volume_dir(m: &Shipped) -> String {
    if m.source.is_dir() {
        m.target.trim_end_matches('/').to_string()
    } else {
        match m.target.rsplit_once('/') {
            Some(("", _)) | None => "/".into(),
            Some((dir, _)) => dir.to_string(),
        }
    }
}

/// The create request without its bind mounts of local paths, each folder that receives
/// their files an anonymous volume instead; and the mounts taken out.
pub fn without_binds(mut body: ContainerCreateBody) -> (ContainerCreateBody, Vec<Shipped>) {
    let mut shipped = Vec::new();
    if let Some(hc) = body.host_config.as_mut() {
        if let Some(binds) = hc.binds.take() {
            let mut kept = Vec::new();
            for b in binds {
                let mut parts = b.splitn(3, ':');
                let (source, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if source.starts_with('/') && target.starts_with('/') {
                    shipped.push(Shipped {
                        source: PathBuf::from(source),
                        target: target.to_string(),
                    });
                } else {
                    kept.push(b);
                }
            }
            hc.binds = Some(kept);
        }
    }
    if !shipped.is_empty() {
        let volumes = body.volumes.get_or_insert_with(Default::default);
        for m in &shipped {
            let dir = volume_dir(m);
            if !volumes.contains(&dir) {
                volumes.push(dir);
            }
        }
    }
    (body, shipped)
}

/// The files of `mounts`, one tar per receiving folder (entries relative to it): uploaded
/// there, they land in the container's volume, which a read-only container accepts too.
pub fn archives(mounts: &[Shipped]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out: BTreeMap<String, tar::Builder<Vec<u8>>> = BTreeMap::new();
    for m in mounts {
        let dir = volume_dir(m);
        let builder = out
            .entry(dir.clone())
            .or_insert_with(|| tar::Builder::new(Vec::new()));
        if m.source.is_dir() {
            add_tree(builder, &m.source, Path::new(""))?;
        } else {
            let name = m.target.rsplit('/').next().unwrap_or_default();
            let data = std::fs::read(&m.source)
                .with_context(|| format!("cannot read `{}`", m.source.display()))?;
            append(builder, Path::new(name), &data)?;
        }
    }
    out.into_iter()
        .map(|(dir, b)| Ok((dir, b.into_inner()?)))
        .collect()
}

fn append(builder: &mut tar::Builder<Vec<u8>>, path: &Path, data: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    // Readable by the container's user, whoever it is (the folder is the container's own).
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, data)?;
    Ok(())
}

fn add_tree(builder: &mut tar::Builder<Vec<u8>>, dir: &Path, rel: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read `{}`", dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = rel.join(e.file_name());
        if path.is_dir() {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o755);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, &rel, std::io::empty())?;
            add_tree(builder, &path, &rel)?;
        } else if path.is_file() {
            let data = std::fs::read(&path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            append(builder, &rel, &data)?;
        }
    }
    Ok(())
}

/// The chain IDs of an image's layers, from its diff IDs: the first is the first diff ID, each
/// next one `sha256(previous + " " + diff ID)` (what a layer store keys layers by).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!("sha256:{:x}", Sha256::digest(format!("{prev} {d}"))),
        };
        out.push(next);
    }
    out
}

/// How many of `diff_ids`' leading layers a host with `present` chains has.
pub fn layers_present(diff_ids: &[String], present: &HashSet<String>) -> usize {
    chain_ids(diff_ids)
        .iter()
        .take_while(|c| present.contains(*c))
        .count()
}

/// What shipping an image sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipReport {
    pub layers: usize,
    pub layers_sent: usize,
    pub bytes_sent: u64,
}

impl ShipReport {
    /// `sent 71.2 KiB: 1 of 17 layers (the remote had the others)`.
    pub fn text(&self) -> String {
        format!(
            "sent {:.1} KiB to the remote: {} of {} layers (it had the others)",
            self.bytes_sent as f64 / 1024.0,
            self.layers_sent,
            self.layers
        )
    }
}

/// Send `reference` from `local` to `remote`, without the layers `remote` has. `None` when
/// `local` does not have it either.
pub async fn ship_image(
    local: &Docker,
    remote: &Docker,
    reference: &str,
) -> Result<Option<ShipReport>> {
    let Ok(image) = local.inspect_image(reference).await else {
        return Ok(None);
    };
    let diff_ids = image
        .root_fs
        .as_ref()
        .and_then(|r| r.layers.clone())
        .unwrap_or_default();
    let present = remote_chains(remote).await?;
    let have = layers_present(&diff_ids, &present);
    // Which entries of the saved image hold which layer: its manifest, read from one save.
    let (manifest, links) = read_manifest(local.export_image(reference).boxed()).await?;
    let layer_paths: Vec<String> = manifest
        .first()
        .and_then(|m| m["Layers"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l.as_str().map(String::from))
        .collect();
    if layer_paths.len() != diff_ids.len() {
        anyhow::bail!(
            "the saved image `{reference}` lists {} layers, its configuration {}",
            layer_paths.len(),
            diff_ids.len()
        );
    }
    let skip = to_skip(&layer_paths, have, &links);
    let (body, sent) = filtered(local.export_image(reference).boxed(), skip);
    let options = bollard::query_parameters::ImportImageOptions {
        quiet: true,
        ..Default::default()
    };
    let mut results = remote.import_image_stream(options, body, None);
    while let Some(r) = results.next().await {
        let info = r.map_err(|e| anyhow::anyhow!("{}", super::root_message(&e)))?;
        if let Some(e) = info.error_detail.and_then(|d| d.message) {
            anyhow::bail!("the remote engine refused the image: {e}");
        }
    }
    let bytes_sent = sent.await.context("the image stream")??;
    Ok(Some(ShipReport {
        layers: diff_ids.len(),
        layers_sent: diff_ids.len() - have,
        bytes_sent,
    }))
}

/// Every layer chain the remote's images are made of.
async fn remote_chains(remote: &Docker) -> Result<HashSet<String>> {
    let images = remote
        .list_images(Some(bollard::query_parameters::ListImagesOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot list the remote's images: {}",
                super::root_message(&e)
            )
        })?;
    let inspected =
        futures_util::future::join_all(images.iter().map(|i| remote.inspect_image(i.id.as_str())))
            .await;
    let mut present = HashSet::new();
    for i in inspected.into_iter().flatten() {
        let layers = i.root_fs.and_then(|r| r.layers).unwrap_or_default();
        present.extend(chain_ids(&layers));
    }
    Ok(present)
}

type ByteStream = futures_util::stream::BoxStream<'static, Result<Bytes, bollard::errors::Error>>;

/// A blocking reader of a byte stream (for the `tar` crate, on a blocking thread).
struct StreamReader {
    handle: tokio::runtime::Handle,
    stream: ByteStream,
    buf: Bytes,
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(std::io::Error::other(super::root_message(&e))),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

/// A writer that hands its bytes to an async receiver, counting them.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    sent: u64,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the remote engine stopped reading"))?;
        self.sent += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The entries of a saved image to leave out when the receiver has its first `have` layers
/// (`layer_paths` in the manifest's order): a skipped layer's whole folder in the classic layout
/// (`<id>/layer.tar`, `<id>/json`, `<id>/VERSION`: a load reads only the manifest's files), the
/// blob alone in an OCI layout (its folder holds every blob); never one a later layer or a
/// kept link still needs.
pub fn to_skip(layer_paths: &[String], have: usize, links: &Links) -> Vec<String> {
    let have = have.min(layer_paths.len());
    let needed: HashSet<&String> = layer_paths[have..].iter().collect();
    layer_paths[..have]
        .iter()
        .filter(|p| !needed.contains(p))
        .map(|p| match p.strip_suffix("/layer.tar") {
            Some(dir) => format!("{dir}/"),
            None => p.clone(),
        })
        .filter(|s| {
            let one = std::slice::from_ref(s);
            !links
                .iter()
                .any(|(path, target)| !is_skipped(path, one) && is_skipped(target, one))
        })
        .collect()
}

/// Whether `path` is one of `skip`'s entries or inside one of its folders (`dir/`).
fn is_skipped(path: &str, skip: &[String]) -> bool {
    let dir = format!("{}/", path.trim_end_matches('/'));
    skip.iter()
        .any(|s| *s == path || *s == dir || (s.ends_with('/') && path.starts_with(s.as_str())))
}

/// The links of a saved image: (entry, the entry it points to).
type Links = Vec<(String, String)>;

/// The `manifest.json` of a saved image and its links (the rest is read past, not kept).
async fn read_manifest(stream: ByteStream) -> Result<(Vec<serde_json::Value>, Links)> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let reader = StreamReader {
            handle,
            stream,
            buf: Bytes::new(),
        };
        let mut archive = tar::Archive::new(reader);
        let mut manifest = None;
        let mut links = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().to_string();
            if let Some(target) = entry.link_name()? {
                // Relative to the link's folder (`../<id>/layer.tar`).
                let base = Path::new(&path).parent().unwrap_or(Path::new(""));
                let mut resolved = PathBuf::new();
                for c in base.join(&target).components() {
                    match c {
                        std::path::Component::ParentDir => {
                            resolved.pop();
                        }
                        std::path::Component::Normal(n) => resolved.push(n),
                        _ => {}
                    }
                }
                links.push((path, resolved.to_string_lossy().to_string()));
            } else if path == "manifest.json" {
                let mut text = String::new();
                entry.by_ref().take(16 << 20).read_to_string(&mut text)?;
                manifest = Some(serde_json::from_str(&text)?);
            }
        }
        match manifest {
            Some(m) => Ok((m, links)),
            None => anyhow::bail!("the saved image has no manifest.json"),
        }
    })
    .await?
}

/// The saved image without the entries in `skip`, as a stream; the task's result is the
/// number of bytes it produced.
fn filtered(
    stream: ByteStream,
    skip: Vec<String>,
) -> (
    impl Stream<Item = Result<Bytes, std::io::Error>>,
    tokio::task::JoinHandle<Result<u64>>,
) {
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::task::spawn_blocking(move || {
        let reader = StreamReader {
            handle,
            stream,
            buf: Bytes::new(),
        };
        let writer = std::io::BufWriter::with_capacity(
            256 << 10,
            ChannelWriter {
                tx: tx.clone(),
                sent: 0,
            },
        );
        let mut archive = tar::Archive::new(reader);
        let mut out = tar::Builder::new(writer);
        let result = (|| -> Result<u64> {
            for entry in archive.entries()? {
                let mut entry = entry?;
                let path = entry.path()?.to_string_lossy().to_string();
                if is_skipped(&path, &skip) {
                    continue;
                }
                let mut header = entry.header().clone();
                if let Some(link) = entry.link_name()? {
                    out.append_link(&mut header, &path, link)?;
                } else {
                    out.append_data(&mut header, &path, &mut entry)?;
                }
            }
            let writer = out.into_inner()?;
            let inner = writer
                .into_inner()
                .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
            Ok(inner.sent)
        })();
        if let Err(e) = &result {
            let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
        }
        result
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (body, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_layer_store_rule() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        assert_eq!(
            chains[1],
            format!("sha256:{:x}", Sha256::digest("sha256:aaaa sha256:bbbb"))
        );
        // Only a leading run counts: the same layer on another base is another chain.
        let present: HashSet<String> = chain_ids(&[b.clone(), a.clone()]).into_iter().collect();
        assert_eq!(layers_present(&[a.clone(), b.clone()], &present), 0);
        let present: HashSet<String> = chain_ids(std::slice::from_ref(&a)).into_iter().collect();
        assert_eq!(layers_present(&[a, b], &present), 1);
    }

    #[test]
    fn local_binds_become_volumes_whose_files_are_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, "global: {}\n").unwrap();
        let prov = dir.path().join("provisioning");
        std::fs::create_dir_all(prov.join("datasources")).unwrap();
        std::fs::write(prov.join("datasources/ds.yml"), "x: 1\n").unwrap();
        let body = ContainerCreateBody {
            host_config: Some(bollard::models::HostConfig {
                binds: Some(vec![
                    format!("{}:/etc/prometheus/prometheus.yml:ro", file.display()),
                    format!("{}:/etc/grafana/provisioning:ro", prov.display()),
                    "project_data:/prometheus:rw".into(),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (body, shipped) = without_binds(body);
        assert_eq!(
            body.host_config.unwrap().binds.unwrap(),
            vec!["project_data:/prometheus:rw".to_string()]
        );
        let mut volumes: Vec<String> = body.volumes.unwrap();
        volumes.sort();
        assert_eq!(volumes, ["/etc/grafana/provisioning", "/etc/prometheus"]);
        let archives = archives(&shipped).unwrap();
        let names = |data: &Vec<u8>| -> Vec<String> {
            tar::Archive::new(data.as_slice())
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect()
        };
        assert_eq!(names(&archives["/etc/prometheus"]), ["prometheus.yml"]);
        assert_eq!(
            names(&archives["/etc/grafana/provisioning"]),
            ["datasources", "datasources/ds.yml"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_saved_image_is_streamed_without_the_layers_to_skip() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, size) in [
            ("a/VERSION", 3),
            ("a/json", 10),
            ("a/layer.tar", 4096),
            ("b/layer.tar", 2048),
            ("blobs/sha256/c", 1024),
            ("blobs/sha256/d", 512),
            ("cfg.json", 20),
            ("manifest.json", 30),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(0o644);
            b.append_data(&mut h, name, vec![b'x'; size as usize].as_slice())
                .unwrap();
        }
        let saved = b.into_inner().unwrap();
        // In chunks, as the engine sends it.
        let chunks: Vec<Result<Bytes, bollard::errors::Error>> = saved
            .chunks(700)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let (body, sent) = filtered(
            futures_util::stream::iter(chunks).boxed(),
            vec!["a/".into(), "blobs/sha256/c".into()],
        );
        let out: Vec<u8> = body
            .map(|b| b.unwrap().to_vec())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(sent.await.unwrap().unwrap(), out.len() as u64);
        let names: Vec<String> = tar::Archive::new(out.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            ["b/layer.tar", "blobs/sha256/d", "cfg.json", "manifest.json"]
        );
        // Not JSON: an error, not a panic.
        let chunks: Vec<Result<Bytes, bollard::errors::Error>> =
            vec![Ok(Bytes::from(saved.clone()))];
        assert!(read_manifest(futures_util::stream::iter(chunks).boxed())
            .await
            .is_err());
        // A classic save: the manifest and a repeated layer's link, resolved.
        let mut b = tar::Builder::new(Vec::new());
        let manifest = br#"[{"Config":"c.json","Layers":["a/layer.tar","e/layer.tar"]}]"#;
        let mut h = tar::Header::new_gnu();
        h.set_size(manifest.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "manifest.json", &manifest[..])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o644);
        b.append_link(&mut h, "e/layer.tar", "../a/layer.tar")
            .unwrap();
        let chunks: Vec<Result<Bytes, bollard::errors::Error>> =
            vec![Ok(Bytes::from(b.into_inner().unwrap()))];
        let (m, links) = read_manifest(futures_util::stream::iter(chunks).boxed())
            .await
            .unwrap();
        assert_eq!(m[0]["Layers"][1], "e/layer.tar");
        assert_eq!(
            links,
            [("e/layer.tar".to_string(), "a/layer.tar".to_string())]
        );
        // The receiver has layer a only: a's folder would go, but e (sent) links into it.
        let paths = ["a/layer.tar".to_string(), "e/layer.tar".to_string()];
        assert!(to_skip(&paths, 1, &links).is_empty());
        assert_eq!(to_skip(&paths, 1, &vec![]), ["a/"]);
        // OCI layout: the blob, never the shared folder.
        let blobs = ["blobs/sha256/x".to_string(), "blobs/sha256/y".to_string()];
        assert_eq!(to_skip(&blobs, 1, &vec![]), ["blobs/sha256/x"]);
        assert_eq!(to_skip(&blobs, 5, &vec![]).len(), 2);
    }
}
