//! Message authentication with mail-auth: SPF (RFC 7208) of the HELO name and of MAIL FROM,
//! DKIM (RFC 6376), ARC (RFC 8617) and DMARC (RFC 7489) of mail from unauthenticated clients,
//! recorded in one `Authentication-Results` header (RFC 8601) whose authserv-id is
//! `server.hostname`; and DKIM signing of mail from authenticated clients.
//!
//! Who is checked: a client that has not authenticated is another server delivering mail,
//! and is verified; an authenticated client is a user submitting mail from a device the
//! sender's domain does not list, so its mail is not verified but signed with the
//! signatures `auth.dkim.sign` chooses. Unauthenticated mail is never signed.
//!
//! Modes (`auth.*.verify`): `relaxed` records, `strict` also refuses failing mail, `disable`
//! skips the check. A DNS *temporary* failure is never answered with 5xx: `relaxed` records
//! `temperror` and accepts, `strict` answers 4xx so the sender tries again. DMARC
//! `p=quarantine` is recorded (`policy.dmarc=quarantine`) for the mailbox server to file the
//! message as junk; only `p=reject` under `strict` refuses (`550 5.7.1`).
//!
//! Memory bound: the message otherwise only streams through to the queue. Verification keeps
//! its header section, at most [`MAX_HEADER`] bytes, and hashes the body as it arrives
//! (`hashed_message`), so messages of any size are verified; one whose header section is
//! larger is not — the header says `dkim=neutral reason="message too large to verify"` (and
//! `none` with that reason for ARC and DMARC), strict modes do not refuse it. Signing keeps a
//! copy of the whole message of at most [`MAX_COPY`] bytes; a larger submission is sent
//! unsigned (a warning is logged).
//!
//! ARC sealing (`auth.arc.seal`, RFC 8617): mail an unauthenticated client sends to a
//! recipient outside the local domains is forwarded mail; when the rule names a signature,
//! this server's ARC set is added over the verified chain (`seal`). Sealing signs the whole
//! message, so such mail is also kept whole, up to [`MAX_COPY`] bytes; a larger one goes on
//! unsealed (logged).

mod checks;
mod forwarded;
mod hashed_message;
mod report_evaluation;
mod results_header;
mod seal;
mod sign;
mod verify;

use ferrymail_config::Config;
use ferrymail_config::model::resolver::Resolver;
use ferrymail_dns::MessageAuthenticator;
use mail_auth::SpfOutput;

use crate::IngressError;
pub(crate) use hashed_message::{HashedMessage, MAX_HEADER};
pub(crate) use seal::Sealers;
pub(crate) use sign::Signers;

/// Largest message kept whole for DKIM signing and ARC sealing.
pub(crate) const MAX_COPY: usize = 16 * 1024 * 1024;

/// What message authentication needs beyond the session settings: the resolver and the
/// signing keys, rebuilt when the configuration changes.
pub(crate) struct Authenticator {
    pub(crate) dns: MessageAuthenticator,
    resolver: Resolver,
    pub(crate) signers: Signers,
    pub(crate) sealers: Sealers,
}

impl Authenticator {
    /// Builds the resolver of `resolver.*` and the keys of `signature.<id>`.
    pub(crate) fn new(config: &Config) -> Result<Self, IngressError> {
        Ok(Self {
            dns: ferrymail_dns::authenticator(&config.resolver)?,
            resolver: config.resolver.clone(),
            signers: Signers::new(&config.signatures)?,
            sealers: Sealers::new(&config.signatures)?,
        })
    }

    /// The authenticator for a new configuration; the resolver (and its cache) is kept when
    /// its settings did not change.
    pub(crate) fn renew(&self, config: &Config) -> Result<Self, IngressError> {
        let dns = if config.resolver == self.resolver {
            self.dns.clone()
        } else {
            ferrymail_dns::authenticator(&config.resolver)?
        };
        Ok(Self {
            dns,
            resolver: config.resolver.clone(),
            signers: Signers::new(&config.signatures)?,
            sealers: Sealers::new(&config.signatures)?,
        })
    }
}

/// What message authentication keeps of a message while it streams to the queue.
#[derive(Default)]
pub(crate) enum MessageCopy {
    /// No check needs the message.
    #[default]
    NotKept,
    /// Verification: the header section and the body's hashes (see [`HashedMessage`]).
    Hashed(HashedMessage),
    /// Signing: the whole message, up to [`MAX_COPY`] bytes.
    Whole(WholeCopy),
    /// Verification and ARC sealing of forwarded mail: both of the above.
    Sealable(HashedMessage, WholeCopy),
}

