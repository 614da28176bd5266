//! What a component is, read from its bytes without compiling it: whether it is a component,
//! its top-level imports and exports, and so which Stowage world it implements.

use std::fmt;

use sha2::{Digest, Sha256};
use wasmparser::{Parser, Payload};

/// The version of the `stowage:storage` WIT package this host speaks.
pub const CONTRACT_VERSION: &str = "0.3.1";
/// The interface a driver exports.
pub const STORE_EXPORT: &str = "stowage:storage/store@0.3.1";
/// The interface a policy exports.
pub const POLICY_EXPORT: &str = "stowage:storage/policy-hooks@0.3.1";
/// The versions this host loads: those semver-compatible with [`CONTRACT_VERSION`] (for a 0.x
/// package, the same minor: 0.3.0 plugins load here, as wasmtime links them).
const COMPATIBLE: &str = "0.3.";

/// Whether `export` is `interface` (`stowage:storage/store@…`) at a version this host loads.
fn exports_compatible(export: &str, interface: &str) -> bool {
    let Some(version) = interface.split_once('@').and_then(|(name, _)| export.strip_prefix(name)) else {
        return false;
    };
    version
        .strip_prefix('@')
        .and_then(|v| v.strip_prefix(COMPATIBLE))
        .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
}

/// The Stowage worlds a plugin can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// Exports `store`.
    Driver,
    /// Exports `policy-hooks`.
    Policy,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            World::Driver => "driver",
            World::Policy => "policy",
        })
    }
}

/// What a plugin file declares.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Top-level import names.
    pub imports: Vec<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
    /// The world it implements, if any.
    pub world: Option<World>,
    /// Lowercase hex sha256 of the whole file.
    pub sha256: String,
}

impl Inspection {
    /// Why this is not a plugin for this host (when `world` is none): built against another
    /// version of the contract, or not a Stowage plugin at all.
    pub fn not_a_plugin(&self) -> String {
        let version = self
            .exports
            .iter()
            .find_map(|e| e.strip_prefix("stowage:storage/").and_then(|rest| rest.split_once('@')).map(|(_, v)| v));
        match version {
            Some(v) => format!(
                "it was built against the stowage:storage {v} contract, but this host speaks {CONTRACT_VERSION}: rebuild it against `stowage plugin wit`"
            ),
            None => "it exports neither stowage driver nor policy interfaces".to_string(),
        }
    }
}

/// Reads a component's imports and exports. Fails for core modules and malformed files.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, String> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    let mut is_component = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::Version { encoding, .. } if depth == 0 => {
                is_component = encoding == wasmparser::Encoding::Component;
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if !is_component {
        return Err("a core WebAssembly module, not a component (build for wasm32-wasip2)".into());
    }
    let world = if exports.iter().any(|e| exports_compatible(e, STORE_EXPORT)) {
        Some(World::Driver)
    } else if exports.iter().any(|e| exports_compatible(e, POLICY_EXPORT)) {
        Some(World::Policy)
    } else {
        None
    };
    Ok(Inspection { imports, exports, world, sha256: hex::encode(Sha256::digest(bytes)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_driver_is_a_driver() {
        let i = inspect(stowage_bundled::get("local-fs").unwrap()).unwrap();
        assert_eq!(i.world, Some(World::Driver));
        assert!(i.exports.iter().any(|e| e == STORE_EXPORT));
        assert!(i.imports.iter().any(|e| e.starts_with("wasi:filesystem/preopens")));
    }

    #[test]
    fn a_plugin_built_for_another_contract_version_is_told_so() {
        let i = Inspection {
            imports: vec![],
            exports: vec!["stowage:storage/store@0.1.0".into()],
            world: None,
            sha256: String::new(),
        };
        let why = i.not_a_plugin();
        assert!(why.contains("built against the stowage:storage 0.1.0 contract, but this host speaks 0.3.1"), "{why}");
        let i = Inspection { exports: vec!["wasi:cli/run@0.2.0".into()], ..i };
        assert_eq!(i.not_a_plugin(), "it exports neither stowage driver nor policy interfaces");
    }

    #[test]
    fn earlier_patch_versions_of_the_contract_are_compatible_and_other_minors_are_not() {
        assert!(exports_compatible("stowage:storage/store@0.3.0", STORE_EXPORT));
        assert!(exports_compatible("stowage:storage/store@0.3.1", STORE_EXPORT));
        assert!(exports_compatible("stowage:storage/policy-hooks@0.3.0", POLICY_EXPORT));
        for other in [
            "stowage:storage/store@0.2.0",
            "stowage:storage/store@0.4.0",
            "stowage:storage/store@0.3.x",
            "stowage:storage/store@0.3.",
            "stowage:storage/store",
            "stowage:storage/stores@0.3.0",
        ] {
            assert!(!exports_compatible(other, STORE_EXPORT), "{other}");
        }
    }

    #[test]
    fn core_modules_are_refused() {
        assert!(inspect(b"\0asm\x01\0\0\0").unwrap_err().contains("core WebAssembly module"));
        assert!(inspect(b"garbage").is_err());
    }
}
