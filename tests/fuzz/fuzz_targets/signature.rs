//! Plugin files and detached signatures: any bytes are read or refused, and none verify under
//! a key whose secret no one has.
#![no_main]
use stowage_runtime::plugin::signature;

libfuzzer_sys::fuzz_target!(|input: (&[u8], &[u8])| {
    let _ = signature::parse_payload(input.1);
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let _ = signature::verify(input.0, None, &[key]);
    let _ = signature::verify(input.0, Some(input.1), &[key]);
});
