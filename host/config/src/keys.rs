//! ed25519 signing keys for plugins: generating, storing and reading them.
//!
//! A secret key file (`NAME.key`, mode 0600) holds `stowage-ed25519-secret <hex seed>`; a public
//! key file (`NAME.pub`) holds `ed25519:<hex>`, the same form config accepts inline. A key's id
//! is the first 8 bytes of the sha256 of the public key, in hex.

use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const SECRET_TAG: &str = "stowage-ed25519-secret ";
const PUBLIC_TAG: &str = "ed25519:";

/// Why a key could not be made, read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The text is not a key of the expected kind.
    #[error("{0}")]
    Malformed(String),
    /// No randomness could be had for a new key.
    #[error("cannot get random bytes for a new key: {0}")]
    Random(String),
}

/// The id of a public key: hex of the first 8 bytes of its sha256.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// A fresh signing key.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `NAME.key` (mode 0600, refusing to overwrite) and `NAME.pub`; returns the key id.
pub fn write_pair(name: &Path, key: &SigningKey) -> Result<String, KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let secret = name.with_extension("key");
    let public = name.with_extension("pub");
    let file_err = |path: &Path| {
        let path = path.display().to_string();
        move |error| KeyError::File { path, error }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .map_err(file_err(&secret))?;
    writeln!(f, "{SECRET_TAG}{}", hex::encode(key.to_bytes())).map_err(file_err(&secret))?;
    f.sync_all().map_err(file_err(&secret))?;
    std::fs::write(&public, format!("{}\n", public_text(&key.verifying_key()))).map_err(file_err(&public))?;
    Ok(key_id(&key.verifying_key()))
}

/// `ed25519:<hex>`: how public keys are written in files and in config.
pub fn public_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_TAG}{}", hex::encode(key.as_bytes()))
}

/// Reads a secret key file written by [`write_pair`].
pub fn read_secret(path: &Path) -> Result<SigningKey, KeyError> {
    let text =
        std::fs::read_to_string(path).map_err(|error| KeyError::File { path: path.display().to_string(), error })?;
    let hex_seed = text
        .trim()
        .strip_prefix(SECRET_TAG)
        .ok_or_else(|| KeyError::Malformed(format!("{} is not a stowage secret key file", path.display())))?;
    let seed: [u8; 32] = hex::decode(hex_seed)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyError::Malformed(format!("{}: the key is not 32 hex-encoded bytes", path.display())))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Parses `ed25519:<hex>`.
pub fn parse_public(text: &str) -> Result<VerifyingKey, KeyError> {
    // Never echo the text: it may be a secret key given by mistake.
    if text.trim().starts_with(SECRET_TAG.trim()) {
        return Err(KeyError::Malformed("this is a SECRET key file; give the .pub file instead".into()));
    }
    let hex_key = text
        .trim()
        .strip_prefix(PUBLIC_TAG)
        .ok_or_else(|| KeyError::Malformed("not a public key: expected ed25519:<64 hex digits>".into()))?;
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyError::Malformed("an ed25519 public key is 32 hex-encoded bytes".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError::Malformed(format!("not a valid ed25519 public key: {e}")))
}

/// Reads a public key file, or parses an inline `ed25519:<hex>` value.
pub fn read_public(file_or_inline: &str, base_dir: &Path) -> Result<VerifyingKey, KeyError> {
    if file_or_inline.trim().starts_with(PUBLIC_TAG) {
        return parse_public(file_or_inline);
    }
    let path = base_dir.join(file_or_inline);
    let text =
        std::fs::read_to_string(&path).map_err(|error| KeyError::File { path: path.display().to_string(), error })?;
    parse_public(&text).map_err(|e| KeyError::Malformed(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_round_trips_through_files_and_secret_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = generate().unwrap();
        let id = write_pair(&dir.path().join("release"), &key).unwrap();
        assert_eq!(id.len(), 16);
        let mode = std::fs::metadata(dir.path().join("release.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = read_secret(&dir.path().join("release.key")).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        let public = read_public("release.pub", dir.path()).unwrap();
        assert_eq!(public, key.verifying_key());
        assert_eq!(key_id(&public), id);
        assert!(write_pair(&dir.path().join("release"), &key).is_err(), "never overwrites a key");
        assert!(parse_public("ed25519:abcd").is_err());
        assert!(parse_public("rsa:00").is_err());
    }
}
