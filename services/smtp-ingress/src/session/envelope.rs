//! MAIL, RCPT, VRFY and EXPN, and the relay decision: an unauthenticated client may only
//! send to local domains, and only to recipients the directory confirms.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ferrymail_config::model::stage_rules::Stage;
use ferrymail_rpc::directory::{Expansion, RemoteReply, Verdict};
use ferrymail_rpc::queue::{BodyType, DsnReturn, Notify, NotifyOn, Priority, Recipient};
use smtp_proto::{
    MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_REQUIRETLS, MAIL_RET_FULL, MAIL_RET_HDRS,
    MAIL_SMTPUTF8, MailFrom, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER,
    RCPT_NOTIFY_SUCCESS, RcptTo,
};

use super::filters::Filtered;
use super::reply::{Reply, quoted};
use super::rewrite::{Rewritten, rewrite};
use super::rules::{CommandValues, ListUnavailable};
use super::{Session, Transaction};
use crate::address::split_address;

/// MAIL FROM parameters kept for the queue.
#[derive(Debug, Default, Clone)]
pub(crate) struct MailParams {
    pub(crate) declared_size: Option<u64>,
    pub(crate) body_type: BodyType,
    pub(crate) ret: Option<DsnReturn>,
    pub(crate) envid: Option<String>,
    pub(crate) smtputf8: bool,
    pub(crate) requiretls: bool,
    pub(crate) priority: Priority,
    pub(crate) hold_until: Option<u64>,
}

impl MailParams {
    /// The parameters as the client could have written them, for filters.
    pub(crate) fn as_parameters(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(size) = self.declared_size {
            out.push(format!("SIZE={size}"));
        }
        match self.body_type {
            BodyType::SevenBit => {}
            BodyType::EightBitMime => out.push("BODY=8BITMIME".into()),
            BodyType::BinaryMime => out.push("BODY=BINARYMIME".into()),
        }
        match self.ret {
            Some(DsnReturn::Full) => out.push("RET=FULL".into()),
            Some(DsnReturn::Headers) => out.push("RET=HDRS".into()),
            None => {}
        }
        if let Some(envid) = &self.envid {
            out.push(format!("ENVID={envid}"));
        }
        if self.smtputf8 {
            out.push("SMTPUTF8".into());
        }
        if self.requiretls {
            out.push("REQUIRETLS".into());
        }
        out
    }
}

/// The longest FUTURERELEASE hold accepted (as announced in EHLO).
pub(crate) const MAX_HOLD: u64 = 7 * 24 * 3600;

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Local parts that route mail onward (`user%host`, `host!user`, `"a@b"`): accepted from
/// an unauthenticated client, they would make this an open relay through a lenient next hop.
fn routes_elsewhere(local: &str) -> bool {
    local.contains(['%', '!', '@'])
}

