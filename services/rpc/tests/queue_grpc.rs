//! The Queue contract through a real tonic server and client.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod loopback;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use ferrymail_rpc::RpcError;
use ferrymail_rpc::proto::{self, enqueue_request::Part};
use ferrymail_rpc::queue::{
    self, BodyError, BodyPart, BodyStream, BodyType, BulkAction, BulkFilter, BulkReport,
    BulkRequest, DmarcEvaluation, DmarcPolicy, DsnReturn, Envelope, GrpcQueue, ListFilter,
    ListPage, ListRequest, MAX_CHUNK, MAX_PREPEND, MessageDetail, MessageSummary, Notify, NotifyOn,
    Priority, QueueError, QueueId, QueueService, QueueStats, Recipient, RecipientCounts,
    RecipientState, RecipientStatus,
};
use futures::{SinkExt, StreamExt, stream};
use loopback::{closed_endpoint, guarded, serve};
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::Server;

/// What the queue double saw, in order, so tests wait on conditions rather than on time.
#[derive(Debug, PartialEq)]
enum Seen {
    Chunk(usize),
    Prepend(usize),
    Dmarc(Box<DmarcEvaluation>),
    BodyFailed(String),
    Committed(QueueId),
}

/// Test double for these transport tests: it keeps messages in memory and answers the admin
/// calls from a fixed table, so the same call can be made in-process and through gRPC and the
/// results compared. It is not a stand-in for the queue-scheduler.
struct MemoryQueue {
    committed: Mutex<Vec<(Envelope, Vec<u8>)>>,
    seen: mpsc::UnboundedSender<Seen>,
}

impl MemoryQueue {
    fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Seen>) {
        let (seen, events) = mpsc::unbounded_channel();
        let queue = Self {
            committed: Mutex::new(Vec::new()),
            seen,
        };
        (Arc::new(queue), events)
    }

    fn note(&self, seen: Seen) {
        // Tests that do not watch have dropped the receiver.
        let _ = self.seen.send(seen);
    }

    fn committed(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.committed.lock().unwrap().clone()
    }
}

/// The error a request naming `err-<kind>` answers with.
fn error_for(name: &str) -> Option<QueueError> {
    let kind = name.strip_prefix("err-")?;
    Some(match kind {
        "quota-exceeded" => QueueError::QuotaExceeded("4.3.1 queue full".into()),
        "unavailable" => QueueError::Unavailable("4.3.2 store unreachable".into()),
        "invalid-argument" => QueueError::InvalidArgument("no recipients".into()),
        "not-found" => QueueError::NotFound("no such message".into()),
        "body" => QueueError::Body(BodyError::new("client went away")),
        "internal" => QueueError::Internal("transaction too large".into()),
        "transport" => QueueError::Transport(RpcError::Unavailable("peer gone".into())),
        other => panic!("no error kind {other}"),
    })
}

fn check(name: &str) -> Result<(), QueueError> {
    error_for(name).map_or(Ok(()), Err)
}

const ERROR_KINDS: [&str; 7] = [
    "quota-exceeded",
    "unavailable",
    "invalid-argument",
    "not-found",
    "body",
    "internal",
    "transport",
];

/// Names the variant, for comparing errors (which carry no `PartialEq`).
fn variant(error: &QueueError) -> &'static str {
    match error {
        QueueError::QuotaExceeded(_) => "quota-exceeded",
        QueueError::Unavailable(_) => "unavailable",
        QueueError::InvalidArgument(_) => "invalid-argument",
        QueueError::NotFound(_) => "not-found",
        QueueError::Body(_) => "body",
        QueueError::Internal(_) => "internal",
        QueueError::Transport(_) => "transport",
    }
}

fn summary(id: &str, next_attempt: Option<u64>) -> MessageSummary {
    MessageSummary {
        queue_id: QueueId::new(id),
        sender: "alice@example.org".into(),
        recipients: 2,
        size: 12_345,
        arrival: 1_700_000_000,
        next_attempt,
        priority: Priority::new(3).unwrap(),
        held: next_attempt.is_none(),
    }
}

