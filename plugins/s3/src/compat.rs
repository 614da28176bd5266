//! Where an S3 server's answers differ from AWS's in ways aws-sdk-s3 refuses, the driver reads
//! them as AWS's. Each shim touches one operation's response and nothing else.
//!
//! - rclone's `serve s3` names the root of its CreateMultipartUpload answer
//!   `InitiateMultipartUpload`, not `InitiateMultipartUploadResult`; the SDK refuses any other
//!   root ("invalid XML root"), so without [`InitiateRoot`] no multipart upload could start.

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::primitives::SdkBody;
use bytes::Bytes;
use http_body::{Body, Frame};

/// The root AWS gives the answer to CreateMultipartUpload, and the one some servers give.
const ROOT: &str = "InitiateMultipartUploadResult";
const SHORT_ROOT: &str = "InitiateMultipartUpload";

/// Renames a CreateMultipartUpload answer's root element to AWS's (for that operation only).
#[derive(Debug)]
pub struct InitiateRoot;

impl Intercept for InitiateRoot {
    fn name(&self) -> &'static str {
        "InitiateRoot"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.response_mut().body_mut();
        let inner = std::mem::replace(body, SdkBody::taken());
        *body = SdkBody::from_body_1_x(Renamed { inner });
        Ok(())
    }
}

/// A response body with [`SHORT_ROOT`]'s tags renamed to [`ROOT`]'s. The answer is a few
/// hundred bytes, which arrive as one frame.
struct Renamed {
    inner: SdkBody,
}

impl Body for Renamed {
    type Data = Bytes;
    type Error = <SdkBody as Body>::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx).map(|frame| frame.map(|f| f.map(|f| f.map_data(rename_root))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// `bytes` with `<InitiateMultipartUpload>` and its closing tag renamed; anything else as is.
fn rename_root(bytes: Bytes) -> Bytes {
    let open = format!("<{SHORT_ROOT}>");
    let close = format!("</{SHORT_ROOT}>");
    match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains(&open) || text.contains(&close) => {
            Bytes::from(text.replace(&open, &format!("<{ROOT}>")).replace(&close, &format!("</{ROOT}>")))
        }
        _ => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_short_root_is_renamed() {
        let short =
            "<?xml version=\"1.0\"?>\n<InitiateMultipartUpload>\n  <UploadId>u</UploadId>\n</InitiateMultipartUpload>";
        let want = "<?xml version=\"1.0\"?>\n<InitiateMultipartUploadResult>\n  <UploadId>u</UploadId>\n</InitiateMultipartUploadResult>";
        assert_eq!(rename_root(Bytes::from(short)), Bytes::from(want));
        assert_eq!(rename_root(Bytes::from(want)), Bytes::from(want), "AWS's answer stays as it is");
        let other = Bytes::from_static(b"<Error><Code>AccessDenied</Code></Error>");
        assert_eq!(rename_root(other.clone()), other);
    }
}
