//! Mutual TLS between the roles, through real handshakes with certificates made here: every
//! RPC called with no certificate, a certificate of another CA, of the wrong role and of the
//! right one; expired and not-yet-valid certificates; a server that is not the role the
//! client meant; plain text against TLS both ways; and credentials replaced while serving.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod loopback;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferrymail_e2e::{CLUSTER_DOMAIN, ClusterCertificates, IssuedCertificate};
use ferrymail_rpc::RpcError;
use ferrymail_rpc::cluster_tls::{
    ChannelSecurity, ClusterTls, Credentials, HandshakeMetrics, Permissions, RefusalMetrics,
    incoming,
};
use ferrymail_rpc::directory::{
    self, Answer, AuthRequest, DirectoryService, Expansion, GrpcDirectory, LimitAnswer, LimitKey,
    Mechanism, RateRequest, RemoteState, SlotRequest,
};
use ferrymail_rpc::queue::{
    self, BodyPart, BodyStream, BodyType, BulkAction, BulkFilter, BulkReport, BulkRequest,
    Envelope, GrpcQueue, ListFilter, ListPage, ListRequest, MessageDetail, Priority, QueueError,
    QueueId, QueueService, QueueStats, Recipient,
};
use ferrymail_telemetry::Metrics;
use futures::{StreamExt, stream};
use loopback::guarded;
use rustls_pki_types::pem::PemObject;
use secrecy::SecretSlice;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Server;

/// Answers every call at once: these tests are about who gets an answer, not what it says.
struct Anything;

#[async_trait]
impl QueueService for Anything {
    async fn enqueue(&self, _: Envelope, mut body: BodyStream) -> Result<QueueId, QueueError> {
        while body.next().await.is_some() {}
        Ok(QueueId::new("q1".to_owned()))
    }
    async fn list(&self, _: ListRequest) -> Result<ListPage, QueueError> {
        Ok(ListPage {
            messages: Vec::new(),
            next_page_token: None,
        })
    }
    async fn get(&self, id: &QueueId) -> Result<MessageDetail, QueueError> {
        Err(QueueError::NotFound(id.to_string()))
    }
    async fn retry(&self, _: &QueueId, _: &[String]) -> Result<u32, QueueError> {
        Ok(0)
    }
    async fn cancel(&self, _: &QueueId, _: &[String]) -> Result<u32, QueueError> {
        Ok(0)
    }
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(QueueStats::default())
    }
    async fn hold(&self, _: &QueueId) -> Result<bool, QueueError> {
        Ok(true)
    }
    async fn release(&self, _: &QueueId) -> Result<bool, QueueError> {
        Ok(true)
    }
    async fn bulk(&self, _: BulkRequest) -> Result<BulkReport, QueueError> {
        Ok(BulkReport::default())
    }
    async fn find_by_message_id(&self, _: &str) -> Result<Vec<QueueId>, QueueError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl DirectoryService for Anything {
    async fn authenticate(&self, _: AuthRequest) -> Result<Answer, RpcError> {
        Ok(Answer::no())
    }
    async fn verify_recipient(&self, _: &str, _: &str) -> Result<Answer, RpcError> {
        Ok(Answer::yes())
    }
    async fn vrfy(&self, _: &str, _: &str) -> Result<Expansion, RpcError> {
        Ok(Expansion::CannotTell { reply: None })
    }
    async fn expn(&self, _: &str, _: &str) -> Result<Expansion, RpcError> {
        Ok(Expansion::CannotTell { reply: None })
    }
    async fn is_local_domain(&self, _: &str, _: &str) -> Result<Answer, RpcError> {
        Ok(Answer::yes())
    }
    async fn in_list(&self, _: &str, _: &str) -> Result<Answer, RpcError> {
        Ok(Answer::no())
    }
    async fn remote_states(&self) -> Result<Vec<RemoteState>, RpcError> {
        Ok(Vec::new())
    }
    async fn take_rate(&self, _: RateRequest) -> Result<LimitAnswer, RpcError> {
        Ok(LimitAnswer::Admitted)
    }
    async fn take_slot(&self, _: SlotRequest) -> Result<LimitAnswer, RpcError> {
        Ok(LimitAnswer::Admitted)
    }
    async fn release_slot(&self, _: LimitKey, _: &str) -> Result<(), RpcError> {
        Ok(())
    }
}

