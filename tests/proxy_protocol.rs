//! PROXY protocol v1/v2 on SMTP/LMTP listeners through `ferrymail all`, with Dovecot as the
//! directory: a header from a trusted network sets the client address (logs, per-address
//! limits), `LOCAL`/`UNKNOWN` keep the real one, a bad header closes the connection, and a
//! header from an untrusted network is not believed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, EMBEDDED_STORE, Ferrymail, PEER_PATIENCE, TestCertificates,
    mailboxes_directory,
};

struct Lab {
    _dovecot: Dovecot,
    _certs: tempfile::TempDir,
    ca: std::path::PathBuf,
    process: Ferrymail,
    smtp: SocketAddr,
    submissions: SocketAddr,
    lmtp: SocketAddr,
    untrusted: SocketAddr,
}

/// `ferrymail all` with `server` added to its `[server]` table.
fn lab(server: &str) -> Lab {
    // smtp, submissions (implicit TLS) and lmtp trust PROXY headers from loopback; the
    // untrusted listener trusts only 10.0.0.0/8, which loopback is not in.
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = TestCertificates::generate(certs_dir.path());
    let config = format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
{server}
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
proxy-protocol = true
proxy.trusted-networks = ["127.0.0.0/8", "::1/128"]
[server.listener.submissions]
bind = "127.0.0.1:0"
protocol = "smtp"
tls.implicit = true
proxy-protocol = true
proxy.trusted-networks = ["127.0.0.1"]
[server.listener.lmtp]
bind = "127.0.0.1:0"
protocol = "lmtp"
proxy-protocol = true
proxy.trusted-networks = ["127.0.0.0/8"]
[server.listener.untrusted]
bind = "127.0.0.1:0"
protocol = "smtp"
proxy-protocol = true
proxy.trusted-networks = ["10.0.0.0/8"]
[certificate.default]
cert = "%{{file:{cert}}}%"
private-key = "%{{file:{key}}}%"
{store}{mailboxes}[session.rcpt]
directory = "mailboxes"
"#,
        cert = certs.cert_pem.display(),
        key = certs.key_pem.display(),
        store = EMBEDDED_STORE,
        mailboxes = mailboxes_directory(&dovecot),
    );
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let submissions = process.address("submissions");
    let lmtp = process.address("lmtp");
    let untrusted = process.address("untrusted");
    Lab {
        _dovecot: dovecot,
        ca: certs.ca_pem.clone(),
        _certs: certs_dir,
        process,
        smtp,
        submissions,
        lmtp,
        untrusted,
    }
}

/// A v1 header for a TCP client at `client`.
fn v1(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        server.ip(),
        client.port(),
        server.port()
    )
    .into_bytes()
}

/// A v2 header: `command` 0 is LOCAL, 1 is PROXY; a PROXY header carries `client`.
fn v2(command: u8, client: Option<SocketAddr>) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x20 | command);
    let body = match client {
        None => {
            header.push(0x00);
            Vec::new()
        }
        Some(SocketAddr::V4(client)) => {
            header.push(0x11);
            [
                client.ip().octets().as_slice(),
                &[127, 0, 0, 1],
                &client.port().to_be_bytes(),
                &25u16.to_be_bytes(),
            ]
            .concat()
        }
        Some(SocketAddr::V6(client)) => {
            header.push(0x21);
            [
                client.ip().octets().as_slice(),
                &Ipv6Addr::LOCALHOST.octets(),
                &client.port().to_be_bytes(),
                &25u16.to_be_bytes(),
            ]
            .concat()
        }
    };
    header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    header.extend_from_slice(&body);
    header
}

