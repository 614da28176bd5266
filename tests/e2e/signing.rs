//! Signed plugins: keys, signatures, fail-closed loading, pins, the compiled-code cache.

use std::path::Path;

use crate::{run_in, stderr, stdout};

/// A directory with a key pair `k`, a second key `other`, and the local-fs component as
/// `good.wasm` (signed by `k`) and `unsigned.wasm`.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in ["k", "other"] {
        let o = run_in(d, &["plugin", "keygen", "--out", name]);
        assert!(o.status.success(), "keygen: {}", stderr(&o));
        assert!(stdout(&o).contains("key id "), "{}", stdout(&o));
    }
    let bytes = stowage_bundled::get("local-fs").unwrap();
    std::fs::write(d.join("unsigned.wasm"), bytes).unwrap();
    std::fs::write(d.join("good.wasm"), bytes).unwrap();
    let o = run_in(d, &["plugin", "sign", "--key", "k.key", "good.wasm"]);
    assert!(o.status.success(), "sign: {}", stderr(&o));
    dir
}

fn key_id(d: &Path) -> String {
    let o = run_in(d, &["plugin", "verify", "--trust", "k.pub", "good.wasm"]);
    assert!(o.status.success(), "verify: {}", stderr(&o));
    stdout(&o).trim().rsplit(' ').next().unwrap().to_string()
}

