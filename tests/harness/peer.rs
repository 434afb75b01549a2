//! Plumbing shared by the real peers (Dovecot, smtp-sink): finding their binaries, loopback
//! ports, waiting on conditions and on processes.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long any wait on a peer may take before the test fails: a guard against hangs, not a
/// performance assertion. Dovecot delays logins after a failed one by up to 15 s (its auth
/// penalty), and this sandbox is slow, so it is generous.
pub const PEER_PATIENCE: Duration = Duration::from_secs(60);

/// Directories searched for a peer binary besides `PATH` (daemons live in `sbin`, which a
/// non-login shell's `PATH` may lack).
const SBIN: [&str; 2] = ["/usr/sbin", "/sbin"];

/// The path of the peer program `binary` (a name like `dovecot`, or an absolute path).
///
/// Panics, failing the test, when it is not installed: tests against real peers never skip,
/// because CI must not pass without them.
pub fn require_peer(binary: &str) -> PathBuf {
    let candidates: Vec<PathBuf> = if binary.contains('/') {
        vec![PathBuf::from(binary)]
    } else {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain(SBIN.iter().map(PathBuf::from))
            .map(|dir| dir.join(binary))
            .collect()
    };
    if let Some(found) = candidates.iter().find(|path| is_executable(path)) {
        return found.clone();
    }
    panic!(
        "the test peer `{binary}` is not installed (looked for {}).\n\
         These tests run against real peers and never skip: run `make test-deps` \
         (it installs Dovecot, Postfix's smtp-sink and swaks from Debian), then run the tests again.",
        candidates
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `N` distinct loopback ports that were free a moment ago (bound to 127.0.0.1:0, then
/// released). Another process may take one before the peer binds it: peers retry their
/// start on `Address already in use`.
pub fn free_loopback_ports<const N: usize>() -> [u16; N] {
    // Hold every listener until all are chosen, so the N ports differ.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0"))
        .collect();
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().expect("local address").port();
    }
    ports
}

/// A loopback address for `port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Polls `condition` until it holds; panics after [`PEER_PATIENCE`] with `what` and the
/// output of `context` (a log, say).
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + PEER_PATIENCE;
    let mut pause = Duration::from_millis(2);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {PEER_PATIENCE:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether a TCP connection to `addr` is accepted now.
pub fn accepts_connections(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Whether process `pid` is alive (a zombie counts as gone: a daemon's parent, init in a
/// container, may never reap it).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
