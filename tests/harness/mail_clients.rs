//! Minimal plain-text clients for talking to peers in tests: SMTP/LMTP (multi-line replies)
//! and IMAP (tagged responses). No TLS; a test that needs TLS uses Python's clients.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use base64::Engine as _;
use socket2::{Domain, Socket, Type};

use crate::peer::PEER_PATIENCE;

/// The SASL PLAIN initial response for `user` and `password`, base64-encoded.
pub fn sasl_plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// One SMTP/LMTP reply: the code and the text of every line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl SmtpReply {
    /// The text of every line, joined with newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i + 1 == self.lines.len() { ' ' } else { '-' };
            writeln!(f, "{}{sep}{line}", self.code)?;
        }
        Ok(())
    }
}

/// A line-oriented connection with generous read timeouts (see [`PEER_PATIENCE`]).
struct Lines {
    peer: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Lines {
    fn connect(peer: SocketAddr) -> Lines {
        let stream = TcpStream::connect(peer).unwrap_or_else(|e| panic!("connect to {peer}: {e}"));
        Lines::over(peer, stream)
    }

    /// Connects from `local` (another loopback address, e.g. 127.0.0.2, to be another
    /// client as far as the server can tell).
    fn connect_from(peer: SocketAddr, local: IpAddr) -> Lines {
        let socket = Socket::new(Domain::for_address(peer), Type::STREAM, None)
            .unwrap_or_else(|e| panic!("a socket for {peer}: {e}"));
        socket
            .bind(&SocketAddr::new(local, 0).into())
            .unwrap_or_else(|e| panic!("bind {local}: {e}"));
        socket
            .connect(&peer.into())
            .unwrap_or_else(|e| panic!("connect to {peer} from {local}: {e}"));
        Lines::over(peer, socket.into())
    }

    fn over(peer: SocketAddr, stream: TcpStream) -> Lines {
        stream.set_read_timeout(Some(PEER_PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PEER_PATIENCE)).unwrap();
        let writer = stream.try_clone().unwrap();
        Lines {
            peer,
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// The next line without its CRLF; `None` when the peer closed the connection.
    fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e) => panic!("reading from {}: {e}", self.peer),
        }
    }

    fn write_line(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("writing to {}: {e}", self.peer));
    }
}

/// A plain SMTP, submission or LMTP connection.
pub struct SmtpClient {
    lines: Lines,
    /// The server's greeting.
    pub greeting: SmtpReply,
}

impl SmtpClient {
    /// Connects and reads the greeting.
    pub fn connect(peer: SocketAddr) -> SmtpClient {
        SmtpClient::greeted(Lines::connect(peer))
    }

    /// Connects from the local address `local` and reads the greeting.
    pub fn connect_from(peer: SocketAddr, local: IpAddr) -> SmtpClient {
        SmtpClient::greeted(Lines::connect_from(peer, local))
    }

    fn greeted(mut lines: Lines) -> SmtpClient {
        let peer = lines.peer;
        let greeting = read_smtp_reply(&mut lines)
            .unwrap_or_else(|| panic!("{peer} closed the connection before its greeting"));
        SmtpClient { lines, greeting }
    }

    /// Sends one command line and reads its reply; panics if the server hangs up instead.
    pub fn command(&mut self, line: &str) -> SmtpReply {
        self.try_command(line).unwrap_or_else(|| {
            panic!(
                "{} closed the connection instead of answering {line:?}",
                self.lines.peer
            )
        })
    }

    /// Sends one command line and reads its reply; `None` when the server hung up.
    pub fn try_command(&mut self, line: &str) -> Option<SmtpReply> {
        self.lines.write_line(line);
        read_smtp_reply(&mut self.lines)
    }