/// Writes variants of good.wasm that must each fail, with the reason each must give.
fn bad_variants(d: &Path) -> Vec<(&'static str, &'static str)> {
    let good = std::fs::read(d.join("good.wasm")).unwrap();
    let mut code = good.clone();
    code[good.len() / 3] ^= 0x01;
    std::fs::write(d.join("flipped-code.wasm"), code).unwrap();
    let mut sig = good.clone();
    let last = sig.len() - 1;
    sig[last] ^= 0x01;
    std::fs::write(d.join("flipped-signature.wasm"), sig).unwrap();
    let mut appended = good.clone();
    appended.extend_from_slice(&[0, 6, 5, b'e', b'x', b't', b'r', b'a']);
    std::fs::write(d.join("appended.wasm"), appended).unwrap();
    std::fs::write(d.join("truncated.wasm"), &good[..good.len() - 40]).unwrap();
    std::fs::write(d.join("wrong-key.wasm"), stowage_bundled::get("local-fs").unwrap()).unwrap();
    let o = run_in(d, &["plugin", "sign", "--key", "other.key", "wrong-key.wasm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    vec![
        ("flipped-code.wasm", "modified after signing"),
        ("flipped-signature.wasm", "does not verify"),
        ("appended.wasm", "appended after the signature"),
        ("wrong-key.wasm", "untrusted key"),
        ("unsigned.wasm", "unsigned"),
        ("truncated.wasm", "not a complete WebAssembly file"),
    ]
}

#[test]
fn verify_names_the_signer_or_the_exact_reason() {
    let dir = setup();
    let d = dir.path();
    let id = key_id(d);
    assert_eq!(id.len(), 16);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(d.join("k.key")).unwrap().permissions().mode() & 0o777, 0o600);
    for (file, reason) in bad_variants(d) {
        let o = run_in(d, &["plugin", "verify", "--trust", "k.pub", file]);
        assert_eq!(o.status.code(), Some(4), "{file}: {}", stderr(&o));
        assert!(stderr(&o).contains(reason), "{file}: expected {reason:?} in {}", stderr(&o));
    }
    // A detached signature works for an untouched file.
    let o = run_in(d, &["plugin", "sign", "--detached", "--key", "k.key", "unsigned.wasm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(d, &["plugin", "verify", "--trust", "k.pub", "unsigned.wasm"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run_in(d, &["plugin", "inspect", "--capabilities", "good.wasm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "world: driver",
        "export: stowage:storage/store@0.3.1",
        "export: stowage:storage/resumable@0.3.1",
        "import: wasi:filesystem/preopens@0.2",
        &format!("signature: key {id} (embedded)"),
        "capabilities: range-reads, create-only",
    ] {
        assert!(out.contains(want), "inspect lacks {want:?}: {out}");
    }
}

fn config(d: &Path, plugin: &str, extra: &str) -> String {
    let text = format!(
        "role = \"testing\"\n[trust]\nkeys = [\"k.pub\"]\n{extra}\n[disks.files]\nplugin = \"{plugin}\"\ngrant = {{ dir = \"data\" }}\n[storage]\ndefault = \"files\"\n"
    );
    std::fs::write(d.join("c.toml"), text).unwrap();
    "c.toml".into()
}

#[test]
fn the_host_starts_only_with_verified_plugins() {
    let dir = setup();
    let d = dir.path();
    for (file, reason) in bad_variants(d) {
        let c = config(d, &format!("./{file}"), "");
        let o = run_in(d, &["--config", &c, "ls", "default:"]);
        assert!(!o.status.success(), "{file} was loaded");
        let err = stderr(&o);
        assert!(err.contains(file) && err.contains(reason), "{file}: {err}");
        assert!(!d.join("data").exists() || std::fs::read_dir(d.join("data")).unwrap().next().is_none());
    }
    let c = config(d, "./good.wasm", "");
    std::fs::write(d.join("x.txt"), "x").unwrap();
    let o = run_in(d, &["--config", &c, "put", "default:x.txt", "x.txt"]);
    assert!(o.status.success(), "good plugin refused: {}", stderr(&o));

    // A policy component where a driver is expected is refused, even when signed.
    std::fs::copy(stowage_tests::fixture("test_policy"), d.join("policy.wasm")).unwrap();
    assert!(run_in(d, &["plugin", "sign", "--key", "k.key", "policy.wasm"]).status.success());
    let c = config(d, "./policy.wasm", "");
    let o = run_in(d, &["--config", &c, "ls", "default:"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("it is a policy plugin, but a driver is expected here"), "{}", stderr(&o));
}

#[test]
fn pins_and_allow_unsigned() {
    let dir = setup();
    let d = dir.path();
    let id = key_id(d);
    let sha = stowage_tests::sha256_file(&d.join("good.wasm"));
    let pinned = |pin: &str| {
        let c = config(d, "./good.wasm", "");
        let text =
            std::fs::read_to_string(d.join(&c)).unwrap().replace("grant =", &format!("pin = {{ {pin} }}\ngrant ="));
        std::fs::write(d.join(&c), text).unwrap();
        run_in(d, &["--config", &c, "ls", "default:"])
    };
    assert!(pinned(&format!("sha256 = \"{sha}\", key_id = \"{id}\"")).status.success());
    let o = pinned(&format!("sha256 = \"{}\"", "0".repeat(64)));
    assert!(!o.status.success() && stderr(&o).contains("pin mismatch: config pins sha256"), "{}", stderr(&o));
    let o = pinned("key_id = \"0123456789abcdef\"");
    assert!(
        !o.status.success() && stderr(&o).contains("pin mismatch: config pins key 0123456789abcdef"),
        "{}",
        stderr(&o)
    );

    let c = config(d, "./unsigned.wasm", "allow_unsigned = true");
    let o = run_in(d, &["--config", &c, "ls", "default:"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("UNSIGNED PLUGIN FILES WILL RUN"), "no loud warning: {}", stderr(&o));
    let text = std::fs::read_to_string(d.join(&c)).unwrap().replace("role = \"testing\"", "role = \"services\"");
    std::fs::write(d.join(&c), text).unwrap();
    let o = run_in(d, &["--config", &c, "ls", "default:"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("c.toml:4:") && stderr(&o).contains("refused on role `services`"), "{}", stderr(&o));
}

#[test]
fn second_start_loads_compiled_code_from_the_cache_and_rejects_a_corrupted_entry() {
    let dir = setup();
    let d = dir.path();
    let cache = d.join("cache");
    let c = config(d, "./good.wasm", "");
    let start = || {
        crate::stowage()
            .current_dir(d)
            .env("STOWAGE_CACHE_DIR", &cache)
            .env("STOWAGE_LOG", "info")
            .args(["--config", &c, "ls", "default:"])
            .output()
            .unwrap()
    };
    let first = stderr(&start());
    assert!(first.contains("compiling plugin"), "{first}");
    let second = stderr(&start());
    assert!(second.contains("loaded compiled plugin from cache"), "{second}");
    assert!(!second.contains("compiling plugin"), "compiled again: {second}");

    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let mut bytes = std::fs::read(&path).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let o = start();
    let third = stderr(&o);
    assert!(o.status.success(), "{third}");
    assert!(third.contains("cache entry rejected") && third.contains("compiling plugin"), "{third}");
    let fourth = stderr(&start());
    assert!(fourth.contains("loaded compiled plugin from cache"), "the rejected entry was not replaced: {fourth}");
}
