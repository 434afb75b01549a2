//! Leases are promises with a deadline: a scheduler that cannot renew its lease in time stops
//! before the relay could take the message, another takes the message over only once the
//! lease and the clock-skew margin have passed, and a result recorded after the lease ran out
//! is refused, leaving the message to whoever claims it next.
//!
//! A renewal that cannot commit in time is one bounded by a zero timeout: whatever the store
//! does, it is never confirmed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrymail_e2e::{SmtpSink, SmtpSinkOptions};
use ferrymail_queue_scheduler::{Committed, Outcome, Queue, Scheduler, SchedulerOptions};
use ferrymail_rpc::queue::{QueueError, QueueService, RecipientState};
use ferrymail_store::{Store, StoreOptions};

use crate::{config_text, enqueue, options};

/// Two schedulers' margin for the skew of their clocks.
const SKEW: Duration = Duration::from_millis(200);
/// The lease of the scheduler whose renewals fail.
const SHORT_LEASE: Duration = Duration::from_millis(1500);
/// How long a message that should never arrive is waited for: the sink counts a message a
/// little after it answers the final dot.
const NOTHING_COMES: Duration = Duration::from_millis(300);

/// A queue delivering to `sink`, with a clock-skew margin of [`SKEW`], and a scheduler `one`
/// whose leases last [`SHORT_LEASE`] and whose renewals can never be confirmed in time (no
/// store commits within a zero timeout).
struct Unrenewable {
    config: ferrymail_config::Config,
    queue: Arc<Queue>,
    one: Scheduler,
    _dir: tempfile::TempDir,
}

