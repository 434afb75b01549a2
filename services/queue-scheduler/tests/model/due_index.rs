//! The due index: a shard yields only what is due, highest priority first.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrymail_queue_scheduler::{DueEntry, MessageId, SHARDS};
use ferrymail_rpc::queue::{Priority, QueueError, QueueService};

use crate::support::{enqueue, envelope, open, parsed, unix_now};

fn sorted_for_dispatch(entries: &[DueEntry]) -> bool {
    entries.windows(2).all(|pair| {
        let (a, b) = (&pair[0], &pair[1]);
        a.priority > b.priority || (a.priority == b.priority && a.due_ms <= b.due_ms)
    })
}

#[tokio::test]
async fn hold_until_puts_the_due_entry_in_the_future() {
    let t = open();
    let hold = unix_now() + 3600;
    let mut env = envelope("a@example.org", &["b@example.net", "c@example.net"]);
    env.hold_until = Some(hold);
    let id = enqueue(&t.queue, env, b"later").await;
    let message = parsed(&id);

    let detail = t.queue.get(&id).await.unwrap();
    assert_eq!(detail.summary.next_attempt, Some(hold));
    assert!(
        detail
            .recipients
            .iter()
            .all(|r| r.next_attempt == Some(hold))
    );
    let record = t.queue.load(&message).await.unwrap().record;
    assert_eq!(record.due_ms, Some(hold * 1000));
    // The lifetime (queue.schedule.expire = "2d" here) starts at the release, not at the
    // arrival, so a hold longer than the lifetime does not expire the message unsent.
    assert_eq!(record.expiry_ms, hold * 1000 + 2 * 86_400_000);

    let shard = message.shard();
    let now = t.queue.due(shard, SystemTime::now(), 100).await.unwrap();
    assert!(
        now.iter().all(|e| e.queue_id != message),
        "held: not due now"
    );
    let at_hold = UNIX_EPOCH + Duration::from_secs(hold);
    let then = t.queue.due(shard, at_hold, 100).await.unwrap();
    let entry = then
        .iter()
        .find(|e| e.queue_id == message)
        .expect("due at the hold time");
    assert_eq!(entry.due_ms, hold * 1000);
    assert_eq!(entry.shard, shard);
    assert_eq!(entry.priority, Priority::NORMAL);

    // A hold in the past is no hold.
    let mut past = envelope("a@example.org", &["b@example.net"]);
    past.hold_until = Some(1);
    let id = enqueue(&t.queue, past, b"now").await;
    let detail = t.queue.get(&id).await.unwrap();
    assert_eq!(detail.summary.next_attempt, Some(detail.summary.arrival));
}

#[tokio::test]
async fn a_shard_yields_only_due_entries_in_priority_order() {
    let t = open();
    let held_until = unix_now() + 7200;
    let mut due_now = HashSet::new();
    let mut held = HashSet::new();
    // Fill until one shard holds due messages of at least three priorities (a few hundred
    // messages at most: ids spread uniformly over the shards).
    let mut target = None;
    for i in 0..3000 {
        let priority = Priority::new(i % 19 - 9).unwrap();
        let mut env = envelope("a@example.org", &["b@example.net"]);
        env.priority = priority;
        let hold = i % 5 == 4;
        if hold {
            env.hold_until = Some(held_until);
        }
        let id = parsed(&enqueue(&t.queue, env, b"x").await);
        if hold {
            held.insert(id);
        } else {
            due_now.insert((id, priority));
        }
        let shard = *target.get_or_insert(id.shard());
        let priorities: BTreeSet<_> = due_now
            .iter()
            .filter(|(id, _)| id.shard() == shard)
            .map(|(_, p)| *p)
            .collect();
        if priorities.len() >= 3 && held.iter().any(|id| id.shard() == shard) {
            break;
        }
    }
    let now = SystemTime::now();
    let mut seen = HashSet::new();
    for shard in 0..SHARDS {
        let entries = t.queue.due(shard, now, 10_000).await.unwrap();
        assert!(sorted_for_dispatch(&entries), "shard {shard}: {entries:?}");
        for entry in &entries {
            assert_eq!(entry.shard, shard);
            assert_eq!(entry.queue_id.shard(), shard);
            assert!(!held.contains(&entry.queue_id), "a held message is not due");
            assert!(due_now.contains(&(entry.queue_id, entry.priority)));
            assert!(seen.insert(entry.queue_id), "one entry per message");
        }
    }
    assert_eq!(seen.len(), due_now.len(), "every due message is found");

    // The target shard: a limit takes the most urgent first.
    let shard = target.unwrap();
    let all = t.queue.due(shard, now, 10_000).await.unwrap();
    let top = t.queue.due(shard, now, 2).await.unwrap();
    assert_eq!(top, all[..2]);
    let top_priority = due_now
        .iter()
        .filter(|(id, _)| id.shard() == shard)
        .map(|(_, p)| *p)
        .max()
        .unwrap();
    assert_eq!(top[0].priority, top_priority);

    // Later, the held messages are due too, after nothing else changed.
    let later = UNIX_EPOCH + Duration::from_secs(held_until);
    let with_held = t.queue.due(shard, later, 10_000).await.unwrap();
    assert!(sorted_for_dispatch(&with_held));
    let held_here: HashSet<MessageId> = held
        .iter()
        .filter(|id| id.shard() == shard)
        .copied()
        .collect();
    let found: HashSet<MessageId> = with_held.iter().map(|e| e.queue_id).collect();
    assert!(held_here.is_subset(&found));
    assert_eq!(with_held.len(), all.len() + held_here.len());
}

#[tokio::test]
async fn shards_outside_the_index_are_refused() {
    let t = open();
    let refused = t.queue.due(SHARDS, SystemTime::now(), 1).await;
    assert!(matches!(refused, Err(QueueError::InvalidArgument(_))));
    assert!(
        t.queue
            .due(0, SystemTime::now(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}
