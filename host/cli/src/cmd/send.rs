//! Streaming a local file into a storage writer, for `put` and `put -r`.

use std::io::Read;
use std::path::Path;

use bytes::BytesMut;
use stowage_runtime::{MAX_CHUNK, Upload};

use super::at;

/// Streams `input` (read from `file`) into `writer` a chunk at a time, counting on `bar`; on
/// any failure aborts the write (nothing is stored). Returns the writer, ready to finish.
pub(crate) async fn send(
    mut writer: Upload,
    input: &mut dyn Read,
    file: &Path,
    addr: &str,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Upload> {
    let mut buf = BytesMut::with_capacity(MAX_CHUNK);
    loop {
        buf.reserve(MAX_CHUNK);
        buf.resize(MAX_CHUNK, 0);
        let n = match read_full(input, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                anyhow::bail!("reading {}: {e}", file.display());
            }
        };
        if n == 0 {
            return Ok(writer);
        }
        buf.truncate(n);
        if let Err(e) = writer.write(buf.split().freeze()).await {
            let _ = writer.abort().await;
            return at(Err(e), addr);
        }
        bar.inc(n as u64);
    }
}

/// Fills `buf` as far as the input allows; returns the bytes read (0 at end of input).
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
