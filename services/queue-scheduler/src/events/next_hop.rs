//! The next hop of a recipient, as delivery events name it: a configured relay
//! (`remote.<id>`), or the MX hosts of the recipient's domain, with the host that answered
//! when the recorded reply names it.

use crate::route::{Route, Router};

/// Where a recipient's delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NextHop {
    /// A relay, `remote.<id>`.
    Remote(String),
    /// The MX hosts of `domain`; `host` the one a reply came from, when known.
    Mx {
        /// The recipient's domain.
        domain: String,
        /// The MX host named in the recorded reply.
        host: Option<String>,
    },
}

impl NextHop {
    /// The next hop of `address` by `route`, with the MX host `reply` names.
    pub(crate) fn of(route: &Route, address: &str, reply: Option<&str>) -> Self {
        match route {
            Route::Remote(id) => NextHop::Remote(id.clone()),
            Route::Mx => NextHop::Mx {
                domain: address
                    .rsplit_once('@')
                    .map_or("", |(_, d)| d)
                    .to_ascii_lowercase(),
                host: reply.and_then(mx_host),
            },
        }
    }

    /// The next hop `router` gives `address` of a message from `sender`; `None` without one.
    pub(crate) fn routed(
        router: Option<&Router>,
        envelope: &ferrymail_rpc::queue::Envelope,
        address: &str,
        reply: Option<&str>,
    ) -> Option<Self> {
        let route = router?.route(envelope, address);
        Some(Self::of(&route, address, reply))
    }
}

/// The host of an MX failure recorded as `host[ip]:port: reason`.
fn mx_host(reply: &str) -> Option<String> {
    let first = reply.split_whitespace().next()?;
    let (host, rest) = first.split_once('[')?;
    let valid = !host.is_empty()
        && rest.contains("]:")
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    valid.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_hosts_are_read_from_failures_only_when_named() {
        let cases = [
            (
                "mx1.Example.org[192.0.2.1]:25: network error",
                Some("mx1.example.org"),
            ),
            (
                "mx1.example.org[2001:db8::1]:25: 421 bye",
                Some("mx1.example.org"),
            ),
            ("451 4.4.4 no address for the MX hosts of x", None),
            ("250 2.0.0 Ok", None),
            ("[192.0.2.1]:25: odd", None),
            ("", None),
        ];
        for (reply, host) in cases {
            assert_eq!(mx_host(reply).as_deref(), host, "{reply:?}");
        }
    }

    #[test]
    fn routes_become_next_hops() {
        let remote = NextHop::of(&Route::Remote("relay".into()), "a@b.org", None);
        assert_eq!(remote, NextHop::Remote("relay".into()));
        let mx = NextHop::of(&Route::Mx, "a@B.org", Some("mx.b.org[192.0.2.1]:25: x"));
        let expected = NextHop::Mx {
            domain: "b.org".into(),
            host: Some("mx.b.org".into()),
        };
        assert_eq!(mx, expected);
    }
}
