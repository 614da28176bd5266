//! The one origin a driver may be granted (`grant.endpoint`), and the certificate authorities
//! it may be told to trust (`grant.ca_file`): parsed and read once, while the config is checked.

use http::Uri;
use http::uri::Scheme;

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
            // Never echo it: the part before `@` is a secret.
            return Err(
                "the endpoint must not carry credentials (`user:password@`); use the plugin's config (with env references)"
                    .to_string(),
            );
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

impl Endpoint {
    /// Whether requests to it are encrypted.
    pub fn is_https(&self) -> bool {
        self.https
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", if self.https { "https" } else { "http" }, self.host, self.port)
    }
}

/// Reads a PEM file of certificate authorities; at least one must be in it.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
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
        let e = Endpoint::parse("http://u:s3cret@x").unwrap_err();
        assert!(e.contains("must not carry credentials") && !e.contains("s3cret"), "{e}");
        assert!(Endpoint::parse("http://x/bucket").is_err());
    }
}