fn address(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// One reply: its code and its lines' text.
#[derive(Debug)]
struct Reply {
    code: u16,
    text: String,
}

/// A plain SMTP/LMTP connection that starts with a PROXY header.
struct Session {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Session {
    /// Connects, sends `header` and reads the first reply (`None`: closed instead).
    fn open(server: SocketAddr, header: &[u8]) -> (Session, Option<Reply>) {
        let stream = TcpStream::connect(server).unwrap();
        stream.set_read_timeout(Some(PEER_PATIENCE)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        writer.write_all(header).unwrap();
        let mut session = Session {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = session.reply();
        (session, greeting)
    }

    /// The next reply, or `None` when the server closed the connection.
    fn reply(&mut self) -> Option<Reply> {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading a reply: {e}"),
            }
            let line = line.trim_end();
            text.push(line.get(4..).unwrap_or_default().to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(Reply {
                    code: line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0),
                    text: text.join("\n"),
                });
            }
        }
    }

    fn command(&mut self, line: &str) -> Reply {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
            .unwrap_or_else(|| panic!("connection closed instead of answering {line:?}"))
    }

    /// Sends one message to Alice and returns its queue id.
    fn deliver(&mut self, hello: &str) -> String {
        assert_eq!(self.command(&format!("{hello} client.test")).code, 250);
        assert_eq!(self.command("MAIL FROM:<sender@remote.test>").code, 250);
        assert_eq!(self.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
        assert_eq!(self.command("DATA").code, 354);
        let queued = self.command("Subject: proxied\r\n\r\nhello\r\n.");
        queue_id(queued.code, &queued.text)
    }
}

/// The id in `250 2.0.0 Message queued as <id>`.
fn queue_id(code: u16, text: &str) -> String {
    assert_eq!(code, 250, "{text}");
    text.rsplit(' ').next().unwrap().to_string()
}

/// The `client` of the `message queued` log line of message `id`.
fn logged_client(process: &mut Ferrymail, id: &str) -> String {
    let line = process.wait_for(&format!("message {id} queued"), |l| {
        l.message() == "message queued" && l.field("queue_id") == Some(id)
    });
    line.field("client").unwrap().to_string()
}

/// Reads until the server closes the connection; returns what it sent first.
fn until_closed(session: &mut Session) -> String {
    let mut out = Vec::new();
    match session.reader.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was not closed: {e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_and_v2_headers_set_the_client_address() {
    let mut lab = lab("");

    let client = address("203.0.113.7:40001");
    let (mut s, greeting) = Session::open(lab.smtp, &v1(client, lab.smtp));
    assert_eq!(greeting.map(|g| g.code), Some(220));
    let id = s.deliver("EHLO");
    assert_eq!(logged_client(&mut lab.process, &id), "203.0.113.7");
    // The relay-denied line names the proxied client too.
    assert_eq!(s.command("MAIL FROM:<sender@remote.test>").code, 250);
    let relay = s.command("RCPT TO:<victim@other.test>");
    assert!(relay.code >= 500, "{relay:?}");
    let line = lab.process.wait_for("the relay-denied line", |l| {
        l.message().starts_with("relay denied:")
    });
    assert!(
        line.message()
            .starts_with("relay denied: client=203.0.113.7 "),
        "{}",
        line.message()
    );

    let (mut s, greeting) = Session::open(lab.smtp, &v2(1, Some(address("[2001:db8::25]:40002"))));
    assert_eq!(greeting.map(|g| g.code), Some(220));
    let id = s.deliver("EHLO");
    assert_eq!(logged_client(&mut lab.process, &id), "2001:db8::25");

    let (mut s, greeting) = Session::open(lab.lmtp, &v2(1, Some(address("198.51.100.20:40003"))));
    assert_eq!(greeting.map(|g| g.code), Some(220));
    let id = s.deliver("LHLO");
    assert_eq!(logged_client(&mut lab.process, &id), "198.51.100.20");

    // Implicit TLS: the header comes before the TLS handshake.
    let script = r#"
import smtplib, socket, ssl
class Proxied(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        raw = socket.create_connection((host, port), timeout)
        raw.sendall(b"PROXY TCP4 192.0.2.45 127.0.0.1 40004 465\r\n")
        return self.context.wrap_socket(raw, server_hostname=self._host)
ctx = ssl.create_default_context(cafile="{ca}")
s = Proxied("{host}", {port}, timeout=30, context=ctx)
s.ehlo("client.test")
s.mail("sender@remote.test")
s.rcpt("alice@example.org")
code, text = s.data(b"Subject: tls\r\n\r\nhi\r\n")
print(code, text.decode())
s.quit()
"#
    .replace("{ca}", &lab.ca.display().to_string())
    .replace("{host}", &lab.submissions.ip().to_string())
    .replace("{port}", &lab.submissions.port().to_string());
    let stdout = ferrymail_e2e::python(&script);
    let (code, text) = stdout.trim().split_once(' ').unwrap();
    let id = queue_id(code.parse().unwrap(), text);
    assert_eq!(logged_client(&mut lab.process, &id), "192.0.2.45");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_and_unknown_keep_the_real_address_and_bad_headers_close() {
    let mut lab = lab("");

    for (what, header) in [
        ("v2 LOCAL", v2(0, None)),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
    ] {
        let (mut s, greeting) = Session::open(lab.smtp, &header);
        assert_eq!(greeting.map(|g| g.code), Some(220), "{what}");
        let id = s.deliver("EHLO");
        assert_eq!(logged_client(&mut lab.process, &id), "127.0.0.1", "{what}");
    }

    for (what, bytes, error) in [
        (
            "a bad address",
            b"PROXY TCP4 203.0.113.300 127.0.0.1 40001 25\r\n".to_vec(),
            "malformed PROXY v1 header: Header contains invalid IP address for the source.",
        ),
        (
            "no header",
            b"EHLO client.test\r\n".to_vec(),
            // Only the first bytes are read: how many depends on the network.
            "no PROXY header: the connection starts with \"EHLO",
        ),
        (
            "a v2 header for UDP",
            {
                let mut h = v2(1, Some(address("203.0.113.7:1")));
                h[13] = 0x12;
                h
            },
            "malformed PROXY header: v2 header for a datagram (UDP) connection",
        ),
    ] {
        let (mut s, greeting) = Session::open(lab.smtp, &bytes);
        assert!(greeting.is_none(), "{what}: answered {greeting:?}");
        assert_eq!(until_closed(&mut s), "", "{what}: no reply at all");
        let line = lab
            .process
            .wait_for(&format!("the refusal of {what}"), |l| {
                l.message() == "PROXY header refused; connection closed"
                    && l.field("error").is_some_and(|e| e.starts_with(error))
            });
        assert_eq!(line.field("proxy"), Some("127.0.0.1"), "{what}");
    }

    // The listener still serves proxied clients.
    let (mut s, greeting) = Session::open(lab.smtp, &v1(address("203.0.113.8:1"), lab.smtp));
    assert_eq!(greeting.map(|g| g.code), Some(220));
    assert_eq!(s.command("QUIT").code, 221);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_source_cannot_choose_its_address() {
    let mut lab = lab("");
    // 127.0.0.1 is not in the untrusted listener's 10.0.0.0/8: it is served as a direct
    // client, and its PROXY line is just an unknown command.
    let (mut s, greeting) = Session::open(
        lab.untrusted,
        &v1(address("203.0.113.7:40001"), lab.untrusted),
    );
    let greeting = greeting.unwrap();
    assert_eq!(greeting.code, 220, "{greeting:?}");
    let refused = s.reply().unwrap();
    assert_eq!(
        (refused.code, refused.text.as_str()),
        (500, "5.5.1 Unknown command")
    );
    let id = s.deliver("EHLO");
    assert_eq!(logged_client(&mut lab.process, &id), "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_address_limits_count_the_proxied_client() {
    let lab = lab("max-connections-per-ip = 1");
    let header = |client: &str| v1(address(client), lab.smtp);
    // All three connect from 127.0.0.1; the limit applies to the addresses in the headers.
    let (mut first, greeting) = Session::open(lab.smtp, &header("203.0.113.1:1"));
    assert_eq!(greeting.map(|g| g.code), Some(220));
    let (mut other, greeting) = Session::open(lab.smtp, &header("203.0.113.2:1"));
    assert_eq!(greeting.map(|g| g.code), Some(220), "another client");
    let (mut again, greeting) = Session::open(lab.smtp, &header("203.0.113.1:2"));
    let greeting = greeting.unwrap();
    assert_eq!(
        (greeting.code, greeting.text.as_str()),
        (421, "4.7.0 Too many connections, try again later"),
        "the same client twice"
    );
    assert_eq!(until_closed(&mut again), "");
    assert_eq!(first.command("NOOP").code, 250);
    assert_eq!(other.command("NOOP").code, 250);
}
