//! Accepting connections: the PROXY protocol header, implicit TLS, connection limits
//! (overall and per client address), and one task per session.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::Shared;
use crate::proxy_protocol::{self, ProxyError};
use crate::session::Session;
use crate::settings::{ListenerSettings, Settings};
use crate::tls::ServerStream;

/// Open sessions per client address, to enforce `server.max-connections(-per-ip)`.
#[derive(Default)]
pub(crate) struct Connections {
    open: Mutex<Open>,
}

/// Open sessions: in all, and per client address (addresses with none are removed).
#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A slot held by one session; released on drop.
pub(crate) struct Slot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for `ip`, or `None` when a limit is reached.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        total: usize,
        per_ip: usize,
    ) -> Option<Slot> {
        let mut open = self.lock();
        let mine = open.per_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= total || mine >= per_ip {
            return None;
        }
        open.per_ip.insert(ip, mine + 1);
        open.total += 1;
        Some(Slot {
            connections: self.clone(),
            ip,
        })
    }

    /// The sessions open from `ip`.
    pub(crate) fn open_from(&self, ip: IpAddr) -> usize {
        self.lock().per_ip.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.connections.lock();
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
            open.total -= 1;
        }
    }
}

/// The settings an accept loop gives its next connection: those of the configuration in
/// force for its listener id.
///
/// When the id is gone from the configuration, or now names another protocol, the socket
/// needs replacing, which is the caller's business (`Ingress::serve` is called again, and
/// this loop stopped): until then connections keep being served with the last settings the
/// loop had, rather than refused.
pub(crate) struct ListenerFollower {
    last: Arc<ListenerSettings>,
}

impl ListenerFollower {
    /// Starts from `initial`, the settings the socket was bound with.
    pub(crate) fn new(initial: Arc<ListenerSettings>) -> Self {
        Self { last: initial }
    }

    /// The settings for a new connection, given the listener's in the current configuration.
    pub(crate) fn next(&mut self, current: Option<Arc<ListenerSettings>>) -> Arc<ListenerSettings> {
        if let Some(current) = current
            && current.lmtp == self.last.lmtp
        {
            self.last = current;
        }
        self.last.clone()
    }
}

/// Accepts on `socket` until `stop` is cancelled; sessions run on `tracker`.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: Arc<ListenerSettings>,
    socket: TcpListener,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let mut follower = ListenerFollower::new(listener);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = socket.accept() => accepted,
        };
        let listener = follower.next(shared.listener(&follower.last.id));
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: keep serving the sessions we have.
                tracing::warn!(listener = %listener.id, %error, "accept failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let shared = shared.clone();
        tracker.spawn(async move { serve_connection(shared, listener, tcp, peer).await });
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    listener: Arc<ListenerSettings>,
    mut tcp: TcpStream,
    peer: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let settings = shared.settings();
    // The client address is known only after the PROXY header, so the per-address slot is
    // taken after it.
    let Some(peer) = client_address(&shared, &listener, &mut tcp, peer, &settings).await else {
        return;
    };
    let Some(_slot) = shared.connections.acquire(
        peer.ip(),
        settings.max_connections,
        settings.max_connections_per_ip,
    ) else {
        shared.metrics.rejected("connections");
        let _ = tcp
            .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
            .await;
        return;
    };
    let stream = if listener.tls_implicit {
        let Some(acceptor) = shared.tls() else { return };
        match tokio::time::timeout(settings.timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                shared.metrics.tls();
                ServerStream::Tls(Box::new(tls))
            }
            _ => return,
        }
    } else {
        ServerStream::Plain(tcp)
    };
    shared.metrics.session_opened();
    // The root of the trace of every message received in this session.
    let span = tracing::info_span!("smtp.session", listener = %listener.id, client = %peer.ip());
    Session::new(stream, shared.clone(), listener, peer)
        .run()
        .instrument(span)
        .await;
    shared.metrics.session_closed();
}

/// The client of a connection from `peer` (by its PROXY header if one is due), or `None` to close it.
async fn client_address(
    shared: &Shared,
    listener: &ListenerSettings,
    tcp: &mut TcpStream,
    peer: SocketAddr,
    settings: &Settings,
) -> Option<SocketAddr> {
    if !listener.proxy_protocol
        || !proxy_protocol::trusted(&listener.proxy_trusted_networks, peer.ip())
    {
        return Some(peer);
    }
    // What is refused and why is described in `proxy_protocol.rs`.
    let read = tokio::time::timeout(settings.timeout, proxy_protocol::read_header(tcp)).await;
    let error = match read {
        Ok(Ok(origin)) => {
            let client = origin.client(peer);
            tracing::debug!(listener = %listener.id, proxy = %peer.ip(), %client, ?origin, "PROXY header read");
            return Some(client);
        }
        Ok(Err(error)) => error,
        Err(_) => {
            shared.metrics.rejected("proxy_protocol");
            tracing::warn!(listener = %listener.id, proxy = %peer.ip(), timeout = ?settings.timeout, "no PROXY header in time; connection closed");
            return None;
        }
    };
    if matches!(error, ProxyError::Closed) {
        // A load balancer's TCP health check: nothing to warn about.
        tracing::debug!(listener = %listener.id, proxy = %peer.ip(), "connection closed before its PROXY header");
    } else {
        shared.metrics.rejected("proxy_protocol");
        tracing::warn!(listener = %listener.id, proxy = %peer.ip(), %error, "PROXY header refused; connection closed");
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn listener(greeting: &str, lmtp: bool) -> Arc<ListenerSettings> {
        Arc::new(ListenerSettings {
            id: "smtp".into(),
            lmtp,
            tls_implicit: false,
            greeting: greeting.into(),
            proxy_protocol: false,
            proxy_trusted_networks: Vec::new(),
        })
    }

    #[test]
    fn a_listener_follows_its_configuration_and_keeps_the_last_when_it_is_gone() {
        let mut follower = ListenerFollower::new(listener("first", false));
        assert_eq!(follower.next(None).greeting, "first", "id not in the table");
        let changed = follower.next(Some(listener("second", false)));
        assert_eq!(changed.greeting, "second");
        assert_eq!(
            follower.next(None).greeting,
            "second",
            "removed: the last stays"
        );
        // A protocol change needs a new socket: the old one keeps its protocol meanwhile.
        let other = follower.next(Some(listener("lmtp now", true)));
        assert_eq!((other.greeting.as_str(), other.lmtp), ("second", false));
    }

    #[test]
    fn slots_count_in_all_and_per_address_and_come_back_when_dropped() {
        let connections = Arc::new(Connections::default());
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = connections.acquire(a, 3, 2).unwrap();
        let second = connections.acquire(a, 3, 2).unwrap();
        assert!(connections.acquire(a, 3, 2).is_none(), "two per address");
        let third = connections.acquire(b, 3, 2).unwrap();
        assert!(connections.acquire(b, 3, 2).is_none(), "three in all");
        drop(first);
        assert!(connections.acquire(b, 3, 2).is_some(), "a slot came back");
        drop((second, third));
        let open = connections.lock();
        assert_eq!((open.total, open.per_ip.len()), (0, 0));
    }
}
