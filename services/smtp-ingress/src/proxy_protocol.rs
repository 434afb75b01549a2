//! The PROXY protocol (HAProxy's v1 text and v2 binary headers): the address of the real
//! client, sent by a load balancer in front of the bytes it relays.
//!
//! Framing is done here and is byte-exact: the header is read without reading one byte past
//! its end, so what follows it (a TLS ClientHello on implicit-TLS listeners, SMTP commands)
//! stays in the socket for the TLS acceptor and the session, which take a plain `TcpStream`.
//! A complete header is then parsed by the `ppp` crate, chosen over `proxy-header` because it
//! tells a v2 `LOCAL` command apart from a v1 `UNKNOWN` line or an unspecified address family
//! (`proxy-header` turns all three into "no address"), it checks v1 fields strictly (no
//! leading zeros in ports, the protocol word exact), its errors say what is wrong (they go
//! to the log), it is Apache-2.0 like ferrymail and it depends on nothing but `thiserror`.
//!
//! Behaviour, for a listener with `proxy-protocol = true` (see `listener.rs`):
//! - a connection from `proxy.trusted-networks` must start with a header, within
//!   `session.timeout`; the client address it carries replaces the connection's everywhere;
//! - a v2 `LOCAL` header (the proxy's own health check), a v1 `UNKNOWN` line and a v2 header
//!   with an unspecified or Unix address family keep the connection's own address, as the
//!   specification asks;
//! - a missing, malformed or late header closes the connection without a reply, as
//!   Postfix's postscreen does: the bytes in front of the session cannot be trusted, and
//!   nothing can be answered to a TLS client anyway;
//! - a connection from anywhere else is served as a direct client under its own address; a
//!   header it sends is not read as one, so it only earns `500 Unknown command`.

use std::io;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use ppp::v2::{Addresses, Command, Protocol};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, command, family and protocol, length.
const V2_FIXED: usize = 16;
/// How every v1 header starts.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The shortest header of either version: `PROXY UNKNOWN\r\n`.
const SHORTEST: usize = 15;
/// The longest v1 header, CRLF included (the specification's limit).
const V1_LONGEST: usize = 107;

/// Where a connection comes from, by its PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A client relayed by the proxy, from this address.
    Client(SocketAddr),
    /// The proxy's own connection (v2 `LOCAL`, e.g. a health check).
    Local,
    /// Relayed, from an address the proxy does not give (v1 `UNKNOWN`, v2 `AF_UNSPEC`/`AF_UNIX`).
    Unknown,
}

