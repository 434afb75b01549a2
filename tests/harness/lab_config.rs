//! Configuration fragments the end-to-end tests share: the embedded store, and directories
//! backed by the test Dovecot.

use crate::Dovecot;

/// An embedded store in the process's working directory, used as `storage.data`.
pub const EMBEDDED_STORE: &str =
    "[store.local]\ntype = \"embedded\"\npath = \"data\"\n[storage]\ndata = \"local\"\n";

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
