//! Config files: accepted, or refused with problems that name a place inside the text.
#![no_main]
use stowage_runtime::{ConfigSource, LoadedConfig};

libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Err(e) = LoadedConfig::parse(text, ConfigSource::File("f.toml".into()), ".".into()) {
        let lines = text.split('\n').count();
        for p in &e.problems {
            if let Some((line, _)) = p.at {
                assert!(line >= 1 && line <= lines);
            }
        }
    }
});
