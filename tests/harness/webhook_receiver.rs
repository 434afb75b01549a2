//! A webhook receiver for tests, in process: HTTP/1.1 (hyper) on an ephemeral loopback
//! port. It records every request (headers, body, the status it answered) and answers with
//! the status the test sets (`200` at first); the delivery events of the requests it
//! answered `2xx` are read back by id.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl WebhookRequest {
    /// The value of header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The events of the body.
    pub fn events(&self) -> Vec<Value> {
        let body: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("a webhook body that is not JSON ({e}): {:?}", self.body));
        body["events"].as_array().cloned().unwrap_or_default()
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<WebhookRequest>>,
    status: AtomicU16,
}

/// A running receiver; stops when dropped.
pub struct WebhookReceiver {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    /// Starts answering `200` on `127.0.0.1:<ephemeral>`.
    pub fn start() -> WebhookReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        shared.status.store(200, Ordering::SeqCst);
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn({
            let shared = shared.clone();
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(serve(listener, shared, stopped));
            }
        });
        WebhookReceiver {
            address,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The URL to configure as `webhook.<id>.url`.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.address)
    }

    /// Answers `status` from now on.
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<WebhookRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The events of the requests answered `2xx`, in arrival order (duplicates kept).
    pub fn accepted_events(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .flat_map(WebhookRequest::events)
            .collect()
    }

    /// The accepted events by id, each once; and how many arrived more than once.
    pub fn events_by_id(&self) -> (BTreeMap<String, Value>, usize) {
        let mut unique = BTreeMap::new();
        let mut duplicates = 0;
        for event in self.accepted_events() {
            let id = event["id"].as_str().unwrap().to_owned();
            if unique.insert(id, event).is_some() {
                duplicates += 1;
            }
        }
        (unique, duplicates)
    }

    /// Waits until `done` holds of the accepted events by id, or panics after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&BTreeMap<String, Value>) -> bool,
    ) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (events, _) = self.events_by_id();
            if done(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; got {} events: {:#?}",
                events.len(),
                events
                    .values()
                    .map(|e| (&e["type"], &e["data"]["recipient"]))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WebhookReceiver {
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
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, shared.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    shared: Arc<Shared>,
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
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let status = shared.status.load(Ordering::SeqCst);
    shared.requests.lock().unwrap().push(WebhookRequest {
        headers,
        body,
        status,
    });
    let mut response = Response::new(Full::new(Bytes::from_static(b"")));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    Ok(response)
}
