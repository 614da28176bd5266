//! Where a plugin's component comes from: built into the binary, or a file.

use std::path::PathBuf;

/// Names under which config files refer to the plugins bundled into the binary
/// (`plugin = "local-fs"`). `stowage-bundled` builds and embeds exactly these (a test there
/// checks it has bytes for each).
pub const BUNDLED: &[&str] = &["local-fs", "s3", "remote", "role-policy", "phi-tracking"];

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// Built into the binary (trusted as part of it).
    Bundled(&'static str),
    /// A `.wasm` file on disk.
    File(PathBuf),
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Bundled(n) => write!(f, "`{n}` (bundled)"),
            PluginSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl PluginSource {
    /// A short name: the bundled name, or the file name without `.wasm`.
    pub fn name(&self) -> String {
        match self {
            PluginSource::Bundled(n) => n.to_string(),
            PluginSource::File(p) => {
                p.file_stem().map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into_owned())
            }
        }
    }
}
