//! A TCP relay the test controls: it listens on a loopback port and forwards each
//! connection to a target, until the test cuts it off, as a network partition would.
//!
//! [`TcpRelay::cut`] drops every connection it carries and then *blackholes* new ones: they
//! are accepted and held open, and not a byte is forwarded or answered. That is what a client
//! meets behind a partition — no refusal that would tell it the peer is gone, only silence
//! that its own timeouts must notice — whereas refusing new connections would let it fail
//! fast and would test something easier. [`TcpRelay::restore`] closes the blackholed
//! connections (a client waiting on one sees it end and connects again) and forwards again.
//!
//! With several targets it stands for a Kubernetes Service: each new connection goes to the
//! next target in turn that accepts one, so a client reconnecting after its peer died reaches
//! another.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the relay waits for a target to accept a connection before it tries the next.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the accepting thread and the test share.
#[derive(Default)]
struct State {
    targets: Vec<SocketAddr>,
    /// The target the next connection tries first.
    next: usize,
    cut: bool,
    /// Both ends of every forwarded connection (by number), to shut them down on a cut.
    forwarded: Vec<(usize, TcpStream, TcpStream)>,
    /// Connections accepted during a cut and held without forwarding.
    blackholed: Vec<TcpStream>,
    /// Connections forwarded since the start.
    connections: usize,
    /// Connections accepted during cuts, and held, since the start.
    held: usize,
}

/// A running relay; it stops, closing every connection, when dropped.
pub struct TcpRelay {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    stopped: Arc<AtomicBool>,
}

impl TcpRelay {
    /// A relay to `target` on a fresh loopback port.
    pub fn start(target: SocketAddr) -> TcpRelay {
        Self::balancing(vec![target])
    }

    /// A relay that sends each new connection to the next of `targets` that accepts it.
    pub fn balancing(targets: Vec<SocketAddr>) -> TcpRelay {
        assert!(!targets.is_empty(), "a relay needs at least one target");
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the relay on loopback");
        let address = listener.local_addr().expect("the relay's address");
        let state = Arc::new(Mutex::new(State {
            targets,
            ..State::default()
        }));
        let stopped = Arc::new(AtomicBool::new(false));
        let (accept_state, accept_stopped) = (Arc::clone(&state), Arc::clone(&stopped));
        std::thread::spawn(move || accept_loop(&listener, &accept_state, &accept_stopped));
        TcpRelay {
            address,
            state,
            stopped,
        }
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Drops every connection it carries; new ones are blackholed until [`TcpRelay::restore`].
    pub fn cut(&self) {
        let mut state = self.lock();
        state.cut = true;
        for (_, client, server) in state.forwarded.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// Closes the connections held during the cut and forwards new ones again.
    pub fn restore(&self) {
        let mut state = self.lock();
        state.cut = false;
        for held in state.blackholed.drain(..) {
            let _ = held.shutdown(Shutdown::Both);
        }
    }

    /// Whether it is cut off now.
    pub fn is_cut(&self) -> bool {
        self.lock().cut
    }

    /// How many connections it has forwarded since it started.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// How many connections it has accepted and held during cuts since it started.
    pub fn held(&self) -> usize {
        self.lock().held
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("relay state lock")
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.cut();
        self.restore();
        // Wakes the accepting thread so it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<Mutex<State>>, stopped: &AtomicBool) {
    for client in listener.incoming() {
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let _ = client.set_nodelay(true);
        let mut locked = state.lock().expect("relay state lock");
        if locked.cut {
            locked.held += 1;
            locked.blackholed.push(client);
            continue;
        }
        let first = locked.next;
        locked.next = (locked.next + 1) % locked.targets.len();
        let targets = locked.targets.clone();
        drop(locked);
        // Connecting may take a while (a target that stopped answering): not on the
        // accepting thread.
        let state = Arc::clone(state);
        std::thread::spawn(move || connect_and_forward(client, &targets, first, &state));
    }
}

/// Connects `client` to the first of `targets` from `first` on that accepts, and forwards
/// both ways on two threads; closes `client` when none accepts.
fn connect_and_forward(
    client: TcpStream,
    targets: &[SocketAddr],
    first: usize,
    state: &Arc<Mutex<State>>,
) {
    let server = (0..targets.len())
        .map(|i| targets[(first + i) % targets.len()])
        .find_map(|target| TcpStream::connect_timeout(&target, TARGET_CONNECT_TIMEOUT).ok());
    let Some(server) = server else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = server.set_nodelay(true);
    let (Ok(client_kept), Ok(server_kept), Ok(client_reader), Ok(server_reader)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    let id = {
        let mut locked = state.lock().expect("relay state lock");
        if locked.cut {
            // Cut while connecting: dropped with the others.
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        locked.connections += 1;
        let id = locked.connections;
        locked.forwarded.push((id, client_kept, server_kept));
        id
    };
    let other_state = Arc::clone(state);
    std::thread::spawn(move || pump(client_reader, server, id, &other_state));
    pump(server_reader, client, id, state);
}

/// Copies `from` into `to` until either ends, then ends both and forgets the connection.
fn pump(mut from: TcpStream, mut to: TcpStream, id: usize, state: &Mutex<State>) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
    // The kept copies hold the sockets open: closed here, once the connection is over.
    state
        .lock()
        .expect("relay state lock")
        .forwarded
        .retain(|(kept, _, _)| *kept != id);
}
