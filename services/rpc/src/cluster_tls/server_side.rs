//! The server end: connections accepted on a gRPC listener, with TLS handshakes made
//! concurrently (a slow or hostile client holds only its own task), each yielded with what
//! its peer proved.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ferrymail_telemetry::{LogLimit, Metrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::role::Caller;
use super::{ChannelSecurity, ClusterTls};

/// Longest a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const BACKLOG: usize = 64;
/// Failed handshakes repeat when a client is misconfigured: one line per minute.
static HANDSHAKE_FAILURES: LogLimit = LogLimit::new(Duration::from_secs(60));

/// What a connection's peer is: where it connects from, and who it proved to be.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's address (for logs; never in metrics).
    pub address: Option<SocketAddr>,
    /// Who it proved to be.
    pub caller: Caller,
}

/// An accepted connection, plain or TLS, with its peer.
pub struct PeerStream {
    io: Io,
    peer: Peer,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for PeerStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The reasons a handshake is refused for, as [`failure_reason`] names them.
const REASONS: [&str; 5] = [
    "untrusted_certificate",
    "expired_certificate",
    "not_tls",
    "timeout",
    "other",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// `grpc_tls_handshake_failures_total{reason}`.
#[derive(Clone, Debug, Default)]
pub struct HandshakeMetrics {
    failures: Family<ReasonLabel, Counter>,
}

impl HandshakeMetrics {
    /// Registers the metric in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        // Every reason exists from the start, at 0, so that an alert sees a series at once.
        for reason in REASONS {
            drop(this.failures.get_or_create(&ReasonLabel { reason }));
        }
        metrics.register(
            "grpc_tls_handshake_failures_total",
            "TLS handshakes refused on gRPC listeners, by reason (untrusted_certificate, \
             expired_certificate, not_tls, timeout, other).",
            this.failures.clone(),
        );
        this
    }

    fn failed(&self, reason: &'static str) {
        self.failures.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// The connections accepted on `listener`, secured as `security` says, until the stream is
/// dropped (the server stopped).
pub fn incoming(
    listener: TcpListener,
    security: ChannelSecurity,
    metrics: HandshakeMetrics,
) -> ReceiverStream<io::Result<PeerStream>> {
    let (sender, receiver) = mpsc::channel(BACKLOG);
    tokio::spawn(accept_loop(listener, security, metrics, sender));
    ReceiverStream::new(receiver)
}

async fn accept_loop(
    listener: TcpListener,
    security: ChannelSecurity,
    metrics: HandshakeMetrics,
    sender: mpsc::Sender<io::Result<PeerStream>>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = sender.closed() => return,
        };
        let (tcp, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: the server goes on with the next one.
                tracing::warn!(%error, "gRPC accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        match &security {
            ChannelSecurity::PlainText => {
                let stream = PeerStream {
                    io: Io::Plain(tcp),
                    peer: Peer {
                        address: Some(address),
                        caller: Caller::PlainText,
                    },
                };
                if sender.send(Ok(stream)).await.is_err() {
                    return;
                }
            }
            ChannelSecurity::MutualTls(tls) => {
                let (tls, metrics, sender) = (tls.clone(), metrics.clone(), sender.clone());
                tokio::spawn(async move {
                    if let Some(stream) = handshake(tcp, address, &tls, &metrics).await {
                        let _ = sender.send(Ok(stream)).await;
                    }
                });
            }
        }
    }
}

/// The TLS handshake of one connection, with its peer's roles; `None`, logged and counted,
/// when it fails.
async fn handshake(
    tcp: TcpStream,
    address: SocketAddr,
    tls: &ClusterTls,
    metrics: &HandshakeMetrics,
) -> Option<PeerStream> {
    let credentials = tls.current();
    let acceptor = tokio_rustls::TlsAcceptor::from(credentials.server.clone());
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
    let (reason, error) = match outcome {
        Ok(Ok(stream)) => {
            let caller = match stream.get_ref().1.peer_certificates() {
                Some([end_entity, ..]) => Caller::Certified(credentials.roles_of(end_entity)),
                _ => Caller::Anonymous,
            };
            return Some(PeerStream {
                io: Io::Tls(Box::new(stream)),
                peer: Peer {
                    address: Some(address),
                    caller,
                },
            });
        }
        Ok(Err(error)) => (failure_reason(&error), error.to_string()),
        Err(_) => (
            "timeout",
            format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
        ),
    };
    metrics.failed(reason);
    if let Some(left_out) = HANDSHAKE_FAILURES.admit() {
        tracing::warn!(client = %address, reason, %error, left_out, "gRPC TLS handshake refused");
    }
    None
}

/// A short, stable name for why a handshake failed.
fn failure_reason(error: &io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    match error.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        )) => "expired_certificate",
        Some(Error::InvalidCertificate(_)) => "untrusted_certificate",
        Some(Error::InvalidMessage(_)) => "not_tls",
        _ if error.kind() == io::ErrorKind::InvalidData => "not_tls",
        _ => "other",
    }
}
