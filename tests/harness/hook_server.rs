//! An MTA hook endpoint for tests, in process: HTTP/1.1 (hyper), in clear or over TLS with a
//! certificate from [`TestCertificates`], on an ephemeral loopback port. It records every
//! request (headers and JSON body) and answers each stage with what the test scripted
//! (`{"action":"accept"}` by default).
//!
//! It stands in for a hook service (the issue names a small test server as the peer): it
//! can also answer what no working hook would — garbage, cut JSON, errors, oversized or
//! late answers — which is what the failure tests need.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::tls::TestCertificates;

/// What the server answers.
#[derive(Debug, Clone)]
pub struct HookAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body, sent as is.
    pub body: Bytes,
    /// Wait before answering.
    pub delay: Duration,
}

impl HookAnswer {
    /// `200` with `json`.
    pub fn json(json: &str) -> HookAnswer {
        HookAnswer::raw(200, json.as_bytes().to_vec())
    }

    /// `status` with `body`.
    pub fn raw(status: u16, body: impl Into<Bytes>) -> HookAnswer {
        HookAnswer {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// The same, after `delay`.
    pub fn after(mut self, delay: Duration) -> HookAnswer {
        self.delay = delay;
        self
    }
}

/// One request the server got.
#[derive(Debug, Clone)]
pub struct HookRequest {
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
    /// The body as received.
    pub raw: Bytes,
}

impl HookRequest {
    /// The value of header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `context.stage`.
    pub fn stage(&self) -> &str {
        self.body["context"]["stage"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct Script {
    /// Stage → answer; stages without one get `{"action":"accept"}`.
    answers: HashMap<String, HookAnswer>,
    requests: Vec<HookRequest>,
}

/// A running hook server; stops when dropped.
pub struct HookServer {
    address: SocketAddr,
    tls: bool,
    script: Arc<Mutex<Script>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HookServer {
    /// Starts serving plain HTTP on `127.0.0.1:<ephemeral>`.
    pub fn start() -> HookServer {
        Self::start_with(None)
    }

    /// Starts serving HTTPS with `certificates`' server certificate.
    pub fn start_tls(certificates: &TestCertificates) -> HookServer {
        Self::start_with(Some(acceptor(certificates)))
    }

    fn start_with(acceptor: Option<TlsAcceptor>) -> HookServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let (stop, stopped) = oneshot::channel();
        let tls = acceptor.is_some();
        let thread = std::thread::spawn({
            let script = script.clone();
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(serve(listener, acceptor, script, stopped));
            }
        });
        HookServer {
            address,
            tls,
            script,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The URL to configure as `session.hook.<id>.url` (`https://localhost:…` with TLS, so
    /// that the certificate's name matches).
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}/hook", self.address.port())
        } else {
            format!("http://{}/hook", self.address)
        }
    }

    /// Answers requests about `stage` with `answer` from now on.
    pub fn answer(&self, stage: &str, answer: HookAnswer) {
        self.script
            .lock()
            .unwrap()
            .answers
            .insert(stage.to_owned(), answer);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<HookRequest> {
        self.script.lock().unwrap().requests.clone()
    }

    /// The requests about `stage` so far.
    pub fn requests_at(&self, stage: &str) -> Vec<HookRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.stage() == stage)
            .collect()
    }

    /// Waits until `count` requests about `stage` arrived, or panics after `timeout`.
    pub fn wait_for(&self, stage: &str, count: usize, timeout: Duration) -> Vec<HookRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests_at(stage);
            if requests.len() >= count {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "{count} {stage} requests not within {timeout:?}; got {}",
                requests.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn acceptor(certificates: &TestCertificates) -> TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certificates.cert_pem)
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
    TlsAcceptor::from(Arc::new(config))
}

async fn serve(
    listener: std::net::TcpListener,
    acceptor: Option<TlsAcceptor>,
    script: Arc<Mutex<Script>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let (acceptor, script) = (acceptor.clone(), script.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, script.clone()));
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                }
            }
        });
    }
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    script: Arc<Mutex<Script>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let raw = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let recorded = HookRequest { headers, body, raw };
    let stage = recorded.stage().to_owned();
    let scripted = {
        let mut script = script.lock().unwrap();
        script.requests.push(recorded);
        script.answers.get(&stage).cloned()
    };
    let scripted = scripted.unwrap_or_else(|| HookAnswer::json(r#"{"action":"accept"}"#));
    tokio::time::sleep(scripted.delay).await;
    let mut response = Response::new(Full::new(scripted.body));
    *response.status_mut() = StatusCode::from_u16(scripted.status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    Ok(response)
}
