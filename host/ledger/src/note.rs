//! Signed notes (C2SP `signed-note`, the format of Go's `golang.org/x/mod/sumdb/note`) with
//! Ed25519 keys: the envelope of a checkpoint.
//!
//! ```text
//! <text: one or more lines, each ending in \n>
//!
//! — <key name> <base64(key id (4 bytes) || signature (64 bytes))>
//! ```
//!
//! A key's id is the first 4 bytes of `SHA-256(name || "\n" || 0x01 || public key)`. Keys are
//! written as `<name>+<id hex>+<base64(0x01 || public key)>` (a verifier key) and
//! `PRIVATE+KEY+<name>+<id hex>+<base64(0x01 || seed)>` (a signer key), so standard tooling
//! reads them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type byte of Ed25519 keys.
const ED25519: u8 = 0x01;
/// Starts every signature line (an em dash and a space).
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key or note is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The key text is not a key of this format.
    #[error("not a signed-note key: {0}")]
    BadKey(String),
    /// The note is malformed.
    #[error("not a signed note: {0}")]
    Malformed(String),
    /// No signature on the note is by a trusted key, or a signature by a trusted key is wrong.
    #[error("{0}")]
    Unverified(String),
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NoteError::BadKey(format!("key name `{name}` must be non-empty, without spaces or `+`")));
    }
    Ok(())
}

/// A key that signs notes.
pub struct SignerKey {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("SignerKey").field("name", &self.name).finish_non_exhaustive()
    }
}

impl SignerKey {
    /// A new random key named `name`.
    pub fn generate(name: &str) -> Result<SignerKey, NoteError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| NoteError::BadKey(format!("no randomness for a key: {e}")))?;
        Ok(SignerKey { name: name.to_string(), key: SigningKey::from_bytes(&seed) })
    }

    /// Parses `PRIVATE+KEY+<name>+<id>+<base64>`.
    pub fn parse(text: &str) -> Result<SignerKey, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::BadKey("a signer key starts with PRIVATE+KEY+".into()))?;
        let (name, bytes) = split_key(rest)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| NoteError::BadKey("an Ed25519 seed is 32 bytes".into()))?;
        let key = SigningKey::from_bytes(&seed);
        let signer = SignerKey { name, key };
        if format!("{:08x}", signer.id()) != rest.split('+').nth(1).unwrap_or_default() {
            return Err(NoteError::BadKey("the key id does not match the key".into()));
        }
        Ok(signer)
    }

    /// The key as text (keep it secret).
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id(), B64.encode(bytes))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's id.
    pub fn id(&self) -> u32 {
        key_id(&self.name, self.key.verifying_key().as_bytes())
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), key: self.key.verifying_key() }
    }

    /// Signs `text` (every line ending in `\n`): the whole note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut blob = self.id().to_be_bytes().to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob)))
    }
}

/// A key that verifies notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key: VerifyingKey,
}

fn split_key(rest: &str) -> Result<(String, Vec<u8>), NoteError> {
    // The key itself is standard base64, which may hold `+`.
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("expected <name>+<id>+<key>".into()));
    };
    check_name(name)?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::BadKey("the key id is 8 hex digits".into()));
    }
    let bytes = B64.decode(b64).map_err(|_| NoteError::BadKey("the key is not base64".into()))?;
    match bytes.split_first() {
        Some((&ED25519, key)) => Ok((name.to_string(), key.to_vec())),
        _ => Err(NoteError::BadKey("only Ed25519 keys (type 0x01) are supported".into())),
    }
}

impl VerifierKey {
    /// Parses `<name>+<id>+<base64>`.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let text = text.trim();
        let (name, bytes) = split_key(text)?;
        let public: [u8; 32] =
            bytes.try_into().map_err(|_| NoteError::BadKey("an Ed25519 public key is 32 bytes".into()))?;
        let key =
            VerifyingKey::from_bytes(&public).map_err(|_| NoteError::BadKey("not an Ed25519 public key".into()))?;
        let verifier = VerifierKey { name, key };
        if format!("{:08x}", verifier.id()) != text.split('+').nth(1).unwrap_or_default() {
            return Err(NoteError::BadKey("the key id does not match the key".into()));
        }
        Ok(verifier)
    }

    /// The key as text.
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id(), B64.encode(bytes))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's id.
    pub fn id(&self) -> u32 {
        key_id(&self.name, self.key.as_bytes())
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') || text.contains("\n\n") || text.starts_with('\n') {
        return Err(NoteError::Malformed("a note's text is non-empty lines, each ending in a newline".into()));
    }
    Ok(())
}

/// A note as read: its text and signature lines (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, every line ending in `\n`.
    pub text: String,
    /// (key name, key id, signature) of each signature line.
    pub signatures: Vec<(String, u32, Vec<u8>)>,
}

