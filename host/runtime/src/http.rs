//! Outgoing HTTP for plugins. A driver may be granted one origin (`grant.endpoint`); every
//! request a plugin sends leaves the host through `EndpointGuard::send_request`, which refuses
//! anything else. Plugins without the grant cannot reach the network at all.

use std::sync::Arc;

use http::Uri;
use http::uri::Scheme;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The one origin (scheme, host, port) a plugin may talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    https: bool,
    host: String,
    port: u16,
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/]`; anything with a path, query or credentials is refused
    /// (it would not mean what it seems to).
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let uri: Uri = text.parse().map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("`{text}` must start with https:// or http://")),
        };
        let authority = uri.authority().ok_or_else(|| format!("`{text}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{text}` must not carry credentials; use the plugin's config (with env references)"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!("`{text}` must be an origin only (scheme, host, port), without a path"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Endpoint { https, host: authority.host().to_ascii_lowercase(), port })
    }

    /// Whether `uri` goes to this origin.
    pub fn allows(&self, uri: &Uri) -> bool {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return false,
        };
        let Some(authority) = uri.authority() else { return false };
        if authority.as_str().contains('@') {
            return false;
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        https == self.https && port == self.port && authority.host().eq_ignore_ascii_case(&self.host)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", if self.https { "https" } else { "http" }, self.host, self.port)
    }
}

/// The wasi:http hooks of one plugin instance: only its granted endpoint is reachable.
pub(crate) struct EndpointGuard {
    pub(crate) plugin: Arc<str>,
    pub(crate) endpoint: Option<Endpoint>,
    /// The plugin's call timeout: no wait on the network may outlast it (the epoch deadline
    /// does not run while a call waits in the host).
    pub(crate) timeout: std::time::Duration,
}

impl EndpointGuard {
    /// `requested`, with every wait capped at the call timeout.
    fn capped(&self, requested: Option<RequestOptions>) -> RequestOptions {
        let cap = |t: Option<std::time::Duration>| Some(t.map_or(self.timeout, |t| t.min(self.timeout)));
        let r = requested.unwrap_or_default();
        RequestOptions {
            connect_timeout: cap(r.connect_timeout),
            first_byte_timeout: cap(r.first_byte_timeout),
            between_bytes_timeout: cap(r.between_bytes_timeout),
        }
    }
}

type ResponseFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError>> + Send>;

impl WasiHttpHooks for EndpointGuard {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        _ = fut;
        if !self.endpoint.as_ref().is_some_and(|e| e.allows(request.uri())) {
            // The host and port only: a path or query could carry PHI.
            let target = request.uri().authority().map_or_else(String::new, |a| a.to_string());
            tracing::warn!(plugin = %self.plugin, %target, "refused an outgoing request outside the plugin's granted endpoint");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let options = self.capped(options);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_granted_origin_is_allowed() {
        let e = Endpoint::parse("http://127.0.0.1:8333").unwrap();
        assert!(e.allows(&"http://127.0.0.1:8333/bucket/key?x=1".parse().unwrap()));
        assert!(!e.allows(&"http://127.0.0.1:8334/bucket".parse().unwrap()));
        assert!(!e.allows(&"https://127.0.0.1:8333/bucket".parse().unwrap()));
        assert!(!e.allows(&"http://localhost:8333/".parse().unwrap()));
        assert!(!e.allows(&"http://x@127.0.0.1:8333/".parse().unwrap()));
        let s = Endpoint::parse("https://S3.example.org").unwrap();
        assert!(s.allows(&"https://s3.example.org:443/b".parse().unwrap()));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://u:p@x").is_err());
        assert!(Endpoint::parse("http://x/bucket").is_err());
    }
}
