//! Reading a plugin's config values (`[disks.NAME] config = { ... }`, `[[policies]] config =
//! { ... }`), with one message style for every plugin: `WHO config `KEY` must be ...`. The host
//! hands values over as strings; this parses them once, at load, so a typo fails with its key
//! and what it should be.
//!
//! A driver returns the [`ConfigError`] from its operations (as an `io` error). A policy has
//! no error to return from its hooks: it reads its config in `interests`, the host's first
//! call (made when the host starts), and [`refuse`]s a bad value, so the host does not start
//! and says why.
//!
//! ```text
//! let config = policy_config("my-policy policy");
//! let within = config.number("within_secs", 7200, 0..=86_400).unwrap_or_else(|e| refuse(&e));
//! ```

use std::ops::RangeInclusive;

use crate::driver::stowage::storage::types::Error;

/// A config value that is missing or unusable: `WHO config `KEY` WHY`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Io(e.0)
    }
}

/// A plugin's config values under the name its messages use (e.g. `s3 driver`).
pub struct ConfigReader<F> {
    who: &'static str,
    get: F,
}

/// The config of this driver instance, named `who` in messages.
pub fn driver_config(who: &'static str) -> ConfigReader<fn(&str) -> Option<String>> {
    ConfigReader::new(who, crate::driver::stowage::storage::config::get)
}

/// The config of this policy instance, named `who` in messages.
pub fn policy_config(who: &'static str) -> ConfigReader<fn(&str) -> Option<String>> {
    ConfigReader::new(who, crate::policy::stowage::storage::config::get)
}

/// Stops a policy whose config is unusable: logs `e` as an error and traps. Called from
/// `interests`, it keeps the host from starting, and the host's refusal quotes `e` (the last
/// error the policy logged). A policy's hooks have no error to return, hence the trap.
pub fn refuse(e: &ConfigError) -> ! {
    use crate::policy::stowage::storage::log::{Level, log};
    log(Level::Error, &e.0);
    std::process::abort()
}

impl<F: Fn(&str) -> Option<String>> ConfigReader<F> {
    /// Values from `get`, named `who` in messages.
    pub fn new(who: &'static str, get: F) -> ConfigReader<F> {
        ConfigReader { who, get }
    }

    /// The error for `key`: `WHO config `KEY` WHY`.
    pub fn error(&self, key: &str, why: &str) -> ConfigError {
        ConfigError(format!("{} config `{key}` {why}", self.who))
    }

    /// `key`'s value, trimmed; none if it is missing or blank.
    pub fn text(&self, key: &str) -> Option<String> {
        (self.get)(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// `key`'s value, which must be there; `what` says what it is, for the message.
    pub fn required(&self, key: &str, what: &str) -> Result<String, ConfigError> {
        self.text(key).ok_or_else(|| self.error(key, &format!("is required ({what})")))
    }

    /// A whole number in `range`, `default` when missing.
    pub fn number(&self, key: &str, default: u64, range: RangeInclusive<u64>) -> Result<u64, ConfigError> {
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
    pub fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.text(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(self.error(key, &format!("must be true or false, not `{v}`"))),
        }
    }

    /// A list: `a,b` or a TOML array; empty when missing.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.list_or(key, "")
    }

    /// A list, `default` (written the same way) when the key is missing; a key given with an
    /// empty value is an empty list.
    pub fn list_or(&self, key: &str, default: &str) -> Vec<String> {
        crate::config_list(&(self.get)(key).unwrap_or_else(|| default.to_string()))
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

    fn message(e: ConfigError) -> String {
        e.to_string()
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
        assert_eq!(r.list_or("missing", "x, y"), vec!["x".to_string(), "y".to_string()]);
        assert!(r.list_or("blank", "x").is_empty(), "a key given empty is an empty list");
        assert_eq!(r.list_or("l", "x"), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn a_driver_returns_a_config_error_as_an_io_error() {
        let r = reader(&[]);
        let e: Error = r.required("bucket", "the bucket").unwrap_err().into();
        assert!(matches!(&e, Error::Io(m) if m == "test driver config `bucket` is required (the bucket)"), "{e:?}");
    }
}