impl Note {
    /// Parses one note: text, a blank line, signature lines.
    pub fn parse(note: &str) -> Result<Note, NoteError> {
        let (text, sigs) = note
            .split_once("\n\n")
            .ok_or_else(|| NoteError::Malformed("no blank line between the text and its signatures".into()))?;
        let text = format!("{text}\n");
        check_text(&text)?;
        let mut signatures = Vec::new();
        for line in sigs.lines() {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| NoteError::Malformed(format!("`{line}` is not a signature line")))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| NoteError::Malformed("a signature line is `— name signature`".into()))?;
            let blob = B64.decode(b64).map_err(|_| NoteError::Malformed("a signature is not base64".into()))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("a signature is too short".into()));
            }
            let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            signatures.push((name.to_string(), id, blob[4..].to_vec()));
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("the note has no signature".into()));
        }
        Ok(Note { text, signatures })
    }

    /// The text, if a key of `trusted` signed it (and every signature by a trusted key is
    /// valid).
    pub fn verify(&self, trusted: &[VerifierKey]) -> Result<&str, NoteError> {
        let mut verified = false;
        for (name, id, sig) in &self.signatures {
            let Some(key) = trusted.iter().find(|k| k.name == *name && k.id() == *id) else { continue };
            let sig = ed25519_dalek::Signature::from_slice(sig)
                .map_err(|_| NoteError::Unverified(format!("the signature by `{name}` is not an Ed25519 signature")))?;
            key.key.verify_strict(self.text.as_bytes(), &sig).map_err(|_| {
                NoteError::Unverified(format!(
                    "the signature by `{name}` does not match the text (the note was changed)"
                ))
            })?;
            verified = true;
        }
        if verified {
            Ok(&self.text)
        } else {
            let names: Vec<String> = self.signatures.iter().map(|(n, id, _)| format!("{n}+{id:08x}")).collect();
            Err(NoteError::Unverified(format!("signed by {}, none of them a trusted key", names.join(", "))))
        }
    }
}

/// Splits text holding several notes (each followed by a blank line) into notes.
pub fn split_notes(text: &str) -> Vec<&str> {
    let mut notes = Vec::new();
    let mut rest = text.trim_start_matches('\n');
    while !rest.is_empty() {
        // A note ends after its signature lines: the first blank line after the one that
        // separates its text from its signatures.
        let Some(sep) = rest.find("\n\n") else {
            notes.push(rest);
            break;
        };
        let after_sigs = rest[sep + 2..].find("\n\n").map(|i| sep + 2 + i + 1);
        match after_sigs {
            Some(end) => {
                notes.push(&rest[..end]);
                rest = rest[end..].trim_start_matches('\n');
            }
            None => {
                notes.push(rest);
                break;
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_a_signed_note_verifies_only_unchanged_and_only_with_its_key() {
        let signer = SignerKey::generate("stowage-ledger").unwrap();
        let again = SignerKey::parse(&signer.to_text()).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
        let verifier = VerifierKey::parse(&signer.verifier().to_text()).unwrap();
        let note = signer.sign("origin\n12\nroot\n").unwrap();
        assert!(note.contains("\n\n\u{2014} stowage-ledger "), "{note}");
        let parsed = Note::parse(&note).unwrap();
        assert_eq!(parsed.verify(std::slice::from_ref(&verifier)).unwrap(), "origin\n12\nroot\n");
        let changed = Note::parse(&note.replace("12", "13")).unwrap();
        assert!(changed.verify(std::slice::from_ref(&verifier)).unwrap_err().to_string().contains("does not match"));
        let other = SignerKey::generate("stowage-ledger").unwrap().verifier();
        assert!(parsed.verify(&[other]).unwrap_err().to_string().contains("none of them a trusted key"));
        assert!(VerifierKey::parse(&verifier.to_text().replace("+", "-")).is_err());
        // A key whose id was altered is refused.
        let text = verifier.to_text();
        let mut parts: Vec<&str> = text.split('+').collect();
        parts[1] = "00000000";
        assert!(VerifierKey::parse(&parts.join("+")).is_err());
    }

    #[test]
    fn several_notes_in_one_file_split_apart() {
        let signer = SignerKey::generate("k").unwrap();
        let a = signer.sign("a\n1\n").unwrap();
        let b = signer.sign("b\n2\n").unwrap();
        let file = format!("{a}\n{b}\n");
        let notes = split_notes(&file);
        assert_eq!(notes.len(), 2);
        assert_eq!(Note::parse(notes[0]).unwrap().text, "a\n1\n");
        assert_eq!(Note::parse(notes[1]).unwrap().text, "b\n2\n");
    }
}