    /// Sends a message body after a 354 reply: dot-stuffs it, ends it with `.` and returns
    /// the first reply (LMTP sends one per accepted recipient: read the rest with
    /// [`SmtpClient::read_reply`]).
    pub fn send_data(&mut self, message: &str) -> SmtpReply {
        let mut data = String::new();
        for line in message.lines() {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        data.push('.');
        self.command(&data)
    }

    /// Reads one more reply.
    pub fn read_reply(&mut self) -> SmtpReply {
        read_smtp_reply(&mut self.lines)
            .unwrap_or_else(|| panic!("{} closed the connection", self.lines.peer))
    }
}

fn read_smtp_reply(lines: &mut Lines) -> Option<SmtpReply> {
    let mut reply = SmtpReply {
        code: 0,
        lines: Vec::new(),
    };
    loop {
        let line = lines.read_line()?;
        let code = line
            .get(..3)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{} sent a malformed reply line {line:?}", lines.peer));
        reply.code = code;
        reply.lines.push(line.get(4..).unwrap_or("").to_owned());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Some(reply);
        }
    }
}

/// An IMAP server's answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapResponse {
    /// Untagged lines (`* ...`) and continuation requests (`+ ...`) before the tagged one.
    pub untagged: Vec<String>,
    /// The tagged line without its tag, e.g. `NO [AUTHENTICATIONFAILED] Authentication failed.`
    pub tagged: String,
}

impl ImapResponse {
    /// `OK`, `NO` or `BAD`.
    pub fn status(&self) -> &str {
        self.tagged.split(' ').next().unwrap_or("")
    }

    /// The response code without brackets (`AUTHENTICATIONFAILED`, `UNAVAILABLE`, or for an
    /// OK with capabilities `CAPABILITY IMAP4rev1 ...`), if there is one.
    pub fn code(&self) -> Option<&str> {
        let rest = self.tagged.split_once(' ')?.1.strip_prefix('[')?;
        Some(&rest[..rest.find(']')?])
    }
}

/// A plain IMAP connection that tags commands `a1`, `a2`, ...
pub struct ImapClient {
    lines: Lines,
    next_tag: u32,
    /// The server's greeting line, e.g. `* OK [CAPABILITY ...] Dovecot ready.`
    pub greeting: String,
}

impl ImapClient {
    /// Connects and reads the greeting.
    pub fn connect(peer: SocketAddr) -> ImapClient {
        let mut lines = Lines::connect(peer);
        let greeting = lines
            .read_line()
            .unwrap_or_else(|| panic!("{peer} closed the connection before its greeting"));
        ImapClient {
            lines,
            next_tag: 1,
            greeting,
        }
    }

    /// Sends `command` with the next tag and reads up to the tagged response.
    pub fn command(&mut self, command: &str) -> ImapResponse {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        self.lines.write_line(&format!("{tag} {command}"));
        let mut untagged = Vec::new();
        loop {
            let line = self.lines.read_line().unwrap_or_else(|| {
                panic!(
                    "{} closed the connection while answering {command:?}; so far: {untagged:?}",
                    self.lines.peer
                )
            });
            if let Some(tagged) = line.strip_prefix(&format!("{tag} ")) {
                return ImapResponse {
                    untagged,
                    tagged: tagged.to_owned(),
                };
            }
            untagged.push(line);
        }
    }

    /// `LOGIN "user" "password"` (both quoted).
    pub fn login(&mut self, user: &str, password: &str) -> ImapResponse {
        self.command(&format!("LOGIN {} {}", quoted(user), quoted(password)))
    }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Runs `script` with Python 3 (its smtplib/imaplib are the reference clients) and returns
/// what it printed; a script that fails fails the test, with its error output.
pub fn python(script: &str) -> String {
    let out = std::process::Command::new(crate::require_peer("python3"))
        .arg("-c")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    assert!(
        out.status.success(),
        "python failed:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `script` with the Python at `python`, with `args` and `input` on its standard input,
/// and returns what it printed, trimmed; a script that fails fails the test, with its error
/// output.
pub fn python_with_input(
    python: &std::path::Path,
    script: &str,
    args: &[&str],
    input: &[u8],
) -> String {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    // A script that stops reading early closes its input: what it printed still counts.
    let _ = child.stdin.take().map(|mut stdin| stdin.write_all(input));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The Python of the test environment (`target/test-venv`, which `.ci/install-test-deps`
/// fills), checked to import `module`.
pub fn test_venv_python(module: &str) -> std::path::PathBuf {
    let python = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-venv/bin/python3");
    let check = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output();
    assert!(
        check.is_ok_and(|out| out.status.success()),
        "{module} is missing from target/test-venv: run .ci/install-test-deps"
    );
    python
}
