//! The admin server's listener: plain HTTP, or HTTPS when the `http` listener says
//! `tls.implicit`; with the client's address and whether it came over TLS, which the admin
//! API needs before it looks at any credential.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handshaken and not yet taken by the server.
const READY_BACKLOG: usize = 64;

/// Who is on the other end of an admin connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminClient {
    /// The client's address.
    pub address: SocketAddr,
    /// Whether the connection is encrypted.
    pub tls: bool,
}

impl AdminClient {
    /// Whether credentials may travel on this connection without TLS: only from this host.
    pub fn is_loopback(&self) -> bool {
        self.address.ip().is_loopback()
            || matches!(self.address.ip(), std::net::IpAddr::V6(v6)
                if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
    }
}

/// A connection of the admin server: plain or TLS.
pub type AdminStream = Either<TcpStream, TlsStream<TcpStream>>;

/// The socket the admin server accepts on.
pub struct AdminListener {
    inner: Inner,
    local: SocketAddr,
}

enum Inner {
    Plain(TcpListener),
    /// Handshakes run in their own tasks, so a slow client never holds up the others.
    Tls {
        ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        _stop: tokio_util::sync::DropGuard,
    },
}

impl AdminListener {
    /// Plain HTTP on `listener`.
    pub fn plain(listener: TcpListener) -> io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            inner: Inner::Plain(listener),
            local,
        })
    }

    /// HTTPS on `listener`, with the server's certificates.
    pub fn tls(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let stop = CancellationToken::new();
        let (sender, ready) = mpsc::channel(READY_BACKLOG);
        tokio::spawn(accept_tls(listener, acceptor, sender, stop.clone()));
        Ok(Self {
            inner: Inner::Tls {
                ready,
                _stop: stop.drop_guard(),
            },
            local,
        })
    }

    /// Whether connections are encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls { .. })
    }
}

async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let (stream, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "admin listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    // The server is gone when this fails: nothing to do.
                    let _ = ready.send((stream, address)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(client = %address, %error, "admin TLS handshake failed")
                }
                Err(_) => tracing::debug!(client = %address, "admin TLS handshake timed out"),
            }
        });
    }
}

impl Listener for AdminListener {
    type Io = AdminStream;
    type Addr = AdminClient;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.inner {
            Inner::Plain(listener) => {
                let (stream, address) = Listener::accept(listener).await;
                let client = AdminClient {
                    address,
                    tls: false,
                };
                (Either::Left(stream), client)
            }
            Inner::Tls { ready, .. } => match ready.recv().await {
                Some((stream, address)) => {
                    (Either::Right(stream), AdminClient { address, tls: true })
                }
                // The accept task only ends when this listener is dropped.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(AdminClient {
            address: self.local,
            tls: self.is_tls(),
        })
    }
}

impl Connected<IncomingStream<'_, AdminListener>> for AdminClient {
    fn connect_info(stream: IncomingStream<'_, AdminListener>) -> Self {
        *stream.remote_addr()
    }
}
