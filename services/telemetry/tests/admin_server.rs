//! The admin server over real HTTP on a loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use ferrymail_telemetry::{Health, Metrics, OPENMETRICS_CONTENT_TYPE, TelemetryError, serve_admin};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Guards against a hung server turning into a hung test run; not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(30);

struct Admin {
    addr: SocketAddr,
    health: Health,
    metrics: Metrics,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), TelemetryError>>,
}

async fn start() -> Admin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Health::new();
    let metrics = Metrics::new("smtp-ingress");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_admin(
        listener,
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    Admin {
        addr,
        health,
        metrics,
        shutdown,
        server,
    }
}

impl Admin {
    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(HANG_GUARD, self.server)
            .await
            .expect("admin server did not stop after cancellation");
        result.unwrap().unwrap();
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 response whose body length is given by `content-length`.
async fn read_response<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Response {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .expect("status code")
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header line");
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .expect("content-length");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    Response {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut stream = BufReader::new(stream);
    let head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    read_response(&mut stream).await
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path).await
}

#[tokio::test]
async fn healthz_answers_ok() {
    let admin = start().await;
    // Liveness does not depend on readiness.
    let _starting = admin.health.component("queue-scheduler");
    let response = get(admin.addr, "/healthz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ok");
    admin.stop().await;
}

#[tokio::test]
async fn readyz_lists_components_until_they_are_ready() {
    let admin = start().await;
    let scheduler = admin.health.component("queue-scheduler");
    let store = admin.health.component("store");
    store.set_not_ready("FoundationDB unreachable");

    let response = get(admin.addr, "/readyz").await;
    assert_eq!(response.status, 503);
    assert_eq!(
        response.body,
        "queue-scheduler: starting\nstore: FoundationDB unreachable\n"
    );

    scheduler.set_ready();
    store.set_ready();
    let response = get(admin.addr, "/readyz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "ready");
    admin.stop().await;
}

#[tokio::test]
async fn readyz_keeps_one_line_per_component() {
    let admin = start().await;
    admin
        .health
        .component("store")
        .set_not_ready("connect failed:\nconnection refused");
    let response = get(admin.addr, "/readyz").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body, "store: connect failed: connection refused\n");
    admin.stop().await;
}

#[tokio::test]
async fn draining_makes_readyz_fail() {
    let admin = start().await;
    admin.health.component("smtp-listener").set_ready();
    assert_eq!(get(admin.addr, "/readyz").await.status, 200);

    admin.health.start_draining();
    let response = get(admin.addr, "/readyz").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body, "draining: shutting down\n");
    // Still alive while draining.
    assert_eq!(get(admin.addr, "/healthz").await.status, 200);
    admin.stop().await;
}

#[tokio::test]
async fn metrics_are_openmetrics_with_registered_counter() {
    let admin = start().await;
    let received = Counter::<u64>::default();
    admin.metrics.register(
        "smtp_messages_received_total",
        "Messages accepted by smtp-ingress.",
        received.clone(),
    );
    received.inc_by(2);

    let response = get(admin.addr, "/metrics").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some(OPENMETRICS_CONTENT_TYPE)
    );
    assert_eq!(
        OPENMETRICS_CONTENT_TYPE,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = &response.body;
    assert!(body.contains("ferrymail_build_info{"), "{body}");
    assert!(body.contains("role=\"smtp-ingress\"} 1\n"), "{body}");
    assert!(
        body.contains("# TYPE smtp_messages_received counter\n"),
        "{body}"
    );
    assert!(body.contains("smtp_messages_received_total 2\n"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");

    // A scrape sees values recorded since the last one.
    received.inc();
    let body = get(admin.addr, "/metrics").await.body;
    assert!(body.contains("smtp_messages_received_total 3\n"), "{body}");
    admin.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404() {
    let admin = start().await;
    for path in ["/", "/nope", "/healthz/extra", "/metrics.json"] {
        assert_eq!(get(admin.addr, path).await.status, 404, "{path}");
    }
    admin.stop().await;
}

#[tokio::test]
async fn head_is_answered_and_other_methods_are_refused() {
    let admin = start().await;
    let stream = TcpStream::connect(admin.addr).await.unwrap();
    let mut stream = BufReader::new(stream);
    // HEAD has no body whatever content-length says, so read only the status line.
    stream
        .write_all(b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut status_line = String::new();
    stream.read_line(&mut status_line).await.unwrap();
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");

    assert_eq!(request(admin.addr, "POST", "/readyz").await.status, 405);
    admin.stop().await;
}

#[tokio::test]
async fn cancelling_the_token_stops_the_server() {
    let admin = start().await;
    assert_eq!(get(admin.addr, "/healthz").await.status, 200);
    // `stop` cancels the token and waits for the serve future to complete successfully.
    admin.stop().await;
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_idle_keep_alive_connections() {
    let admin = start().await;
    // A scraper that keeps its connection open between scrapes.
    let stream = TcpStream::connect(admin.addr).await.unwrap();
    let mut stream = BufReader::new(stream);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 200);
    assert_ne!(response.header("connection"), Some("close"));

    admin.stop().await;
    // The server closed the idle connection on its way out.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut rest))
        .await
        .expect("connection left open after shutdown");
    assert_eq!(read.unwrap(), 0);
}
