//! The contract's error in words, for messages, logs and ledger records.
//!
//! wit-bindgen gives the WIT `error` variant a `Display` that prints its `Debug` form
//! (`NotFound("a/b")`), and has no option to leave it out, so a second `Display` would
//! conflict. [`Describe`] is the readable one:
//!
//! ```text
//! use stowage_plugin_sdk::Describe;
//! log(Level::Warn, &format!("could not discard the upload: {}", Describe(&e)));
//! // could not discard the upload: unavailable: the services host did not answer
//! ```

use std::fmt;

/// Shows a contract error (of the driver or the policy world) as `not found: PATH`,
/// `already exists: PATH`, `denied: REASON`, `invalid path: WHY`, `invalid range: WHY`,
/// `unsupported: OPERATION`, `unavailable: REASON` or `i/o error: MESSAGE`.
pub struct Describe<'a, E>(pub &'a E);

/// `Display` for `Describe` of one world's error type (each world's bindings have their own).
macro_rules! describe {
    ($error:path) => {
        impl fmt::Display for Describe<'_, $error> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                use $error as Error;
                match self.0 {
                    Error::NotFound(p) => write!(f, "not found: {p}"),
                    Error::AlreadyExists(p) => write!(f, "already exists: {p}"),
                    Error::Denied(r) => write!(f, "denied: {r}"),
                    Error::InvalidPath(r) => write!(f, "invalid path: {r}"),
                    Error::InvalidRange(r) => write!(f, "invalid range: {r}"),
                    Error::Unsupported(r) => write!(f, "unsupported: {r}"),
                    Error::Unavailable(u) => write!(f, "unavailable: {}", u.reason),
                    Error::Io(r) => write!(f, "i/o error: {r}"),
                }
            }
        }
    };
}

describe!(crate::driver::stowage::storage::types::Error);
describe!(crate::policy::stowage::storage::types::Error);

#[cfg(test)]
mod tests {
    use super::Describe;
    use crate::driver::stowage::storage::types::{Error, Unavailable};
    use crate::policy::stowage::storage::types as policy;

    #[test]
    fn every_kind_reads_as_its_name_and_what_it_carries() {
        let table = [
            (Error::NotFound("a/b".into()), "not found: a/b"),
            (Error::AlreadyExists("a/b".into()), "already exists: a/b"),
            (Error::Denied("no".into()), "denied: no"),
            (Error::InvalidPath("empty segment".into()), "invalid path: empty segment"),
            (Error::InvalidRange("past the end".into()), "invalid range: past the end"),
            (Error::Unsupported("url".into()), "unsupported: url"),
            (Error::Unavailable(Unavailable { reason: "busy".into(), retryable: true }), "unavailable: busy"),
            (Error::Io("disk full".into()), "i/o error: disk full"),
        ];
        for (e, words) in table {
            assert_eq!(Describe(&e).to_string(), words);
        }
        // The policy world's error reads the same.
        assert_eq!(Describe(&policy::Error::Denied("no".into())).to_string(), "denied: no");
        assert_eq!(
            Describe(&policy::Error::Unavailable(policy::Unavailable { reason: "busy".into(), retryable: false }))
                .to_string(),
            "unavailable: busy"
        );
    }
}
