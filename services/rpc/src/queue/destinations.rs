//! Destinations: pausing and resuming delivery to a recipient domain, a remote or the whole
//! queue, and what is paused or suspended after failed connections; with their wire forms.

use crate::RpcError;
use crate::proto::{self, destination_scope::Scope};

/// What a pause applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DestinationScope {
    /// Every delivery.
    All,
    /// Recipients of one domain (compared in lower case, without a trailing dot).
    Domain(String),
    /// Deliveries through `remote.<id>`: the id.
    Remote(String),
}

impl std::fmt::Display for DestinationScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DestinationScope::All => f.write_str("all"),
            DestinationScope::Domain(domain) => write!(f, "domain {domain}"),
            DestinationScope::Remote(id) => write!(f, "remote.{id}"),
        }
    }
}

/// A pause in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PausedDestination {
    /// What it applies to.
    pub scope: DestinationScope,
    /// Since when (unix seconds).
    pub since: u64,
}

/// A destination whose connections failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuspendedDestination {
    /// `remote.<id>`.
    pub destination: String,
    /// Connections failed in a row.
    pub failures: u64,
    /// While suspended, until when (unix seconds); `None` while below the cohort limit.
    pub until: Option<u64>,
    /// The last connection failure.
    pub reason: String,
}

/// What is paused and what is suspended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Destinations {
    /// Pauses in force.
    pub paused: Vec<PausedDestination>,
    /// Destinations with failed connections.
    pub suspended: Vec<SuspendedDestination>,
}

/// What a resume did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resumed {
    /// The destination was paused.
    pub resumed: bool,
    /// Recipients deferred by a pause made due at once.
    pub rescheduled: u32,
}

pub(super) fn scope_to_wire(scope: &DestinationScope) -> proto::DestinationScope {
    let scope = match scope {
        DestinationScope::All => Scope::All(true),
        DestinationScope::Domain(domain) => Scope::Domain(domain.clone()),
        DestinationScope::Remote(id) => Scope::Remote(id.clone()),
    };
    proto::DestinationScope { scope: Some(scope) }
}

pub(super) fn scope_from_wire(
    scope: Option<proto::DestinationScope>,
) -> Result<DestinationScope, RpcError> {
    let invalid = |what: &str| RpcError::Protocol(format!("destination scope: {what}"));
    match scope.and_then(|s| s.scope) {
        Some(Scope::All(true)) => Ok(DestinationScope::All),
        Some(Scope::Domain(domain)) if !domain.trim().is_empty() => Ok(DestinationScope::Domain(
            domain.trim().trim_end_matches('.').to_ascii_lowercase(),
        )),
        Some(Scope::Remote(id)) if !id.trim().is_empty() => {
            Ok(DestinationScope::Remote(id.trim().to_owned()))
        }
        Some(Scope::All(false)) => Err(invalid("all must be true")),
        Some(_) => Err(invalid("empty name")),
        None => Err(invalid("missing")),
    }
}

pub(super) fn destinations_to_wire(destinations: Destinations) -> proto::DestinationsReply {
    proto::DestinationsReply {
        paused: destinations
            .paused
            .iter()
            .map(|p| proto::PausedDestination {
                scope: Some(scope_to_wire(&p.scope)),
                since: p.since,
            })
            .collect(),
        suspended: destinations
            .suspended
            .into_iter()
            .map(|s| proto::SuspendedDestination {
                destination: s.destination,
                failures: s.failures,
                until: s.until.unwrap_or(0),
                reason: s.reason,
            })
            .collect(),
    }
}

pub(super) fn destinations_from_wire(
    reply: proto::DestinationsReply,
) -> Result<Destinations, RpcError> {
    let paused = reply
        .paused
        .into_iter()
        .map(|p| {
            Ok(PausedDestination {
                scope: scope_from_wire(p.scope)?,
                since: p.since,
            })
        })
        .collect::<Result<_, RpcError>>()?;
    let suspended = reply
        .suspended
        .into_iter()
        .map(|s| SuspendedDestination {
            destination: s.destination,
            failures: s.failures,
            until: (s.until != 0).then_some(s.until),
            reason: s.reason,
        })
        .collect();
    Ok(Destinations { paused, suspended })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn scopes_cross_the_wire_and_bad_ones_are_refused() {
        for scope in [
            DestinationScope::All,
            DestinationScope::Domain("example.org".into()),
            DestinationScope::Remote("relay".into()),
        ] {
            assert_eq!(scope_from_wire(Some(scope_to_wire(&scope))).unwrap(), scope);
        }
        let domain = proto::DestinationScope {
            scope: Some(Scope::Domain(" Example.ORG. ".into())),
        };
        assert_eq!(
            scope_from_wire(Some(domain)).unwrap(),
            DestinationScope::Domain("example.org".into())
        );
        for bad in [
            None,
            Some(proto::DestinationScope { scope: None }),
            Some(proto::DestinationScope {
                scope: Some(Scope::All(false)),
            }),
            Some(proto::DestinationScope {
                scope: Some(Scope::Remote(" ".into())),
            }),
        ] {
            assert!(scope_from_wire(bad).is_err());
        }
    }
}