#[async_trait]
impl QueueService for MemoryQueue {
    async fn record_dmarc(&self, evaluation: DmarcEvaluation) -> Result<(), QueueError> {
        self.note(Seen::Dmarc(Box::new(evaluation)));
        Ok(())
    }

    async fn enqueue(
        &self,
        envelope: Envelope,
        mut body: BodyStream,
    ) -> Result<QueueId, QueueError> {
        check(&envelope.sender)?;
        let mut content = Vec::new();
        while let Some(part) = body.next().await {
            match part {
                Ok(BodyPart::Chunk(chunk)) => {
                    content.extend_from_slice(&chunk);
                    self.note(Seen::Chunk(chunk.len()));
                }
                Ok(BodyPart::Prepend(headers)) => {
                    content.splice(0..0, headers.iter().copied());
                    self.note(Seen::Prepend(headers.len()));
                }
                Ok(BodyPart::Dmarc(evaluation)) => self.note(Seen::Dmarc(evaluation)),
                Err(error) => {
                    self.note(Seen::BodyFailed(error.reason().to_owned()));
                    return Err(error.into());
                }
            }
        }
        let id = QueueId::new(format!("q-{}-{}", envelope.recipients.len(), content.len()));
        self.committed.lock().unwrap().push((envelope, content));
        self.note(Seen::Committed(id.clone()));
        Ok(id)
    }

    async fn list(&self, request: ListRequest) -> Result<ListPage, QueueError> {
        Ok(ListPage {
            messages: vec![summary("q-1", Some(1_700_000_600)), summary("q-2", None)]
                .into_iter()
                .take(request.page_size.max(1) as usize)
                .collect(),
            next_page_token: request.page_token.map(|token| format!("{token}+1")),
        })
    }

    async fn get(&self, queue_id: &QueueId) -> Result<MessageDetail, QueueError> {
        check(queue_id.as_str())?;
        let states = [
            RecipientState::Pending,
            RecipientState::Delivered,
            RecipientState::TempFailed,
            RecipientState::PermFailed,
            RecipientState::Cancelled,
        ];
        Ok(MessageDetail {
            summary: summary(queue_id.as_str(), Some(1_700_000_900)),
            recipients: states
                .into_iter()
                .enumerate()
                .map(|(n, state)| RecipientStatus {
                    address: format!("r{n}@example.net"),
                    state,
                    attempts: n as u32,
                    next_attempt: (state == RecipientState::TempFailed).then_some(1_700_001_000),
                    last_reply: (n > 0).then(|| format!("4{n}0 reply")),
                })
                .collect(),
        })
    }

    async fn retry(&self, queue_id: &QueueId, recipients: &[String]) -> Result<u32, QueueError> {
        check(queue_id.as_str())?;
        Ok(if recipients.is_empty() {
            5
        } else {
            recipients.len() as u32
        })
    }

    async fn cancel(&self, queue_id: &QueueId, recipients: &[String]) -> Result<u32, QueueError> {
        check(queue_id.as_str())?;
        Ok(if recipients.is_empty() {
            7
        } else {
            recipients.len() as u32 * 2
        })
    }

    async fn hold(&self, queue_id: &QueueId) -> Result<bool, QueueError> {
        check(queue_id.as_str())?;
        Ok(true)
    }

    async fn release(&self, queue_id: &QueueId) -> Result<bool, QueueError> {
        check(queue_id.as_str())?;
        Ok(false)
    }

    async fn bulk(&self, request: BulkRequest) -> Result<BulkReport, QueueError> {
        Ok(BulkReport {
            examined: u64::from(request.limit),
            matched: u64::from(request.batch_size),
            messages_changed: u64::from(!request.dry_run),
            recipients_changed: 2,
            cursor: request.cursor,
        })
    }