fn credentials(cluster: &ClusterCertificates, identity: &IssuedCertificate) -> Credentials {
    Credentials::from_files(
        &identity.cert_pem.display().to_string(),
        &identity.key_pem.display().to_string(),
        &cluster.ca_pem.display().to_string(),
        CLUSTER_DOMAIN,
    )
    .unwrap()
}

/// A server of both services with `credentials` on loopback: its `https://` endpoint, its
/// handle on the credentials and its metrics.
async fn serve(credentials: Credentials) -> (String, ClusterTls, Metrics) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let metrics = Metrics::new("test");
    let tls = ClusterTls::new(credentials);
    let connections = incoming(
        listener,
        ChannelSecurity::MutualTls(tls.clone()),
        HandshakeMetrics::register(&metrics),
    );
    let router = Server::builder()
        .layer(Permissions::new(RefusalMetrics::register(&metrics)))
        .add_service(queue::server(Arc::new(Anything)))
        .add_service(directory::server(Arc::new(Anything)));
    tokio::spawn(router.serve_with_incoming(connections));
    (format!("https://{address}"), tls, metrics)
}

/// How a call ended: `Ok`, or the gRPC code of its refusal (`Unavailable` for a connection
/// that never got as far as a call).
type Outcome = Result<(), Code>;

fn code(error: &RpcError) -> Code {
    match error {
        RpcError::Transport(status) => status.code(),
        other => panic!("not a refusal: {other}"),
    }
}

fn queue_code(error: &QueueError) -> Code {
    match error {
        QueueError::Transport(error) => code(error),
        QueueError::NotFound(_) => Code::NotFound,
        other => panic!("not a refusal: {other}"),
    }
}

fn envelope() -> Envelope {
    Envelope {
        sender: "alice@example.org".into(),
        recipients: vec![Recipient::new("bob@example.net")],
        ret: None,
        envid: None,
        declared_size: None,
        priority: Priority::default(),
        hold_until: None,
        requiretls: false,
        smtputf8: false,
        body_type: BodyType::SevenBit,
        client_ip: None,
        helo: "client.example.org".into(),
        authenticated_as: None,
        trace_parent: None,
        queue_id: None,
        quarantine: None,
    }
}

/// Every queue RPC, with how each ended (a `NotFound` from `Get` reached the service).
async fn queue_calls(queue: &GrpcQueue) -> Vec<(&'static str, Outcome)> {
    let id = QueueId::new("q1".to_owned());
    let body: BodyStream = Box::pin(stream::iter([Ok(BodyPart::Chunk("x\r\n".into()))]));
    let ended = |result: Result<(), QueueError>| match result {
        Err(error) if queue_code(&error) != Code::NotFound => Err(queue_code(&error)),
        _ => Ok(()),
    };
    vec![
        (
            "Enqueue",
            ended(queue.enqueue(envelope(), body).await.map(drop)),
        ),
        (
            "List",
            ended(
                queue
                    .list(ListRequest {
                        page_size: 1,
                        page_token: None,
                        filter: ListFilter::default(),
                    })
                    .await
                    .map(drop),
            ),
        ),
        ("Get", ended(queue.get(&id).await.map(drop))),
        ("Retry", ended(queue.retry(&id, &[]).await.map(drop))),
        ("Cancel", ended(queue.cancel(&id, &[]).await.map(drop))),
        ("Stats", ended(queue.stats().await.map(drop))),
        ("Hold", ended(queue.hold(&id).await.map(drop))),
        ("Release", ended(queue.release(&id).await.map(drop))),
        (
            "Bulk",
            ended(
                queue
                    .bulk(BulkRequest {
                        action: BulkAction::Hold,
                        filter: BulkFilter {
                            sender: Some("a".into()),
                            ..BulkFilter::default()
                        },
                        dry_run: true,
                        cursor: None,
                        batch_size: 0,
                        limit: 0,
                    })
                    .await
                    .map(drop),
            ),
        ),
        (
            "FindByMessageId",
            ended(queue.find_by_message_id("a@b").await.map(drop)),
        ),
    ]
}

fn limit_key() -> LimitKey {
    LimitKey {
        limiter: "ip".into(),
        values: vec!["192.0.2.1".into()],
    }
}

fn rate_request() -> RateRequest {
    RateRequest {
        key: limit_key(),
        count: 10,
        period: Duration::from_secs(60),
    }
}

fn slot_request() -> SlotRequest {
    SlotRequest {
        key: limit_key(),
        max: 1,
        lease: Duration::from_secs(30),
        slot: "s".into(),
    }
}

