//! Plugin signatures: ed25519 over the sha256 of the component, carried in a custom section.
//!
//! The shape follows the WebAssembly tool-conventions signatures proposal (as wasmsign2 does):
//! the last section of the file is a custom section named `signature` whose payload is
//!
//! ```text
//! spec version (u8 = 1) | content type (u8 = 1: wasm) | hash function (u8 = 1: sha256)
//! signed-hash count (varuint32 = 1)
//!   hash count (varuint32 = 1) | sha256 of every byte before this section (32 bytes)
//!   signature count (varuint32)
//!     key id (varuint32 length + bytes) | signature (varuint32 length + 64 bytes)
//! ```
//!
//! Each signature is ed25519 over `"wasmsig" | spec version | content type | hash function |
//! hash`. Because the hash covers every byte before the section and the section must be last,
//! changing any byte, or appending anything (even another custom section), breaks it. A
//! detached signature (`FILE.wasm.sig`) holds the same payload and covers the whole file.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::keys::key_id;

/// Name of the custom section that carries signatures.
pub const SECTION_NAME: &str = "signature";
const SPEC_VERSION: u8 = 1;
const CONTENT_WASM: u8 = 1;
const HASH_SHA256: u8 = 1;
const DOMAIN: &[u8] = b"wasmsig";

/// Why a plugin's signature does not verify. Each names the exact reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The file is not a complete WebAssembly binary (cut short, or not wasm at all).
    #[error("not a complete WebAssembly file: {0}")]
    Malformed(String),
    /// No signature section and no detached signature.
    #[error("unsigned: no `signature` section and no detached .sig file")]
    Unsigned,
    /// A signature section exists, but more content follows it.
    #[error("content was appended after the signature (the signature section must be last)")]
    ContentAfterSignature,
    /// The signature section itself cannot be read.
    #[error("the signature section is malformed: {0}")]
    BadSection(String),
    /// The bytes do not hash to what was signed.
    #[error("the component was modified after signing (its sha256 no longer matches the signed hash)")]
    Modified,
    /// None of the signatures is by a trusted key.
    #[error("signed only by untrusted key(s) {0}; trust one of them in [trust] keys")]
    UntrustedKey(String),
    /// A signature by a trusted key does not verify.
    #[error("the signature by key {0} does not verify (the signature was altered)")]
    BadSignature(String),
}

/// One signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureEntry {
    /// The signer's key id (hex).
    pub key_id: String,
    /// The ed25519 signature bytes.
    pub signature: Vec<u8>,
}

/// A parsed signature payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureSet {
    /// The signed sha256.
    pub hash: [u8; 32],
    /// The signatures over it.
    pub signatures: Vec<SignatureEntry>,
}

/// Where a file's signed content ends and what signs it.
pub struct Signed<'a> {
    /// The bytes the signatures cover.
    pub content: &'a [u8],
    /// The signatures, if any.
    pub set: Option<SignatureSet>,
}

/// One top-level section: id, and byte range of the whole section (header included).
#[derive(Debug, Clone, Copy)]
struct Section {
    id: u8,
    start: usize,
    payload: usize,
    end: usize,
}

fn read_leb(bytes: &[u8], pos: &mut usize) -> Result<u32, String> {
    let mut result: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*pos).ok_or("unexpected end of file inside a length")?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(result).map_err(|_| "length too large".to_string());
        }
    }
    Err("length encoding too long".into())
}

fn write_leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The top-level sections of a module or component.
fn sections(bytes: &[u8]) -> Result<Vec<Section>, SignatureError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(SignatureError::Malformed("missing the \\0asm header".into()));
    }
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < bytes.len() {
        let start = pos;
        let id = bytes[pos];
        pos += 1;
        let len = read_leb(bytes, &mut pos).map_err(SignatureError::Malformed)? as usize;
        let end = pos.checked_add(len).filter(|e| *e <= bytes.len()).ok_or_else(|| {
            SignatureError::Malformed(format!("section at byte {start} runs past the end of the file (truncated?)"))
        })?;
        out.push(Section { id, start, payload: pos, end });
        pos = end;
    }
    Ok(out)
}

/// The name of a custom section and where its data starts.
fn custom_name<'a>(bytes: &'a [u8], s: &Section) -> Option<(&'a str, usize)> {
    if s.id != 0 {
        return None;
    }
    let mut pos = s.payload;
    let len = read_leb(bytes, &mut pos).ok()? as usize;
    let name = std::str::from_utf8(bytes.get(pos..pos.checked_add(len)?)?).ok()?;
    Some((name, pos + len))
}