    async fn find_by_message_id(&self, message_id: &str) -> Result<Vec<QueueId>, QueueError> {
        check(message_id)?;
        Ok(vec![QueueId::new("q-1"), QueueId::new(message_id)])
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(QueueStats {
            messages: 2,
            recipients: RecipientCounts {
                pending: 1,
                delivered: 2,
                temp_failed: 3,
                perm_failed: 4,
                cancelled: 5,
            },
            bytes: 24_690,
            oldest_arrival: Some(1_700_000_000),
        })
    }
}

/// The memory queue served on a loopback port, and a client of it.
struct Running {
    queue: Arc<MemoryQueue>,
    seen: mpsc::UnboundedReceiver<Seen>,
    endpoint: String,
    client: GrpcQueue,
}

async fn start() -> Running {
    let (queue, seen) = MemoryQueue::new();
    let service: Arc<dyn QueueService> = queue.clone();
    let endpoint = serve(Server::builder().add_service(queue::server(service))).await;
    let client = GrpcQueue::connect(&endpoint).unwrap();
    Running {
        queue,
        seen,
        endpoint,
        client,
    }
}

fn envelope() -> Envelope {
    Envelope {
        sender: "alice@example.org".into(),
        recipients: vec![
            Recipient::new("bob@example.net"),
            Recipient {
                address: "carol@example.net".into(),
                notify: Notify::On(NotifyOn::new(false, true, true).unwrap()),
                orcpt: Some("rfc822;carol@example.net".into()),
            },
        ],
        ret: Some(DsnReturn::Full),
        envid: Some("env-1".into()),
        declared_size: Some(3 * 1024 * 1024),
        priority: Priority::new(2).unwrap(),
        hold_until: None,
        requiretls: false,
        smtputf8: true,
        body_type: BodyType::EightBitMime,
        client_ip: Some("192.0.2.7".parse().unwrap()),
        helo: "client.example.org".into(),
        authenticated_as: Some("alice".into()),
        trace_parent: None,
        queue_id: Some(QueueId::new("01J9ZK3M5Q8W2XGJ4R6T0B7C1D")),
        quarantine: None,
    }
}

/// `len` bytes of a deterministic, non-repeating-looking pattern.
fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// `content` as a body stream of `chunk`-sized pieces.
fn body_of(content: &[u8], chunk: usize) -> BodyStream {
    let pieces: Vec<Result<BodyPart, BodyError>> = content
        .chunks(chunk)
        .map(|piece| Ok(Bytes::copy_from_slice(piece).into()))
        .collect();
    Box::pin(stream::iter(pieces))
}

#[tokio::test]
async fn admin_answers_through_grpc_equal_answers_in_process() {
    let Running { queue, client, .. } = start().await;

    for request in [
        ListRequest::default(),
        ListRequest {
            page_size: 1,
            page_token: Some("t".into()),
            filter: ListFilter {
                sender: Some("alice".into()),
                recipient_domain: Some("example.net".into()),
                state: Some(RecipientState::TempFailed),
                recipient: Some("bob".into()),
                text: Some("example".into()),
                due_before: Some(2_000_000_000),
                due_after: Some(1),
            },
        },
    ] {
        let local = queue.list(request.clone()).await.unwrap();
        let remote = guarded(client.list(request)).await.unwrap();
        assert_eq!(remote, local);
    }

    let id = QueueId::new("q-42");
    assert_eq!(
        guarded(client.get(&id)).await.unwrap(),
        queue.get(&id).await.unwrap()
    );
    for recipients in [vec![], vec!["bob@example.net".to_owned()]] {
        assert_eq!(
            guarded(client.retry(&id, &recipients)).await.unwrap(),
            queue.retry(&id, &recipients).await.unwrap()
        );
        assert_eq!(
            guarded(client.cancel(&id, &recipients)).await.unwrap(),
            queue.cancel(&id, &recipients).await.unwrap()
        );
    }
    assert!(guarded(client.hold(&id)).await.unwrap());
    assert!(!guarded(client.release(&id)).await.unwrap());
    let bulk = BulkRequest {
        action: BulkAction::Retry,
        filter: BulkFilter {
            recipient_domain: Some("example.net".into()),
            ..BulkFilter::default()
        },
        dry_run: false,
        cursor: Some("c1".into()),
        batch_size: 3,
        limit: 10,
    };
    assert_eq!(
        guarded(client.bulk(bulk.clone())).await.unwrap(),
        queue.bulk(bulk).await.unwrap()
    );
    assert_eq!(
        guarded(client.find_by_message_id("m@x")).await.unwrap(),
        queue.find_by_message_id("m@x").await.unwrap()
    );
    assert_eq!(
        guarded(client.stats()).await.unwrap(),
        queue.stats().await.unwrap()
    );
}

