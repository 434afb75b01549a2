//! The pipeline against scripted filters: these stand for the `Filter` trait's
//! implementations (milters, MTA hooks), whose own tests use real peers.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::*;

/// What a scripted filter was asked, shared with the test.
type Log = Arc<Mutex<Vec<String>>>;

struct Scripted {
    name: String,
    stages: Vec<Stage>,
    answers: VecDeque<Verdict>,
    log: Log,
}

impl Filter for Scripted {
    fn name(&self) -> &str {
        &self.name
    }
    fn wants(&self, stage: Stage) -> bool {
        self.stages.contains(&stage)
    }
    fn check<'a>(&'a mut self, request: &'a FilterRequest<'a>) -> BoxFuture<'a, Verdict> {
        let seen = match request.message {
            Some(message) => format!(
                "{} {} {}",
                self.name,
                request.stage,
                String::from_utf8_lossy(message)
                    .lines()
                    .next()
                    .unwrap_or("")
            ),
            None => format!("{} {}", self.name, request.stage),
        };
        self.log.lock().unwrap().push(seen);
        let verdict = self.answers.pop_front().unwrap_or_else(Verdict::proceed);
        async move { verdict }.boxed()
    }
    fn abort(&mut self) -> BoxFuture<'_, ()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{} abort", self.name));
        async {}.boxed()
    }
    fn close(&mut self) -> BoxFuture<'_, ()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{} close", self.name));
        async {}.boxed()
    }
}

fn scripted(name: &str, stages: &[Stage], answers: Vec<Verdict>, log: &Log) -> Box<dyn Filter> {
    Box::new(Scripted {
        name: name.into(),
        stages: stages.to_vec(),
        answers: answers.into(),
        log: log.clone(),
    })
}

fn filters(list: Vec<Box<dyn Filter>>) -> Filters {
    let registry = ferrymail_telemetry::Metrics::new("test");
    Filters::new(list, IngressMetrics::register(&registry))
}

fn session() -> SessionFacts {
    let client: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    SessionFacts {
        client,
        local: "192.0.2.2:25".parse().unwrap(),
        client_name: None,
        hostname: "mx.example.org".into(),
        listener: "smtp".into(),
        lmtp: false,
        helo: Some("client.example.net".into()),
        tls: None,
        authenticated_as: None,
        auth_mechanism: None,
    }
}

fn request(stage: Stage, session: &SessionFacts) -> FilterRequest<'_> {
    FilterRequest {
        stage,
        session,
        transaction: None,
        recipient: None,
        message: None,
    }
}

fn reject() -> Verdict {
    Verdict::action(Action::Reject(Reply::new(550, "5.7.1", "Blocked")))
}

fn header(name: &str, value: &str) -> Modification {
    Modification::AddHeader {
        name: name.into(),
        value: value.into(),
    }
}

#[tokio::test]
async fn filters_are_asked_in_order_and_the_first_refusal_ends_the_round() {
    let log = Log::default();
    let all = [Stage::Mail];
    let mut f = filters(vec![
        scripted("milter.a", &all, vec![], &log),
        scripted("milter.b", &all, vec![reject()], &log),
        scripted("hook.c", &all, vec![], &log),
    ]);
    let session = session();
    let outcome = f.check(&request(Stage::Mail, &session)).await;
    assert!(
        matches!(&outcome, StageOutcome::Refuse(r) if r.0.starts_with("550 5.7.1 Blocked")),
        "{outcome:?}"
    );
    assert_eq!(*log.lock().unwrap(), ["milter.a mail", "milter.b mail"]);
}

#[tokio::test]
async fn a_filter_is_asked_only_at_its_stages_and_not_after_it_accepted() {
    let log = Log::default();
    let mut f = filters(vec![
        scripted(
            "milter.a",
            &[Stage::Mail, Stage::Rcpt],
            vec![Verdict::action(Action::Accept)],
            &log,
        ),
        scripted("hook.b", &[Stage::Rcpt], vec![], &log),
    ]);
    assert!(!f.wants(Stage::Connect));
    assert!(f.wants(Stage::Rcpt));
    let session = session();
    f.check(&request(Stage::Mail, &session)).await;
    f.check(&request(Stage::Rcpt, &session)).await;
    assert_eq!(*log.lock().unwrap(), ["milter.a mail", "hook.b rcpt"]);
    // The next transaction asks it again.
    f.end_transaction(true).await;
    f.check(&request(Stage::Rcpt, &session)).await;
    assert_eq!(
        log.lock().unwrap()[2..],
        [
            "milter.a abort",
            "hook.b abort",
            "milter.a rcpt",
            "hook.b rcpt"
        ]
    );
}

#[tokio::test]
async fn discard_drops_a_recipient_at_rcpt_and_the_message_before() {
    let log = Log::default();
    let mut f = filters(vec![scripted(
        "hook.a",
        &[Stage::Mail, Stage::Rcpt],
        vec![
            Verdict::action(Action::Discard),
            Verdict::action(Action::Discard),
        ],
        &log,
    )]);
    let session = session();
    f.check(&request(Stage::Mail, &session)).await;
    assert_eq!(f.fate(), &Fate::Discard);
    let outcome = f.check(&request(Stage::Rcpt, &session)).await;
    assert!(
        matches!(outcome, StageOutcome::DropRecipient),
        "{outcome:?}"
    );
    f.end_transaction(false).await;
    assert_eq!(f.fate(), &Fate::Deliver);
}

