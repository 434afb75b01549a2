//! The JSON a hook is sent: Stalwart's MTA hook request (`context`, `envelope`, `message`),
//! built from what the session tells its filters.

use serde::Serialize;

use crate::filter::FilterRequest;

/// The version of the request format, as Stalwart sends it.
const PROTOCOL_VERSION: u32 = 1;

/// The whole request body.
#[derive(Debug, Serialize)]
pub(crate) struct HookRequest<'a> {
    context: Context<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    envelope: Option<Envelope<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Message>,
}

#[derive(Debug, Serialize)]
struct Context<'a> {
    stage: &'static str,
    client: Client<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sasl: Option<Sasl<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls<'a>>,
    server: Server<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<Queue<'a>>,
    protocol: Protocol,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Client<'a> {
    ip: String,
    port: u16,
    ptr: Option<&'a str>,
    helo: Option<&'a str>,
    active_connections: usize,
}

#[derive(Debug, Serialize)]
struct Sasl<'a> {
    login: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Tls<'a> {
    version: &'a str,
    cipher: &'a str,
}

#[derive(Debug, Serialize)]
struct Server<'a> {
    name: &'a str,
    port: u16,
    ip: String,
}

#[derive(Debug, Serialize)]
struct Queue<'a> {
    id: &'a str,
}

#[derive(Debug, Serialize)]
struct Protocol {
    version: u32,
}

#[derive(Debug, Serialize)]
struct Envelope<'a> {
    from: Address<'a>,
    to: Vec<Address<'a>>,
}

#[derive(Debug, Serialize)]
struct Address<'a> {
    address: &'a str,
    /// ESMTP parameters as keyword → value (`""` for a keyword without one); left out
    /// when the address has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    /// Every header field, this server's `Received` first, as `[name, value]`: the value
    /// as written after the colon (folding kept), without the leading space and the final
    /// line end.
    headers: Vec<(String, String)>,
    /// The body, after the blank line that ends the header.
    contents: String,
    /// The whole message, in bytes.
    size: usize,
}

impl<'a> HookRequest<'a> {
    /// The request for `request`; `active_connections` is the client address's number of
    /// open sessions.
    pub(crate) fn new(request: &'a FilterRequest<'a>, active_connections: usize) -> Self {
        let session = request.session;
        let context = Context {
            stage: request.stage.as_str(),
            client: Client {
                ip: session.client.ip().to_string(),
                port: session.client.port(),
                ptr: session.client_name.as_deref(),
                helo: session.helo.as_deref(),
                active_connections,
            },
            sasl: session.authenticated_as.as_deref().map(|login| Sasl {
                login,
                method: session.auth_mechanism.as_deref(),
            }),
            tls: session
                .tls
                .as_ref()
                .map(|(version, cipher)| Tls { version, cipher }),
            server: Server {
                name: &session.hostname,
                port: session.local.port(),
                ip: session.local.ip().to_string(),
            },
            queue: request
                .transaction
                .and_then(|t| t.queue_id.as_deref())
                .map(|id| Queue { id }),
            protocol: Protocol {
                version: PROTOCOL_VERSION,
            },
        };
        Self {
            context,
            envelope: envelope(request),
            message: request.message.map(message),
        }
    }
}

/// The transaction's addresses; at RCPT the recipient asked about comes last, with its
/// parameters.
fn envelope<'a>(request: &'a FilterRequest<'a>) -> Option<Envelope<'a>> {
    let transaction = request.transaction?;
    let mut to: Vec<Address<'a>> = transaction
        .recipients
        .iter()
        .map(|address| Address {
            address,
            parameters: None,
        })
        .collect();
    if let Some((address, params)) = request.recipient {
        to.push(Address {
            address,
            parameters: parameters(params),
        });
    }
    Some(Envelope {
        from: Address {
            address: &transaction.sender,
            parameters: parameters(&transaction.sender_params),
        },
        to,
    })
}

/// `["SIZE=1000", "SMTPUTF8"]` as `{"SIZE": "1000", "SMTPUTF8": ""}`; `None` for none.
fn parameters(params: &[String]) -> Option<serde_json::Map<String, serde_json::Value>> {
    if params.is_empty() {
        return None;
    }
    let map = params
        .iter()
        .map(|param| {
            let (keyword, value) = param.split_once('=').unwrap_or((param, ""));
            (keyword.to_owned(), serde_json::Value::from(value))
        })
        .collect();
    Some(map)
}

/// The message part of the request.
fn message(raw: &[u8]) -> Message {
    let (header, body) = split_header(raw);
    let header = String::from_utf8_lossy(header);
    Message {
        headers: header_fields(&header)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        contents: String::from_utf8_lossy(body).into_owned(),
        size: raw.len(),
    }
}

/// The header (with its last line end) and the body of `raw`.
fn split_header(raw: &[u8]) -> (&[u8], &[u8]) {
    if raw.starts_with(b"\r\n") {
        return (&[], &raw[2..]);
    }
    match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => (&raw[..end + 2], &raw[end + 4..]),
        None => (raw, &[]),
    }
}

/// The fields of `text` as (name, value); a field's continuation lines stay in its value.
fn header_fields(text: &str) -> Vec<(&str, &str)> {
    let mut fields = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            let next = bytes.get(i + 1);
            if !matches!(next, Some(b' ' | b'\t')) {
                fields.push(field(&text[start..=i]));
                start = i + 1;
            }
        }
        i += 1;
    }
    if start < text.len() {
        fields.push(field(&text[start..]));
    }
    fields
}

/// `Name: value\r\n` as (`Name`, `value`).
fn field(line: &str) -> (&str, &str) {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    match line.split_once(':') {
        Some((name, value)) => (name.trim_end(), value.strip_prefix(' ').unwrap_or(value)),
        None => (line, ""),
    }
}