/// Splits `bytes` into signed content and its embedded signature set.
pub fn split(bytes: &[u8]) -> Result<Signed<'_>, SignatureError> {
    let all = sections(bytes)?;
    let sig_positions: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, s)| custom_name(bytes, s).is_some_and(|(n, _)| n == SECTION_NAME))
        .map(|(i, _)| i)
        .collect();
    match sig_positions.last() {
        None => Ok(Signed { content: bytes, set: None }),
        Some(&i) if i + 1 != all.len() => Err(SignatureError::ContentAfterSignature),
        Some(&i) => {
            let s = all[i];
            let (_, data) =
                custom_name(bytes, &s).ok_or_else(|| SignatureError::BadSection("unreadable name".into()))?;
            Ok(Signed { content: &bytes[..s.start], set: Some(parse_payload(&bytes[data..s.end])?) })
        }
    }
}

/// Parses a signature payload (the section's data, or a detached .sig file).
pub fn parse_payload(p: &[u8]) -> Result<SignatureSet, SignatureError> {
    let bad = |m: &str| SignatureError::BadSection(m.to_string());
    let mut pos = 3;
    if p.len() < 3 || p[0] != SPEC_VERSION || p[1] != CONTENT_WASM || p[2] != HASH_SHA256 {
        return Err(bad("unknown version, content type or hash function"));
    }
    let leb = |pos: &mut usize| read_leb(p, pos).map_err(SignatureError::BadSection);
    if leb(&mut pos)? != 1 || leb(&mut pos)? != 1 {
        return Err(bad("expected exactly one signed sha256 hash"));
    }
    let hash: [u8; 32] = p.get(pos..pos + 32).and_then(|h| h.try_into().ok()).ok_or_else(|| bad("hash cut short"))?;
    pos += 32;
    let count = leb(&mut pos)?;
    let mut signatures = Vec::new();
    for _ in 0..count {
        let klen = leb(&mut pos)? as usize;
        let key = p.get(pos..pos + klen).ok_or_else(|| bad("key id cut short"))?;
        pos += klen;
        let slen = leb(&mut pos)? as usize;
        let sig = p.get(pos..pos + slen).ok_or_else(|| bad("signature cut short"))?;
        pos += slen;
        signatures.push(SignatureEntry { key_id: hex::encode(key), signature: sig.to_vec() });
    }
    if pos != p.len() {
        return Err(bad("trailing bytes after the signatures"));
    }
    Ok(SignatureSet { hash, signatures })
}

fn encode_payload(set: &SignatureSet) -> Vec<u8> {
    let mut p = vec![SPEC_VERSION, CONTENT_WASM, HASH_SHA256];
    write_leb(&mut p, 1);
    write_leb(&mut p, 1);
    p.extend_from_slice(&set.hash);
    write_leb(&mut p, set.signatures.len() as u32);
    for s in &set.signatures {
        let key = hex::decode(&s.key_id).unwrap_or_default();
        write_leb(&mut p, key.len() as u32);
        p.extend_from_slice(&key);
        write_leb(&mut p, s.signature.len() as u32);
        p.extend_from_slice(&s.signature);
    }
    p
}

fn message(hash: &[u8; 32]) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(&[SPEC_VERSION, CONTENT_WASM, HASH_SHA256]);
    m.extend_from_slice(hash);
    m
}

/// Signs `bytes` with `key`: returns the file with a signature section appended (or, if it is
/// already signed, with this signature added to its section).
pub fn sign(bytes: &[u8], key: &SigningKey) -> Result<Vec<u8>, SignatureError> {
    let signed = split(bytes)?;
    let hash: [u8; 32] = Sha256::digest(signed.content).into();
    let mut set = match signed.set {
        Some(set) if set.hash == hash => set,
        Some(_) => return Err(SignatureError::Modified),
        None => SignatureSet { hash, signatures: Vec::new() },
    };
    let id = key_id(&key.verifying_key());
    set.signatures.retain(|s| s.key_id != id);
    set.signatures.push(SignatureEntry { key_id: id, signature: key.sign(&message(&hash)).to_bytes().to_vec() });
    let payload = encode_payload(&set);
    let mut data = Vec::new();
    write_leb(&mut data, SECTION_NAME.len() as u32);
    data.extend_from_slice(SECTION_NAME.as_bytes());
    data.extend_from_slice(&payload);
    let mut out = signed.content.to_vec();
    out.push(0);
    write_leb(&mut out, data.len() as u32);
    out.extend_from_slice(&data);
    Ok(out)
}

/// A detached signature for the whole of `bytes`.
pub fn sign_detached(bytes: &[u8], key: &SigningKey) -> Vec<u8> {
    let hash: [u8; 32] = Sha256::digest(bytes).into();
    let id = key_id(&key.verifying_key());
    encode_payload(&SignatureSet {
        hash,
        signatures: vec![SignatureEntry { key_id: id, signature: key.sign(&message(&hash)).to_bytes().to_vec() }],
    })
}

