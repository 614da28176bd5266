//! The plugin components bundled into the `stowage` binary, built by this crate's build script
//! from `plugins/*` for wasm32-wasip2. Bundled plugins are trusted because they are part of the
//! binary.
//!
//! ```
//! let bytes = stowage_bundled::get("local-fs").unwrap();
//! assert_eq!(&bytes[..4], b"\0asm");
//! ```

mod generated {
    include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
}

/// Names under which config files refer to bundled plugins (`plugin = "local-fs"`): the
/// config's list, which this crate builds.
pub use stowage_config::BUNDLED as NAMES;

/// The component bytes of the bundled plugin `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    match name {
        "local-fs" => Some(generated::STOWAGE_LOCAL_FS),
        "s3" => Some(generated::STOWAGE_S3),
        "remote" => Some(generated::STOWAGE_REMOTE),
        "role-policy" => Some(generated::STOWAGE_ROLE_POLICY),
        "phi-tracking" => Some(generated::STOWAGE_PHI_TRACKING),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_name_config_accepts_is_bundled() {
        for name in super::NAMES {
            let bytes = super::get(name).unwrap_or_else(|| panic!("`{name}` is a bundled name but not built"));
            assert_eq!(&bytes[..4], b"\0asm", "{name}");
        }
        assert!(super::get("no-such-plugin").is_none());
    }
}
