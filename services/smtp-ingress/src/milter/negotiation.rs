//! Option negotiation (`SMFIC_OPTNEG`): which protocol version, which actions the milter may
//! take and which steps it may be spared, and checking that its answer stays within them.

use super::codec::{Packet, command, take_u32};
use super::error::MilterError;
use ferrymail_config::model::milter::PROTOCOL_KNOWN;

/// Actions (`SMFIF_*`) a milter asks to take.
pub(crate) mod action {
    pub(crate) const ADDHDRS: u32 = 0x01;
    pub(crate) const CHGBODY: u32 = 0x02;
    pub(crate) const ADDRCPT: u32 = 0x04;
    pub(crate) const DELRCPT: u32 = 0x08;
    pub(crate) const CHGHDRS: u32 = 0x10;
    pub(crate) const QUARANTINE: u32 = 0x20;
    pub(crate) const CHGFROM: u32 = 0x40;
    pub(crate) const ADDRCPT_PAR: u32 = 0x80;
}

/// Protocol steps (`SMFIP_*`) a milter may be spared or may not answer.
pub(crate) mod step {
    pub(crate) const NOCONNECT: u32 = 0x01;
    pub(crate) const NOHELO: u32 = 0x02;
    pub(crate) const NOMAIL: u32 = 0x04;
    pub(crate) const NORCPT: u32 = 0x08;
    pub(crate) const NOBODY: u32 = 0x10;
    pub(crate) const NOHDRS: u32 = 0x20;
    pub(crate) const NOEOH: u32 = 0x40;
    pub(crate) const NR_HDR: u32 = 0x80;
    pub(crate) const NODATA: u32 = 0x200;
    pub(crate) const NR_CONN: u32 = 0x1000;
    pub(crate) const NR_HELO: u32 = 0x2000;
    pub(crate) const NR_MAIL: u32 = 0x4000;
    pub(crate) const NR_RCPT: u32 = 0x8000;
    pub(crate) const NR_DATA: u32 = 0x10000;
    pub(crate) const NR_EOH: u32 = 0x40000;
    pub(crate) const NR_BODY: u32 = 0x80000;
    pub(crate) const HDR_LEADSPC: u32 = 0x100000;
}

/// What was offered, or what was agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) version: u32,
    pub(crate) actions: u32,
    pub(crate) protocol: u32,
}

impl Options {
    /// The `SMFIC_OPTNEG` packet offering these options.
    pub(crate) fn offer(&self) -> Packet {
        let mut data = Vec::with_capacity(12);
        for n in [self.version, self.actions, self.protocol] {
            data.extend_from_slice(&n.to_be_bytes());
        }
        Packet::new(command::OPTNEG, data)
    }

    /// Whether the milter may take `action`.
    pub(crate) fn allows(&self, action: u32) -> bool {
        self.actions & action == action
    }

    /// Whether the agreed protocol has `step` (an `SMFIP_NO*`/`NR_*` bit) set.
    pub(crate) fn has(&self, step: u32) -> bool {
        self.protocol & step == step
    }

    /// The options agreed from the milter's answer to [`Options::offer`]: it may take fewer
    /// actions than offered, never more; it chooses the steps it is spared or not answering.
    pub(crate) fn agree(&self, reply: &Packet) -> Result<Options, MilterError> {
        if reply.code != command::OPTNEG {
            return Err(MilterError::Unexpected(char::from(reply.code)));
        }
        let (version, rest) = take_u32(&reply.data)?;
        let (actions, rest) = take_u32(rest)?;
        // Version 2 milters may leave out the protocol word.
        let protocol = if rest.is_empty() {
            0
        } else {
            take_u32(rest)?.0
        };
        if !(2..=6).contains(&version) {
            return Err(MilterError::Malformed(format!(
                "protocol version {version} (this server speaks 2 and 6)"
            )));
        }
        if actions & !self.actions != 0 {
            return Err(MilterError::NotNegotiated(format!(
                "the milter asks for actions {:#x}, outside those offered ({:#x})",
                actions & !self.actions,
                self.actions
            )));
        }
        // Steps are the milter's to choose: libmilter and rspamd set the no-reply bits they
        // want whatever was offered (Postfix and Stalwart honour them), and a milter that
        // will not answer must not be waited for. Only bits this client cannot honour fail.
        if protocol & !PROTOCOL_KNOWN != 0 {
            return Err(MilterError::NotNegotiated(format!(
                "the milter asks for protocol steps {:#x}, which this server does not know",
                protocol & !PROTOCOL_KNOWN
            )));
        }
        Ok(Options {
            version: version.min(self.version),
            actions,
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const OFFER: Options = Options {
        version: 6,
        actions: 0xff,
        protocol: 0x42,
    };

    fn reply(words: &[u32]) -> Packet {
        Packet::new(
            command::OPTNEG,
            words.iter().flat_map(|w| w.to_be_bytes()).collect(),
        )
    }

    #[test]
    fn the_offer_is_three_words() {
        let packet = OFFER.offer();
        assert_eq!(packet.data, [0, 0, 0, 6, 0, 0, 0, 0xff, 0, 0, 0, 0x42]);
    }

    #[test]
    fn a_milter_may_ask_for_less_never_more() {
        let agreed = OFFER.agree(&reply(&[6, 0x01, 0x40])).unwrap();
        assert!(agreed.allows(action::ADDHDRS) && !agreed.allows(action::CHGBODY));
        assert!(agreed.has(step::NOEOH) && !agreed.has(step::NOHELO));
        assert_eq!(OFFER.agree(&reply(&[2, 0x3f])).unwrap().version, 2);
        assert!(matches!(
            OFFER.agree(&reply(&[6, 0x100, 0])),
            Err(MilterError::NotNegotiated(_))
        ));
        // rspamd's answer: every no-reply bit, whatever was offered.
        let rspamd = OFFER.agree(&reply(&[6, 0xff, 0xff080])).unwrap();
        assert!(rspamd.has(step::NR_CONN) && rspamd.has(step::NR_HDR));
        assert!(matches!(
            OFFER.agree(&reply(&[6, 0x01, 0x40_0000])),
            Err(MilterError::NotNegotiated(_))
        ));
        assert!(OFFER.agree(&reply(&[7, 0, 0])).is_err());
        assert!(OFFER.agree(&reply(&[6])).is_err());
        assert!(OFFER.agree(&Packet::new(b'c', vec![])).is_err());
    }
}
