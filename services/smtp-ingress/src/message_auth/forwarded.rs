//! Whether a message is forwarded, and so a candidate for ARC sealing: an unauthenticated
//! client's message with at least one recipient outside the local domains of
//! `session.rcpt.directory` — relayed (as `session.rcpt.relay` allowed) or an alias of
//! `session.rcpt.aliases` expanded to an outside address. The recipients are known once DATA
//! starts, so the decision is made then, before any byte of the message is kept.

use std::collections::BTreeSet;

use ferrymail_rpc::directory::Verdict;
use ferrymail_rpc::queue::Recipient;

use crate::address::split_address;
use crate::session::Session;

impl Session {
    /// Whether this transaction forwards mail to a recipient outside the local domains.
    ///
    /// Without a recipient directory every recipient was relayed. A domain the directory
    /// cannot answer for now counts as outside: a seal on a message that stays here costs
    /// a few header fields, a missing one on forwarded mail may cost its DMARC pass
    /// downstream.
    pub(crate) async fn forwards(&self, recipients: &[Recipient]) -> bool {
        if self.authenticated.is_some() {
            return false;
        }
        let Some(directory) = self.settings.rcpt_directory.as_deref() else {
            return !recipients.is_empty();
        };
        let domains: BTreeSet<String> = recipients
            .iter()
            .filter_map(|r| split_address(&r.address).map(|(_, domain)| domain))
            .collect();
        for domain in domains {
            match self
                .shared
                .directory
                .is_local_domain(directory, &domain)
                .await
            {
                Ok(answer) if answer.verdict == Verdict::Yes => {}
                Ok(_) | Err(_) => return true,
            }
        }
        false
    }
}
