//! Many operations at once through one host handle.

use std::sync::Arc;

use bytes::Bytes;
use stowage_runtime::{Address, ConfigSource, LoadedConfig, Request, Storage, WriteOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_puts_and_gets() {
    let dir = tempfile::tempdir().unwrap();
    let config = LoadedConfig::parse(
        stowage_runtime::config::EMBEDDED_DEFAULT,
        ConfigSource::Embedded,
        dir.path().to_path_buf(),
    )
    .unwrap();
    let storage = Arc::new(Storage::start(&config).unwrap());
    let tasks: Vec<_> = (0..32u64)
        .map(|i| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let data: Vec<u8> = (0..(64 * 1024 + i * 4099)).map(|j| (j * 31 + i) as u8).collect();
                let addr = Address::parse(&format!("scratch:c/{i}.bin")).unwrap();
                let req = Request::new();
                let mut w = storage.writer(&addr, &req, &WriteOptions::default()).await.unwrap();
                for chunk in data.chunks(10_000) {
                    w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
                    tokio::task::yield_now().await;
                }
                let info = w.finish().await.unwrap();
                assert_eq!(info.size, data.len() as u64);
                let mut r = storage.reader(&addr, &req, None).await.unwrap();
                let mut back = Vec::new();
                while let Some(c) = r.next_chunk(8192).await.unwrap() {
                    back.extend_from_slice(&c);
                    tokio::task::yield_now().await;
                }
                assert!(back == data, "object {i} read back wrong");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let page = storage.list(&Address::parse("default:c/").unwrap(), &Request::new(), None, 1000).await.unwrap();
    assert_eq!(page.items.len(), 32);
}
