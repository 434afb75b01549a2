//! An HTTPS server for tests, in process: HTTP/1.1 (hyper) over TLS (rustls) on an ephemeral
//! loopback port, with a certificate from [`TestCertificates`]. It answers each
//! `(host, path)` with what the test set, `404` otherwise, and records what it was asked.
//!
//! ```no_run
//! # let certs = ferrymail_e2e::TestCertificates::generate_for(std::path::Path::new("."), &["mta-sts.example.org"]);
//! let server = ferrymail_e2e::HttpsServer::start(&certs);
//! server.serve("mta-sts.example.org", "/.well-known/mta-sts.txt", 200, "version: STSv1\n...");
//! assert_eq!(server.requests("mta-sts.example.org"), 0);
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::tls::TestCertificates;

#[derive(Default)]
struct Site {
    /// `(host, path)` → status and body.
    answers: HashMap<(String, String), (u16, Bytes)>,
    /// Requests received per host (from the `Host` header, port removed).
    requests: HashMap<String, usize>,
}

/// A running HTTPS server; stops when dropped.
pub struct HttpsServer {
    address: SocketAddr,
    site: Arc<Mutex<Site>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpsServer {
    /// Starts serving on `127.0.0.1:<ephemeral>` with `certificates`' server certificate.
    pub fn start(certificates: &TestCertificates) -> HttpsServer {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&certificates.cert_pem)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(&certificates.key_pem).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let site = Arc::new(Mutex::new(Site::default()));
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn({
            let site = site.clone();
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(serve(listener, acceptor, site, stopped));
            }
        });
        HttpsServer {
            address,
            site,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Answers `GET path` for `host` with `status` and `body` from now on.
    pub fn serve(&self, host: &str, path: &str, status: u16, body: impl Into<Bytes>) {
        self.site.lock().unwrap().answers.insert(
            (host.to_ascii_lowercase(), path.to_owned()),
            (status, body.into()),
        );
    }

    /// How many requests for `host` were answered so far.
    pub fn requests(&self, host: &str) -> usize {
        let site = self.site.lock().unwrap();
        site.requests
            .get(&host.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    site: Arc<Mutex<Site>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let (acceptor, site) = (acceptor.clone(), site.clone());
        tokio::spawn(async move {
            // A client that refuses the certificate ends the handshake: nothing to serve.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |request| {
                let site = site.clone();
                async move { Ok::<_, Infallible>(answer(&site, &request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn answer<B>(site: &Mutex<Site>, request: &Request<B>) -> Response<Full<Bytes>> {
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let host = host
        .rsplit_once(':')
        .map_or(host, |(name, _)| name)
        .to_ascii_lowercase();
    let mut site = site.lock().unwrap();
    *site.requests.entry(host.clone()).or_default() += 1;
    let (status, body) = site
        .answers
        .get(&(host, request.uri().path().to_owned()))
        .cloned()
        .unwrap_or((404, Bytes::from_static(b"not found\n")));
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, "text/plain".parse().unwrap());
    if (300..400).contains(&status) {
        response.headers_mut().insert(
            hyper::header::LOCATION,
            "https://127.0.0.1/.well-known/mta-sts.txt".parse().unwrap(),
        );
    }
    response
}
