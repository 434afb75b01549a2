//! What a filter is told about the session, the transaction and the message.

use std::net::SocketAddr;

use ferrymail_config::model::stage_rules::Stage;

/// Facts about the session, known from the connection on.
#[derive(Debug, Clone)]
pub(crate) struct SessionFacts {
    /// The client's address (after the PROXY protocol, if any).
    pub(crate) client: SocketAddr,
    /// The address the client connected to.
    pub(crate) local: SocketAddr,
    /// The client's name from reverse DNS, when it was looked up and confirmed.
    pub(crate) client_name: Option<String>,
    /// This server's name (`server.hostname`).
    pub(crate) hostname: String,
    /// The listener's id (`server.listener.<id>`).
    pub(crate) listener: String,
    /// Whether the session speaks LMTP.
    pub(crate) lmtp: bool,
    /// The HELO/EHLO/LHLO name, once given.
    pub(crate) helo: Option<String>,
    /// TLS protocol version and cipher suite, when the session is encrypted.
    pub(crate) tls: Option<(String, String)>,
    /// The login name, once authenticated.
    pub(crate) authenticated_as: Option<String>,
    /// The SASL mechanism of that login.
    pub(crate) auth_mechanism: Option<String>,
}

/// The open mail transaction, as the session has it (after address rewriting).
#[derive(Debug, Clone, Default)]
pub(crate) struct TransactionFacts {
    /// The reverse path; empty for the null sender.
    pub(crate) sender: String,
    /// MAIL FROM's ESMTP parameters as the client gave them (`SIZE=1000`, `BODY=8BITMIME`).
    pub(crate) sender_params: Vec<String>,
    /// The accepted recipients so far.
    pub(crate) recipients: Vec<String>,
    /// The queue id the message will have, once chosen (at DATA).
    pub(crate) queue_id: Option<String>,
}

/// One question to a filter.
#[derive(Debug)]
pub(crate) struct FilterRequest<'a> {
    /// The stage reached.
    pub(crate) stage: Stage,
    pub(crate) session: &'a SessionFacts,
    /// From MAIL on.
    pub(crate) transaction: Option<&'a TransactionFacts>,
    /// At RCPT: the recipient asked for (already rewritten), with its ESMTP parameters.
    pub(crate) recipient: Option<(&'a str, &'a [String])>,
    /// At DATA: the whole message, header and body, CRLF line ends, this server's
    /// `Received` field first.
    pub(crate) message: Option<&'a [u8]>,
}