#[tokio::test]
async fn three_megabytes_in_64k_chunks_arrive_byte_identical() {
    let Running { queue, client, .. } = start().await;
    let content = pattern(3 * 1024 * 1024);

    let local = queue
        .enqueue(envelope(), body_of(&content, 64 * 1024))
        .await
        .unwrap();
    let remote = guarded(client.enqueue(envelope(), body_of(&content, 64 * 1024)))
        .await
        .unwrap();

    assert_eq!(remote, local);
    let committed = queue.committed();
    assert_eq!(committed.len(), 2);
    let (arrived_envelope, arrived_body) = &committed[1];
    assert_eq!(*arrived_envelope, envelope());
    assert_eq!(arrived_body.len(), content.len());
    assert!(*arrived_body == content, "body differs");
}

#[tokio::test]
async fn headers_prepended_after_the_body_arrive_in_front_of_it() {
    let Running {
        queue,
        mut seen,
        client,
        ..
    } = start().await;
    let headers = b"Authentication-Results: mx.test; spf=pass\r\n".to_vec();
    let body = b"Subject: x\r\n\r\nbody\r\n";
    let parts: Vec<Result<BodyPart, BodyError>> = vec![
        Ok(Bytes::from_static(body).into()),
        Ok(BodyPart::Prepend(Bytes::from(headers.clone()))),
    ];
    guarded(client.enqueue(envelope(), Box::pin(stream::iter(parts))))
        .await
        .unwrap();
    assert_eq!(guarded(seen.recv()).await.unwrap(), Seen::Chunk(body.len()));
    assert_eq!(
        guarded(seen.recv()).await.unwrap(),
        Seen::Prepend(headers.len())
    );
    let (_, content) = &queue.committed()[0];
    assert_eq!(content.as_slice(), [headers.as_slice(), body].concat());
}

#[tokio::test]
async fn a_dmarc_evaluation_travels_with_the_end_of_the_body() {
    let Running {
        mut seen, client, ..
    } = start().await;
    let evaluation = DmarcEvaluation {
        policy_domain: "example.org".into(),
        envelope_from: "example.org".into(),
        source_ip: Some("192.0.2.7".parse().unwrap()),
        disposition: "quarantine".into(),
        spf_domain: "example.org".into(),
        spf_result: "fail".into(),
        policy: DmarcPolicy {
            p: "quarantine".into(),
            rua: vec!["dmarc@example.org".into()],
            ..DmarcPolicy::default()
        },
        ..DmarcEvaluation::default()
    };
    let parts: Vec<Result<BodyPart, BodyError>> = vec![
        Ok(Bytes::from_static(b"Subject: x\r\n\r\nbody\r\n").into()),
        Ok(BodyPart::Prepend(Bytes::from_static(b"X-A: 1\r\n"))),
        Ok(BodyPart::Dmarc(Box::new(evaluation.clone()))),
    ];
    guarded(client.enqueue(envelope(), Box::pin(stream::iter(parts))))
        .await
        .unwrap();
    let mut arrived = None;
    while let Some(event) = guarded(seen.recv()).await {
        match event {
            Seen::Dmarc(evaluation) => arrived = Some(*evaluation),
            Seen::Committed(_) => break,
            _ => {}
        }
    }
    assert_eq!(arrived, Some(evaluation));
}

