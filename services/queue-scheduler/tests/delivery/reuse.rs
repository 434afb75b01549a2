//! Relay sessions are reused between messages, within `limits.requests`, and a kept session
//! the server has closed is replaced, not reported as a failure.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferrymail_e2e::{SmtpSink, SmtpSinkOptions};
use ferrymail_queue_scheduler::{Committed, Queue, Scheduler};
use ferrymail_store::{Store, StoreOptions};

use crate::{config_text, enqueue, options};

fn lab(sink: &SmtpSink, limits: &str) -> (Arc<Queue>, Scheduler, tempfile::TempDir) {
    let text = config_text(sink.address().port(), "smtp")
        .replace("concurrency = 2", &format!("concurrency = 2\n{limits}"));
    let config = ferrymail_config::load_str("test.toml", &text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let queue = Arc::new(Queue::new(store, &config.queue));
    let scheduler = Scheduler::new(queue.clone(), &config, options("one"));
    (queue, scheduler, dir)
}

async fn deliver_one(queue: &Queue, scheduler: &Scheduler, rcpt: &str) {
    let id = enqueue(queue, &[rcpt]).await;
    let committed = scheduler.attempt(&id, SystemTime::now()).await.unwrap();
    assert_eq!(committed, Some(Committed::Removed), "{rcpt}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_carries_up_to_limits_requests_messages() {
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    // The harness's readiness probe is a session of its own.
    let probes = wait_for_sessions(&sink, 1).await;
    let (queue, scheduler, _dir) = lab(&sink, "limits.requests = 2");
    for n in 0..5 {
        deliver_one(&queue, &scheduler, &format!("r{n}@example.net")).await;
    }
    // smtp-sink counts a message just after its reply: wait for the count to catch up.
    tokio::task::block_in_place(|| sink.wait_for_messages(5));
    assert_eq!(sink.received(), 5);
    // Two sessions carried two messages each and were closed; the fifth message's session
    // is kept open. One session per message would have ended five.
    // Every message is committed, so the sessions that ended did so before the last commit.
    let ended = wait_for_sessions(&sink, probes + 2).await;
    assert_eq!(ended - probes, 2);
}

/// Waits until smtp-sink has counted `count` ended sessions; returns its count.
async fn wait_for_sessions(sink: &SmtpSink, count: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.sessions_ended() < count {
        assert!(Instant::now() < deadline, "sessions never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sink.sessions_ended()
}

/// Delivers three messages to a sink started with `options`, whose every kept session fails
/// its reset: each message arrives once, and the second and third each found their kept
/// session closed by the check (the server hung up on two resets).
async fn kept_sessions_that_fail_their_reset_are_replaced(options: SmtpSinkOptions) {
    let sink = SmtpSink::start(options);
    let probes = wait_for_sessions(&sink, 1).await;
    let (queue, scheduler, _dir) = lab(&sink, "");
    for n in 0..3 {
        deliver_one(&queue, &scheduler, &format!("r{n}@example.net")).await;
    }
    let ended = wait_for_sessions(&sink, probes + 2).await;
    assert_eq!(ended - probes, 2, "two kept sessions failed their reset");
    // smtp-sink counts a message just after its reply: wait for the count to catch up.
    tokio::task::block_in_place(|| sink.wait_for_messages(3));
    assert_eq!(sink.received(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_session_the_server_closed_is_replaced() {
    // The server hangs up on RSET, pipelined with the envelope.
    kept_sessions_that_fail_their_reset_are_replaced(SmtpSinkOptions {
        disconnect_after: vec!["RSET".into()],
        ..SmtpSinkOptions::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_session_whose_rset_is_refused_is_replaced() {
    // The server answers RSET `421` and hangs up.
    kept_sessions_that_fail_their_reset_are_replaced(SmtpSinkOptions {
        shutdown_after: vec!["RSET".into()],
        ..SmtpSinkOptions::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_pipelining_a_kept_session_is_reset_in_turn() {
    kept_sessions_that_fail_their_reset_are_replaced(SmtpSinkOptions {
        no_pipelining: true,
        disconnect_after: vec!["RSET".into()],
        ..SmtpSinkOptions::default()
    })
    .await;
}
