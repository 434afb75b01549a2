//! Clients that trickle their bytes in cannot keep a session (and its per-address slot) for
//! `session.duration`: a command line has `session.command-deadline` once it has started, and
//! a message body must keep up `session.data.min-rate`. Clients at a normal pace never notice.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::Duration;

use ferrymail_e2e::{EMBEDDED_STORE, Ferrymail, PEER_PATIENCE, python};

/// Short limits so the tests stay quick; the session's own limits stay at their defaults
/// (`session.timeout` 5 minutes, `session.duration` 10), far beyond what the tests wait.
fn config() -> String {
    format!(
        r#"
[server]
hostname = "mx.test"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[session]
command-deadline = "1s"
[session.rcpt]
relay = true
[session.data]
min-rate = 1000
{EMBEDDED_STORE}"#
    )
}

/// How often the slow client sends its next byte: the "one byte every two seconds" client,
/// sped up so that the test stays short; still far below any limit a real client meets.
const TRICKLE: Duration = Duration::from_millis(200);

/// A client that writes one byte at a time and hears the server on a thread of its own.
struct Trickler {
    writer: TcpStream,
    /// Reply lines as they come; `None` once the server closed the connection.
    lines: Receiver<Option<String>>,
}

impl Trickler {
    fn connect(smtp: SocketAddr) -> Self {
        let stream = TcpStream::connect(smtp).unwrap();
        let writer = stream.try_clone().unwrap();
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(n) if n > 0 => {
                        if sender.send(Some(line.trim_end().to_owned())).is_err() {
                            return;
                        }
                    }
                    _ => {
                        let _ = sender.send(None);
                        return;
                    }
                }
            }
        });
        Self { writer, lines }
    }

    /// The next line from the server (`None`: it closed the connection).
    fn line(&self) -> Option<String> {
        self.lines
            .recv_timeout(PEER_PATIENCE)
            .expect("the server said nothing")
    }

    /// Sends `line` at once and returns the reply's last line.
    fn command(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        loop {
            let reply = self.line().expect("the server closed the connection");
            if reply.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    /// Sends `bytes` one at a time, [`TRICKLE`] apart, until they are all sent or the server
    /// speaks first; returns everything the server said after that, up to its close.
    fn trickle(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut said = Vec::new();
        for byte in bytes {
            match self.lines.try_recv() {
                Err(TryRecvError::Empty) => {}
                Ok(Some(line)) => {
                    said.push(line);
                    break;
                }
                Ok(None) | Err(TryRecvError::Disconnected) => return said,
            }
            if self.writer.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(TRICKLE);
        }
        // Until the server closes the connection; one that keeps it open shows its replies.
        while let Ok(Some(line)) = self.lines.recv_timeout(PEER_PATIENCE) {
            said.push(line);
        }
        said
    }
}

#[test]
fn a_command_line_trickled_in_is_cut_off_at_its_deadline() {
    let mut process = Ferrymail::start("all", &config());
    let smtp = process.address("smtp");
    let mut client = Trickler::connect(smtp);
    assert!(client.line().unwrap().starts_with("220 "));
    // 33 bytes at 5 a second: the line would take longer than its 1 s deadline.
    let said = client.trickle(b"EHLO trickler.client.example.org\r\n");
    assert_eq!(
        said,
        ["421 4.4.2 mx.test timeout: command line too slow, closing connection"],
        "the reply, then the server closed the connection"
    );
}

/// A client that has opened a mail transaction at normal speed.
fn in_transaction(process: &mut Ferrymail) -> Trickler {
    let smtp = process.address("smtp");
    let mut client = Trickler::connect(smtp);
    assert!(client.line().unwrap().starts_with("220 "));
    assert!(
        client
            .command("EHLO client.example.org")
            .starts_with("250 ")
    );
    assert!(
        client
            .command("MAIL FROM:<a@example.com>")
            .starts_with("250 ")
    );
    assert!(
        client
            .command("RCPT TO:<b@example.net>")
            .starts_with("250 ")
    );
    client
}

#[test]
fn a_message_body_below_the_minimum_rate_is_cut_off() {
    let mut process = Ferrymail::start("all", &config());
    let mut client = in_transaction(&mut process);
    assert!(client.command("DATA").starts_with("354 "));
    // 5 bytes a second where 1000 are asked: cut off long before the body's end.
    let body = format!("Subject: slow\r\n\r\n{}\r\n.\r\n", "x".repeat(200));
    let said = client.trickle(body.as_bytes());
    assert_eq!(
        said,
        ["421 4.4.2 mx.test timeout: data rate too low, closing connection"],
        "the reply, then the server closed the connection"
    );
}

#[test]
fn a_bdat_chunk_below_the_minimum_rate_is_cut_off() {
    let mut process = Ferrymail::start("all", &config());
    let mut client = in_transaction(&mut process);
    let body = format!("Subject: slow\r\n\r\n{}\r\n", "x".repeat(200));
    let command = format!("BDAT {} LAST\r\n", body.len());
    client.writer.write_all(command.as_bytes()).unwrap();
    let said = client.trickle(body.as_bytes());
    assert_eq!(
        said,
        ["421 4.4.2 mx.test timeout: data rate too low, closing connection"],
        "the reply, then the server closed the connection"
    );
}

#[test]
fn clients_at_a_normal_pace_are_not_affected() {
    let mut process = Ferrymail::start("all", &config());
    let smtp = process.address("smtp");
    // Python's smtplib sends each command and a 2 MB message as fast as it can.
    let out = python(&format!(
        r#"
import smtplib
body = "Subject: fast\r\n\r\n" + ("y" * 998 + "\r\n") * 2000
with smtplib.SMTP("{host}", {port}) as s:
    s.ehlo("client.example.org")
    s.noop()
    print(s.sendmail("a@example.com", ["b@example.net"], body))
    s.mail("a@example.com")
    s.rcpt("b@example.net")
    print(s.data(body.encode())[0])
"#,
        host = smtp.ip(),
        port = smtp.port()
    ));
    assert_eq!(out, "{}\n250\n");
}
