//! Outgoing HTTP for plugins. A driver may be granted one origin (`grant.endpoint`); every
//! request a plugin sends leaves the host through `EndpointGuard::send_request`, which refuses
//! anything else. Plugins without the grant cannot reach the network at all.
//!
//! Requests that pass go out through the disk's [`Outbound`]: one pooled HTTP/1.1 client per
//! disk, shared by all its instances, so small operations reuse warm (TLS) connections instead
//! of opening one each. The host adds the granted API key there; the plugin never holds it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

pub use stowage_config::{Endpoint, read_ca_file};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// The longest a new connection may take (the request's own bounds apply on top).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per disk.
const POOL_MAX_IDLE: usize = 64;

/// A disk's way out: the origin it may reach, the credentials the host adds, and the pool of
/// connections its instances share.
pub struct Outbound {
    endpoint: Endpoint,
    /// `Bearer KEY`, marked sensitive (never logged by hyper or us).
    authorization: Option<HeaderValue>,
    client: Client<Connector, WasiBody>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.authorization.is_some())
            .finish()
    }
}

impl Outbound {
    /// The way out to `endpoint`, adding `api_key` to every request, trusting the public web
    /// roots and the certificate authorities in `ca_file`.
    pub fn new(
        endpoint: Endpoint,
        api_key: Option<&str>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Outbound, String> {
        let authorization = match api_key {
            Some(key) => {
                // The key is never part of the message.
                let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| "api_key must be visible ASCII".to_string())?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = ca_file {
            for cert in read_ca_file(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: a certificate is not usable as an authority: {e}", path.display()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Outbound { endpoint, authorization, client })
    }

    /// The way out to the origin `url`, with no credentials added and the public web roots.
    pub fn to(url: &str) -> Result<Arc<Outbound>, String> {
        Ok(Arc::new(Outbound::new(Endpoint::parse(url)?, None, None)?))
    }

    /// The origin this disk may reach.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// GETs `url` (which must be on this origin) from the host itself, with the credentials
    /// the host adds: what a client given a driver's signed URL would see. The body is read
    /// up to `max_bytes`. For checks such as the conformance kit's, not for plugins.
    pub async fn fetch(&self, url: &str, max_bytes: usize) -> Result<(u16, Bytes), String> {
        use http_body_util::BodyExt;
        let uri: Uri = url.parse().map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !self.endpoint.allows(&uri) {
            return Err(format!("`{url}` is not on the granted endpoint {}", self.endpoint));
        }
        let empty = http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync();
        let request = http::Request::get(uri).body(empty).map_err(|e| e.to_string())?;
        let options = RequestOptions {
            connect_timeout: Some(CONNECT_TIMEOUT),
            first_byte_timeout: Some(Duration::from_secs(30)),
            between_bytes_timeout: Some(Duration::from_secs(30)),
        };
        let response = self.send(request, options).await.map_err(|e| format!("GET {url}: {e:?}"))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut out = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("GET {url}: the body broke off: {e:?}"))?;
            if let Some(data) = frame.data_ref() {
                if out.len() + data.len() > max_bytes {
                    return Err(format!("GET {url}: the body is larger than {max_bytes} bytes"));
                }
                out.extend_from_slice(data);
            }
        }
        Ok((status, out.freeze()))
    }

    /// Sends `request` (already checked against the endpoint) over a pooled connection.
    async fn send(
        &self,
        mut request: http::Request<WasiBody>,
        options: RequestOptions,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        use http_body_util::BodyExt;
        if let Some(auth) = &self.authorization {
            request.headers_mut().insert(http::header::AUTHORIZATION, auth.clone());
        }
        let connect = options.connect_timeout.unwrap_or(Duration::from_secs(30));
        let first_byte = options.first_byte_timeout.unwrap_or(Duration::from_secs(30));
        let between_bytes = options.between_bytes_timeout.unwrap_or(Duration::from_secs(30));
        // The wait for the answer starts when the body has been sent: a body streamed over many
        // plugin calls may take longer than any one wait.
        let (sent, body_sent) = tokio::sync::oneshot::channel();
        let request = request.map(|body| SignalsEnd { body, sent: Some(sent) }.boxed_unsync());
        let response = self.client.request(request);
        let answer_due = async {
            if body_sent.await.is_err() {
                // The body broke off; the request fails on its own (bounded all the same).
                tokio::time::sleep(connect).await;
            }
            tokio::time::sleep(first_byte).await;
        };
        let response = tokio::select! {
            r = response => r.map_err(|e| client_error(&e))?,
            () = answer_due => return Err(HttpError::ConnectionReadTimeout),
        };
        Ok(response.map(|body| {
            IdleLimited { body, limit: between_bytes, sleep: Box::pin(tokio::time::sleep(between_bytes)) }
                .boxed_unsync()
        }))
    }
}

/// A request body that says when it has been sent whole.
struct SignalsEnd {
    body: WasiBody,
    sent: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for SignalsEnd {
    fn drop(&mut self) {
        // hyper may drop a body it knows to be empty without polling it to its end.
        if let Some(sent) = self.sent.take()
            && http_body::Body::is_end_stream(&self.body)
        {
            let _ = sent.send(());
        }
    }
}

impl http_body::Body for SignalsEnd {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled
            && let Some(sent) = self.sent.take()
        {
            let _ = sent.send(());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What a guest sees for a failed request: connection failures as such (so a driver can tell
/// "retry later" from a bad request), the rest as hyper's error.
fn client_error(e: &hyper_util::client::legacy::Error) -> HttpError {
    let causes = || std::iter::successors(std::error::Error::source(e), |s| cause_of(*s));
    let tls = causes().find_map(|s| s.downcast_ref::<rustls::Error>());
    if let Some(tls) = tls {
        return match tls {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                HttpError::TlsCertificateError
            }
            _ => HttpError::TlsProtocolError,
        };
    }
    if e.is_connect() {
        let refused = causes()
            .filter_map(|s| s.downcast_ref::<std::io::Error>())
            .any(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        return if refused {
            HttpError::ConnectionRefused
        } else {
            HttpError::Connect(std::io::Error::other(e.to_string()))
        };
    }
    match causes().find_map(|s| s.downcast_ref::<hyper::Error>()) {
        Some(h) if h.is_incomplete_message() || h.is_canceled() => HttpError::ConnectionTerminated,
        _ => HttpError::HttpProtocolError,
    }
}

/// What caused `e`. An io::Error's `source` skips the error it wraps (rustls' own errors travel
/// so, inside one or two of them): look inside it first.
fn cause_of<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a (dyn std::error::Error + 'static)> {
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
        return Some(inner);
    }
    e.source()
}

/// A response body that fails if no bytes arrive for `limit`.
struct IdleLimited {
    body: hyper::body::Incoming,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for IdleLimited {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + self.limit;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The wasi:http hooks of one plugin instance: only its granted endpoint is reachable.
pub(crate) struct EndpointGuard {
    pub(crate) plugin: Arc<str>,
    pub(crate) outbound: Option<Arc<Outbound>>,
    /// The plugin's call timeout: no wait on the network may outlast it (the epoch deadline
    /// does not run while a call waits in the host).
    pub(crate) timeout: Duration,
}

impl EndpointGuard {
    /// `requested`, with every wait capped at the call timeout.
    fn capped(&self, requested: Option<RequestOptions>) -> RequestOptions {
        let cap = |t: Option<Duration>| Some(t.map_or(self.timeout, |t| t.min(self.timeout)));
        let r = requested.unwrap_or_default();
        RequestOptions {
            connect_timeout: cap(r.connect_timeout),
            first_byte_timeout: cap(r.first_byte_timeout),
            between_bytes_timeout: cap(r.between_bytes_timeout),
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for EndpointGuard {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        _ = fut;
        let outbound = match &self.outbound {
            Some(o) if o.endpoint.allows(request.uri()) => o.clone(),
            _ => {
                // The host and port only: a path or query could carry PHI.
                let target = request.uri().authority().map_or_else(String::new, |a| a.to_string());
                tracing::warn!(plugin = %self.plugin, %target, "refused an outgoing request outside the plugin's granted endpoint");
                return Box::new(async { Err(HttpError::HttpRequestDenied) });
            }
        };
        let options = self.capped(options);
        Box::new(async move {
            let response = outbound.send(request, options).await?;
            // The pool drives its connections itself: nothing is left for the caller to await.
            Ok((response, Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>))
        })
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        // A few chunks in flight let a plugin's next write overlap the socket's send.
        4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let o = Outbound::new(Endpoint::parse("https://s.example.org").unwrap(), Some("secret-key-123"), None).unwrap();
        let text = format!("{o:?}");
        assert!(text.contains("api_key: true") && !text.contains("secret-key-123"), "{text}");
        assert!(Outbound::new(Endpoint::parse("https://s.example.org").unwrap(), Some("bad\nkey"), None).is_err());
    }
}