/// Every directory RPC, with how each ended.
async fn directory_calls(directory: &GrpcDirectory) -> Vec<(&'static str, Outcome)> {
    let ended = |result: Result<(), RpcError>| result.map_err(|e| code(&e));
    let auth = AuthRequest {
        directory: "d".into(),
        mechanism: Mechanism::Plain,
        username: "alice".into(),
        secret: SecretSlice::from(b"secret".to_vec()),
        authzid: None,
        client: "192.0.2.1".parse().unwrap(),
    };
    vec![
        (
            "Authenticate",
            ended(directory.authenticate(auth).await.map(drop)),
        ),
        (
            "VerifyRecipient",
            ended(directory.verify_recipient("d", "a@b").await.map(drop)),
        ),
        ("Vrfy", ended(directory.vrfy("d", "a").await.map(drop))),
        ("Expn", ended(directory.expn("d", "a").await.map(drop))),
        (
            "IsLocalDomain",
            ended(directory.is_local_domain("d", "b").await.map(drop)),
        ),
        (
            "InList",
            ended(directory.in_list("d/l", "v").await.map(drop)),
        ),
        (
            "RemoteStates",
            ended(directory.remote_states().await.map(drop)),
        ),
        (
            "TakeRate",
            ended(directory.take_rate(rate_request()).await.map(drop)),
        ),
        (
            "TakeSlot",
            ended(directory.take_slot(slot_request()).await.map(drop)),
        ),
        (
            "ReleaseSlot",
            ended(directory.release_slot(limit_key(), "s").await),
        ),
    ]
}

/// What every RPC gives a client with `security` against the server at `endpoint`.
async fn every_call(endpoint: &str, security: &ChannelSecurity) -> Vec<(&'static str, Outcome)> {
    let queue = GrpcQueue::connect_with(endpoint, security).unwrap();
    let directory = GrpcDirectory::connect_with(endpoint, security).unwrap();
    let mut all = guarded(queue_calls(&queue)).await;
    all.extend(guarded(directory_calls(&directory)).await);
    all
}

/// The calls `roles` may make, per the permission table README documents.
fn allowed_for(roles: &[&str]) -> Vec<&'static str> {
    let mut allowed = Vec::new();
    if roles.contains(&"smtp-ingress") {
        allowed.extend([
            "Enqueue",
            "Authenticate",
            "VerifyRecipient",
            "Vrfy",
            "Expn",
            "IsLocalDomain",
            "InList",
            "TakeRate",
            "TakeSlot",
            "ReleaseSlot",
        ]);
    }
    if roles.contains(&"admin") {
        allowed.extend([
            "List",
            "Get",
            "Retry",
            "Cancel",
            "Stats",
            "Hold",
            "Release",
            "Bulk",
            "FindByMessageId",
        ]);
    }
    if roles.contains(&"operator") {
        allowed.push("RemoteStates");
    }
    allowed
}

/// Whether a call ended with the connection, never reaching the permission table: with TLS
/// 1.3 the client's certificate is judged after the client finished its handshake, so the
/// refusal reaches it as the connection breaking (`Unknown`) or not opening (`Unavailable`).
fn broke_off(outcome: Outcome) -> bool {
    matches!(outcome, Err(Code::Unavailable | Code::Unknown))
}

fn mutual(credentials: Credentials) -> ChannelSecurity {
    ChannelSecurity::MutualTls(ClusterTls::new(credentials))
}

struct Lab {
    _dir: tempfile::TempDir,
    cluster: ClusterCertificates,
    endpoint: String,
    server_tls: ClusterTls,
    metrics: Metrics,
}

async fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClusterCertificates::generate(dir.path(), "cluster");
    let server = cluster.role(&["queue-scheduler", "directory-proxy"]);
    let (endpoint, server_tls, metrics) = serve(credentials(&cluster, &server)).await;
    Lab {
        _dir: dir,
        cluster,
        endpoint,
        server_tls,
        metrics,
    }
}

