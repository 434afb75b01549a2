//! A Stalwart-style retry or cancel by filter acts on at most `MAX_ACTED_ON` messages in one
//! request; a larger selection is refused, untouched, with a pointer to the bulk action.
//! The queue here is a stand-in that lists made-up ids and counts what it is asked to do:
//! the point is the API's bound, not the queue (its own tests cover listing and retrying).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use ferrymail_admin_api::{ApiMetrics, Gate, PasswordCheck, QueueSlot, router};
use ferrymail_config::Secret;
use ferrymail_config::model::authentication::Authentication;
use ferrymail_config::value::StoredPassword;
use ferrymail_rpc::queue::{
    BodyStream, BulkReport, BulkRequest, Destinations, Envelope, ListPage, ListRequest,
    MessageDetail, MessageSummary, Priority, QueueError, QueueId, QueueService, QueueStats,
};
use ferrymail_telemetry::AdminClient;
use tower::ServiceExt as _;

/// `messages` queued messages, and a count of the retries and cancels asked.
struct CountingQueue {
    messages: u64,
    acted: AtomicU64,
}

fn unavailable<T>() -> Result<T, QueueError> {
    Err(QueueError::Unavailable("not in this test".into()))
}

#[async_trait]
impl QueueService for CountingQueue {
    async fn enqueue(&self, _: Envelope, _: BodyStream) -> Result<QueueId, QueueError> {
        unavailable()
    }

    async fn list(&self, request: ListRequest) -> Result<ListPage, QueueError> {
        let start: u64 = request.page_token.map_or(0, |t| t.parse().unwrap());
        let end = (start + u64::from(request.page_size)).min(self.messages);
        let messages = (start..end)
            .map(|n| MessageSummary {
                queue_id: QueueId::new(format!("{n:026}")),
                sender: "s@example.org".into(),
                recipients: 1,
                size: 1,
                arrival: 0,
                next_attempt: None,
                priority: Priority::NORMAL,
                held: false,
            })
            .collect();
        let next_page_token = (end < self.messages).then(|| end.to_string());
        Ok(ListPage {
            messages,
            next_page_token,
        })
    }

    async fn get(&self, _: &QueueId) -> Result<MessageDetail, QueueError> {
        unavailable()
    }

    async fn retry(&self, _: &QueueId, _: &[String]) -> Result<u32, QueueError> {
        self.acted.fetch_add(1, Ordering::Relaxed);
        Ok(1)
    }

    async fn cancel(&self, _: &QueueId, _: &[String]) -> Result<u32, QueueError> {
        self.acted.fetch_add(1, Ordering::Relaxed);
        Ok(1)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        unavailable()
    }

    async fn destinations(&self) -> Result<Destinations, QueueError> {
        Ok(Destinations::default())
    }

    async fn hold(&self, _: &QueueId) -> Result<bool, QueueError> {
        unavailable()
    }

    async fn release(&self, _: &QueueId) -> Result<bool, QueueError> {
        unavailable()
    }

    async fn bulk(&self, _: BulkRequest) -> Result<BulkReport, QueueError> {
        unavailable()
    }

    async fn find_by_message_id(&self, _: &str) -> Result<Vec<QueueId>, QueueError> {
        unavailable()
    }
}

/// `method path` against a queue of `messages`; the status, and how many were acted on.
async fn call(method: &str, messages: u64) -> (StatusCode, u64) {
    let queue = Arc::new(CountingQueue {
        messages,
        acted: AtomicU64::new(0),
    });
    let slot = QueueSlot::new();
    slot.fill(queue.clone());
    let authentication = Authentication {
        fallback_admin: None,
        api_keys: BTreeMap::from([("ops".into(), StoredPassword::Clear(Secret::new("t")))]),
    };
    let gate = Gate::new(
        PasswordCheck::new(authentication),
        false,
        ApiMetrics::default(),
    );
    let client = AdminClient {
        address: "127.0.0.1:5000".parse::<SocketAddr>().unwrap(),
        tls: false,
    };
    let app = router(slot, gate, ApiMetrics::default()).layer(MockConnectInfo(client));
    let request = Request::builder()
        .method(method)
        .uri("/api/queue/messages?from=s")
        .header("Authorization", "Bearer t")
        .body(Body::empty())
        .unwrap();
    let status = app.oneshot(request).await.unwrap().status();
    (status, queue.acted.load(Ordering::Relaxed))
}

#[tokio::test]
async fn a_selection_within_the_bound_is_acted_on() {
    assert_eq!(call("PATCH", 3).await, (StatusCode::OK, 3));
    assert_eq!(call("DELETE", 10_000).await, (StatusCode::OK, 10_000));
}

#[tokio::test]
async fn a_larger_selection_is_refused_untouched() {
    for method in ["PATCH", "DELETE"] {
        assert_eq!(
            call(method, 10_001).await,
            (StatusCode::BAD_REQUEST, 0),
            "{method}"
        );
    }
}
