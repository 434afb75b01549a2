//! DNS blocklists in the session: the client's address at connect, its EHLO name at EHLO,
//! its sender's domain at MAIL FROM (see `crate::dnsbl`).
//!
//! A client that may still authenticate is not judged by its EHLO name at EHLO: submission
//! clients greet with whatever their device is called. Where AUTH is configured, the EHLO
//! name is checked at MAIL FROM instead, with the sender's domain, and only for a client
//! that did not authenticate: authenticated sessions are exempt from both domain checks.

use ferrymail_config::model::dnsbl::DnsblZone;
use ferrymail_config::value::DnsblScope;

use super::Session;
use super::reply::Reply;
use crate::address::split_address;
use crate::dnsbl::{Asking, Score, Subject};

impl Session {
    /// Asks the `ip` zones about the client; `true` when they refuse it, the reply queued.
    pub(crate) async fn refused_by_dnsbl_at_connect(&mut self) -> bool {
        let ip = self.peer.ip().to_canonical();
        let score = self.dnsbl_score(DnsblScope::Ip, Subject::Address(ip)).await;
        let Some(score) = score else {
            return false;
        };
        let allow = self.settings.dnsbl.allow_threshold;
        self.dnsbl_allowed = allow < 0 && score.total <= i64::from(allow);
        if !score.refuses(self.settings.dnsbl.threshold) {
            return false;
        }
        let zones = score.blocking.join(", ");
        self.count_dnsbl_refusal("connect", &score);
        self.reply(Reply::new(
            554,
            "5.7.1",
            format!("Service unavailable; client [{ip}] blocked using {zones}"),
        ));
        true
    }

    /// Asks the `helo` zones about `host` when the client cannot authenticate here; `true`
    /// when they refuse it, the reply queued.
    pub(crate) async fn refused_by_dnsbl_at_helo(&mut self, host: &str) -> bool {
        if self.dnsbl_allowed || self.may_authenticate() {
            return false;
        }
        let Some(score) = self
            .dnsbl_score(DnsblScope::Helo, Subject::Domain(host))
            .await
        else {
            return false;
        };
        if !score.refuses(self.settings.dnsbl.threshold) {
            return false;
        }
        self.count_dnsbl_refusal("ehlo", &score);
        self.reply(helo_refusal(host, &score));
        true
    }

    /// Asks the `sender-domain` zones about the domain of `sender` (and the `helo` zones about
    /// the EHLO name, when that waited for MAIL FROM), unless the client authenticated;
    /// `true` when they refuse it, the reply queued.
    pub(crate) async fn refused_by_dnsbl_at_mail(&mut self, sender: &str) -> bool {
        if self.dnsbl_allowed || self.authenticated.is_some() {
            return false;
        }
        let helo = self.helo.clone().filter(|_| self.may_authenticate());
        let domain = split_address(sender).map(|(_, domain)| domain);
        let (helo_score, sender_score) = futures::join!(
            self.optional_domain_score(DnsblScope::Helo, helo.as_deref()),
            self.optional_domain_score(DnsblScope::SenderDomain, domain.as_deref()),
        );
        let threshold = self.settings.dnsbl.threshold;
        if let (Some(host), Some(score)) = (&helo, helo_score)
            && score.refuses(threshold)
        {
            self.count_dnsbl_refusal("mail", &score);
            self.reply(helo_refusal(host, &score));
            return true;
        }
        if let (Some(domain), Some(score)) = (&domain, sender_score)
            && score.refuses(threshold)
        {
            self.count_dnsbl_refusal("mail", &score);
            self.reply(Reply::new(
                550,
                "5.7.1",
                format!(
                    "<{sender}>: Sender address rejected: domain {domain} blocked using {}",
                    score.blocking.join(", ")
                ),
            ));
            return true;
        }
        false
    }

    /// Whether this session may still authenticate: AUTH is configured for SMTP.
    fn may_authenticate(&self) -> bool {
        self.settings.auth_directory.is_some() && !self.listener.lmtp
    }

    /// The score of `domain` in `scope`, when there is a domain.
    async fn optional_domain_score(
        &self,
        scope: DnsblScope,
        domain: Option<&str>,
    ) -> Option<Score> {
        self.dnsbl_score(scope, Subject::Domain(domain?)).await
    }

    /// The score the zones of `scope` give `subject`; `None` when the scope has no zone.
    async fn dnsbl_score(&self, scope: DnsblScope, subject: Subject<'_>) -> Option<Score> {
        let zones: Vec<&DnsblZone> = self.settings.dnsbl.zones_of(scope).collect();
        if zones.is_empty() {
            return None;
        }
        let authenticator = self.shared.authenticator();
        let asking = Asking {
            dns: &authenticator.dns,
            timeout: self.settings.dnsbl.timeout,
            metrics: &self.shared.metrics,
        };
        Some(self.shared.blocklists.score(&zones, subject, &asking).await)
    }

    /// Counts and logs a refusal at `stage`.
    fn count_dnsbl_refusal(&self, stage: &'static str, score: &Score) {
        self.shared.metrics.dnsbl_rejection(stage);
        self.shared.metrics.rejected("dnsbl");
        tracing::info!(
            stage,
            client = %self.peer.ip(),
            listener = %self.listener.id,
            zones = %score.blocking.join(", "),
            score = score.total,
            "refused by DNS blocklists"
        );
    }
}

/// The refusal of an EHLO name the blocklists list (Postfix's `reject_rhsbl_helo` wording).
fn helo_refusal(host: &str, score: &Score) -> Reply {
    Reply::new(
        550,
        "5.7.1",
        format!(
            "<{host}>: Helo command rejected: blocked using {}",
            score.blocking.join(", ")
        ),
    )
}