/// Verifies `bytes` (with an optional detached signature) against `trusted` keys; returns the
/// ids of every trusted key whose signature verifies (at least one).
pub fn verify(bytes: &[u8], detached: Option<&[u8]>, trusted: &[VerifyingKey]) -> Result<Vec<String>, SignatureError> {
    let signed = split(bytes)?;
    let (content, set) = match (signed.set, detached) {
        (Some(set), _) => (signed.content, set),
        (None, Some(sig)) => (bytes, parse_payload(sig)?),
        (None, None) => return Err(SignatureError::Unsigned),
    };
    let hash: [u8; 32] = Sha256::digest(content).into();
    if hash != set.hash {
        return Err(SignatureError::Modified);
    }
    // Every entry is checked: a junk entry naming a trusted key cannot hide a valid one.
    let mut valid = Vec::new();
    let mut bad = None;
    let mut untrusted = Vec::new();
    for entry in &set.signatures {
        let Some(key) = trusted.iter().find(|k| key_id(k) == entry.key_id) else {
            untrusted.push(entry.key_id.clone());
            continue;
        };
        let ok = Signature::from_slice(&entry.signature).is_ok_and(|sig| key.verify(&message(&set.hash), &sig).is_ok());
        if ok {
            valid.push(entry.key_id.clone());
        } else {
            bad.get_or_insert_with(|| entry.key_id.clone());
        }
    }
    match (valid.is_empty(), bad, untrusted.is_empty()) {
        (false, _, _) => Ok(valid),
        (true, Some(id), _) => Err(SignatureError::BadSignature(id)),
        (true, None, false) => Err(SignatureError::UntrustedKey(untrusted.join(", "))),
        (true, None, true) => Err(SignatureError::Unsigned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A minimal valid module with one custom section, so there is content to sign.
    fn module() -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[0, 5, 4, b'n', b'o', b't', b'e']);
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type section: one func type
        m
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn sign_then_verify_and_every_tamper_has_its_reason() {
        let k = key(1);
        let signed = sign(&module(), &k).unwrap();
        let trusted = [k.verifying_key()];
        assert_eq!(verify(&signed, None, &trusted), Ok(vec![key_id(&k.verifying_key())]));

        let mut flipped = signed.clone();
        flipped[18] ^= 1; // inside the type section
        assert_eq!(verify(&flipped, None, &trusted), Err(SignatureError::Modified));

        let mut sig_flipped = signed.clone();
        let last = sig_flipped.len() - 1;
        sig_flipped[last] ^= 1;
        assert_eq!(verify(&sig_flipped, None, &trusted), Err(SignatureError::BadSignature(key_id(&k.verifying_key()))));

        let mut appended = signed.clone();
        appended.extend_from_slice(&[0, 3, 2, b'x', b'y']);
        assert_eq!(verify(&appended, None, &trusted), Err(SignatureError::ContentAfterSignature));

        assert!(matches!(verify(&signed, None, &[key(2).verifying_key()]), Err(SignatureError::UntrustedKey(_))));
        assert_eq!(verify(&module(), None, &trusted), Err(SignatureError::Unsigned));
        assert!(matches!(verify(&signed[..signed.len() - 10], None, &trusted), Err(SignatureError::Malformed(_))));
    }

    #[test]
    fn a_second_signer_adds_to_the_section_and_detached_signatures_work() {
        let (a, b) = (key(1), key(2));
        let twice = sign(&sign(&module(), &a).unwrap(), &b).unwrap();
        assert_eq!(verify(&twice, None, &[b.verifying_key()]), Ok(vec![key_id(&b.verifying_key())]));
        assert_eq!(verify(&twice, None, &[a.verifying_key(), b.verifying_key()]).unwrap().len(), 2);
        assert_eq!(verify(&twice, None, &[a.verifying_key()]), Ok(vec![key_id(&a.verifying_key())]));
        let sig = sign_detached(&module(), &a);
        assert_eq!(verify(&module(), Some(&sig), &[a.verifying_key()]), Ok(vec![key_id(&a.verifying_key())]));
        let mut changed = module();
        changed[12] ^= 1;
        assert_eq!(verify(&changed, Some(&sig), &[a.verifying_key()]), Err(SignatureError::Modified));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn a_payload_reads_back_as_written(hash in any::<[u8; 32]>(), entries in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..80)), 0..4)) {
                let set = SignatureSet {
                    hash,
                    signatures: entries.into_iter().map(|(k, s)| SignatureEntry { key_id: hex::encode(k), signature: s }).collect(),
                };
                prop_assert_eq!(parse_payload(&encode_payload(&set)), Ok(set));
            }

            #[test]
            fn any_bytes_are_a_payload_or_an_error(p in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse_payload(&p);
                let mut file = b"\0asm\x01\0\0\0".to_vec();
                file.extend_from_slice(&p);
                let _ = verify(&file, Some(&p), &[key(1).verifying_key()]);
            }

            #[test]
            fn any_changed_byte_of_a_signed_plugin_is_refused(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
                let k = key(1);
                let signed = sign(&module(), &k).unwrap();
                let at = at.index(signed.len());
                prop_assume!(signed[at] != byte);
                let mut changed = signed.clone();
                changed[at] = byte;
                prop_assert!(verify(&changed, None, &[k.verifying_key()]).is_err(), "byte {at} set to {byte} still verifies");
            }
        }
    }
}
