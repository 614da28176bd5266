//! Signed download URLs: whatever the path and query, none passes without the secret.
#![no_main]
libfuzzer_sys::fuzz_target!(|input: (&str, u64)| {
    assert!(!stowage_server::fuzzing::signed_url(b"a fuzzing secret, 32 bytes long!", input.0, input.1));
});
