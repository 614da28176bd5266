//! The path rules: any input gets an answer; an accepted path never climbs out of its root.
#![no_main]
libfuzzer_sys::fuzz_target!(|p: &str| {
    if stowage_path::validate(p).is_ok() {
        assert!(!p.starts_with('/') && !p.split('/').any(|s| s == ".." || s == "." || s.is_empty()), "{p:?}");
    }
    let _ = stowage_path::validate_prefix(p);
});