#[tokio::test]
async fn a_discard_at_connect_holds_for_the_session_and_outranks_a_quarantine() {
    let log = Log::default();
    let mut f = filters(vec![scripted(
        "milter.a",
        &[Stage::Connect, Stage::Data],
        vec![
            Verdict::action(Action::Discard),
            Verdict::action(Action::Quarantine("virus".into())),
        ],
        &log,
    )]);
    let session = session();
    f.check(&request(Stage::Connect, &session)).await;
    f.end_transaction(false).await;
    assert_eq!(f.fate(), &Fate::Discard);
    let transaction = TransactionFacts::default();
    f.check_message(&session, &transaction, b"Subject: x\r\n\r\nx\r\n".to_vec())
        .await;
    assert_eq!(f.fate(), &Fate::Discard);
}

#[tokio::test]
async fn envelope_changes_pass_and_message_changes_wait_for_the_message() {
    let log = Log::default();
    let change = Verdict {
        action: Action::Continue,
        modifications: vec![
            header("X-Early", "1"),
            Modification::AddRecipient {
                address: "c@example.net".into(),
            },
        ],
    };
    let mut f = filters(vec![scripted("hook.a", &[Stage::Mail], vec![change], &log)]);
    let session = session();
    let outcome = f.check(&request(Stage::Mail, &session)).await;
    let StageOutcome::Proceed(changes) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        changes,
        [Modification::AddRecipient {
            address: "c@example.net".into()
        }]
    );
}

#[tokio::test]
async fn each_filter_sees_the_message_as_the_ones_before_left_it() {
    let log = Log::default();
    let first = Verdict {
        action: Action::Continue,
        modifications: vec![
            Modification::InsertHeader {
                index: 0,
                name: "X-Spam-Score".into(),
                value: "1.5".into(),
            },
            Modification::DeleteRecipient {
                address: "b@example.net".into(),
            },
        ],
    };
    let second = Verdict {
        action: Action::Quarantine("looks odd".into()),
        modifications: vec![header("DKIM-Signature", "v=1; d=example.org")],
    };
    let mut f = filters(vec![
        scripted("milter.a", &[Stage::Data], vec![first], &log),
        scripted("milter.b", &[Stage::Data], vec![second], &log),
    ]);
    let session = session();
    let transaction = TransactionFacts {
        sender: "a@example.org".into(),
        recipients: vec!["b@example.net".into(), "c@example.net".into()],
        ..TransactionFacts::default()
    };
    let outcome = f
        .check_message(
            &session,
            &transaction,
            b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        )
        .await;
    let DataOutcome::Proceed { message, envelope } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        String::from_utf8(message).unwrap(),
        "X-Spam-Score: 1.5\r\nSubject: x\r\nDKIM-Signature: v=1; d=example.org\r\n\r\nbody\r\n"
    );
    assert_eq!(envelope.len(), 1);
    assert_eq!(f.fate(), &Fate::Quarantine("looks odd".into()));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "milter.a data Subject: x",
            "milter.b data X-Spam-Score: 1.5"
        ]
    );
}

#[tokio::test]
async fn an_impossible_modification_refuses_the_message_for_now_and_changes_nothing() {
    let log = Log::default();
    let bad = Verdict {
        action: Action::Continue,
        modifications: vec![header("X-Good", "1"), header("Bad Name", "2")],
    };
    let mut f = filters(vec![scripted("hook.a", &[Stage::Data], vec![bad], &log)]);
    let session = session();
    let outcome = f
        .check_message(
            &session,
            &TransactionFacts::default(),
            b"Subject: x\r\n\r\n".to_vec(),
        )
        .await;
    assert!(
        matches!(&outcome, DataOutcome::Refuse(r) if r.0.starts_with("451 4.3.0")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_refusal_at_the_message_is_passed_on_and_close_reaches_every_filter() {
    let log = Log::default();
    let tempfail = Verdict::action(Action::TempFail(Reply::new(451, "4.7.1", "Try later")));
    let mut f = filters(vec![
        scripted("milter.a", &[Stage::Data], vec![tempfail], &log),
        scripted("hook.b", &[Stage::Data], vec![], &log),
    ]);
    let session = session();
    let outcome = f
        .check_message(
            &session,
            &TransactionFacts::default(),
            b"Subject: x\r\n\r\n".to_vec(),
        )
        .await;
    assert!(
        matches!(&outcome, DataOutcome::Refuse(r) if r.0.starts_with("451 4.7.1 Try later")),
        "{outcome:?}"
    );
    f.close().await;
    assert_eq!(
        *log.lock().unwrap(),
        ["milter.a data Subject: x", "milter.a close", "hook.b close"]
    );
}
