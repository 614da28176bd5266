//! `Range` headers against objects of any size.
#![no_main]
libfuzzer_sys::fuzz_target!(|input: (&str, u64)| {
    let _ = stowage_server::fuzzing::range(input.0, input.1);
});
