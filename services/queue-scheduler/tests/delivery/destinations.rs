//! Paused and dead destinations against a real relay (smtp-sink, behind a TCP relay the test
//! cuts): a paused destination's recipients wait without an attempt until resumed; a relay
//! whose connections fail is marked dead for every scheduler sharing the store, its
//! recipients deferred without a connection, then revived by one probe after its backoff.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrymail_e2e::{SmtpSink, SmtpSinkOptions, TcpRelay};
use ferrymail_queue_scheduler::{Committed, MessageId, Queue, Scheduler};
use ferrymail_rpc::queue::{DestinationScope, QueueService, RecipientState};
use ferrymail_store::{Store, StoreOptions};

use crate::{config_text, enqueue, options};

/// `remote.relay` at `port` with a 1 s timeout, dead after one failed connection for 2 s.
fn config(port: u16) -> ferrymail_config::Config {
    let text = config_text(port, "smtp").replace("timeout = \"10s\"", "timeout = \"1s\"")
        + "[queue.outbound.dead]\nfailed-cohort-limit = 1\nmin-backoff = \"2s\"\nmax-backoff = \"4s\"\n";
    ferrymail_config::load_str("test.toml", &text).unwrap()
}

/// Two schedulers sharing one store, which runs every transaction closure twice.
struct Pair {
    one: Arc<Scheduler>,
    two: Arc<Scheduler>,
    _dir: tempfile::TempDir,
}

fn pair(config: &ferrymail_config::Config) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let options_ = StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    };
    let store = Store::open_embedded(dir.path(), options_).unwrap();
    let scheduler = |owner: &str| {
        let queue = Arc::new(Queue::new(store.clone(), &config.queue));
        Arc::new(Scheduler::new(queue, config, options(owner)))
    };
    Pair {
        one: scheduler("one"),
        two: scheduler("two"),
        _dir: dir,
    }
}

