//! The aws-sdk-s3 client, speaking wasi:http through the host (which only lets it reach the
//! granted endpoint), built once per instance.

use std::sync::OnceLock;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_smithy_wasm::wasi::{WasiHttpClientBuilder, WasiSleep};
use stowage_plugin_sdk::driver::stowage::storage::types::Error;

use crate::settings::Settings;

pub struct S3 {
    pub client: Client,
    pub settings: Settings,
}

/// The instance's client, or why it cannot be built (bad config).
pub fn s3() -> Result<&'static S3, Error> {
    static S3: OnceLock<Result<S3, Error>> = OnceLock::new();
    S3.get_or_init(|| {
        let settings = Settings::load()?;
        let credentials =
            Credentials::new(&settings.access_key_id, &settings.secret_access_key, None, None, "stowage-config");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .endpoint_url(&settings.endpoint)
            .force_path_style(settings.path_style)
            .credentials_provider(credentials)
            .http_client(WasiHttpClientBuilder::new().build())
            .sleep_impl(WasiSleep)
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
            // The host already measures sha256 of every write; extra checksums only cost time
            // (and not every S3-compatible server accepts them).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(S3 { client: Client::from_conf(config), settings })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Runs one SDK call to completion inside a guest call.
pub fn run<F: Future>(f: F) -> F::Output {
    wstd::runtime::block_on(f)
}
