//! Real tonic servers on ephemeral loopback ports, for the transport tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Router;

/// Upper bound on any awaited condition: a guard against hangs, not a timing assertion.
pub const GUARD: Duration = Duration::from_secs(30);

/// Serves `router` on 127.0.0.1 and returns its `http://` endpoint. The socket is bound before
/// this returns, so a client can call at once.
pub async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    format!("http://{address}")
}

/// An endpoint on which nothing listens: a port that was bound, then released.
pub async fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

/// Awaits `future`, failing the test if it does not finish within [`GUARD`].
pub async fn guarded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, future)
        .await
        .expect("no answer within the guard time")
}
