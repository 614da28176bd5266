//! `NAME:path` addresses: parsed or refused, and a parsed one prints back as it came.
#![no_main]
libfuzzer_sys::fuzz_target!(|s: &str| {
    if let Ok(a) = stowage_runtime::Address::parse(s) {
        assert_eq!(format!("{}:{}", a.name, a.path), s);
    }
});
