//! Object path rules shared by the Stowage host and its plugins.
//!
//! A path is relative and `/`-separated: `scratch/audit_123/data.csv`. It is checked once,
//! where it enters: the host parses an address's path into an [`ObjectPath`] before any
//! policy or driver sees it, and the plugin SDK's export wrapper parses the string the host
//! sent before a driver's method runs. Past that point a path travels as an [`ObjectPath`],
//! which holds only a path that passed, so nothing re-checks it. The rules and messages are
//! the same on both sides, so an escape attempt is refused with a reason a user can act on.
//!
//! ```
//! use stowage_path::{ObjectPath, Prefix};
//! let path = ObjectPath::parse("submissions/VACS/2024/patient/data.csv").unwrap();
//! assert_eq!(path.as_str(), "submissions/VACS/2024/patient/data.csv");
//! let err = ObjectPath::parse("../etc/passwd").unwrap_err();
//! assert_eq!(err.to_string(), "path segment 1 is `..`: paths may not climb out of the disk");
//! // A listing prefix may be empty or end in `/`; it is not an object path.
//! assert!(Prefix::parse("submissions/").is_ok());
//! assert!(ObjectPath::parse("submissions/").is_err());
//! ```

use std::fmt;
use std::ops::Deref;

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

/// An object path that passed the rules ([`validate`]). Made only by [`ObjectPath::parse`]
/// or `TryFrom<String>`, so holding one means the path was checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectPath(String);

/// A listing prefix that passed the rules ([`validate_prefix`]): empty (everything) or a
/// prefix of a valid path, which may end in `/` or in the middle of a segment. Made only by
/// [`Prefix::parse`], `TryFrom<String>` or [`Prefix::all`].
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// The empty prefix: every object.
    pub fn all() -> Prefix {
        Prefix(String::new())
    }
}

/// What both checked types share: made by `parse` / `TryFrom<String>` through their rule, and
/// read as text (`as_str`, `into_string`, `Display`, `AsRef<str>`, `Deref<Target = str>`,
/// `From<_> for String`, comparison with `str`). Every view is read-only, so the check holds.
macro_rules! checked_text {
    ($ty:ident, $rule:ident) => {
        impl $ty {
            #[doc = concat!("Checks `text` with [`", stringify!($rule), "`] and keeps a copy of it.")]
            pub fn parse(text: &str) -> Result<$ty, PathError> {
                $rule(text)?;
                Ok($ty(text.to_string()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The text as an owned string (for the wire, or a message that carries it).
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = PathError;

            /// Checks `text` and keeps it, without copying.
            fn try_from(text: String) -> Result<$ty, PathError> {
                $rule(&text)?;
                Ok($ty(text))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $ty {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl From<$ty> for String {
            fn from(checked: $ty) -> String {
                checked.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

checked_text!(ObjectPath, validate);
checked_text!(Prefix, validate_prefix);

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
    fn an_object_path_holds_only_what_the_rules_accept() {
        let path = ObjectPath::parse("a/b/c.csv").unwrap();
        assert_eq!(path.as_str(), "a/b/c.csv");
        assert_eq!(path.to_string(), "a/b/c.csv");
        assert_eq!(path, "a/b/c.csv");
        assert_eq!(&*path, "a/b/c.csv");
        assert_eq!(ObjectPath::try_from("a/b/c.csv".to_string()), Ok(path.clone()));
        assert_eq!(String::from(path.clone()), "a/b/c.csv");
        assert_eq!(path.into_string(), "a/b/c.csv");
        assert_eq!(ObjectPath::parse("../x"), Err(PathError::DotDotSegment(1)));
        assert_eq!(ObjectPath::try_from("a/".to_string()), Err(PathError::EmptySegment(2)));
        assert_eq!(ObjectPath::parse(""), Err(PathError::Empty));
    }

    #[test]
    fn a_prefix_may_be_empty_or_end_in_a_slash_and_nothing_else_changes() {
        assert_eq!(Prefix::parse(""), Ok(Prefix::all()));
        assert_eq!(Prefix::all(), Prefix::default());
        assert!(Prefix::all().is_empty());
        assert_eq!(Prefix::parse("a/b/").unwrap(), "a/b/");
        assert_eq!(Prefix::try_from("a/b".to_string()).unwrap().into_string(), "a/b");
        assert_eq!(Prefix::parse("../"), Err(PathError::DotDotSegment(1)));
        assert_eq!(Prefix::try_from("/".to_string()), Err(PathError::Absolute));
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
        fn the_checked_types_accept_exactly_what_the_rules_accept_and_keep_it_unchanged(p in any::<String>()) {
            prop_assert_eq!(ObjectPath::parse(&p).map(ObjectPath::into_string), validate(&p).map(|()| p.clone()));
            prop_assert_eq!(ObjectPath::try_from(p.clone()).map(String::from), validate(&p).map(|()| p.clone()));
            prop_assert_eq!(Prefix::parse(&p).map(Prefix::into_string), validate_prefix(&p).map(|()| p.clone()));
            prop_assert_eq!(Prefix::try_from(p.clone()).map(String::from), validate_prefix(&p).map(|()| p.clone()));
        }

        #[test]
        fn a_generated_valid_path_is_an_object_path_and_a_prefix(p in valid_path()) {
            if let Ok(path) = ObjectPath::parse(&p) {
                prop_assert_eq!(path.as_str(), p.as_str());
                prop_assert_eq!(Prefix::parse(&p).map(Prefix::into_string), Ok(p.clone()));
                prop_assert_eq!(Prefix::parse(&format!("{path}/")).map(Prefix::into_string), Ok(format!("{p}/")));
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
