//! Who gets past the admin API's gate, by where the request comes from and what it carries.
//! The queue is never started here: a request that gets through is answered `503`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use ferrymail_admin_api::{ApiMetrics, Gate, PasswordCheck, QueueSlot, router};
use ferrymail_config::Secret;
use ferrymail_config::model::authentication::Authentication;
use ferrymail_config::value::StoredPassword;
use ferrymail_telemetry::AdminClient;
use tower::ServiceExt as _;

/// Through the gate (the queue is not started): `503`.
const PASSED: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

async fn status(
    client: &str,
    tls: bool,
    allow_plain_text: bool,
    token: Option<&str>,
) -> StatusCode {
    let authentication = Authentication {
        fallback_admin: None,
        api_keys: BTreeMap::from([("ops".into(), StoredPassword::Clear(Secret::new("t0ken")))]),
    };
    let gate = Gate::new(
        PasswordCheck::new(authentication),
        allow_plain_text,
        ApiMetrics::default(),
    );
    let client = AdminClient {
        address: client.parse::<SocketAddr>().unwrap(),
        tls,
    };
    let app = router(QueueSlot::new(), gate, ApiMetrics::default()).layer(MockConnectInfo(client));
    let mut request = Request::builder().uri("/api/queue/status");
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    response.status()
}

#[tokio::test]
async fn credentials_over_plain_http_only_from_this_host() {
    assert_eq!(
        status("127.0.0.1:5000", false, false, Some("t0ken")).await,
        PASSED
    );
    assert_eq!(
        status("[::1]:5000", false, false, Some("t0ken")).await,
        PASSED
    );
    assert_eq!(
        status("[::ffff:127.0.0.1]:5000", false, false, Some("t0ken")).await,
        PASSED
    );
    // From another host: refused before the credentials are even looked at.
    for token in ["t0ken", "wrong"] {
        assert_eq!(
            status("10.1.2.3:5000", false, false, Some(token)).await,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        status("10.1.2.3:5000", true, false, Some("t0ken")).await,
        PASSED
    );
    assert_eq!(
        status("10.1.2.3:5000", false, true, Some("t0ken")).await,
        PASSED
    );
}

#[tokio::test]
async fn no_credentials_or_wrong_ones_are_unauthorized() {
    assert_eq!(
        status("10.1.2.3:5000", true, false, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status("10.1.2.3:5000", true, false, Some("wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status("127.0.0.1:5000", false, false, None).await,
        StatusCode::UNAUTHORIZED
    );
}
