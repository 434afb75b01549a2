//! Sessions kept open between messages, per remote or per MX host: a message that finds one
//! skips the connection, TLS handshake, EHLO and AUTH.
//!
//! A session goes back to the pool after a transaction only while it has carried fewer than
//! its limit of messages (a remote's `limits.requests`) and met fewer than its limit of
//! refusals (`limits.errors`); it stays there at most [`IDLE_LIMIT`]. Taken again, its next
//! transaction begins with RSET — the server may have closed it meanwhile — pipelined with
//! the envelope when the server allows it, as Postfix checks its cached sessions but without
//! a round trip of its own; a session that fails the check is dropped for the next one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrymail_rpc::queue::{Envelope, Recipient};
use futures::Stream;

use super::session::Session;
use super::{Deadline, DeliveryError, Outcome};

/// Longest a session waits in the pool: long enough for the next message of a busy queue,
/// short enough not to hold connections a remote would rather close.
pub const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// A session and what it has carried.
pub(crate) struct Pooled {
    /// The open session.
    pub session: Session,
    /// Transactions it carried.
    pub used: u32,
    /// Transactions the remote refused (any recipient not accepted).
    pub errors: u32,
}

impl Pooled {
    /// A new session, which has carried nothing yet.
    pub(crate) fn new(session: Session) -> Self {
        Self {
            session,
            used: 0,
            errors: 0,
        }
    }

    /// Counts a transaction that filled `outcomes`: a refusal unless every recipient was
    /// delivered.
    fn count(&mut self, outcomes: &[Option<Outcome>]) {
        self.used += 1;
        if outcomes
            .iter()
            .any(|o| !matches!(o, Some(Outcome::Delivered(_))))
        {
            self.errors += 1;
        }
    }
}

/// How long a session may be kept, and how many.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReuseLimits {
    /// Transactions a session carries before it is closed.
    pub requests: u32,
    /// Refused transactions after which it is closed.
    pub errors: u32,
    /// Idle sessions kept per key.
    pub idle: usize,
}

struct Idle {
    pooled: Pooled,
    since: Instant,
}

/// Idle sessions by destination.
#[derive(Default)]
pub struct SessionPool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool").finish_non_exhaustive()
    }
}

impl SessionPool {
    /// The most recently used idle session of `key`, if one is young enough; older ones are
    /// dropped (closing their connections).
    fn take(&self, key: &str) -> Option<Pooled> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let sessions = idle.get_mut(key)?;
        sessions.retain(|s| s.since.elapsed() < IDLE_LIMIT);
        sessions.pop().map(|s| s.pooled)
    }

    /// Runs one mail transaction over a kept session of `key`, or over a new one from `open`
    /// once none is left that still answers; returns the session for
    /// [`SessionPool::give_back`]. Without a key, the session is always new.
    ///
    /// A kept session that fails its reset is dropped before any of the message was sent,
    /// so the next one carries the message without duplicating it.
    pub(crate) async fn transact<O, F>(
        &self,
        key: Option<&str>,
        mut open: O,
        (envelope, recipients): (&Envelope, &[Recipient]),
        body: impl Stream<Item = Result<Bytes, impl std::fmt::Display>>,
        deadline: &Deadline,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<Pooled, DeliveryError>
    where
        O: FnMut() -> F,
        F: Future<Output = Result<Session, DeliveryError>>,
    {
        let mut body = std::pin::pin!(body);
        loop {
            let mut pooled = match key.and_then(|key| self.take(key)) {
                Some(pooled) => pooled,
                None => Pooled::new(open().await?),
            };
            let session = &mut pooled.session;
            match session
                .transact(envelope, recipients, body.as_mut(), deadline, outcomes)
                .await
            {
                Ok(()) => return Ok(pooled),
                Err(DeliveryError::KeptSessionClosed(reason)) => {
                    tracing::debug!(key, %reason, "a kept session was closed; trying the next");
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Keeps `pooled` for the next message to `key`, unless `max_idle` are kept already.
    fn put(&self, key: &str, mut pooled: Pooled, max_idle: usize) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let sessions = idle.entry(key.to_owned()).or_default();
        sessions.retain(|s| s.since.elapsed() < IDLE_LIMIT);
        if sessions.len() < max_idle {
            pooled.session.kept = true;
            sessions.push(Idle {
                pooled,
                since: Instant::now(),
            });
        }
    }

    /// After a transaction that filled `outcomes`: keeps `pooled` for the next message to
    /// `key` while `limits` allow, or ends it (QUIT). Without a key it is never kept.
    pub(crate) async fn give_back(
        &self,
        key: Option<&str>,
        mut pooled: Pooled,
        outcomes: &[Option<Outcome>],
        limits: ReuseLimits,
    ) {
        pooled.count(outcomes);
        match key {
            Some(key) if pooled.used < limits.requests && pooled.errors < limits.errors => {
                self.put(key, pooled, limits.idle);
            }
            _ => pooled.session.quit().await,
        }
    }

    /// Drops every idle session (the remotes were reconfigured).
    pub fn clear(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
