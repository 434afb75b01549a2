//! The connection an `http://` or `https://` URL names, for the clients that `POST` to
//! configured endpoints (delivery-event webhooks, MTA hooks): the URL read once, TCP, and TLS
//! with the certificate checked unless the configuration allows otherwise.

use http::Uri;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use crate::TlsSettings;

/// A connection to an endpoint, encrypted or not.
pub type HttpStream = Either<TcpStream, TlsStream<TcpStream>>;

/// Why an endpoint could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL cannot be requested (configurations check it; kept for safety).
    #[error("invalid URL: {0}")]
    Url(String),
    /// No connection could be opened.
    #[error("cannot connect to {authority}: {error}")]
    Connect {
        /// Host and port.
        authority: String,
        /// Why.
        error: std::io::Error,
    },
    /// The TLS handshake failed (certificate not trusted, name mismatch...).
    #[error("{0}")]
    Tls(String),
}

/// Where an `http://` or `https://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpEndpoint {
    host: String,
    port: u16,
    authority: String,
    path: String,
    https: bool,
}

impl HttpEndpoint {
    /// Reads `url`; a scheme other than `http` or `https`, or no host, is refused.
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| EndpointError::Url(e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(EndpointError::Url("not an http(s) URL".to_owned())),
        };
        let bracketed = uri
            .host()
            .ok_or_else(|| EndpointError::Url("no host".to_owned()))?;
        let host = bracketed
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // Host and port only: credentials written in the URL are neither sent nor logged.
        let authority = match uri.port_u16() {
            Some(port) => format!("{bracketed}:{port}"),
            None => bracketed.to_owned(),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Self {
            host,
            port,
            authority,
            path,
            https,
        })
    }

    /// Host and port, as the `Host` header carries them.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Path and query, as the request line carries them.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Opens a connection, through TLS for `https` (its certificate checked against what
    /// `tls` trusts unless `allow_invalid_certs`).
    pub async fn connect(
        &self,
        tls: &TlsSettings,
        allow_invalid_certs: bool,
    ) -> Result<HttpStream, EndpointError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| EndpointError::Connect {
                authority: self.authority.clone(),
                error,
            })?;
        // One small request at a time: send it at once rather than wait to fill a segment.
        let _ = tcp.set_nodelay(true);
        if !self.https {
            return Ok(Either::Left(tcp));
        }
        let stream = tls
            .handshake(tcp, &self.host, allow_invalid_certs)
            .await
            .map_err(|e| EndpointError::Tls(e.to_string()))?;
        Ok(Either::Right(stream))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_give_host_port_authority_and_path() {
        let e = HttpEndpoint::parse("https://hooks.example.org/mta?x=1").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.https),
            ("hooks.example.org", 443, true)
        );
        assert_eq!((e.authority(), e.path()), ("hooks.example.org", "/mta?x=1"));
        let e = HttpEndpoint::parse("http://[::1]:8080").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.https), ("::1", 8080, false));
        assert_eq!((e.authority(), e.path()), ("[::1]:8080", "/"));
        let e = HttpEndpoint::parse("http://user:secret@127.0.0.1:81/x").unwrap();
        assert_eq!(e.authority(), "127.0.0.1:81", "credentials are not carried");
    }

    #[test]
    fn what_is_not_an_http_url_is_refused() {
        for url in [
            "ftp://example.org/",
            "/relative",
            "",
            "http://",
            "https://exa mple.org/",
        ] {
            assert!(
                matches!(HttpEndpoint::parse(url), Err(EndpointError::Url(_))),
                "{url:?}"
            );
        }
    }
}
