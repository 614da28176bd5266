//! Object path rules shared by the Stowage host and its plugins.
//!
//! A path is relative and `/`-separated: `scratch/audit_123/data.csv`. Every layer checks it
//! (the host before a request reaches a policy or driver, each driver again before it touches
//! its backend), with the same rules and the same messages, so an escape attempt is refused
//! with a reason a user can act on.
//!
//! ```
//! use stowage_path::validate;
//! assert!(validate("submissions/VACS/2024/patient/data.csv").is_ok());
//! let err = validate("../etc/passwd").unwrap_err();
//! assert_eq!(err.to_string(), "path segment 1 is `..`: paths may not climb out of the disk");
//! ```

use std::fmt;

/// Longest accepted path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;

/// Longest accepted path segment, in bytes (the common file-name limit).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path is the empty string.
    Empty,
    /// Longer than [`MAX_PATH_BYTES`].
    TooLong(usize),
    /// Starts with `/`.
    Absolute,
    /// Contains a NUL or another control character, at this byte offset.
    ControlChar(usize),
    /// Contains a backslash, at this byte offset (a Windows separator on some backends).
    Backslash(usize),
    /// Segment N (1-based) is empty: `a//b` or a trailing `/`.
    EmptySegment(usize),
    /// Segment N is `.`.
    DotSegment(usize),
    /// Segment N is `..`.
    DotDotSegment(usize),
    /// Segment N is longer than [`MAX_SEGMENT_BYTES`].
    SegmentTooLong(usize),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => write!(f, "path is empty"),
            PathError::TooLong(n) => {
                write!(f, "path is {n} bytes long; the limit is {MAX_PATH_BYTES}")
            }
            PathError::Absolute => {
                write!(f, "path starts with `/`: paths are relative to the disk's root")
            }
            PathError::ControlChar(at) => {
                write!(f, "path has a NUL or control character at byte {at}")
            }
            PathError::Backslash(at) => write!(f, "path has a backslash at byte {at}: use `/`"),
            PathError::EmptySegment(n) => {
                write!(f, "path segment {n} is empty (`//` or a trailing `/`)")
            }
            PathError::DotSegment(n) => write!(f, "path segment {n} is `.`"),
            PathError::DotDotSegment(n) => {
                write!(f, "path segment {n} is `..`: paths may not climb out of the disk")
            }
            PathError::SegmentTooLong(n) => {
                write!(f, "path segment {n} is longer than {MAX_SEGMENT_BYTES} bytes")
            }
        }
    }
}

impl std::error::Error for PathError {}