/// The state, attempts and last reply of message `id`'s first recipient.
async fn first_recipient(queue: &Queue, id: &MessageId) -> (RecipientState, u32, String) {
    let detail = queue.get(&id.to_wire()).await.unwrap();
    let r = &detail.recipients[0];
    (
        r.state,
        r.attempts,
        r.last_reply.clone().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_destinations_wait_without_an_attempt_until_resumed() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let lab = pair(&config(sink.address().port()));
    let queue = lab.one.queue();
    let scopes = [
        DestinationScope::Remote("relay".into()),
        DestinationScope::Domain("example.net".into()),
        DestinationScope::All,
    ];
    for (delivered, scope) in scopes.into_iter().enumerate() {
        assert!(queue.pause(scope.clone()).await.unwrap(), "{scope}");
        assert!(!queue.pause(scope.clone()).await.unwrap(), "paused twice");
        let paused = queue.destinations().await.unwrap().paused;
        assert_eq!(paused.len(), 1, "{paused:?}");
        assert_eq!(paused[0].scope, scope);

        let id = enqueue(queue, &["a@Example.NET"]).await;
        // Another scheduler sees the pause.
        let kept = lab.two.attempt(&id, SystemTime::now()).await.unwrap();
        assert_eq!(kept, Some(Committed::Kept { live: 1 }), "{scope}");
        let (state, attempts, reply) = first_recipient(queue, &id).await;
        assert_eq!((state, attempts), (RecipientState::Pending, 0), "{scope}");
        assert!(reply.starts_with("delivery paused"), "{reply}");
        assert_eq!(sink.received(), delivered, "nothing delivered while paused");
        // Not due again before its recheck: the pause holds it, not a retry.
        assert_eq!(lab.two.attempt(&id, SystemTime::now()).await.unwrap(), None);

        let resumed = queue.resume(scope.clone()).await.unwrap();
        assert!(resumed.resumed, "{scope}");
        assert_eq!(resumed.rescheduled, 1, "{scope}");
        assert!(queue.destinations().await.unwrap().paused.is_empty());
        let done = lab.one.attempt(&id, SystemTime::now()).await.unwrap();
        assert_eq!(done, Some(Committed::Removed), "{scope}");
        tokio::task::block_in_place(|| sink.wait_for_messages(delivered + 1));
    }
    assert!(!queue.resume(DestinationScope::All).await.unwrap().resumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blackholed_relay_is_dead_for_both_schedulers_then_one_probe_revives_it() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let relay = TcpRelay::start(sink.address());
    relay.cut();
    let lab = pair(&config(relay.port()));
    let (one, two) = (&lab.one, &lab.two);
    let queue = one.queue();
    let first = enqueue(queue, &["a@example.net"]).await;
    // The relay accepts and never greets: the greeting times out.
    let kept = one.attempt(&first, SystemTime::now()).await.unwrap();
    assert_eq!(kept, Some(Committed::Kept { live: 1 }));
    assert_eq!(relay.held(), 1);
    let (_, attempts, _) = first_recipient(queue, &first).await;
    assert_eq!(attempts, 1, "the failed connection was an attempt");

    let suspended = &queue.destinations().await.unwrap().suspended;
    assert_eq!(suspended.len(), 1, "{suspended:?}");
    assert_eq!(suspended[0].destination, "remote.relay");
    assert!(suspended[0].until.is_some(), "{suspended:?}");

    // Both schedulers defer further messages without a connection.
    let mut waiting = Vec::new();
    for scheduler in [one, two] {
        let id = enqueue(queue, &["b@example.net"]).await;
        let kept = scheduler.attempt(&id, SystemTime::now()).await.unwrap();
        assert_eq!(kept, Some(Committed::Kept { live: 1 }));
        let (state, attempts, reply) = first_recipient(queue, &id).await;
        assert_eq!((state, attempts), (RecipientState::Pending, 0));
        assert!(
            reply.starts_with("delivery temporarily suspended: remote.relay"),
            "{reply}"
        );
        waiting.push(id);
    }
    assert_eq!(relay.held(), 1, "no connection while the relay is dead");
    let deferred = one.queue().metrics().deferred_count("suspended")
        + two.queue().metrics().deferred_count("suspended");
    assert_eq!(deferred, 2);

    // After the backoff, one delivery probes the relay, now answering.
    relay.restore();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let now = SystemTime::now();
    let probe = two.attempt(&waiting[0], now).await.unwrap();
    assert_eq!(probe, Some(Committed::Removed), "the probe delivers");
    assert!(queue.destinations().await.unwrap().suspended.is_empty());
    let after = one.attempt(&waiting[1], SystemTime::now()).await.unwrap();
    assert_eq!(after, Some(Committed::Removed));
    tokio::task::block_in_place(|| sink.wait_for_messages(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_port_is_dead_and_a_failed_probe_doubles_its_backoff() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let lab = pair(&config(port));
    let queue = lab.one.queue();
    let first = enqueue(queue, &["a@example.net"]).await;
    lab.one.attempt(&first, SystemTime::now()).await.unwrap();
    let dead = queue.destinations().await.unwrap().suspended;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].failures, 1);
    assert!(dead[0].reason.contains("remote.relay"), "{dead:?}");

    let second = enqueue(queue, &["b@example.net"]).await;
    lab.two.attempt(&second, SystemTime::now()).await.unwrap();
    let (_, attempts, reply) = first_recipient(queue, &second).await;
    assert_eq!(attempts, 0);
    assert!(
        reply.starts_with("delivery temporarily suspended"),
        "{reply}"
    );

    // The probe after the backoff fails too: dead again, for twice as long.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let now = SystemTime::now();
    lab.two.attempt(&second, now).await.unwrap();
    let (_, attempts, _) = first_recipient(queue, &second).await;
    assert_eq!(attempts, 1, "the probe was an attempt");
    let dead = queue.destinations().await.unwrap().suspended;
    assert_eq!(dead[0].failures, 2);
    let until = dead[0].until.unwrap();
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now_s + 3..=now_s + 5).contains(&until),
        "{until} vs {now_s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blackholed_mx_address_is_dead_for_both_schedulers_then_revived() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let relay = TcpRelay::start(sink.address());
    relay.cut();
    let dns = ferrymail_e2e::FakeDns::start();
    dns.add_mx("example.net", 10, "mx.example.net");
    dns.add_a("mx.example.net", "127.0.0.1".parse().unwrap());
    let text = format!(
        "[server]\nhostname = \"queue.test\"\n[queue.outbound]\nmx-port = {}\n\
         [queue.outbound.timeouts]\nconnect = \"1s\"\ngreeting = \"1s\"\n\
         [queue.outbound.dead]\nmin-backoff = \"2s\"\nmax-backoff = \"4s\"\n\
         [queue.schedule]\nretry = [\"1m\"]\nexpire = \"1d\"\n{}",
        relay.port(),
        dns.resolver_config()
    );
    let lab = pair(&ferrymail_config::load_str("test.toml", &text).unwrap());
    let queue = lab.one.queue();
    let first = enqueue(queue, &["a@example.net"]).await;
    lab.one.attempt(&first, SystemTime::now()).await.unwrap();
    assert_eq!(relay.held(), 1);
    let dead = queue.destinations().await.unwrap().suspended;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].destination, "mx:[127.0.0.1]");
    assert!(dead[0].until.is_some());

    let second = enqueue(queue, &["b@example.net"]).await;
    let kept = lab.two.attempt(&second, SystemTime::now()).await.unwrap();
    assert_eq!(kept, Some(Committed::Kept { live: 1 }));
    let (state, attempts, reply) = first_recipient(queue, &second).await;
    assert_eq!((state, attempts), (RecipientState::Pending, 0));
    assert!(
        reply.starts_with("delivery temporarily suspended"),
        "{reply}"
    );
    assert_eq!(relay.held(), 1, "no connection to a dead address");

    relay.restore();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let probe = lab.two.attempt(&second, SystemTime::now()).await.unwrap();
    assert_eq!(probe, Some(Committed::Removed), "the probe delivers");
    assert!(queue.destinations().await.unwrap().suspended.is_empty());
    tokio::task::block_in_place(|| sink.wait_for_messages(1));
}
