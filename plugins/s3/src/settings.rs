//! The driver's config, read once per instance.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `endpoint` | the S3 server's origin, e.g. `https://s3.example.org` (grant the same one) | required |
//! | `bucket` | the bucket | required |
//! | `region` | the signing region | `us-east-1` |
//! | `prefix` | a key prefix under which every object lives | none |
//! | `path_style` | path-style addressing, `true` or `false` (`true` for most self-hosted servers) | `true` |
//! | `access_key_id`, `secret_access_key` | credentials; use env references | required |
//! | `part_size_mib` | multipart part size (5 to 1024) and the largest single PUT | `8` |
//! | `max_attempts` | attempts per request, with the SDK's backoff (1 to 10) | `3` |

use stowage_plugin_sdk::driver::stowage::storage::types::Error;
use stowage_plugin_sdk::settings::driver_config;

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

impl Settings {
    pub fn load() -> Result<Settings, Error> {
        let config = driver_config("s3 driver");
        let part_mib = config.number("part_size_mib", 8, 0..=u64::MAX)?;
        if !(MIN_PART_MIB..=MAX_PART_MIB).contains(&part_mib) {
            return Err(config.error(
                "part_size_mib",
                &format!("must be {MIN_PART_MIB} (S3's smallest part) to {MAX_PART_MIB}; the plugin's memory_mib must hold about two parts"),
            )
            .into());
        }
        let mut prefix = config.text("prefix").unwrap_or_default();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Settings {
            endpoint: config.required("endpoint", "the S3 server's origin")?,
            bucket: config.required("bucket", "the bucket")?,
            region: config.text("region").unwrap_or_else(|| "us-east-1".into()),
            prefix,
            path_style: config.boolean("path_style", true)?,
            access_key_id: config.required("access_key_id", "use an env reference")?,
            secret_access_key: config.required("secret_access_key", "use an env reference")?,
            part_size: usize::try_from(part_mib << 20).map_err(|_| config.error("part_size_mib", "is too large"))?,
            max_attempts: u32::try_from(config.number("max_attempts", 3, 1..=10)?).unwrap_or(3),
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
