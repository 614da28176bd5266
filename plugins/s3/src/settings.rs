//! The driver's config, read once per instance.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `endpoint` | the S3 server's origin, e.g. `https://s3.example.org` (grant the same one) | required |
//! | `bucket` | the bucket | required |
//! | `region` | the signing region | `us-east-1` |
//! | `prefix` | a key prefix under which every object lives | none |
//! | `path_style` | path-style addressing (`true` for most self-hosted servers) | `true` |
//! | `access_key_id`, `secret_access_key` | credentials; use env references | required |
//! | `part_size_mib` | multipart part size (5 to 1024) and the largest single PUT | `8` |
//! | `max_attempts` | attempts per request, with the SDK's backoff | `3` |

use stowage_plugin_sdk::driver::stowage::storage::config;
use stowage_plugin_sdk::driver::stowage::storage::types::Error;

/// The smallest part S3 accepts (except the last).
const MIN_PART_MIB: u64 = 5;
/// The largest part size accepted: a part sits in the plugin's memory.
const MAX_PART_MIB: u64 = 1024;

pub struct Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub part_size: usize,
    pub max_attempts: u32,
}

fn required(key: &str) -> Result<String, Error> {
    config::get(key)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Error::Io(format!("the s3 driver needs `{key}` in its config")))
}

fn number(key: &str, default: u64) -> Result<u64, Error> {
    match config::get(key) {
        None => Ok(default),
        Some(v) => {
            v.trim().parse().map_err(|_| Error::Io(format!("s3 config `{key}` must be a whole number, not `{v}`")))
        }
    }
}

impl Settings {
    pub fn load() -> Result<Settings, Error> {
        let part_mib = number("part_size_mib", 8)?;
        if !(MIN_PART_MIB..=MAX_PART_MIB).contains(&part_mib) {
            return Err(Error::Io(format!(
                "s3 config `part_size_mib` must be {MIN_PART_MIB} (S3's smallest part) to {MAX_PART_MIB}; the plugin's memory_mib must hold about two parts"
            )));
        }
        let mut prefix = config::get("prefix").unwrap_or_default();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Settings {
            endpoint: required("endpoint")?,
            bucket: required("bucket")?,
            region: config::get("region").unwrap_or_else(|| "us-east-1".into()),
            prefix,
            path_style: config::get("path_style").is_none_or(|v| v != "false"),
            access_key_id: required("access_key_id")?,
            secret_access_key: required("secret_access_key")?,
            part_size: usize::try_from(part_mib << 20)
                .map_err(|_| Error::Io("s3 config `part_size_mib` is too large".into()))?,
            max_attempts: u32::try_from(number("max_attempts", 3)?.clamp(1, 10)).unwrap_or(3),
        })
    }

    /// The object key of a (checked) object path.
    pub fn key(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// The object path of a key under the prefix.
    pub fn path<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())
    }
}
