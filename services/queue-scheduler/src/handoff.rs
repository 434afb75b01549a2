//! The hand-off from enqueue to this process's scheduler: a message enqueued here is attempted
//! at once, without waiting for a read of the due index.
//!
//! While a scheduler runs on this process's queue (it attaches itself), a new message
//! due now is claimed for it in the enqueue's own transaction, and handed over with its record,
//! its recipients and, when it is small, its body: its first attempt needs neither a claim
//! transaction nor a read of what was just written. Without an attached scheduler, or with too
//! many messages waiting, the message is handed over by its due entry only, and claimed like
//! any other.
//!
//! A claimed message waiting here is never dropped: until it is started, its lease keeps every
//! other scheduler away. The scheduler releases what it did not start when it stops; if the
//! process dies instead, the leases expire and the shards' owners take the messages over, as
//! they do for deliveries that were under way.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::claim::Claim;
use crate::model::due_index::DueEntry;
use crate::model::lease::Lease;
use crate::model::queue_id::MessageId;

/// Most messages waiting to be started; beyond it, a message is left to its shard's owner,
/// which finds it on its next read of the due index.
pub(crate) const MAX_FRESH: usize = 4096;

/// A message enqueued through this process, waiting for its scheduler.
#[derive(Debug)]
pub(crate) enum Fresh {
    /// Due in the index: the scheduler claims it like any other.
    Due(DueEntry),
    /// Claimed for the attached scheduler by its enqueue, just now.
    Claimed {
        /// Its due entry, for ordering.
        entry: DueEntry,
        /// The claim, as the enqueue wrote it.
        claim: Box<Claim>,
    },
    /// Claimed by its enqueue, then kept waiting for room: the lease is renewed and the message
    /// read again when it starts, since an administrator may have changed it meanwhile.
    Waiting {
        /// Its due entry, for ordering.
        entry: DueEntry,
        /// The lease its enqueue took.
        lease: Lease,
    },
}

impl Fresh {
    /// The message's due entry.
    pub(crate) fn entry(&self) -> &DueEntry {
        match self {
            Self::Due(entry) | Self::Claimed { entry, .. } | Self::Waiting { entry, .. } => entry,
        }
    }

    /// The lease an enqueue took for it, if it did.
    fn lease(&self) -> Option<&Lease> {
        match self {
            Self::Due(_) => None,
            Self::Claimed { claim, .. } => Some(&claim.lease),
            Self::Waiting { lease, .. } => Some(lease),
        }
    }
}

/// The scheduler new messages are claimed for.
#[derive(Debug, Clone)]
pub(crate) struct Claimant {
    /// Its name in leases.
    pub(crate) owner: String,
    /// How long its claims last.
    pub(crate) lease: Duration,
}

/// Who is attached, and what waits for it.
#[derive(Debug, Default)]
struct State {
    claimant: Option<Claimant>,
    waiting: Vec<Fresh>,
}

impl State {
    fn attached(&self, owner: &str) -> bool {
        self.claimant.as_ref().is_some_and(|c| c.owner == owner)
    }
}

/// The messages waiting for this process's scheduler.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    state: Mutex<State>,
    /// Wakes the scheduler when something is handed over.
    pub(crate) wake: tokio::sync::Notify,
}

impl Handoff {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `claimant` the scheduler new messages are claimed for; `false` if another one
    /// is attached already (it keeps the hand-off).
    pub(crate) fn attach(&self, claimant: Claimant) -> bool {
        let mut state = self.state();
        match &state.claimant {
            Some(attached) => attached.owner == claimant.owner,
            None => {
                state.claimant = Some(claimant);
                true
            }
        }
    }

    /// Detaches `owner`; returns the ids and leases of the messages claimed for it that it
    /// did not start, for it to release.
    pub(crate) fn detach(&self, owner: &str) -> Vec<(MessageId, Lease)> {
        let mut state = self.state();
        if !state.attached(owner) {
            return Vec::new();
        }
        state.claimant = None;
        let (claimed, due): (Vec<Fresh>, Vec<Fresh>) = std::mem::take(&mut state.waiting)
            .into_iter()
            .partition(|fresh| fresh.lease().is_some());
        state.waiting = due;
        claimed
            .iter()
            .filter_map(|fresh| Some((fresh.entry().queue_id, fresh.lease()?.clone())))
            .collect()
    }

    /// The scheduler a new message may be claimed for now: the attached one, unless
    /// [`MAX_FRESH`] messages wait already.
    pub(crate) fn claimant(&self) -> Option<Claimant> {
        let state = self.state();
        if state.waiting.len() >= MAX_FRESH {
            return None;
        }
        state.claimant.clone()
    }

