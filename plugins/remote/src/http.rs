//! A small HTTP client over wasi:http. Every request leaves through the host's hook, which lets
//! it reach only the disk's granted endpoint and adds the API key there.

use stowage_plugin_sdk::wasip2::http::outgoing_handler;
use stowage_plugin_sdk::wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use stowage_plugin_sdk::wasip2::io::streams::{InputStream, OutputStream, StreamError};

use crate::settings::Settings;

/// Why a request got no answer.
#[derive(Debug)]
pub enum Failure {
    /// The host refused to send it: not the granted endpoint.
    Refused,
    /// Nothing was sent: the services host refused the connection (it is down).
    NotSent(String),
    /// The services host could not be reached, or the exchange broke off (what was sent may
    /// have been acted on).
    Transport(String),
    /// The services host's TLS certificate is not trusted.
    Untrusted(String),
    /// The request itself could not be built (a header value HTTP cannot carry).
    Invalid(String),
}

fn transport(code: &ErrorCode) -> Failure {
    match code {
        ErrorCode::HttpRequestDenied => Failure::Refused,
        ErrorCode::ConnectionRefused => Failure::NotSent(format!("{code:?}")),
        ErrorCode::TlsCertificateError | ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => {
            Failure::Untrusted(format!("{code:?}"))
        }
        other => Failure::Transport(format!("{other:?}")),
    }
}

fn stream_failure(e: StreamError) -> Failure {
    match e {
        StreamError::Closed => Failure::Transport("the connection closed".into()),
        StreamError::LastOperationFailed(e) => Failure::Transport(e.to_debug_string()),
    }
}

/// A request whose body is being written: its bytes go out as they are written, and the
/// answer comes at `finish`.
pub struct Streaming {
    // Dropped in this order: the stream before the body it belongs to.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
    future: FutureIncomingResponse,
}

impl Streaming {
    /// Starts `method path_and_query` with `headers`.
    pub fn open(
        s: &Settings,
        method: Method,
        path_and_query: &str,
        headers: &[(String, String)],
    ) -> Result<Streaming, Failure> {
        let fields = Fields::new();
        for (name, value) in headers {
            fields
                .append(name, value.as_bytes())
                .map_err(|e| Failure::Invalid(format!("header `{name}` cannot be sent ({e:?})")))?;
        }
        let request = OutgoingRequest::new(fields);
        let scheme = if s.https { Scheme::Https } else { Scheme::Http };
        let built = request
            .set_method(&method)
            .and_then(|()| request.set_scheme(Some(&scheme)))
            .and_then(|()| request.set_authority(Some(&s.authority)))
            .and_then(|()| request.set_path_with_query(Some(path_and_query)));
        if built.is_err() {
            return Err(Failure::Invalid(format!("`{path_and_query}` is not a valid request target")));
        }
        let body = request.body().map_err(|()| Failure::Invalid("the request body is unavailable".into()))?;
        let stream = body.write().map_err(|()| Failure::Invalid("the request body stream is unavailable".into()))?;
        // Each wait is bounded: connecting, the answer after the body, and each gap in it.
        let options = RequestOptions::new();
        let ns = u64::try_from(s.timeout.as_nanos()).unwrap_or(u64::MAX);
        let _ = options.set_connect_timeout(Some(ns));
        let _ = options.set_first_byte_timeout(Some(ns));
        let _ = options.set_between_bytes_timeout(Some(ns));
        let future = outgoing_handler::handle(request, Some(options)).map_err(|e| transport(&e))?;
        Ok(Streaming { stream: Some(stream), body: Some(body), future })
    }

    /// Sends `data` (waiting while the connection is busy).
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), Failure> {
        let stream = self.stream.as_ref().ok_or_else(|| Failure::Transport("the request body is closed".into()))?;
        while !data.is_empty() {
            let room = stream.check_write().map_err(stream_failure)?;
            if room == 0 {
                stream.subscribe().block();
                continue;
            }
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
            stream.write(&data[..n]).map_err(stream_failure)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Ends the body and waits for the answer. An answer that came despite a failed body (the
    /// services host refusing early) is returned; otherwise the exchange's own error is, since
    /// it says more than the broken stream (e.g. that the host refused to send the request).
    pub fn finish(mut self) -> Result<Response, Failure> {
        let mut failed = None;
        if let Some(stream) = self.stream.take() {
            if let Err(e) = stream.blocking_flush() {
                failed = Some(stream_failure(e));
            }
            drop(stream);
        }
        if let Some(body) = self.body.take() {
            if failed.is_none() {
                if let Err(e) = OutgoingBody::finish(body, None) {
                    failed = Some(transport(&e));
                }
            } else {
                // Unfinished: the host abandons the request, which ends the wait below.
                drop(body);
            }
        }
        self.future.subscribe().block();
        match self.future.get() {
            Some(Ok(Ok(response))) => Ok(Response::new(response)),
            Some(Ok(Err(code))) => Err(transport(&code)),
            Some(Err(())) | None => Err(failed.unwrap_or_else(|| Failure::Transport("the answer was lost".into()))),
        }
    }
}

/// Sends a request with a whole (small) body and waits for the answer.
pub fn send(
    s: &Settings,
    method: Method,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Response, Failure> {
    // A known length: no chunked encoding, even for an empty body.
    let mut with_length = headers.to_vec();
    with_length.push(("content-length".into(), body.len().to_string()));
    let mut request = Streaming::open(s, method, path_and_query, &with_length)?;
    // A failed write shows in the answer (or its absence), which `finish` reports.
    let _ = request.write(body);
    request.finish()
}

/// An answer: its status and headers now, its body on demand.
pub struct Response {
    pub status: u16,
    headers: Vec<(String, Vec<u8>)>,
    response: IncomingResponse,
}

impl Response {
    fn new(response: IncomingResponse) -> Response {
        let fields = response.headers();
        let headers = fields.entries();
        drop(fields);
        Response { status: response.status(), headers, response }
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every header.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().filter_map(|(k, v)| std::str::from_utf8(v).ok().map(|v| (k.as_str(), v)))
    }

    /// The body, to read as a stream.
    pub fn body(self) -> Result<Body, Failure> {
        let body = self.response.consume().map_err(|()| Failure::Transport("the answer has no body".into()))?;
        let stream = body.stream().map_err(|()| Failure::Transport("the answer's body is unavailable".into()))?;
        Ok(Body { stream: Some(stream), _body: body, _response: self.response })
    }

    /// The whole body, if it is at most `max` bytes (an error body, a listing page).
    pub fn bytes(self, max: usize) -> Result<Vec<u8>, Failure> {
        let mut body = self.body()?;
        let mut out = Vec::new();
        while let Some(chunk) = body.read(64 << 10)? {
            out.extend_from_slice(&chunk);
            if out.len() > max {
                return Err(Failure::Transport(format!("the answer is larger than {max} bytes")));
            }
        }
        Ok(out)
    }
}

/// A response body being read. Fields drop in order: the stream, then what it belongs to.
pub struct Body {
    stream: Option<InputStream>,
    _body: IncomingBody,
    _response: IncomingResponse,
}

impl Body {
    /// Hands the stream over (for the host to read directly); `None` if already taken.
    pub fn take_stream(&mut self) -> Option<InputStream> {
        self.stream.take()
    }

    /// Up to `max` bytes; `None` at the end.
    pub fn read(&mut self, max: u64) -> Result<Option<Vec<u8>>, Failure> {
        let Some(stream) = &self.stream else { return Ok(None) };
        match stream.blocking_read(max) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StreamError::Closed) => Ok(None),
            Err(e) => Err(stream_failure(e)),
        }
    }
}
