//! The envelope of a transaction in one round trip when the server offers PIPELINING
//! (RFC 2920), command by command when it does not; refusals read in either case.

use std::time::SystemTime;

use ferrymail_e2e::{SmtpSink, SmtpSinkOptions};
use ferrymail_queue_scheduler::Outcome;

use crate::{config, enqueue, lab};

/// Delivers one message to `recipients` through a sink started with `options`; the
/// outcomes and the sink.
async fn deliver(options: SmtpSinkOptions, recipients: &[&str]) -> (Vec<(u32, Outcome)>, SmtpSink) {
    let sink = SmtpSink::start(options);
    let lab = lab(&config(sink.address().port(), "smtp"));
    let id = enqueue(&lab.queue, recipients).await;
    let now = SystemTime::now();
    let claim = lab.scheduler.claim(&id, now).await.unwrap().unwrap();
    (lab.scheduler.deliver(&claim, now).await, sink)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_pipelining_gets_one_command_at_a_time() {
    for pipelining in [true, false] {
        let options = SmtpSinkOptions {
            no_pipelining: !pipelining,
            ..SmtpSinkOptions::default()
        };
        let (outcomes, sink) = deliver(options, &["a@example.net", "b@example.net"]).await;
        assert!(
            matches!(
                outcomes.as_slice(),
                [(0, Outcome::Delivered(_)), (1, Outcome::Delivered(_))]
            ),
            "pipelining {pipelining}: {outcomes:?}"
        );
        tokio::task::block_in_place(|| sink.wait_for_messages(1));
        let message = &sink.messages()[0];
        assert!(message.contains("b@example.net"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_sender_answers_for_every_recipient_whatever_the_rcpt_replies() {
    for pipelining in [true, false] {
        let options = SmtpSinkOptions {
            no_pipelining: !pipelining,
            reject_permanently: vec!["MAIL".into()],
            permanent_reply: Some("553 5.7.1 Sender refused".into()),
            ..SmtpSinkOptions::default()
        };
        let (outcomes, sink) = deliver(options, &["a@example.net", "b@example.net"]).await;
        let refused = Outcome::PermFailed("MAIL FROM: 553 5.7.1 Sender refused".into());
        assert_eq!(
            outcomes,
            [(0, refused.clone()), (1, refused)],
            "pipelining {pipelining}"
        );
        assert_eq!(sink.received(), 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recipients_all_refused_end_the_transaction_without_a_message() {
    // smtp-sink answers the pipelined DATA with 354 even when no recipient was accepted:
    // the client ends that empty message at once, and nothing is delivered.
    for pipelining in [true, false] {
        let options = SmtpSinkOptions {
            no_pipelining: !pipelining,
            reject_temporarily: vec!["RCPT".into()],
            temporary_reply: Some("450 4.2.1 Mailbox busy".into()),
            ..SmtpSinkOptions::default()
        };
        let (outcomes, sink) = deliver(options, &["a@example.net", "b@example.net"]).await;
        let busy = Outcome::TempFailed("450 4.2.1 Mailbox busy".into());
        assert_eq!(
            outcomes,
            [(0, busy.clone()), (1, busy)],
            "pipelining {pipelining}"
        );
        assert_eq!(sink.received(), 0, "pipelining {pipelining}");
    }
}