    /// Hands `entry` over by its due entry, unless [`MAX_FRESH`] messages wait already.
    pub(crate) fn push_due(&self, entry: DueEntry) {
        let mut state = self.state();
        if state.waiting.len() < MAX_FRESH {
            state.waiting.push(Fresh::Due(entry));
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Hands `claim` over to the scheduler it was made for; gives it back if that scheduler
    /// detached meanwhile, for the caller to release.
    pub(crate) fn push_claimed(
        &self,
        entry: DueEntry,
        claim: Box<Claim>,
    ) -> Result<(), Box<Claim>> {
        let mut state = self.state();
        if !state.attached(&claim.lease.owner) {
            return Err(claim);
        }
        state.waiting.push(Fresh::Claimed { entry, claim });
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// Everything waiting for `owner`: claims only go to the scheduler they were made for,
    /// due entries to any.
    pub(crate) fn take(&self, owner: &str) -> Vec<Fresh> {
        let mut state = self.state();
        let waiting = std::mem::take(&mut state.waiting);
        if state.attached(owner) {
            return waiting;
        }
        let (claimed, due) = waiting
            .into_iter()
            .partition(|fresh| fresh.lease().is_some());
        state.waiting = claimed;
        due
    }

    /// Puts back what [`Handoff::take`] gave and could not start yet, without waking the
    /// scheduler (it is the one that has no room). Claims are all kept, as
    /// [`Fresh::Waiting`] (so that waiting messages hold no body in memory); due entries
    /// while there is room.
    pub(crate) fn keep(&self, entries: Vec<Fresh>) {
        let mut state = self.state();
        for fresh in entries {
            match fresh {
                Fresh::Claimed { entry, claim } => {
                    let lease = claim.lease;
                    state.waiting.push(Fresh::Waiting { entry, lease });
                }
                waiting @ Fresh::Waiting { .. } => state.waiting.push(waiting),
                Fresh::Due(entry) if state.waiting.len() < MAX_FRESH => {
                    state.waiting.push(Fresh::Due(entry));
                }
                Fresh::Due(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use bytes::Bytes;
    use ferrymail_rpc::queue::{
        BodyError, BodyPart, BodyStream, Envelope, QueueService, Recipient,
    };
    use ferrymail_store::{Store, StoreOptions};
    use futures::StreamExt;

    use super::*;
    use crate::model::lease;
    use crate::service::Queue;

    fn body(parts: &[&'static [u8]]) -> BodyStream {
        let parts: Vec<Result<BodyPart, BodyError>> = parts
            .iter()
            .map(|part| Ok(BodyPart::Chunk(Bytes::from_static(part))))
            .collect();
        futures::stream::iter(parts).boxed()
    }

    /// A queue on a fresh embedded store, with scheduler `one` attached.
    fn attached_queue() -> (Queue, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
        let config = ferrymail_config::load_str("t.toml", "[server]\nhostname = \"h\"\n").unwrap();
        let queue = Queue::new(store, &config.queue);
        assert!(queue.handoff.attach(one()));
        (queue, dir)
    }

    fn one() -> Claimant {
        Claimant {
            owner: "one".into(),
            lease: Duration::from_secs(30),
        }
    }

    fn envelope(recipients: &[&str]) -> Envelope {
        Envelope {
            sender: "a@example.org".into(),
            recipients: recipients.iter().map(|r| Recipient::new(*r)).collect(),
            ..Envelope::default()
        }
    }

    #[tokio::test]
    async fn the_claim_handed_over_is_the_message_as_stored_and_its_lease() {
        let (queue, _dir) = attached_queue();
        let envelope = envelope(&["b@example.net", "c@example.net"]);
        let wire = queue
            .enqueue(envelope, body(&[b"Subject: x\r\n\r\n", b"hello\r\n"]))
            .await
            .unwrap();
        let id = MessageId::from_wire(&wire).unwrap();

        let [Fresh::Claimed { claim, .. }] = &queue.handoff.take("one")[..] else {
            panic!("no claim handed over");
        };
        assert_eq!(claim.message, queue.load(&id).await.unwrap());
        let keys = queue.keys.clone();
        let stored = queue
            .store
            .transact(move |tx| {
                let keys = keys.clone();
                Box::pin(async move { lease::read(tx, &keys, &id).await })
            })
            .await
            .unwrap();
        assert_eq!(stored.as_ref(), Some(&claim.lease));
        let held: Vec<u8> = claim.held.as_ref().unwrap().chunks().concat();
        assert_eq!(
            held,
            queue.blobs.read(&claim.message.record.blob).await.unwrap()
        );
        assert_eq!(held, b"Subject: x\r\n\r\nhello\r\n");
    }

    #[tokio::test]
    async fn only_the_attached_scheduler_gets_claims_and_a_held_back_one_loses_its_body() {
        let (queue, _dir) = attached_queue();
        let two = Claimant {
            owner: "two".into(),
            ..one()
        };
        assert!(!queue.handoff.attach(two), "one is attached");
        let envelope = envelope(&["b@example.net"]);
        queue
            .enqueue(envelope, body(&[b"hello\r\n"]))
            .await
            .unwrap();

        assert!(queue.handoff.take("two").is_empty(), "not two's claim");
        let taken = queue.handoff.take("one");
        assert!(matches!(taken[..], [Fresh::Claimed { .. }]));
        queue.handoff.keep(taken);
        let kept = queue.handoff.take("one");
        assert!(matches!(kept[..], [Fresh::Waiting { .. }]), "{kept:?}");
        queue.handoff.keep(kept);
        let released = queue.handoff.detach("one");
        assert_eq!(released.len(), 1);
        assert!(queue.handoff.take("one").is_empty());
    }
}
