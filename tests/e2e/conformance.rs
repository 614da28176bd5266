//! The bundled local-fs driver passes the whole conformance suite.

use stowage_runtime::{Limits, PluginEngine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fs_passes_the_conformance_suite() {
    let root = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new().unwrap();
    let disk = stowage_tests::local_disk(&engine, "local", root.path(), Limits::default());
    let report = stowage_conformance::run(&disk, "suite").await;
    let lines = report.lines();
    println!("{}", lines.join("\n"));
    assert_eq!(report.failed(), 0, "{}", lines.join("\n"));
    // local-fs declares every optional capability it needs: nothing may be skipped.
    assert_eq!(report.passed(), stowage_conformance::checks().len(), "{}", lines.join("\n"));
}