impl Session {
    pub(super) async fn mail(&mut self, from: MailFrom<String>) {
        if self.helo.is_none() {
            self.reply(Reply::new(503, "5.5.1", "Say EHLO or HELO first"));
            return;
        }
        // During BDAT the transaction is the upload's: it is still open.
        if self.transaction.is_some() || self.bdat.is_some() {
            self.reply(Reply::new(503, "5.5.1", "Nested MAIL command"));
            return;
        }
        if self.messages >= self.settings.max_messages {
            self.shared.metrics.rejected("limit");
            self.reply(Reply::new(
                452,
                "4.4.5",
                "Too many messages in this session; reconnect",
            ));
            return;
        }
        if from.size as u64 > self.settings.max_message_size {
            self.shared.metrics.rejected("size");
            self.reply(Reply::new(552, "5.3.4", "Message too large"));
            return;
        }
        if from.flags & MAIL_REQUIRETLS != 0 && !self.is_tls() {
            self.reply(Reply::new(
                530,
                "5.7.10",
                "REQUIRETLS needs an encrypted connection",
            ));
            return;
        }
        let Some(priority) = Priority::new(i32::try_from(from.mt_priority).unwrap_or(i32::MAX))
        else {
            self.reply(Reply::new(
                501,
                "5.5.4",
                "MT-PRIORITY must be between -9 and 9",
            ));
            return;
        };
        let hold = if from.hold_until > 0 {
            Some(from.hold_until)
        } else if from.hold_for > 0 {
            Some(unix_now().saturating_add(from.hold_for))
        } else {
            None
        };
        if hold.is_some_and(|until| until > unix_now().saturating_add(MAX_HOLD)) {
            self.reply(Reply::new(
                501,
                "5.5.4",
                "FUTURERELEASE too far in the future",
            ));
            return;
        }
        // SPF judges the address the client gave; the rules and the queue see the new one.
        let sender = match rewrite(
            &self.settings.mail_rewrite,
            Rewritten::Sender,
            &from.address,
        ) {
            Ok(Some(new)) => {
                tracing::debug!(
                    sender = from.address.as_str(),
                    rewritten = new.as_str(),
                    "sender rewritten"
                );
                new
            }
            Ok(None) => from.address.clone(),
            Err(refusal) => {
                self.shared.metrics.rejected("rewrite");
                self.reply(refusal);
                return;
            }
        };
        let values = CommandValues {
            sender: Some(&sender),
            ..CommandValues::default()
        };
        if self.refused_by_rule(Stage::Mail, values).await
            || self.refused_by_dnsbl_at_mail(&from.address).await
            || self.refused_by_limiter(Stage::Mail, values).await
        {
            return;
        }
        let spf_mail_from = match self.spf_at_mail(&from.address).await {
            Ok(spf) => spf,
            Err(refusal) => {
                self.shared.metrics.rejected("spf");
                self.reply(refusal);
                return;
            }
        };
        let params = MailParams {
            declared_size: (from.size > 0).then_some(from.size as u64),
            body_type: if from.flags & MAIL_BODY_BINARYMIME != 0 {
                BodyType::BinaryMime
            } else if from.flags & MAIL_BODY_8BITMIME != 0 {
                BodyType::EightBitMime
            } else {
                BodyType::SevenBit
            },
            ret: if from.flags & MAIL_RET_FULL != 0 {
                Some(DsnReturn::Full)
            } else if from.flags & MAIL_RET_HDRS != 0 {
                Some(DsnReturn::Headers)
            } else {
                None
            },
            envid: from.env_id,
            smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
            requiretls: from.flags & MAIL_REQUIRETLS != 0,
            priority,
            hold_until: hold,
        };
        self.transaction = Some(Transaction {
            sender,
            params,
            recipients: Vec::new(),
            spf_mail_from,
        });
        if let Filtered::Refused(reply) = self.filter(Stage::Mail, None).await {
            self.transaction = None;
            self.end_filtered_transaction(true).await;
            self.reply(reply);
            return;
        }
        self.reply(Reply::new(250, "2.1.0", "OK"));
    }