#[tokio::test]
async fn each_role_is_answered_exactly_the_calls_the_table_gives_it() {
    let lab = lab().await;
    for roles in [
        &["smtp-ingress"][..],
        &["admin"],
        &["operator"],
        &["queue-scheduler"],
        &["directory-proxy"],
    ] {
        let client = mutual(credentials(&lab.cluster, &lab.cluster.role(roles)));
        let allowed = allowed_for(roles);
        for (call, outcome) in every_call(&lab.endpoint, &client).await {
            let expected = if allowed.contains(&call) {
                Ok(())
            } else {
                Err(Code::PermissionDenied)
            };
            assert_eq!(outcome, expected, "{call} by {roles:?}");
        }
    }
    let metrics = lab.metrics.encode().unwrap();
    assert!(
        metrics.contains(
            "grpc_requests_refused_total{caller=\"admin\",method=\"/ferrymail.v1.Queue/Enqueue\",code=\"permission_denied\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_certificate_without_a_role_is_refused_every_call() {
    let lab = lab().await;
    let now = time::OffsetDateTime::now_utc();
    let nobody = lab.cluster.issue(
        "nobody",
        &["mail.example.org".to_owned()],
        now - time::Duration::days(1),
        now + time::Duration::days(1),
    );
    let client = mutual(credentials(&lab.cluster, &nobody));
    for (call, outcome) in every_call(&lab.endpoint, &client).await {
        assert_eq!(outcome, Err(Code::PermissionDenied), "{call}");
    }
}

/// A channel that speaks TLS and trusts the cluster's CA, but shows no certificate.
fn anonymous_channel(lab: &Lab) -> tonic::transport::Channel {
    let pem = std::fs::read(&lab.cluster.ca_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let address = lab.endpoint.trim_start_matches("https://").to_owned();
    tonic::transport::Endpoint::from_shared(lab.endpoint.clone())
        .unwrap()
        .connect_with_connector_lazy(tower::service_fn(move |_| {
            let (connector, address) = (connector.clone(), address.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&address).await?;
                let name = rustls_pki_types::ServerName::try_from(format!(
                    "queue-scheduler.{CLUSTER_DOMAIN}"
                ))
                .map_err(io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
}

#[tokio::test]
async fn a_caller_without_a_certificate_is_unauthenticated() {
    let lab = lab().await;
    let channel = anonymous_channel(&lab);
    let queue = GrpcQueue::with_channel(channel.clone());
    let directory = GrpcDirectory::with_channel(channel);
    let mut all = guarded(queue_calls(&queue)).await;
    all.extend(guarded(directory_calls(&directory)).await);
    for (call, outcome) in all {
        assert_eq!(outcome, Err(Code::Unauthenticated), "{call}");
    }
}

#[tokio::test]
async fn a_certificate_of_another_authority_fails_the_handshake() {
    let lab = lab().await;
    let dir = tempfile::tempdir().unwrap();
    let other = ClusterCertificates::generate(dir.path(), "other");
    let impostor = other.role(&["smtp-ingress"]);
    // Its own CA file, so that the client trusts the real server and only its certificate
    // is foreign.
    let client = mutual(
        Credentials::from_files(
            &impostor.cert_pem.display().to_string(),
            &impostor.key_pem.display().to_string(),
            &lab.cluster.ca_pem.display().to_string(),
            CLUSTER_DOMAIN,
        )
        .unwrap(),
    );
    for (call, outcome) in every_call(&lab.endpoint, &client).await {
        assert!(broke_off(outcome), "{call}: {outcome:?}");
    }
    let metrics = lab.metrics.encode().unwrap();
    assert!(
        metrics.contains("grpc_tls_handshake_failures_total{reason=\"untrusted_certificate\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_fail_the_handshake() {
    let lab = lab().await;
    let now = time::OffsetDateTime::now_utc();
    let name = [format!("smtp-ingress.{CLUSTER_DOMAIN}")];
    let expired = lab.cluster.issue(
        "expired",
        &name,
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    );
    let early = lab.cluster.issue(
        "early",
        &name,
        now + time::Duration::days(1),
        now + time::Duration::days(10),
    );
    for identity in [expired, early] {
        let client = mutual(credentials(&lab.cluster, &identity));
        let queue = GrpcQueue::connect_with(&lab.endpoint, &client).unwrap();
        let (call, outcome) = guarded(queue_calls(&queue)).await[0];
        assert!(broke_off(outcome), "{call}: {outcome:?}");
    }
    let metrics = lab.metrics.encode().unwrap();
    assert!(
        metrics.contains("grpc_tls_handshake_failures_total{reason=\"expired_certificate\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_the_role_called_is_refused_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClusterCertificates::generate(dir.path(), "cluster");
    // A directory-proxy's certificate serving the queue: the ingress meant a queue-scheduler.
    let (endpoint, _, _) = serve(credentials(&cluster, &cluster.role(&["directory-proxy"]))).await;
    let client = mutual(credentials(&cluster, &cluster.role(&["smtp-ingress"])));
    let queue = GrpcQueue::connect_with(&endpoint, &client).unwrap();
    let error = guarded(queue.stats()).await.unwrap_err();
    assert_eq!(queue_code(&error), Code::Unavailable, "{error}");
    let directory = GrpcDirectory::connect_with(&endpoint, &client).unwrap();
    assert!(
        guarded(directory.verify_recipient("d", "a@b"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn plain_text_and_tls_do_not_mix() {
    let lab = lab().await;
    let plain_endpoint = lab.endpoint.replace("https://", "http://");
    let plain = GrpcQueue::connect_with(&plain_endpoint, &ChannelSecurity::PlainText).unwrap();
    assert!(guarded(plain.stats()).await.is_err());
    let metrics = lab.metrics.encode().unwrap();
    assert!(
        metrics.contains("grpc_tls_handshake_failures_total{reason=\"not_tls\"}"),
        "{metrics}"
    );

    // And a TLS client against a plain-text server.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = incoming(
        listener,
        ChannelSecurity::PlainText,
        HandshakeMetrics::default(),
    );
    tokio::spawn(
        Server::builder()
            .add_service(queue::server(Arc::new(Anything)))
            .serve_with_incoming(connections),
    );
    let client = mutual(credentials(&lab.cluster, &lab.cluster.role(&["admin"])));
    let queue = GrpcQueue::connect_with(&format!("https://{address}"), &client).unwrap();
    assert!(guarded(queue.stats()).await.is_err());
    // The schemes say which is which: the wrong one is refused before any connection.
    assert!(GrpcQueue::connect_with(&plain_endpoint, &client).is_err());
    assert!(GrpcQueue::connect_with(&lab.endpoint, &ChannelSecurity::PlainText).is_err());
}

#[tokio::test]
async fn replaced_credentials_serve_new_connections() {
    let lab = lab().await;
    let admin = mutual(credentials(&lab.cluster, &lab.cluster.role(&["admin"])));
    let before = GrpcQueue::connect_with(&lab.endpoint, &admin).unwrap();
    assert!(guarded(before.stats()).await.is_ok());

    // The cluster moves to a new CA: the server takes its new certificate while running.
    let dir = tempfile::tempdir().unwrap();
    let renewed = ClusterCertificates::generate(dir.path(), "renewed");
    let server = renewed.role(&["queue-scheduler"]);
    lab.server_tls.replace(credentials(&renewed, &server));
    let new_admin = mutual(credentials(&renewed, &renewed.role(&["admin"])));
    let after = GrpcQueue::connect_with(&lab.endpoint, &new_admin).unwrap();
    assert!(guarded(after.stats()).await.is_ok());
    let stale = GrpcQueue::connect_with(&lab.endpoint, &admin).unwrap();
    let error = guarded(stale.stats()).await.unwrap_err();
    assert_eq!(queue_code(&error), Code::Unavailable, "{error}");
}

#[test]
fn unusable_credentials_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClusterCertificates::generate(dir.path(), "cluster");
    let one = cluster.role(&["admin"]);
    let two = cluster.role(&["operator"]);
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap();
    let ca = read(&cluster.ca_pem);
    let mismatched = Credentials::from_pem(
        &read(&one.cert_pem),
        &read(&two.key_pem),
        &ca,
        CLUSTER_DOMAIN,
    )
    .unwrap_err()
    .to_string();
    assert!(mismatched.contains("key"), "{mismatched}");
    let garbage = Credentials::from_pem("garbage", &read(&one.key_pem), &ca, CLUSTER_DOMAIN)
        .unwrap_err()
        .to_string();
    assert!(garbage.starts_with("certificate:"), "{garbage}");
    let no_ca = Credentials::from_pem(
        &read(&one.cert_pem),
        &read(&one.key_pem),
        "",
        CLUSTER_DOMAIN,
    )
    .unwrap_err()
    .to_string();
    assert!(no_ca.starts_with("CA bundle:"), "{no_ca}");
    let missing = Credentials::from_files("/nonexistent/cert.pem", "/x", "/y", CLUSTER_DOMAIN)
        .unwrap_err()
        .to_string();
    assert_eq!(missing, "cannot read /nonexistent/cert.pem");
}
