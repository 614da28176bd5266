//! Checkpoint files (signed notes): any text is checkpoints or an error, and none verifies
//! under a key made here.
#![no_main]
use stowage_ledger::note::SignerKey;

libfuzzer_sys::fuzz_target!(|text: &str| {
    let _ = stowage_ledger::Checkpoint::parse_text(text);
    if let Ok(key) = SignerKey::generate("fuzz") {
        assert!(stowage_ledger::parse_checkpoints(text, &[key.verifier()]).map_or(true, |c| c.is_empty()));
    }
});