    pub(super) async fn rcpt(&mut self, to: RcptTo<String>) {
        let started = Instant::now();
        let Some(count) = self.transaction.as_ref().map(|t| t.recipients.len()) else {
            self.reply(Reply::new(503, "5.5.1", "Need MAIL before RCPT"));
            return;
        };
        if count >= self.settings.max_recipients {
            self.shared.metrics.rejected("limit");
            self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
            return;
        }
        // RFC 5321 §4.5.1: the bare "postmaster" is this host's postmaster.
        let address = if to.address.eq_ignore_ascii_case("postmaster") {
            format!("postmaster@{}", self.settings.hostname)
        } else {
            to.address.clone()
        };
        let Some((local, domain)) = split_address(&address) else {
            self.shared.metrics.rejected("syntax");
            self.reply(Reply::new(
                550,
                "5.1.3",
                format!("{} Bad recipient address syntax", quoted(&address)),
            ));
            return;
        };
        let address = format!("{local}@{domain}");
        // A rewritten recipient is checked, relayed and queued as its new address.
        let address = match rewrite(&self.settings.rcpt_rewrite, Rewritten::Recipient, &address) {
            Ok(Some(new)) => {
                tracing::debug!(
                    rcpt = address.as_str(),
                    rewritten = new.as_str(),
                    "recipient rewritten"
                );
                new
            }
            Ok(None) => address,
            Err(refusal) => {
                self.shared.metrics.rejected("rewrite");
                self.reply(refusal);
                self.shared.metrics.stage("rcpt", started.elapsed());
                return;
            }
        };
        let Some((local, domain)) = split_address(&address) else {
            // Unreachable: the rewrite checked its address, and an unchanged one was split.
            self.reply(Reply::new(550, "5.1.3", "Bad recipient address syntax"));
            return;
        };
        let values = CommandValues {
            rcpt: Some(&address),
            rcpt_domain: Some(&domain),
            ..CommandValues::default()
        };
        if self.refused_by_rule(Stage::Rcpt, values).await
            || self.refused_by_limiter(Stage::Rcpt, values).await
        {
            self.shared.metrics.stage("rcpt", started.elapsed());
            return;
        }
        if let Some(targets) = self.settings.aliases.targets(&address) {
            let targets = targets.to_vec();
            let reply = self.expand_alias(&address, &targets, &to);
            self.reply(reply);
            self.shared.metrics.stage("rcpt", started.elapsed());
            return;
        }
        if let Some(reply) = self.relay_check(local, &domain, &address).await {
            self.reply(reply);
            self.shared.metrics.stage("rcpt", started.elapsed());
            return;
        }
        let recipient = Recipient {
            address: address.clone(),
            notify: notify(to.flags),
            orcpt: to.orcpt,
        };
        let reply = match self.filter(Stage::Rcpt, Some(recipient)).await {
            Filtered::Go | Filtered::Dropped => {
                Reply::new(250, "2.1.5", format!("{} OK", quoted(&address)))
            }
            Filtered::Refused(reply) => reply,
        };
        self.reply(reply);
        self.shared.metrics.stage("rcpt", started.elapsed());
    }

    /// Accepts `alias` as its `targets`: the administrator's addresses, queued as they are,
    /// each counting as a recipient of the transaction.
    fn expand_alias(&mut self, alias: &str, targets: &[String], to: &RcptTo<String>) -> Reply {
        let max = self.settings.max_recipients;
        let Some(transaction) = self.transaction.as_mut() else {
            return Reply::new(503, "5.5.1", "Need MAIL before RCPT");
        };
        let new: Vec<&String> = targets
            .iter()
            .filter(|t| {
                !transaction
                    .recipients
                    .iter()
                    .any(|r| r.address.eq_ignore_ascii_case(t))
            })
            .collect();
        if transaction.recipients.len() + new.len() > max {
            self.shared.metrics.rejected("limit");
            return Reply::new(452, "4.5.3", "Too many recipients");
        }
        for target in new {
            transaction.recipients.push(Recipient {
                address: target.clone(),
                notify: notify(to.flags),
                orcpt: to.orcpt.clone(),
            });
        }
        tracing::debug!(alias, targets = targets.len(), "alias expanded");
        Reply::new(250, "2.1.5", format!("{} OK", quoted(alias)))
    }