fn unrenewable(sink: &SmtpSink) -> Unrenewable {
    let text = format!(
        "{}[queue.lease]\nmax-clock-skew = \"200ms\"\n",
        config_text(sink.address().port(), "smtp")
    );
    let config = ferrymail_config::load_str("test.toml", &text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let queue = Arc::new(Queue::new(store, &config.queue));
    let one = SchedulerOptions {
        lease: SHORT_LEASE,
        renewal_timeout: Duration::ZERO,
        ..options("one")
    };
    let one = Scheduler::new(queue.clone(), &config, one);
    Unrenewable {
        config,
        queue,
        one,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_not_renewed_in_time_stops_the_transfer_and_is_taken_over_after_the_margin() {
    // DATA is answered after 2 s: the body only goes once the 1.5 s lease has run out.
    let sink = SmtpSink::start(SmtpSinkOptions {
        data_delay: Some(2),
        ..SmtpSinkOptions::default()
    });
    let lab = unrenewable(&sink);
    let two = Scheduler::new(lab.queue.clone(), &lab.config, options("two"));
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let claimed_at = SystemTime::now();
    let committed = lab.one.attempt(&id, claimed_at).await.unwrap();
    // A renewal that was late may still have committed: the lease was then the scheduler's
    // again when it recorded the abandoned transfer, which is no attempt.
    assert!(
        matches!(
            committed,
            Some(Committed::Stale | Committed::Kept { live: 1 })
        ),
        "{committed:?}"
    );
    let received = tokio::task::block_in_place(|| sink.received_within(1, NOTHING_COMES));
    assert_eq!(received, 0, "the end of data was never sent");
    let detail = lab.queue.get(&id.to_wire()).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Pending);
    assert_eq!(detail.recipients[0].attempts, 0, "no attempt counts");

    // Whatever renewal went through last, the lease is anyone's once it and the margin have
    // passed.
    let after_margin = SystemTime::now() + SHORT_LEASE + SKEW;
    let claim = two.claim(&id, after_margin).await.unwrap().unwrap();
    assert!(claim.lease.token >= 2);
    let outcomes = two.deliver(&claim, after_margin).await;
    assert!(
        matches!(outcomes[..], [(0, Outcome::Delivered(_))]),
        "{outcomes:?}"
    );
    let committed = two.commit(&claim, outcomes, after_margin).await.unwrap();
    assert_eq!(committed, Committed::Removed);
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert_eq!(sink.received(), 1, "one copy, from the new owner");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_renewed_in_time_lets_a_transfer_outlast_it() {
    // DATA is answered after 3 s, beyond the 2 s lease: only its renewals carry the transfer.
    let sink = SmtpSink::start(SmtpSinkOptions {
        data_delay: Some(3),
        ..SmtpSinkOptions::default()
    });
    let lab = unrenewable(&sink);
    let renewing = SchedulerOptions {
        lease: Duration::from_secs(2),
        renewal_timeout: Duration::from_millis(400),
        ..options("renewing")
    };
    let renewing = Scheduler::new(lab.queue.clone(), &lab.config, renewing);
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let committed = renewing.attempt(&id, SystemTime::now()).await.unwrap();
    assert_eq!(committed, Some(Committed::Removed));
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_without_enough_lease_left_is_not_delivered_when_it_cannot_be_renewed() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let lab = unrenewable(&sink);
    let id = enqueue(&lab.queue, &["bob@example.net"]).await;
    let enqueued = SystemTime::now();
    // Claimed as of the enqueue, but started most of a lease later: what is left would not
    // last until a first renewal, and that renewal cannot be confirmed.
    tokio::time::sleep(SHORT_LEASE - Duration::from_millis(300)).await;
    let failed = lab.one.attempt(&id, enqueued).await;
    assert!(
        matches!(failed, Err(QueueError::Unavailable(_))),
        "{failed:?}"
    );
    let received = tokio::task::block_in_place(|| sink.received_within(1, NOTHING_COMES));
    assert_eq!(received, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_after_the_lease_ran_out_is_refused_and_leaves_the_message_to_the_next_owner() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let config = crate::config(sink.address().port(), "smtp");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(
        dir.path(),
        StoreOptions {
            run_closures_twice: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let queue = Arc::new(Queue::new(store, &config.queue));
    let one = Scheduler::new(queue.clone(), &config, options("one"));
    let two = Scheduler::new(queue.clone(), &config, options("two"));
    let id = enqueue(&queue, &["bob@example.net"]).await;
    let now = SystemTime::now();
    let claim = one.claim(&id, now).await.unwrap().unwrap();

    // The scheduler paused past its 30 s lease; nobody took the message over yet, but the
    // record says the lease is over.
    let late = now + Duration::from_secs(31);
    let delivered = vec![(0, Outcome::Delivered("250 2.0.0 Ok".into()))];
    assert_eq!(
        one.commit(&claim, delivered, late).await.unwrap(),
        Committed::Stale
    );
    let detail = queue.get(&id.to_wire()).await.unwrap();
    assert_eq!(detail.recipients[0].state, RecipientState::Pending);

    // Not even within the clock-skew margin (1 s by default) is the message claimed.
    let expiry = now + Duration::from_secs(30);
    for within_margin in [expiry, expiry + Duration::from_millis(999)] {
        assert!(two.claim(&id, within_margin).await.unwrap().is_none());
    }
    let after = expiry + Duration::from_secs(1);
    let taken = two.claim(&id, after).await.unwrap().unwrap();
    assert!(taken.lease.token > claim.lease.token);
    let outcomes = two.deliver(&taken, after).await;
    assert_eq!(
        two.commit(&taken, outcomes, after).await.unwrap(),
        Committed::Removed
    );
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
    assert_eq!(sink.received(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_its_deadline_a_delivery_hands_nothing_over_and_counts_no_attempt() {
    let sink = SmtpSink::start(SmtpSinkOptions {
        no_pipelining: true,
        ..SmtpSinkOptions::default()
    });
    let config = crate::config(sink.address().port(), "smtp");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let queue = Arc::new(Queue::new(store, &config.queue));
    let one = Scheduler::new(queue.clone(), &config, options("one"));
    let id = enqueue(&queue, &["bob@example.net", "carol@example.net"]).await;
    let now = SystemTime::now();
    let mut claim = one.claim(&id, now).await.unwrap().unwrap();
    // As a scheduler that paused would find it: its lease is over by its own clock.
    claim.lease.expiry_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .try_into()
        .unwrap();

    let outcomes = one.deliver(&claim, now).await;
    assert_eq!(outcomes.len(), 2);
    for (_, outcome) in &outcomes {
        assert!(
            matches!(outcome, Outcome::Abandoned(reason) if reason.contains("deadline")),
            "{outcome:?}"
        );
    }
    let received = tokio::task::block_in_place(|| sink.received_within(1, NOTHING_COMES));
    assert_eq!(received, 0);
    // The stored lease is still the scheduler's: the abandoned transfer is recorded, as no
    // attempt, and the recipients are due again at once.
    let committed = one.commit(&claim, outcomes, now).await.unwrap();
    assert_eq!(committed, Committed::Kept { live: 2 });
    let detail = queue.get(&id.to_wire()).await.unwrap();
    for recipient in &detail.recipients {
        assert_eq!(recipient.state, RecipientState::Pending);
        assert_eq!(recipient.attempts, 0);
    }
}
