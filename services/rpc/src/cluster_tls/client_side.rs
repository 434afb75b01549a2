//! The client end: connections to another role over TLS, presenting this process's
//! certificate and checking that the server proves the role the client means to call.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;

use super::ClusterTls;
use super::role::Role;

/// A tower connector for tonic channels: TCP, then TLS with the current credentials.
#[derive(Clone, Debug)]
pub(crate) struct TlsConnector {
    tls: ClusterTls,
    server: Role,
}

impl TlsConnector {
    /// Connects to servers that must prove `server`.
    pub(crate) fn new(tls: ClusterTls, server: Role) -> Self {
        Self { tls, server }
    }
}

type Connected = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = Connected;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Connected>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let credentials = self.tls.current();
        let server = self.server;
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(443);
            let name = credentials
                .server_name(server)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let connector = tokio_rustls::TlsConnector::from(credentials.client.clone());
            let tls = connector.connect(name, tcp).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("TLS with the {server} at {host}:{port} failed: {e}"),
                )
            })?;
            Ok(TokioIo::new(tls))
        })
    }
}
