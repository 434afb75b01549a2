//! Keeping a claimed message's lease while its delivery runs, and the deadline that lease sets
//! the delivery.
//!
//! Other schedulers judge a lease by their own clocks, which may be ahead of this one's by up
//! to `queue.lease.max-clock-skew`: here a lease is taken to hold only until its stored expiry
//! less that skew (its validity), and the delivery is given that moment as its deadline, past
//! which outbound delivery hands nothing over. Renewals come a third of a lease apart, and
//! always early enough before the validity ends for one to be retried; each is bounded by the
//! renewal timeout, so that a store that hangs cannot hold a renewal past the validity. One
//! that cannot be confirmed is tried again shortly while the validity, unmoved, runs out.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::claim::Claim;
use crate::model::lease::{self};
use crate::model::queue_id::{MessageId, unix_millis};

use super::{Scheduler, millis};

/// How one renewal went.
#[derive(Debug)]
pub(super) enum Renewal {
    /// The lease now ends at this time (Unix milliseconds).
    Renewed(u64),
    /// Another scheduler holds the lease, or the message left the queue.
    Lost,
    /// Not confirmed in time, or the store failed: the lease may still be ours.
    Unconfirmed(String),
}

impl Scheduler {
    /// The local moment until which a lease ending at `expiry_ms` surely holds: no other
    /// scheduler, whose clock is ahead of this one's by at most the skew, takes it before.
    pub(super) fn valid_until(&self, expiry_ms: u64) -> Instant {
        let skew_ms = millis(self.settings.load().max_clock_skew);
        let left_ms = expiry_ms
            .saturating_sub(skew_ms)
            .saturating_sub(unix_millis(SystemTime::now()));
        Instant::now() + Duration::from_millis(left_ms)
    }

    /// The time a delivery needs before its first renewal is confirmed: a third of a lease
    /// until it starts, and the renewal's own bound.
    pub(super) fn first_step(&self) -> Duration {
        self.options.lease / 3 + self.options.renewal_timeout
    }

    /// Renews the lease `token` holds on message `id` for a full lease from now, within the
    /// renewal timeout.
    pub(super) async fn renew(&self, id: MessageId, token: u64) -> Renewal {
        let keys = self.queue.keys.clone();
        let expiry_ms = unix_millis(SystemTime::now()).saturating_add(millis(self.options.lease));
        let renewing = self.queue.store.transact(move |tx| {
            let keys = keys.clone();
            Box::pin(async move { lease::renew(tx, &keys, &id, token, expiry_ms).await })
        });
        // A renewal cut short may still commit: the lease is then longer than believed here,
        // which errs on the safe side.
        match within(self.options.renewal_timeout, renewing).await {
            Some(Ok(true)) => Renewal::Renewed(expiry_ms),
            Some(Ok(false)) => Renewal::Lost,
            Some(Err(error)) => Renewal::Unconfirmed(error.to_string()),
            None => Renewal::Unconfirmed(format!(
                "not confirmed within {:?}",
                self.options.renewal_timeout
            )),
        }
    }

    /// Renews `claim`'s lease, moving `validity` with each renewal confirmed; returns only
    /// once the lease is lost (the validity then ends at once).
    pub(super) async fn keep_lease(&self, claim: &Claim, validity: &watch::Sender<Instant>) {
        let id = claim.message.record.id;
        let token = claim.lease.token;
        let mut next = self.next_renewal(Instant::now(), *validity.borrow());
        loop {
            tokio::time::sleep_until(next).await;
            let started = Instant::now();
            match self.renew(id, token).await {
                Renewal::Renewed(expiry_ms) => {
                    tracing::debug!(queue_id = %id, "lease renewed");
                    let until = self.valid_until(expiry_ms);
                    validity.send_replace(until);
                    next = self.next_renewal(started, until);
                }
                Renewal::Lost => {
                    validity.send_replace(Instant::now());
                    return;
                }
                Renewal::Unconfirmed(error) => {
                    // The validity runs out unless a retry is confirmed before it does.
                    tracing::warn!(queue_id = %id, %error, "cannot renew a lease");
                    next = Instant::now() + self.options.lease / 10;
                }
            }
        }
    }

    /// When to renew a lease last renewed at `renewed`, valid until `until`: a third of a
    /// lease later, and no later than leaves time for two bounded renewals before it ends.
    fn next_renewal(&self, renewed: Instant, until: Instant) -> Instant {
        let regular = renewed + self.options.lease / 3;
        let latest = until
            .checked_sub(self.options.renewal_timeout * 2)
            .unwrap_or(renewed);
        regular.min(latest).max(renewed)
    }

    /// Renews `claim`'s lease once more before its results are recorded, when less than the
    /// first step is left of it: the commit refuses a lease that has run out. Moves
    /// `validity`; the commit decides in the end.
    pub(super) async fn renew_before_commit(
        &self,
        claim: &Claim,
        validity: &watch::Sender<Instant>,
    ) {
        let left = validity.borrow().saturating_duration_since(Instant::now());
        if left >= self.first_step() {
            return;
        }
        let id = claim.message.record.id;
        match self.renew(id, claim.lease.token).await {
            Renewal::Renewed(expiry_ms) => {
                validity.send_replace(self.valid_until(expiry_ms));
            }
            Renewal::Lost => tracing::debug!(queue_id = %id, "lease lost before the commit"),
            Renewal::Unconfirmed(error) => {
                tracing::warn!(queue_id = %id, %error, "cannot renew a lease before the commit");
            }
        }
    }
}

/// What `future` gives if it does within `bound`; `None` if it is cut short, or if it was
/// late (ready only when polled after the bound, on a busy runtime): a renewal is only
/// counted once it is confirmed in time.
pub(super) async fn within<T>(bound: Duration, future: impl Future<Output = T>) -> Option<T> {
    let started = Instant::now();
    let done = tokio::time::timeout(bound, future).await.ok()?;
    (started.elapsed() <= bound).then_some(done)
}