impl Origin {
    /// The client address to use for a connection whose own peer is `peer`.
    pub(crate) fn client(self, peer: SocketAddr) -> SocketAddr {
        match self {
            Origin::Client(address) => address,
            Origin::Local | Origin::Unknown => peer,
        }
    }
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The peer closed the connection without sending anything (a TCP health check).
    #[error("the connection closed before a PROXY header")]
    Closed,
    /// The peer closed the connection in the middle of the header.
    #[error("the connection closed in the middle of the PROXY header")]
    Truncated,
    /// Reading failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
    /// The connection starts with something else.
    #[error("no PROXY header: the connection starts with \"{0}\"")]
    Missing(String),
    /// The header is framed wrongly, or says what no SMTP connection can be.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
    /// The v1 line does not parse.
    #[error("malformed PROXY v1 header: {}", one_line(.0))]
    V1(#[source] ppp::v1::BinaryParseError),
    /// The v2 header does not parse.
    #[error("malformed PROXY v2 header: {0}")]
    V2(#[source] ppp::v2::ParseError),
}

/// `error` on one log line: some of `ppp`'s messages hold a raw CRLF.
fn one_line(error: &impl std::fmt::Display) -> String {
    error.to_string().replace('\r', "\\r").replace('\n', "\\n")
}

/// Whether `peer` is in one of `networks`.
pub(crate) fn trusted(networks: &[IpNet], peer: IpAddr) -> bool {
    // A dual-stack socket shows IPv4 peers as `::ffff:a.b.c.d`; IPv4 networks must match them.
    let canonical = peer.to_canonical();
    networks
        .iter()
        .any(|network| network.contains(&peer) || network.contains(&canonical))
}

/// Reads one PROXY header from the start of `io`, and not a byte more.
pub(crate) async fn read_header<R: AsyncRead + Unpin>(io: &mut R) -> Result<Origin, ProxyError> {
    let mut header = Vec::with_capacity(SHORTEST * 4);
    while let Some(more) = missing(&header)? {
        let start = header.len();
        header.resize(start + more, 0);
        let read = io.read(&mut header[start..]).await?;
        header.truncate(start + read);
        if read == 0 {
            return Err(if start == 0 {
                ProxyError::Closed
            } else {
                ProxyError::Truncated
            });
        }
    }
    parse(&header)
}

/// How many more bytes certainly belong to the header read so far (`None`: it is complete).
fn missing(header: &[u8]) -> Result<Option<usize>, ProxyError> {
    // Never more than the shortest valid header could still need, so that a read cannot take
    // bytes that follow the header; and each read is checked at once, so that a client that
    // sends no header is refused at its first bytes rather than at the timeout.
    let len = header.len();
    if len == 0 {
        return Ok(Some(SHORTEST));
    }
    if starts_like(header, V2_SIGNATURE) {
        if len < V2_FIXED {
            return Ok(Some(V2_FIXED - len));
        }
        let total = V2_FIXED + usize::from(u16::from_be_bytes([header[14], header[15]]));
        return Ok((len < total).then(|| total - len));
    }
    if starts_like(header, V1_PREFIX) {
        if let Some(end) = header.iter().position(|&b| b == b'\n') {
            return if end + 1 == len {
                Ok(None)
            } else {
                Err(ProxyError::Malformed(
                    "v1 line shorter than any valid header",
                ))
            };
        }
        if len >= V1_LONGEST {
            return Err(ProxyError::Malformed("v1 line longer than 107 bytes"));
        }
        // The end of the line is unknown: one byte at a time, at most 92 reads.
        return Ok(Some(SHORTEST.saturating_sub(len).max(1)));
    }
    let shown: Vec<u8> = header.iter().take(SHORTEST).copied().collect();
    Err(ProxyError::Missing(shown.escape_ascii().to_string()))
}

/// Whether `header` and `prefix` agree on their common length.
fn starts_like(header: &[u8], prefix: &[u8]) -> bool {
    let n = header.len().min(prefix.len());
    header[..n] == prefix[..n]
}

/// Parses a complete header, as framed by [`missing`].
fn parse(header: &[u8]) -> Result<Origin, ProxyError> {
    if header.starts_with(V2_SIGNATURE) {
        let parsed = ppp::v2::Header::try_from(header).map_err(ProxyError::V2)?;
        if parsed.command == Command::Local {
            // The specification: accept, and ignore whatever address information follows.
            return Ok(Origin::Local);
        }
        return match (parsed.addresses, parsed.protocol) {
            (Addresses::IPv4(a), Protocol::Stream) => {
                Ok(client(IpAddr::V4(a.source_address), a.source_port))
            }
            (Addresses::IPv6(a), Protocol::Stream) => {
                Ok(client(IpAddr::V6(a.source_address), a.source_port))
            }
            (Addresses::Unspecified, Protocol::Unspecified)
            | (Addresses::Unix(_), Protocol::Stream) => Ok(Origin::Unknown),
            (_, Protocol::Datagram) => Err(ProxyError::Malformed(
                "v2 header for a datagram (UDP) connection",
            )),
            // 0x10, 0x20, 0x30 and 0x01 are not in the specification's list, which says to
            // reject what is not.
            _ => Err(ProxyError::Malformed(
                "v2 header with an undefined address family and protocol pair",
            )),
        };
    }
    let parsed = ppp::v1::Header::try_from(header).map_err(ProxyError::V1)?;
    if parsed.header.len() != header.len() {
        return Err(ProxyError::Malformed("v1 line with bytes after its CRLF"));
    }
    match parsed.addresses {
        ppp::v1::Addresses::Tcp4(a) => Ok(client(IpAddr::V4(a.source_address), a.source_port)),
        ppp::v1::Addresses::Tcp6(a) => Ok(client(IpAddr::V6(a.source_address), a.source_port)),
        ppp::v1::Addresses::Unknown => Ok(Origin::Unknown),
    }
}

/// A relayed client at `ip`, `port`.
fn client(ip: IpAddr, port: u16) -> Origin {
    // An IPv4-mapped address is the IPv4 client, logged and counted as such.
    Origin::Client(SocketAddr::new(ip.to_canonical(), port))
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tokio::io::{AsyncWriteExt, ReadBuf};

    use super::*;

    /// A guard, not a wait: a read that waits for bytes that never come fails the test.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A v2 header: `command` (0 LOCAL, 1 PROXY), `family_protocol`, then `body`.
    fn v2(command: u8, family_protocol: u8, body: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family_protocol);
        let len = u16::try_from(body.len()).unwrap_or_else(|e| panic!("{e}"));
        header.extend_from_slice(&len.to_be_bytes());
        header.extend_from_slice(body);
        header
    }

    fn v2_ipv4(source: [u8; 4], port: u16) -> Vec<u8> {
        let mut body = source.to_vec();
        body.extend_from_slice(&[10, 0, 0, 1]);
        body.extend_from_slice(&port.to_be_bytes());
        body.extend_from_slice(&25u16.to_be_bytes());
        v2(1, 0x11, &body)
    }

    /// Reads a header from `input` and returns the result and what is left unread.
    async fn read(input: &[u8]) -> (Result<Origin, ProxyError>, Vec<u8>) {
        let mut rest = input;
        let result = tokio::time::timeout(PATIENCE, read_header(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("read_header waited for more than {input:?}"));
        (result, rest.to_vec())
    }

    async fn origin(input: &[u8]) -> Origin {
        match read(input).await {
            (Ok(origin), _) => origin,
            (Err(error), _) => panic!("{input:?} refused: {error}"),
        }
    }

    async fn refusal(input: &[u8]) -> String {
        match read(input).await {
            (Ok(origin), _) => panic!("{input:?} accepted as {origin:?}"),
            (Err(error), _) => error.to_string(),
        }
    }

    fn at(address: &str) -> Origin {
        Origin::Client(address.parse().unwrap_or_else(|e| panic!("{address}: {e}")))
    }

    #[tokio::test]
    async fn v1_addresses() {
        assert_eq!(
            origin(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 25\r\n").await,
            at("203.0.113.7:51234")
        );
        assert_eq!(
            origin(b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 25\r\n").await,
            at("[2001:db8::7]:65535")
        );
        assert_eq!(
            origin(b"PROXY TCP6 ::ffff:198.51.100.4 ::1 0 25\r\n").await,
            at("198.51.100.4:0"),
            "an IPv4-mapped address is the IPv4 client"
        );
        assert_eq!(
            origin(b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n").await,
            at("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")
        );
        let longest = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), V1_LONGEST);
        assert_eq!(origin(longest).await, Origin::Unknown);
    }

    #[tokio::test]
    async fn v1_unknown_keeps_the_connection_address() {
        assert_eq!(origin(b"PROXY UNKNOWN\r\n").await, Origin::Unknown);
        assert_eq!(
            origin(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").await,
            Origin::Unknown
        );
        let peer: SocketAddr = "10.1.2.3:4000".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Origin::Unknown.client(peer), peer);
        assert_eq!(Origin::Local.client(peer), peer);
        assert_eq!(
            at("192.0.2.1:1").client(peer),
            "192.0.2.1:1".parse().unwrap_or_else(|e| panic!("{e}"))
        );
    }

    #[tokio::test]
    async fn v2_addresses() {
        assert_eq!(
            origin(&v2_ipv4([203, 0, 113, 7], 51234)).await,
            at("203.0.113.7:51234")
        );
        let mut body = Vec::new();
        body.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap_or_else(|e| panic!("{e}"))
                .octets(),
        );
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&[0x12, 0x34, 0, 25]);
        assert_eq!(origin(&v2(1, 0x21, &body)).await, at("[2001:db8::7]:4660"));
    }

    #[tokio::test]
    async fn v2_with_tlvs_is_read_to_its_end() {
        let mut body = vec![192, 0, 2, 9, 10, 0, 0, 1, 0, 1, 0, 25];
        // PP2_TYPE_AUTHORITY "mx", then a vendor TLV such as cloud load balancers add.
        body.extend_from_slice(&[0x02, 0, 2, b'm', b'x', 0xEA, 0, 3, 1, 2, 3]);
        let mut input = v2(1, 0x11, &body);
        input.extend_from_slice(b"EHLO x\r\n");
        let (result, rest) = read(&input).await;
        assert_eq!(result.ok(), Some(at("192.0.2.9:1")));
        assert_eq!(rest, b"EHLO x\r\n");
    }

    #[tokio::test]
    async fn v2_local_and_unspecified_keep_the_connection_address() {
        assert_eq!(origin(&v2(0, 0x00, &[])).await, Origin::Local);
        assert_eq!(
            origin(&v2(0, 0x11, &[1; 12])).await,
            Origin::Local,
            "LOCAL ignores address information"
        );
        assert_eq!(origin(&v2(1, 0x00, &[])).await, Origin::Unknown);
        assert_eq!(origin(&v2(1, 0x31, &[0; 216])).await, Origin::Unknown);
    }

    #[tokio::test]
    async fn nothing_after_the_header_is_read() {
        let client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
        for header in [
            b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 465\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2_ipv4([192, 0, 2, 1], 1000),
            v2(0, 0x00, &[]),
        ] {
            let mut input = header.clone();
            input.extend_from_slice(&client_hello);
            let (result, rest) = read(&input).await;
            assert!(result.is_ok(), "{header:?}: {result:?}");
            assert_eq!(rest, client_hello, "{header:?}");
        }
    }

    /// Gives one byte per read, as a slow network might.
    struct Trickle<'a>(&'a [u8]);

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some((&first, rest)) = self.0.split_first() {
                buf.put_slice(&[first]);
                self.0 = rest;
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_header_in_pieces_is_assembled() {
        for header in [
            b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 25\r\n".to_vec(),
            v2_ipv4([192, 0, 2, 1], 1000),
        ] {
            let mut input = header.clone();
            input.extend_from_slice(b"QUIT\r\n");
            let mut trickle = Trickle(&input);
            let result = read_header(&mut trickle).await;
            assert_eq!(result.ok(), Some(at("192.0.2.1:1000")), "{header:?}");
            assert_eq!(trickle.0, b"QUIT\r\n");
        }
    }

    #[tokio::test]
    async fn the_shortest_header_needs_no_more_bytes() {
        // The client waits for the greeting after `PROXY UNKNOWN\r\n`: reading must not
        // wait for a 16th byte.
        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(b"PROXY UNKNOWN\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let result = tokio::time::timeout(PATIENCE, read_header(&mut server)).await;
        assert_eq!(result.ok().and_then(Result::ok), Some(Origin::Unknown));
    }

    #[tokio::test]
    async fn a_client_without_a_header_is_refused_at_its_first_bytes() {
        // The connection stays open: the refusal comes from the bytes, not from a timeout.
        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(b"EHLO x\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let result = tokio::time::timeout(PATIENCE, read_header(&mut server)).await;
        let refused = result.unwrap_or_else(|_| panic!("waited for more bytes"));
        assert_eq!(
            refused.map_err(|e| e.to_string()),
            Err("no PROXY header: the connection starts with \"EHLO x\\r\\n\"".to_string())
        );
        let (mut client, mut server) = tokio::io::duplex(64);
        client
            .write_all(b"\x16\x03\x01")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let result = tokio::time::timeout(PATIENCE, read_header(&mut server)).await;
        assert!(
            matches!(result, Ok(Err(ProxyError::Missing(_)))),
            "a TLS ClientHello: {result:?}"
        );
    }

    #[tokio::test]
    async fn closed_connections() {
        assert!(matches!(read(b"").await.0, Err(ProxyError::Closed)));
        for partial in [
            b"PROX".to_vec(),
            b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 25".to_vec(),
            b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 25\r".to_vec(),
            V2_SIGNATURE[..7].to_vec(),
            v2_ipv4([192, 0, 2, 1], 1000)[..20].to_vec(),
        ] {
            assert!(
                matches!(read(&partial).await.0, Err(ProxyError::Truncated)),
                "{partial:?}"
            );
        }
    }

    #[tokio::test]
    async fn malformed_v1_lines() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"PROXY TCP5 192.0.2.1 10.0.0.1 1000 25\r\n",
                "invalid protocol",
            ),
            (
                b"PROXY tcp4 192.0.2.1 10.0.0.1 1000 25\r\n",
                "invalid protocol",
            ),
            (
                b"proxy TCP4 192.0.2.1 10.0.0.1 1000 25\r\n",
                "no PROXY header",
            ),
            (b"PROXY  TCP4 192.0.2.1 10.0.0.1 1000 25\r\n", "protocol"),
            (
                b"PROXY TCP4 192.0.2.1  10.0.0.1 1000 25\r\n",
                "for the destination",
            ),
            (
                b"PROXY TCP4 999.0.2.1 10.0.0.1 1000 25\r\n",
                "IP address for the source",
            ),
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.1.5 1000 25\r\n",
                "IP address for the destination",
            ),
            (
                b"PROXY TCP4 2001:db8::1 10.0.0.1 1000 25\r\n",
                "IP address for the source",
            ),
            (
                b"PROXY TCP6 192.0.2.1 ::1 1000 25\r\n",
                "IP address for the source",
            ),
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.1 65536 25\r\n",
                "port for the source",
            ),
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.1 01000 25\r\n",
                "port for the source",
            ),
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.1 -1 25\r\n",
                "port for the source",
            ),
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 x25\r\n",
                "port for the destination",
            ),
            (b"PROXY TCP4 192.0.2.1 10.0.0.1 1000\r\n", "port"),
            (b"PROXY TCP4 192.0.2.1 10.0.0.1\r\n", "port"),
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 25 extra\r\n",
                "must end in '\\r\\n'",
            ),
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 25\n",
                "port for the destination",
            ),
            (
                b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 25\rX\n",
                "must end in '\\r\\n'",
            ),
            (b"PROXY TCP4 192.0.2.\xff 10.0.0.1 1000 25\r\n", "UTF-8"),
            (b"PROXY X\r\nEHLO x\r\n", "shorter than any valid header"),
            (b"PROXY \r\n", "invalid protocol"),
            (
                b"PROXYTCP4 192.0.2.1 10.0.0.1 1000 25\r\n",
                "no PROXY header",
            ),
        ];
        for (input, expected) in cases {
            let error = refusal(input).await;
            assert!(
                error.contains(expected),
                "{:?}: {error:?} lacks {expected:?}",
                String::from_utf8_lossy(input)
            );
        }
        let endless = [b"PROXY TCP6 ".as_slice(), &[b'f'; 200]].concat();
        assert_eq!(
            refusal(&endless).await,
            "malformed PROXY header: v1 line longer than 107 bytes"
        );
        let (_, rest) = read(&endless).await;
        assert_eq!(
            rest.len(),
            endless.len() - V1_LONGEST,
            "no read past 107 bytes"
        );
    }

    #[tokio::test]
    async fn malformed_v2_headers() {
        let mut wrong_version = v2_ipv4([192, 0, 2, 1], 1);
        wrong_version[12] = 0x11;
        let mut wrong_command = v2_ipv4([192, 0, 2, 1], 1);
        wrong_command[12] = 0x22;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (wrong_version, "version"),
            (wrong_command, "command"),
            (v2(1, 0x41, &[0; 12]), "Address Family"),
            (v2(1, 0x13, &[0; 12]), "protocol"),
            (v2(1, 0x12, &[0; 12]), "datagram"),
            (v2(1, 0x22, &[0; 36]), "datagram"),
            (
                v2(1, 0x10, &[0; 12]),
                "undefined address family and protocol",
            ),
            (v2(1, 0x01, &[]), "undefined address family and protocol"),
            (v2(1, 0x11, &[0; 4]), "cannot store the 12 bytes"),
            (v2(1, 0x21, &[0; 12]), "cannot store the 36 bytes"),
            (v2(1, 0x31, &[0; 100]), "cannot store the 216 bytes"),
            (
                [&V2_SIGNATURE[..11], b"X\x21\x11\x00\x0c".as_slice()].concat(),
                "no PROXY header",
            ),
            (b"\r\n\r\nX".to_vec(), "no PROXY header"),
        ];
        for (input, expected) in cases {
            let error = refusal(&input).await;
            assert!(
                error.contains(expected),
                "{input:?}: {error:?} lacks {expected:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_largest_v2_header_is_read_whole() {
        let mut body = vec![192, 0, 2, 1, 10, 0, 0, 1, 0, 1, 0, 25];
        // One NOOP TLV filling the rest of the 65,535 bytes.
        let fill = usize::from(u16::MAX) - body.len() - 3;
        body.push(0x04);
        body.extend_from_slice(&u16::try_from(fill).unwrap_or(0).to_be_bytes());
        body.resize(usize::from(u16::MAX), 0);
        let mut input = v2(1, 0x11, &body);
        input.extend_from_slice(b"NEXT");
        let (result, rest) = read(&input).await;
        assert_eq!(result.ok(), Some(at("192.0.2.1:1")));
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn trusted_networks() {
        let networks: Vec<IpNet> = ["10.0.0.0/8", "fd00::/8"]
            .iter()
            .map(|n| n.parse().unwrap_or_else(|e| panic!("{n}: {e}")))
            .collect();
        let ip = |s: &str| -> IpAddr { s.parse().unwrap_or_else(|e| panic!("{s}: {e}")) };
        assert!(trusted(&networks, ip("10.1.2.3")));
        assert!(
            trusted(&networks, ip("::ffff:10.1.2.3")),
            "dual-stack socket"
        );
        assert!(trusted(&networks, ip("fd12::1")));
        assert!(!trusted(&networks, ip("11.0.0.1")));
        assert!(!trusted(&networks, ip("::1")));
        assert!(!trusted(&[], ip("10.1.2.3")));
    }
}
