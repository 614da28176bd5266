//! Ranged streaming reads. The GET is signed by the SDK (a short-lived presigned request)
//! and sent with wasi:http directly, so the response body's stream can be handed to the host
//! (`source`): the host then moves the bytes itself, and none pass through this plugin.

use std::cell::RefCell;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use stowage_plugin_sdk::driver::exports::stowage::storage::store::GuestReader;
use stowage_plugin_sdk::driver::stowage::storage::types::{ByteRange, Error, ObjectInfo};
use stowage_plugin_sdk::wasip2::http::outgoing_handler;
use stowage_plugin_sdk::wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingRequest, Scheme,
};
use stowage_plugin_sdk::wasip2::io::streams::{InputStream, StreamError};

use crate::client::{run, s3};
use crate::error::{Op, from_status, host_refused, unavailable};

/// How long the signature of one GET stays valid (it is used at once).
const SIGNED_FOR: Duration = Duration::from_secs(300);

pub struct S3Reader {
    // Field order is drop order: the stream before the body before the response.
    stream: RefCell<Option<InputStream>>,
    _body: Option<IncomingBody>,
    _response: Option<IncomingResponse>,
}

impl S3Reader {
    /// A reader of nothing (an empty range or object).
    pub fn empty() -> S3Reader {
        S3Reader { stream: RefCell::new(None), _body: None, _response: None }
    }
}

/// Opens `range` of `path` with one GET; the object's info comes from the response headers.
/// `None` means the range starts exactly at the end (S3 answers 416 there; for us it is an
/// empty read), with the object's info from a HEAD.
pub fn open(disk: &str, path: &str, range: Option<ByteRange>) -> Result<(S3Reader, ObjectInfo), Error> {
    let s3 = s3()?;
    let op = Op { disk, path, what: "read" };
    let mut get = s3.client.get_object().bucket(&s3.settings.bucket).key(s3.settings.key(path));
    if let Some(r) = range {
        // A length running past u64 reads to the end.
        let end =
            r.length.and_then(|len| r.offset.checked_add(len)).map_or_else(String::new, |end| (end - 1).to_string());
        get = get.range(format!("bytes={}-{end}", r.offset));
    }
    let config = PresigningConfig::expires_in(SIGNED_FOR).map_err(|e| Error::Io(format!("cannot sign a read: {e}")))?;
    let signed = run(get.presigned(config))
        .map_err(|e| Error::Io(format!("disk `{disk}`: cannot sign a read of `{path}`: {e}")))?;

    let uri: http::Uri = signed.uri().parse().map_err(|e| Error::Io(format!("signed URL is invalid: {e}")))?;
    let headers: Vec<(String, Vec<u8>)> =
        signed.headers().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
    let fields = Fields::from_list(&headers).map_err(|e| Error::Io(format!("signed headers are invalid: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let scheme = if uri.scheme_str() == Some("https") { Scheme::Https } else { Scheme::Http };
    let set = request.set_method(&Method::Get).is_ok()
        && request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(uri.authority().map(|a| a.as_str())).is_ok()
        && request.set_path_with_query(uri.path_and_query().map(|p| p.as_str())).is_ok();
    if !set {
        return Err(Error::Io("cannot build the read request".into()));
    }
    let pending = outgoing_handler::handle(request, None).map_err(|e| transport(disk, path, &e))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(transport(disk, path, &e)),
        _ => return Err(unavailable(format!("disk `{disk}`: no answer to the read of `{path}`"))),
    };
    let status = response.status();
    let headers = response.headers().entries();
    let body = response.consume().map_err(|_| Error::Io("the read's body was already taken".into()))?;
    let stream = body.stream().map_err(|_| Error::Io("the read's body stream was already taken".into()))?;
    if !(200..300).contains(&status) {
        let text = read_small(&stream);
        let code = xml_tag(&text, "Code");
        let message = xml_tag(&text, "Message");
        return Err(from_status(&op, status, code.as_deref(), message.as_deref()));
    }
    let (info, start) = crate::object::info_from_headers(path, &headers, status == 206).ok_or_else(|| {
        Error::Io(format!("disk `{disk}`: the S3 server's answer to the read of `{path}` has no size"))
    })?;
    // Bytes from anywhere but the asked offset would be passed off as the range.
    let wanted = range.map_or(0, |r| r.offset);
    if start != wanted {
        return Err(Error::Io(format!(
            "disk `{disk}`: the S3 server answered the read of `{path}` from byte {start}, not {wanted} (it ignored the range)"
        )));
    }
    Ok((S3Reader { stream: RefCell::new(Some(stream)), _body: Some(body), _response: Some(response) }, info))
}

/// A read that could not be sent: refused by the host, or the server could not be reached.
fn transport(disk: &str, path: &str, code: &ErrorCode) -> Error {
    match code {
        ErrorCode::HttpRequestDenied => host_refused(disk),
        _ => unavailable(format!("disk `{disk}`: cannot reach the S3 server to read `{path}` ({code:?})")),
    }
}

/// An error body (small; capped at 64 KiB).
fn read_small(stream: &InputStream) -> String {
    let mut out = Vec::new();
    while out.len() < 64 << 10 {
        match stream.blocking_read(8192) {
            Ok(bytes) if !bytes.is_empty() => out.extend_from_slice(&bytes),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The text of the first `<tag>` in an S3 error document.
pub fn xml_tag(text: &str, tag: &str) -> Option<String> {
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(text[start..end].to_string())
}

impl GuestReader for S3Reader {
    fn source(&self) -> Option<InputStream> {
        self.stream.borrow_mut().take()
    }

    fn read(&self, max: u64) -> Result<Vec<u8>, Error> {
        let stream = self.stream.borrow();
        let Some(stream) = stream.as_ref() else {
            // Empty, or the stream was handed to the host.
            return Ok(Vec::new());
        };
        match stream.blocking_read(max.min(1 << 20)) {
            Ok(bytes) => Ok(bytes),
            Err(StreamError::Closed) => Ok(Vec::new()),
            Err(StreamError::LastOperationFailed(e)) => {
                Err(unavailable(format!("the read was cut short: {}", e.to_debug_string())))
            }
        }
    }
}
