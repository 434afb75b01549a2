//! What a directory lookup answers: [`Answer`] and [`Expansion`], with the remote's reply.

/// Outcome of a yes/no lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The remote said yes.
    Yes,
    /// The remote said no: no such user, or bad credentials. Cached for the negative TTL.
    No,
    /// The remote refused a recipient that it did not call unknown (a full or disabled
    /// mailbox): its reply is passed on to the client as it is, and never cached.
    Refused,
    /// The remote could not answer now (timeout, refused, 4xx): answer the client with a 4xx.
    TemporaryFailure,
    /// Authentication only: the login name or the client address has had too many failed
    /// authentications lately, so the remote was not asked. Says nothing about the
    /// credentials; answer the client with a 4xx.
    Blocked,
}

/// What the remote server replied: kept for logs and to relay to the SMTP client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteReply {
    /// SMTP/LMTP reply code (100..=999); 0 for IMAP, which has no numeric codes.
    pub code: u16,
    /// SMTP reply text or IMAP response text.
    pub text: String,
}

impl RemoteReply {
    /// An SMTP or LMTP reply.
    pub fn smtp(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    /// An IMAP response (no numeric code).
    pub fn imap(text: impl Into<String>) -> Self {
        Self {
            code: 0,
            text: text.into(),
        }
    }
}

/// Answer to a yes/no lookup (authenticate, verify recipient, local domain, list membership).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Answer {
    /// Yes, no, or temporary failure.
    pub verdict: Verdict,
    /// The remote's reply, when one was asked and replied (not for cached answers).
    pub reply: Option<RemoteReply>,
}

impl Answer {
    /// A yes without a remote reply.
    pub fn yes() -> Self {
        Self::new(Verdict::Yes)
    }

    /// A no without a remote reply.
    pub fn no() -> Self {
        Self::new(Verdict::No)
    }

    /// A temporary failure without a remote reply.
    pub fn temporary_failure() -> Self {
        Self::new(Verdict::TemporaryFailure)
    }

    /// An answer with `verdict` and no remote reply.
    pub fn new(verdict: Verdict) -> Self {
        Self {
            verdict,
            reply: None,
        }
    }

    /// The same answer, carrying the remote's reply.
    pub fn with_reply(self, reply: RemoteReply) -> Self {
        Self {
            reply: Some(reply),
            ..self
        }
    }

    /// Whether the verdict is [`Verdict::Yes`].
    pub fn is_yes(&self) -> bool {
        self.verdict == Verdict::Yes
    }
}

/// Answer to VRFY or EXPN. Only [`Expansion::Found`] carries values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expansion {
    /// The remote named the mailbox (VRFY) or the list members (EXPN).
    Found {
        /// Mailboxes as the remote wrote them.
        values: Vec<String>,
        /// The remote's reply.
        reply: Option<RemoteReply>,
    },
    /// The remote says there is no such mailbox or list.
    NotFound {
        /// The remote's reply.
        reply: Option<RemoteReply>,
    },
    /// The remote will not tell (e.g. SMTP 252). Never to be read as "exists".
    CannotTell {
        /// The remote's reply.
        reply: Option<RemoteReply>,
    },
    /// The remote could not answer now: answer the client with a 4xx.
    TemporaryFailure {
        /// The remote's reply.
        reply: Option<RemoteReply>,
    },
}

impl Expansion {
    /// The remote's reply, whatever the outcome.
    pub fn reply(&self) -> Option<&RemoteReply> {
        match self {
            Self::Found { reply, .. }
            | Self::NotFound { reply }
            | Self::CannotTell { reply }
            | Self::TemporaryFailure { reply } => reply.as_ref(),
        }
    }
}