/// Checks `path` against the path rules.
pub fn validate(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(path.len()));
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if let Some(at) = path.bytes().position(|b| b.is_ascii_control()) {
        return Err(PathError::ControlChar(at));
    }
    if let Some(at) = path.bytes().position(|b| b == b'\\') {
        return Err(PathError::Backslash(at));
    }
    for (i, segment) in path.split('/').enumerate() {
        let n = i + 1;
        match segment {
            "" => return Err(PathError::EmptySegment(n)),
            "." => return Err(PathError::DotSegment(n)),
            ".." => return Err(PathError::DotDotSegment(n)),
            s if s.len() > MAX_SEGMENT_BYTES => return Err(PathError::SegmentTooLong(n)),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a listing prefix: the empty string (everything) or a prefix of a valid path. A
/// prefix may end in `/` (a "directory") or in the middle of a segment.
pub fn validate_prefix(prefix: &str) -> Result<(), PathError> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.starts_with('/') {
        return Err(PathError::Absolute);
    }
    match prefix.strip_suffix('/') {
        Some(dir) => validate(dir),
        None => validate(prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in ["a", "a/b/c.csv", "scratch/audit_123/data.csv", "ünïcode/файл", "a..b", ".hidden"] {
            assert_eq!(validate(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn refuses_each_bad_form_with_its_reason() {
        assert_eq!(validate(""), Err(PathError::Empty));
        assert_eq!(validate("/etc/passwd"), Err(PathError::Absolute));
        assert_eq!(validate("a/../../b"), Err(PathError::DotDotSegment(2)));
        assert_eq!(validate(".."), Err(PathError::DotDotSegment(1)));
        assert_eq!(validate("a/./b"), Err(PathError::DotSegment(2)));
        assert_eq!(validate("a//b"), Err(PathError::EmptySegment(2)));
        assert_eq!(validate("a/"), Err(PathError::EmptySegment(2)));
        assert_eq!(validate("a\0b"), Err(PathError::ControlChar(1)));
        assert_eq!(validate("a\nb"), Err(PathError::ControlChar(1)));
        assert_eq!(validate("a\\b"), Err(PathError::Backslash(1)));
        assert_eq!(validate(&"x".repeat(256)), Err(PathError::SegmentTooLong(1)));
        let long = vec!["x"; 600].join("/");
        assert_eq!(validate(&long), Err(PathError::TooLong(long.len())));
    }

    #[test]
    fn prefixes_may_end_in_a_slash() {
        assert_eq!(validate_prefix(""), Ok(()));
        assert_eq!(validate_prefix("a/b/"), Ok(()));
        assert_eq!(validate_prefix("a/b"), Ok(()));
        assert_eq!(validate_prefix("../"), Err(PathError::DotDotSegment(1)));
        assert_eq!(validate_prefix("/"), Err(PathError::Absolute));
    }
}

/// Properties of the rules over generated paths (bounded: part of the normal test run).
#[cfg(test)]
mod properties {
    use std::path::{Component, Path, PathBuf};

    use proptest::prelude::*;

    use super::*;

    /// A segment the rules accept: any non-control, non-`/`, non-`\` characters, not `.`/`..`.
    fn segment() -> impl Strategy<Value = String> {
        "[^/\\\\\\x00-\\x1f\\x7f]{1,40}".prop_filter("dot segments", |s| s != "." && s != "..")
    }

    fn valid_path() -> impl Strategy<Value = String> {
        proptest::collection::vec(segment(), 1..8).prop_map(|s| s.join("/"))
    }

    /// `root` joined with `path`, `..` resolved lexically (as a driver that did no checks of
    /// its own would end up).
    fn resolve(root: &Path, path: &str) -> PathBuf {
        let mut out = root.to_path_buf();
        for c in Path::new(path).components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(n) => out.push(n),
                Component::RootDir => out = PathBuf::from("/"),
                Component::CurDir | Component::Prefix(_) => {}
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_input_gets_an_answer_and_an_accepted_one_stays_under_the_root(p in any::<String>()) {
            if validate(&p).is_ok() {
                let root = Path::new("/srv/disk");
                prop_assert!(resolve(root, &p).starts_with(root), "{p:?} escapes");
                prop_assert!(!p.bytes().any(|b| b.is_ascii_control() || b == b'\\'));
                prop_assert!(p.len() <= MAX_PATH_BYTES);
            }
        }

        #[test]
        fn generated_valid_paths_are_accepted_and_stay_under_the_root(p in valid_path()) {
            let accepted = validate(&p);
            prop_assert!(accepted.is_ok() || p.len() > MAX_PATH_BYTES || p.split('/').any(|s| s.len() > MAX_SEGMENT_BYTES), "{p:?}: {accepted:?}");
            if accepted.is_ok() {
                prop_assert!(resolve(Path::new("/srv/disk"), &p).starts_with("/srv/disk"));
                prop_assert_eq!(validate_prefix(&p), Ok(()));
                prop_assert_eq!(validate_prefix(&format!("{p}/")), Ok(()));
            }
        }

        #[test]
        fn one_bad_part_anywhere_is_refused_with_its_reason(
            segments in proptest::collection::vec("[a-z0-9._-]{1,12}".prop_filter("dot", |s| s != "." && s != ".."), 1..6),
            at in 0usize..6,
            bad in prop_oneof![Just(".."), Just("."), Just(""), Just("a\0b"), Just("a\nb"), Just("a\\b")],
        ) {
            let mut s = segments.clone();
            let at = at.min(s.len());
            s.insert(at, bad.to_string());
            let p = s.join("/");
            let n = at + 1;
            let got = validate(&p);
            let want_one_of = match bad {
                ".." => vec![PathError::DotDotSegment(n)],
                "." => vec![PathError::DotSegment(n)],
                // An empty first segment is a leading `/`.
                "" if at == 0 => vec![PathError::Absolute],
                "" => vec![PathError::EmptySegment(n)],
                "a\\b" => vec![PathError::Backslash(p.find('\\').unwrap_or(0))],
                _ => vec![PathError::ControlChar(p.bytes().position(|b| b.is_ascii_control()).unwrap_or(0))],
            };
            prop_assert!(got.as_ref().err().is_some_and(|e| want_one_of.contains(e)), "{p:?}: {got:?}, want {want_one_of:?}");
        }
    }
}