    /// `None` when the recipient is accepted, else the refusal.
    async fn relay_check(&mut self, local: &str, domain: &str, address: &str) -> Option<Reply> {
        if self.authenticated.is_some() {
            return None;
        }
        let temporary = || Reply::new(451, "4.4.3", "Directory unavailable, try again later");
        let Some(directory) = self.settings.rcpt_directory.clone() else {
            return self.relay(address, domain).await;
        };
        if routes_elsewhere(local) {
            return self.relay(address, domain).await;
        }
        let directories = self.shared.directory.clone();
        match directories.is_local_domain(&directory, domain).await {
            Ok(answer) if answer.verdict == Verdict::Yes => {}
            Ok(answer) if answer.verdict == Verdict::No => {
                return self.relay(address, domain).await;
            }
            _ => {
                self.shared.metrics.rejected("temporary");
                return Some(temporary());
            }
        }
        match directories.verify_recipient(&directory, address).await {
            Ok(answer) => match answer.verdict {
                Verdict::Yes => None,
                Verdict::No => {
                    self.shared.metrics.rejected("unknown_user");
                    Some(Reply::new(
                        550,
                        "5.1.1",
                        format!(
                            "{} Recipient address rejected: User unknown",
                            quoted(address)
                        ),
                    ))
                }
                Verdict::Refused => {
                    self.shared.metrics.rejected("mailbox");
                    Some(mailbox_refusal(address, answer.reply.as_ref()))
                }
                // Blocked answers only AUTH; anything else unexpected is no answer.
                Verdict::TemporaryFailure | Verdict::Blocked => {
                    self.shared.metrics.rejected("temporary");
                    Some(temporary())
                }
            },
            Err(error) => {
                tracing::warn!(%error, "recipient lookup failed; answering 451");
                self.shared.metrics.rejected("temporary");
                Some(temporary())
            }
        }
    }

    /// A recipient that is not local, or routed onward by its local part: relaying, allowed
    /// only by `session.rcpt.relay`.
    async fn relay(&mut self, address: &str, domain: &str) -> Option<Reply> {
        let settings = self.settings.clone();
        let values = CommandValues {
            rcpt: Some(address),
            rcpt_domain: Some(domain),
            ..CommandValues::default()
        };
        match self.evaluate(&settings.relay, values).await {
            Ok(outcome) if *outcome.value => None,
            Ok(_) => {
                self.relay_denied(address);
                Some(Reply::new(
                    554,
                    "5.7.1",
                    format!("{} Relay access denied", quoted(address)),
                ))
            }
            Err(ListUnavailable) => {
                self.shared.metrics.rejected("temporary");
                Some(Reply::new(
                    451,
                    "4.4.3",
                    "Directory unavailable, try again later",
                ))
            }
        }
    }

    /// The relay-denied log line, in one stable format (documented in the README).
    fn relay_denied(&self, address: &str) {
        self.shared.metrics.rejected("relay");
        tracing::warn!(
            target: "ferrymail::relay",
            "relay denied: client={} helo={:?} rcpt={:?} listener={}",
            self.peer.ip(),
            self.helo.as_deref().unwrap_or(""),
            address,
            self.listener.id
        );
    }

    pub(super) async fn vrfy(&mut self, value: String, expn: bool) {
        let (Some(_), Some(directory)) =
            (&self.authenticated, self.settings.rcpt_directory.clone())
        else {
            // Address harvesting: VRFY and EXPN answer only authenticated clients.
            self.reply(Reply::new(
                252,
                "2.5.2",
                "Cannot VRFY user, but will accept message and attempt delivery",
            ));
            return;
        };
        let directories = self.shared.directory.clone();
        let answer = if expn {
            directories.expn(&directory, &value).await
        } else {
            directories.vrfy(&directory, &value).await
        };
        let reply = match answer {
            Ok(Expansion::Found { values, .. }) => Reply::new(250, "2.1.5", values.join("\n")),
            Ok(Expansion::NotFound { .. }) => Reply::new(550, "5.1.1", "No such user"),
            Ok(Expansion::CannotTell { .. }) => {
                Reply::new(252, "2.5.2", "Cannot VRFY user, but will accept message")
            }
            Ok(Expansion::TemporaryFailure { .. }) | Err(_) => {
                Reply::new(451, "4.4.3", "Directory unavailable, try again later")
            }
        };
        self.reply(reply);
    }
}

