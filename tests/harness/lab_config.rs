//! Configuration fragments the end-to-end tests share: the embedded store, directories
//! backed by the test Dovecot, and a relay lab.

use std::path::Path;

use crate::{Dovecot, SmtpSink};

/// An embedded store in the process's working directory, used as `storage.data`.
pub const EMBEDDED_STORE: &str =
    "[store.local]\ntype = \"embedded\"\npath = \"data\"\n[storage]\ndata = \"local\"\n";

/// An embedded store at `path`, used as `storage.data`.
pub fn embedded_store(path: &Path) -> String {
    format!(
        "[store.local]\ntype = \"embedded\"\npath = \"{}\"\n[storage]\ndata = \"local\"\n",
        path.display()
    )
}

/// `ferrymail all` with SMTP, admin and gRPC listeners, `store` (a store fragment such as
/// [`EMBEDDED_STORE`]), Dovecot validating recipients, and `remote.sink` (at `sink`) as the
/// next hop; `extra` is appended.
pub fn relay_config(store: &str, dovecot: &Dovecot, sink: &SmtpSink, extra: &str) -> String {
    format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"
{store}{mailboxes}[session.rcpt]
directory = "mailboxes"
[remote.sink]
address = "127.0.0.1"
port = {sink}
protocol = "smtp"
tls.implicit = false
timeout = "10s"
[queue.outbound]
next-hop = "sink"
{extra}"#,
        mailboxes = mailboxes_directory(dovecot),
        sink = sink.address().port(),
    )
}

/// `directory.mailboxes`: Dovecot's LMTP validates recipients; `example.org` is local.
pub fn mailboxes_directory(dovecot: &Dovecot) -> String {
    format!(
        "[directory.mailboxes]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nport = {}\ntls.allow-invalid-certs = true\nlookup.domains = [\"example.org\"]\n",
        dovecot.ports.lmtp
    )
}

/// `directory.logins`: Dovecot's submission service checks AUTH.
pub fn logins_directory(dovecot: &Dovecot) -> String {
    format!(
        "[directory.logins]\ntype = \"smtp\"\naddress = \"127.0.0.1\"\nport = {}\ntls.allow-invalid-certs = true\n",
        dovecot.ports.submission
    )
}
