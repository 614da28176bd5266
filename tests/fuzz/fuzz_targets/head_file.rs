//! The ledger's head file, which anyone who can write the ledger's directory can rewrite.
#![no_main]
libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = stowage_ledger::fuzzing::head_file(bytes);
});
