//! Routing: `queue.outbound.next-hop` evaluated for one recipient of a message.
//!
//! Rule conditions test the envelope against lists of the configuration
//! (`"<directory>/<list>"`, matched like the directory-proxy's lists, without any network
//! request). `"remote/<id>"` conditions (the address exists at a remote) need a lookup over
//! the network, which delivery does not make yet: such a condition never matches, so the rule
//! list falls through to its next branch.

use ferrymail_config::Config;
use ferrymail_config::model::lists::Lists;
use ferrymail_config::model::queue::Hop;
use ferrymail_config::model::rules::{ListRef, Rules, Variable};
use ferrymail_rpc::queue::Envelope;

use crate::model::condition;

/// Where one recipient goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// Relay through `remote.<id>`.
    Remote(String),
    /// DNS MX delivery.
    Mx,
}

/// The next-hop rules with the lists they test, prepared from one configuration.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Rules<Hop>,
    lists: Lists,
}

impl Router {
    /// The router of `config`.
    pub fn new(config: &Config) -> Self {
        let router = Self {
            rules: config.queue.next_hop.0.clone(),
            lists: Lists::from_config(config),
        };
        for branch in &router.rules.branches {
            if let ListRef::Remote { id } = &branch.list {
                tracing::warn!(
                    list = %branch.list,
                    remote = %id,
                    "queue.outbound.next-hop: \"remote/<id>\" conditions are not supported yet \
                     and never match; the rule list falls through to its next branch"
                );
            }
        }
        router
    }

    /// Whether every recipient goes to MX delivery, whatever the envelope.
    pub fn mx_only(&self) -> bool {
        self.rules.outcomes().all(|hop| *hop == Hop::Mx)
    }

    /// Whether some recipients may go to MX delivery.
    pub fn may_route_to_mx(&self) -> bool {
        self.rules.outcomes().any(|hop| *hop == Hop::Mx)
    }

    /// The route of recipient `rcpt` of a message with envelope `envelope`.
    pub fn route(&self, envelope: &Envelope, rcpt: &str) -> Route {
        let hop = self
            .rules
            .branches
            .iter()
            .find(|branch| self.matches(&branch.variable, &branch.list, envelope, rcpt))
            .map_or(&self.rules.otherwise, |branch| &branch.then);
        match hop {
            Hop::Mx => Route::Mx,
            Hop::Remote(id) => Route::Remote(id.clone()),
        }
    }

    fn matches(
        &self,
        variable: &Variable,
        list: &ListRef,
        envelope: &Envelope,
        rcpt: &str,
    ) -> bool {
        let ListRef::Directory { directory, list } = list else {
            tracing::debug!(%list, "remote/<id> conditions are not supported yet: no match");
            return false;
        };
        let Some(list) = self.lists.get(directory, list) else {
            return false;
        };
        condition::value(*variable, envelope, Some(rcpt))
            .is_some_and(|value| !value.is_empty() && list.contains(value))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn router(extra: &str) -> Router {
        let text = format!(
            r#"
[server]
hostname = "h"
[remote.lmtp]
address = "127.0.0.1"
protocol = "lmtp"
tls.implicit = false
lookup = true
[remote.relay]
address = "127.0.0.1"
protocol = "smtp"
tls.implicit = false
[directory.local]
type = "lmtp"
address = "127.0.0.1"
lookup.domains = ["example.org"]
lookup.vips = ["boss@example.net"]
{extra}
"#
        );
        Router::new(&ferrymail_config::load_str("t.toml", &text).unwrap())
    }

    fn envelope(sender: &str) -> Envelope {
        Envelope {
            sender: sender.into(),
            ..Envelope::default()
        }
    }

    #[test]
    fn rule_lists_route_by_recipient_and_sender() {
        let router = router(
            r#"
[queue.outbound]
next-hop = [
  { if = "rcpt-domain", in-list = "local/domains", then = "lmtp" },
  { if = "rcpt", in-list = "local/vips", then = "relay" },
  { if = "sender-domain", in-list = "local/domains", then = "relay" },
  { else = "mx" },
]
"#,
        );
        assert!(!router.mx_only());
        let from_outside = envelope("x@elsewhere.test");
        assert_eq!(
            router.route(&from_outside, "Bob@Example.ORG"),
            Route::Remote("lmtp".into())
        );
        assert_eq!(
            router.route(&from_outside, "boss@example.net"),
            Route::Remote("relay".into())
        );
        assert_eq!(router.route(&from_outside, "x@example.net"), Route::Mx);
        assert_eq!(
            router.route(&envelope("a@example.org"), "x@example.net"),
            Route::Remote("relay".into())
        );
    }

    #[test]
    fn remote_conditions_fall_through_and_plain_values_route_everything() {
        let fallthrough = router(
            r#"
[queue.outbound]
next-hop = [
  { if = "rcpt", in-list = "remote/lmtp", then = "lmtp" },
  { else = "relay" },
]
"#,
        );
        assert_eq!(
            fallthrough.route(&envelope(""), "bob@example.org"),
            Route::Remote("relay".into())
        );
        assert!(router("").mx_only(), "the default is mx");
    }
}