impl MessageCopy {
    /// Adds the next bytes of the message.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        match self {
            Self::NotKept => {}
            Self::Hashed(hashed) => hashed.push(chunk),
            Self::Whole(whole) => whole.push(chunk),
            Self::Sealable(hashed, whole) => {
                hashed.push(chunk);
                whole.push(chunk);
            }
        }
    }

    /// Marks the message complete.
    pub(crate) fn finish(&mut self) {
        if let Self::Hashed(hashed) | Self::Sealable(hashed, _) = self {
            hashed.finish();
        }
    }

    /// Whether the message was kept for its checks (or signing) until it grew past the
    /// bound; the copy for sealing has its own bound.
    pub(crate) fn too_large(&self) -> bool {
        match self {
            Self::NotKept => false,
            Self::Hashed(hashed) | Self::Sealable(hashed, _) => hashed.too_large(),
            Self::Whole(whole) => whole.too_large,
        }
    }
}

/// The whole message as received, kept beside the stream up to [`MAX_COPY`] bytes.
#[derive(Debug, Default)]
pub(crate) struct WholeCopy {
    bytes: Vec<u8>,
    too_large: bool,
}

/// Below this, the copy for signing grows as a vector does; past it, room for the whole
/// bound is taken at once. Growing by doubling would leave every smaller buffer behind for
/// the allocator to return later (a 16 MiB copy made 8 + 4 + 2 + ... MiB of garbage), while
/// pages of the large buffer that are never written take no memory.
const COPY_GROWTH_LIMIT: usize = 1024 * 1024;

impl WholeCopy {
    /// Adds the next bytes; past the bound, the copy is dropped and only that is remembered.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if self.too_large {
            return;
        }
        let needed = self.bytes.len() + chunk.len();
        if needed > MAX_COPY {
            self.too_large = true;
            self.bytes = Vec::new();
            return;
        }
        if needed > self.bytes.capacity() && needed > COPY_GROWTH_LIMIT {
            self.bytes.reserve_exact(MAX_COPY - self.bytes.len());
        }
        self.bytes.extend_from_slice(chunk);
    }

    /// The whole message, or `None` when it was larger than the bound.
    pub(crate) fn whole(&self) -> Option<&[u8]> {
        (!self.too_large).then_some(self.bytes.as_slice())
    }
}

/// What the end of DATA needs to authenticate a message: the copy and the envelope facts.
#[derive(Default)]
pub(crate) struct PendingMessage {
    pub(crate) copy: MessageCopy,
    /// The envelope sender (empty for the null sender).
    pub(crate) sender: String,
    /// The SPF result of MAIL FROM, when it was checked.
    pub(crate) spf_mail_from: Option<SpfOutput>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_dropped_past_the_bound() {
        let mut copy = WholeCopy::default();
        copy.push(b"Subject: x\r\n\r\n");
        assert_eq!(copy.whole(), Some(&b"Subject: x\r\n\r\n"[..]));
        copy.push(&vec![b'a'; MAX_COPY]);
        assert_eq!(copy.whole(), None);
        assert!(copy.bytes.capacity() == 0, "the memory is given back");
        copy.push(b"more");
        assert_eq!(copy.whole(), None);
        assert!(copy.too_large);
    }

    #[test]
    fn a_large_copy_is_one_allocation() {
        let mut copy = WholeCopy::default();
        let piece = vec![b'a'; 64 * 1024];
        for _ in 0..(COPY_GROWTH_LIMIT / piece.len() + 1) {
            copy.push(&piece);
        }
        assert_eq!(copy.bytes.capacity(), MAX_COPY);
        let capacity = copy.bytes.as_ptr();
        for _ in 0..100 {
            copy.push(&piece);
        }
        assert_eq!(copy.bytes.as_ptr(), capacity, "never moved again");
    }

    #[test]
    fn a_sealable_copy_keeps_verifying_past_the_sealing_bound() {
        let mut copy = MessageCopy::Sealable(HashedMessage::new(true), WholeCopy::default());
        copy.push(b"From: a@example.org\r\n\r\n");
        copy.push(&vec![b'a'; MAX_COPY]);
        copy.finish();
        let MessageCopy::Sealable(hashed, whole) = &copy else {
            panic!("still sealable");
        };
        assert_eq!(whole.whole(), None, "too large to seal");
        assert!(!copy.too_large(), "not too large to verify");
        assert_eq!(
            hashed
                .authenticated()
                .map(|m| m.from().to_string())
                .as_deref(),
            Some("a@example.org")
        );
    }

    #[test]
    fn a_copy_not_kept_holds_nothing() {
        let mut copy = MessageCopy::NotKept;
        copy.push(b"Subject: x\r\n\r\n");
        assert!(!copy.too_large());
    }
}

#[cfg(test)]
mod seal_tests;
#[cfg(test)]
mod verification_tests;
