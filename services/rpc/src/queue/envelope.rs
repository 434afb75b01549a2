//! The SMTP envelope of a message to queue: [`Envelope`] and the parameters it carries.

use std::net::IpAddr;

/// Everything the queue needs to know about a message besides its body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse path; empty for the null sender `<>`.
    pub sender: String,
    /// Forward paths with their DSN parameters.
    pub recipients: Vec<Recipient>,
    /// DSN RET, when given.
    pub ret: Option<DsnReturn>,
    /// DSN ENVID, when given.
    pub envid: Option<String>,
    /// SIZE= as declared by the client, when given.
    pub declared_size: Option<u64>,
    /// Delivery priority.
    pub priority: Priority,
    /// Do not deliver before this time (unix seconds).
    pub hold_until: Option<u64>,
    /// REQUIRETLS (RFC 8689) was requested.
    pub requiretls: bool,
    /// SMTPUTF8 (RFC 6531) was requested.
    pub smtputf8: bool,
    /// BODY= parameter.
    pub body_type: BodyType,
    /// Address of the SMTP client, when the message came from one.
    pub client_ip: Option<IpAddr>,
    /// HELO/EHLO name the client gave.
    pub helo: String,
    /// SASL identity of the submitter, when authenticated.
    pub authenticated_as: Option<String>,
    /// W3C `traceparent` of the receiving session, to continue its trace.
    pub trace_parent: Option<String>,
    /// The queue id the client chose ([`super::QueueId::generate`]) and already wrote in the
    /// message's `Received` header; `None`: the queue chooses.
    pub queue_id: Option<super::QueueId>,
    /// Enqueue the message on hold, for this reason (a filter quarantined it); the queue
    /// stores the hold, not the reason, which the ingress logs.
    pub quarantine: Option<String>,
}

/// One forward path and its DSN parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The address.
    pub address: String,
    /// DSN NOTIFY.
    pub notify: Notify,
    /// DSN ORCPT, when given: the original recipient address (type `rfc822`), xtext-decoded.
    pub orcpt: Option<String>,
}

impl Recipient {
    /// A recipient without DSN parameters.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            notify: Notify::Default,
            orcpt: None,
        }
    }
}

/// DSN NOTIFY of a recipient (RFC 3461 §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Notify {
    /// No NOTIFY parameter: the queue's default applies.
    #[default]
    Default,
    /// NOTIFY=NEVER.
    Never,
    /// NOTIFY with at least one of SUCCESS, FAILURE, DELAY.
    On(NotifyOn),
}

/// A non-empty set of the NOTIFY conditions SUCCESS, FAILURE and DELAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotifyOn {
    success: bool,
    failure: bool,
    delay: bool,
}

impl NotifyOn {
    /// The set of the conditions given, or `None` when none is (that would be NEVER).
    pub fn new(success: bool, failure: bool, delay: bool) -> Option<Self> {
        (success || failure || delay).then_some(Self {
            success,
            failure,
            delay,
        })
    }

    /// Notify on successful delivery.
    pub fn success(&self) -> bool {
        self.success
    }

    /// Notify on failed delivery.
    pub fn failure(&self) -> bool {
        self.failure
    }

    /// Notify on delayed delivery.
    pub fn delay(&self) -> bool {
        self.delay
    }
}

/// DSN RET: what a bounce carries of the original message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DsnReturn {
    /// RET=FULL: the whole message.
    Full,
    /// RET=HDRS: the headers only.
    Headers,
}

/// BODY= parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BodyType {
    /// 7BIT, also what an absent BODY= means.
    #[default]
    SevenBit,
    /// 8BITMIME (RFC 6152).
    EightBitMime,
    /// BINARYMIME (RFC 3030).
    BinaryMime,
}

/// Delivery priority in the MT-PRIORITY range (RFC 6710): -9 (lowest) to 9 (highest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(i8);

impl Priority {
    /// Lowest priority.
    pub const MIN: Self = Self(-9);
    /// Normal priority.
    pub const NORMAL: Self = Self(0);
    /// Highest priority.
    pub const MAX: Self = Self(9);

    /// The priority `value`, or `None` outside -9..=9.
    pub fn new(value: i32) -> Option<Self> {
        i8::try_from(value)
            .ok()
            .filter(|value| (-9..=9).contains(value))
            .map(Self)
    }

    /// The priority as a number.
    pub fn get(self) -> i8 {
        self.0
    }
}
