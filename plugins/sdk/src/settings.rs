//! Reading a plugin's config values (`[disks.NAME] config = { ... }`), with one message style for
//! every plugin: `WHO config `KEY` must be ...`. The host hands values over as strings; this
//! parses them once, at load, so a typo fails with its key and what it should be.

use std::ops::RangeInclusive;

use crate::driver::stowage::storage::types::Error;

/// A plugin's config values under the name its messages use (e.g. `s3 driver`).
pub struct ConfigReader<F> {
    who: &'static str,
    get: F,
}

/// The config of this driver instance, named `who` in messages.
pub fn driver_config(who: &'static str) -> ConfigReader<fn(&str) -> Option<String>> {
    ConfigReader::new(who, crate::driver::stowage::storage::config::get)
}

impl<F: Fn(&str) -> Option<String>> ConfigReader<F> {
    /// Values from `get`, named `who` in messages.
    pub fn new(who: &'static str, get: F) -> ConfigReader<F> {
        ConfigReader { who, get }
    }

    /// The error for `key`: `WHO config `KEY` WHY`.
    pub fn error(&self, key: &str, why: &str) -> Error {
        Error::Io(format!("{} config `{key}` {why}", self.who))
    }

    /// `key`'s value, trimmed; none if it is missing or blank.
    pub fn text(&self, key: &str) -> Option<String> {
        (self.get)(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// `key`'s value, which must be there; `what` says what it is, for the message.
    pub fn required(&self, key: &str, what: &str) -> Result<String, Error> {
        self.text(key).ok_or_else(|| self.error(key, &format!("is required ({what})")))
    }

    /// A whole number in `range`, `default` when missing.
    pub fn number(&self, key: &str, default: u64, range: RangeInclusive<u64>) -> Result<u64, Error> {
        let value = match self.text(key) {
            None => default,
            Some(v) => v.parse().map_err(|_| self.error(key, &format!("must be a whole number, not `{v}`")))?,
        };
        if !range.contains(&value) {
            return Err(self.error(key, &format!("must be {} to {}, not {value}", range.start(), range.end())));
        }
        Ok(value)
    }

    /// `true` or `false` (any case), `default` when missing.
    pub fn boolean(&self, key: &str, default: bool) -> Result<bool, Error> {
        match self.text(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(self.error(key, &format!("must be true or false, not `{v}`"))),
        }
    }

    /// A list: `a,b` or a TOML array; empty when missing.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.text(key).map(|v| crate::config_list(&v)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(pairs: &'static [(&'static str, &'static str)]) -> ConfigReader<impl Fn(&str) -> Option<String>> {
        ConfigReader::new("test driver", move |key: &str| {
            pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
        })
    }

    fn message(e: Error) -> String {
        match e {
            Error::Io(m) => m,
            other => panic!("not an io error: {other:?}"),
        }
    }

    #[test]
    fn each_kind_of_value_is_read_or_refused_with_its_key() {
        let r = reader(&[
            ("n", " 12 "),
            ("big", "99"),
            ("word", "lots"),
            ("yes", "TRUE"),
            ("no", "false"),
            ("maybe", "yes"),
            ("blank", "  "),
            ("l", "[\"a\", b]"),
        ]);
        assert_eq!(r.number("n", 1, 1..=20).unwrap(), 12);
        assert_eq!(r.number("missing", 7, 1..=20).unwrap(), 7);
        assert_eq!(
            message(r.number("big", 1, 1..=20).unwrap_err()),
            "test driver config `big` must be 1 to 20, not 99"
        );
        assert_eq!(
            message(r.number("word", 1, 1..=20).unwrap_err()),
            "test driver config `word` must be a whole number, not `lots`"
        );
        assert!(r.boolean("yes", false).unwrap());
        assert!(!r.boolean("no", true).unwrap());
        assert!(r.boolean("missing", true).unwrap());
        assert_eq!(
            message(r.boolean("maybe", false).unwrap_err()),
            "test driver config `maybe` must be true or false, not `yes`"
        );
        assert_eq!(r.text("blank"), None);
        assert_eq!(
            message(r.required("blank", "the bucket").unwrap_err()),
            "test driver config `blank` is required (the bucket)"
        );
        assert_eq!(r.required("n", "x").unwrap(), "12");
        assert_eq!(r.list("l"), vec!["a".to_string(), "b".to_string()]);
        assert!(r.list("missing").is_empty());
    }
}