#[tokio::test]
async fn the_evaluation_of_a_refused_message_is_recorded_through_grpc() {
    let Running {
        mut seen, client, ..
    } = start().await;
    let evaluation = DmarcEvaluation {
        policy_domain: "example.com".into(),
        envelope_from: "example.com".into(),
        source_ip: Some("192.0.2.9".parse().unwrap()),
        disposition: "reject".into(),
        spf_result: "none".into(),
        policy: DmarcPolicy {
            p: "reject".into(),
            rua: vec!["dmarc@example.com".into()],
            ..DmarcPolicy::default()
        },
        ..DmarcEvaluation::default()
    };
    guarded(client.record_dmarc(evaluation.clone()))
        .await
        .unwrap();
    assert_eq!(
        guarded(seen.recv()).await.unwrap(),
        Seen::Dmarc(Box::new(evaluation.clone()))
    );
    let malformed = DmarcEvaluation {
        disposition: "discard".into(),
        ..evaluation
    };
    let outcome = guarded(client.record_dmarc(malformed)).await;
    assert!(
        matches!(outcome, Err(QueueError::InvalidArgument(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_client_breaking_the_body_order_queues_nothing() {
    let Running { queue, client, .. } = start().await;
    let cases: [(&str, Vec<Result<BodyPart, BodyError>>); 3] = [
        (
            "a chunk after the headers",
            vec![
                Ok(BodyPart::Prepend(Bytes::from_static(b"X-A: 1\r\n"))),
                Ok(Bytes::from_static(b"body").into()),
            ],
        ),
        (
            "headers twice",
            vec![
                Ok(BodyPart::Prepend(Bytes::from_static(b"X-A: 1\r\n"))),
                Ok(BodyPart::Prepend(Bytes::from_static(b"X-B: 2\r\n"))),
            ],
        ),
        (
            "headers over the bound",
            vec![Ok(BodyPart::Prepend(Bytes::from(vec![
                b'h';
                MAX_PREPEND + 1
            ])))],
        ),
    ];
    for (case, parts) in cases {
        let outcome = guarded(client.enqueue(envelope(), Box::pin(stream::iter(parts)))).await;
        assert!(
            matches!(outcome, Err(QueueError::Body(_))),
            "{case}: {outcome:?}"
        );
    }
    assert!(queue.committed().is_empty());
}

#[tokio::test]
async fn one_large_piece_is_sent_in_bounded_chunks() {
    let Running {
        queue,
        mut seen,
        client,
        ..
    } = start().await;
    let content = pattern(1024 * 1024 + 17);
    let body: BodyStream = Box::pin(stream::iter([Ok(Bytes::from(content.clone()).into())]));

    let id = guarded(client.enqueue(envelope(), body)).await.unwrap();

    let mut received = 0;
    loop {
        match guarded(seen.recv()).await.unwrap() {
            Seen::Chunk(len) => {
                assert!(len <= MAX_CHUNK, "chunk of {len} bytes");
                received += len;
            }
            Seen::Committed(committed) => {
                assert_eq!(committed, id);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, content.len());
    assert!(queue.committed()[0].1 == content);
}

#[tokio::test]
async fn empty_body_and_null_sender_are_queued() {
    let Running { queue, client, .. } = start().await;
    let bounce = Envelope {
        sender: String::new(),
        recipients: vec![Recipient::new("alice@example.org")],
        ..Envelope::default()
    };
    guarded(client.enqueue(bounce.clone(), Box::pin(stream::empty())))
        .await
        .unwrap();
    assert_eq!(queue.committed(), vec![(bounce, Vec::new())]);
}

#[tokio::test]
async fn a_body_failing_midway_reaches_the_server_as_an_error_and_commits_nothing() {
    let Running {
        queue,
        mut seen,
        client,
        ..
    } = start().await;
    let (mut body, body_stream) = futures::channel::mpsc::channel::<Result<BodyPart, BodyError>>(1);
    let call = tokio::spawn(async move { client.enqueue(envelope(), Box::pin(body_stream)).await });

    body.send(Ok(Bytes::from(pattern(10_000)).into()))
        .await
        .unwrap();
    // The server must be reading the body before it breaks, or the test would prove nothing.
    assert_eq!(guarded(seen.recv()).await.unwrap(), Seen::Chunk(10_000));
    body.send(Err(BodyError::new("client went away")))
        .await
        .unwrap();

    let on_server = guarded(seen.recv()).await.unwrap();
    assert!(matches!(on_server, Seen::BodyFailed(_)), "{on_server:?}");
    let outcome = guarded(call).await.unwrap();
    match outcome {
        Err(QueueError::Body(error)) => assert_eq!(error.reason(), "client went away"),
        other => panic!("expected the body error, got {other:?}"),
    }
    assert!(queue.committed().is_empty());
}

#[tokio::test]
async fn each_error_variant_round_trips() {
    let Running { queue, client, .. } = start().await;
    for kind in ERROR_KINDS {
        let id = QueueId::new(format!("err-{kind}"));
        let local = queue.get(&id).await.unwrap_err();
        let remote = guarded(client.get(&id)).await.unwrap_err();
        assert_eq!(variant(&remote), variant(&local), "{remote}");
        assert_eq!(variant(&remote), kind);
        if kind != "transport" {
            assert_eq!(remote.to_string(), local.to_string());
        }
    }
    // And from Enqueue, where ingress turns them into 452 / 451.
    for kind in ["quota-exceeded", "unavailable"] {
        let refused = Envelope {
            sender: format!("err-{kind}"),
            ..envelope()
        };
        let error = guarded(client.enqueue(refused, body_of(b"Subject: x\r\n\r\nx\r\n", 4)))
            .await
            .unwrap_err();
        assert_eq!(variant(&error), kind, "{error}");
    }
    assert!(queue.committed().is_empty());
}

#[tokio::test]
async fn closed_port_is_a_transport_error() {
    let client = GrpcQueue::connect(&closed_endpoint().await).unwrap();
    let error = guarded(client.stats()).await.unwrap_err();
    assert!(
        matches!(error, QueueError::Transport(RpcError::Transport(_))),
        "{error:?}"
    );
    let error = guarded(client.enqueue(envelope(), body_of(b"x", 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, QueueError::Transport(RpcError::Transport(_))),
        "{error:?}"
    );
}

fn envelope_message() -> proto::EnqueueRequest {
    // The wire form of a valid envelope, built by hand as a foreign client would.
    proto::EnqueueRequest {
        part: Some(Part::Envelope(proto::Envelope {
            sender: "alice@example.org".into(),
            recipients: vec![proto::Recipient {
                address: "bob@example.net".into(),
                notify: Vec::new(),
                orcpt: None,
            }],
            body_type: proto::BodyType::SevenBit.into(),
            ..Default::default()
        })),
    }
}

fn chunk_message(content: &'static [u8]) -> proto::EnqueueRequest {
    proto::EnqueueRequest {
        part: Some(Part::Chunk(Bytes::from_static(content))),
    }
}

fn end_message(size: u64) -> proto::EnqueueRequest {
    proto::EnqueueRequest {
        part: Some(Part::End(proto::BodyEnd {
            size,
            prepend: Bytes::new(),
            dmarc: None,
        })),
    }
}

#[tokio::test]
async fn raw_streams_that_break_the_enqueue_contract_are_invalid_argument() {
    let Running {
        queue, endpoint, ..
    } = start().await;
    let mut raw = proto::queue_client::QueueClient::connect(endpoint)
        .await
        .unwrap();

    let streams: [(&str, Vec<proto::EnqueueRequest>); 11] = [
        (
            "starts with a chunk",
            vec![chunk_message(b"x"), end_message(1)],
        ),
        ("starts with the end", vec![end_message(0)]),
        (
            "second envelope",
            vec![envelope_message(), chunk_message(b"x"), envelope_message()],
        ),
        ("empty stream", Vec::new()),
        ("empty part", vec![proto::EnqueueRequest { part: None }]),
        ("unspecified body type", {
            let mut message = envelope_message();
            if let Some(Part::Envelope(envelope)) = &mut message.part {
                envelope.body_type = proto::BodyType::Unspecified.into();
            }
            vec![message, end_message(0)]
        }),
        (
            "no end message",
            vec![envelope_message(), chunk_message(b"x")],
        ),
        (
            "wrong size at the end",
            vec![envelope_message(), chunk_message(b"xy"), end_message(3)],
        ),
        (
            "prepended headers over the bound",
            vec![
                envelope_message(),
                chunk_message(b"x"),
                proto::EnqueueRequest {
                    part: Some(Part::End(proto::BodyEnd {
                        size: 1,
                        prepend: Bytes::from(vec![b'h'; MAX_PREPEND + 1]),
                        dmarc: None,
                    })),
                },
            ],
        ),
        (
            "a DMARC evaluation without its policy",
            vec![
                envelope_message(),
                chunk_message(b"x"),
                proto::EnqueueRequest {
                    part: Some(Part::End(proto::BodyEnd {
                        size: 1,
                        prepend: Bytes::new(),
                        dmarc: Some(proto::DmarcEvaluation {
                            policy_domain: "example.org".into(),
                            disposition: "none".into(),
                            spf_result: "pass".into(),
                            ..proto::DmarcEvaluation::default()
                        }),
                    })),
                },
            ],
        ),
        (
            "chunk after the end",
            vec![
                envelope_message(),
                chunk_message(b"x"),
                end_message(1),
                chunk_message(b"y"),
            ],
        ),
    ];
    for (case, messages) in streams {
        let status = guarded(raw.enqueue(stream::iter(messages)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
    }
    assert!(queue.committed().is_empty());

    // The same client, keeping to the contract, is served.
    let reply = guarded(raw.enqueue(stream::iter([
        envelope_message(),
        chunk_message(b"Subject: x\r\n\r\n"),
        chunk_message(b"body\r\n"),
        end_message(20),
    ])))
    .await
    .unwrap();
    assert_eq!(reply.into_inner().queue_id, "q-1-20");
}

#[tokio::test]
async fn raw_request_without_queue_id_is_invalid_argument() {
    let Running { endpoint, .. } = start().await;
    let mut raw = proto::queue_client::QueueClient::connect(endpoint)
        .await
        .unwrap();
    let status = guarded(raw.get(proto::GetRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn a_raw_client_cancelling_midway_queues_nothing() {
    // tonic hands the server a client's cancellation as a plain end of stream; the end message
    // is what keeps that from committing a truncated body.
    let Running {
        queue,
        mut seen,
        endpoint,
        ..
    } = start().await;
    let mut raw = proto::queue_client::QueueClient::connect(endpoint)
        .await
        .unwrap();
    let (mut messages, outgoing) = futures::channel::mpsc::channel::<proto::EnqueueRequest>(1);
    let mut request = tonic::Request::new(outgoing);
    let cancel = request.cancellation_handle();
    let call = tokio::spawn(async move { raw.enqueue(request).await });

    messages.send(envelope_message()).await.unwrap();
    messages
        .send(chunk_message(b"Subject: x\r\n"))
        .await
        .unwrap();
    assert_eq!(guarded(seen.recv()).await.unwrap(), Seen::Chunk(12));
    cancel.cancel();

    let on_server = guarded(seen.recv()).await.unwrap();
    assert!(matches!(on_server, Seen::BodyFailed(_)), "{on_server:?}");
    assert!(guarded(call).await.unwrap().is_err());
    assert!(queue.committed().is_empty());
}
