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

/// Names under which config files refer to bundled plugins (`plugin = "local-fs"`).
pub const NAMES: &[&str] = &["local-fs", "s3", "remote", "role-policy", "phi-tracking"];

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
