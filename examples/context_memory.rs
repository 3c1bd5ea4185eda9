//! Peak memory of sending a build context, for `bench/context-memory` (which runs this under
//! `/usr/bin/time -v`): hash the context as `irisctl up` does, then stream it as it goes to the
//! engine, reading and dropping each chunk.
//!
//!     context_memory DIR              # the streaming path `irisctl up` takes
//!     context_memory DIR --in-memory  # the whole archive in one buffer (the old path), to compare

use std::path::PathBuf;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use irisctl::engine::context::{context_digest, context_stream, context_tar};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: context_memory DIR [--in-memory]")?,
    );
    if args.next().as_deref() == Some("--in-memory") {
        let tar = context_tar(&dir, "Dockerfile")?;
        println!("in-memory archive: {} bytes", tar.len());
        return Ok(());
    }
    let digest = context_digest(&dir, "Dockerfile")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sent = runtime.block_on(async {
        let (stream, task) = context_stream(&dir, "Dockerfile");
        let mut stream = std::pin::pin!(stream);
        let mut sent = 0u64;
        while let Some(chunk) = stream.next().await {
            sent += chunk?.len() as u64;
        }
        task.await??;
        anyhow::Ok(sent)
    })?;
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!("hashed (sha256 {hex}) and streamed {sent} bytes");
    Ok(())
}