fn notify(flags: u64) -> Notify {
    if flags & RCPT_NOTIFY_NEVER != 0 {
        return Notify::Never;
    }
    NotifyOn::new(
        flags & RCPT_NOTIFY_SUCCESS != 0,
        flags & RCPT_NOTIFY_FAILURE != 0,
        flags & RCPT_NOTIFY_DELAY != 0,
    )
    .map_or(Notify::Default, Notify::On)
}

/// The refusal of a mailbox that exists but takes no mail now (full, disabled), as its
/// server worded it: the code and enhanced status are passed on, so the sender sees why.
/// Anything but a `5xx` with a `5.x.x` status is not a refusal the proxy passes on.
fn mailbox_refusal(address: &str, reply: Option<&RemoteReply>) -> Reply {
    let refusal = reply.and_then(|reply| {
        let line = reply.text.lines().next().unwrap_or_default();
        let (status, text) = line.split_once(' ').unwrap_or((line, ""));
        ((500..600).contains(&reply.code) && is_permanent_status(status))
            .then_some((reply.code, status, text))
    });
    let (code, status, text) = refusal.unwrap_or((550, "5.2.0", "Mailbox unavailable"));
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    Reply::new(
        code,
        status,
        format!("{} Recipient address rejected: {text}", quoted(address)),
    )
}

/// Whether `status` is an enhanced status code of class 5 (RFC 3463: `5.subject.detail`).
fn is_permanent_status(status: &str) -> bool {
    let parts: Vec<&str> = status.split('.').collect();
    parts.len() == 3
        && parts[0] == "5"
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn mail_parameters_are_written_as_a_client_would() {
        let params = MailParams {
            declared_size: Some(1000),
            body_type: BodyType::EightBitMime,
            ret: Some(DsnReturn::Headers),
            envid: Some("x1".into()),
            smtputf8: true,
            ..MailParams::default()
        };
        assert_eq!(
            params.as_parameters(),
            [
                "SIZE=1000",
                "BODY=8BITMIME",
                "RET=HDRS",
                "ENVID=x1",
                "SMTPUTF8"
            ]
        );
    }

    #[test]
    fn a_mailbox_refusal_passes_on_the_servers_code_and_status() {
        let full = RemoteReply::smtp(552, "5.2.2 Mailbox full\nsecond line");
        assert_eq!(
            mailbox_refusal("full@example.org", Some(&full)).0,
            "552 5.2.2 <full@example.org> Recipient address rejected: Mailbox full\r\n"
        );
        // Nothing the client could misread: no 4xx, no broken status, no line breaks.
        for odd in [
            RemoteReply::smtp(452, "4.2.2 Mailbox full"),
            RemoteReply::smtp(552, "Mailbox full"),
            RemoteReply::smtp(552, "5.2.x Mailbox full"),
            RemoteReply::smtp(552, "4.2.2 Mailbox full"),
        ] {
            assert_eq!(
                mailbox_refusal("a@b", Some(&odd)).0,
                "550 5.2.0 <a@b> Recipient address rejected: Mailbox unavailable\r\n",
                "{odd:?}"
            );
        }
        assert!(mailbox_refusal("a@b", None).0.starts_with("550 5.2.0 "));
        let control = RemoteReply::smtp(550, "5.2.1 Disabled\u{7}\r");
        assert_eq!(
            mailbox_refusal("a@b", Some(&control)).0,
            "550 5.2.1 <a@b> Recipient address rejected: Disabled\r\n"
        );
    }

    #[test]
    fn addresses_are_normalised_for_the_relay_decision() {
        assert_eq!(
            split_address("Alice@Example.ORG."),
            Some(("Alice", "example.org".to_string()))
        );
        assert_eq!(split_address("nodomain"), None);
        assert_eq!(split_address("@example.org"), None);
        assert_eq!(split_address("a@"), None);
        assert!(routes_elsewhere("user%evil.com"));
        assert!(routes_elsewhere("evil.com!user"));
        assert!(routes_elsewhere("\"a@evil.com\""));
        assert!(!routes_elsewhere("alice+tag"));
    }
}
