//! The Directory contract through a real tonic server and client.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod loopback;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferrymail_rpc::RpcError;
use std::time::{Duration, UNIX_EPOCH};

use ferrymail_rpc::directory::{
    self, Answer, AuthRequest, DirectoryService, Expansion, GrpcDirectory, Mechanism, Reachability,
    RemoteReply, RemoteState, Verdict,
};
use ferrymail_rpc::proto;
use loopback::{closed_endpoint, guarded, serve};
use secrecy::{ExposeSecret, SecretSlice};
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};

/// A password with a non-UTF-8 byte: the secret travels as bytes.
const PASSWORD: &[u8] = b"correct horse \xff battery";

/// Test double for these transport tests: a fixed table of answers, so the same call can be made
/// in-process and through gRPC and the results compared. It is not a stand-in for a real peer.
#[derive(Default)]
struct TableDirectory {
    secrets_seen: Mutex<Vec<Vec<u8>>>,
}

/// The error a directory named `err-<kind>` answers with.
fn error_for(directory: &str) -> Option<RpcError> {
    let kind = directory.strip_prefix("err-")?;
    Some(match kind {
        "protocol" => RpcError::Protocol("bad frame".into()),
        "invalid-argument" => RpcError::InvalidArgument("unknown directory".into()),
        "unavailable" => RpcError::Unavailable("shutting down".into()),
        "internal" => RpcError::Internal("cache store failed".into()),
        "transport" => RpcError::Transport(Box::new(Status::unavailable("peer gone"))),
        other => panic!("no error kind {other}"),
    })
}

fn check(directory: &str) -> Result<(), RpcError> {
    error_for(directory).map_or(Ok(()), Err)
}

#[async_trait]
impl DirectoryService for TableDirectory {
    async fn authenticate(&self, request: AuthRequest) -> Result<Answer, RpcError> {
        check(&request.directory)?;
        let secret = request.secret.expose_secret().to_vec();
        self.secrets_seen.lock().unwrap().push(secret.clone());
        Ok(match (request.username.as_str(), request.mechanism) {
            // Blocked for the client address the tests send: the address travels intact.
            ("blocked", _) if request.client.to_string() == "2001:db8::25" => {
                Answer::new(Verdict::Blocked)
            }
            ("busy", _) => Answer::temporary_failure().with_reply(RemoteReply::smtp(
                454,
                "4.7.0 Temporary authentication failure",
            )),
            ("alice", Mechanism::Plain) if secret == PASSWORD => {
                Answer::yes().with_reply(RemoteReply::smtp(235, "2.7.0 Authentication successful"))
            }
            ("alice", Mechanism::Login) if secret == PASSWORD => {
                Answer::yes().with_reply(RemoteReply::imap("OK Logged in"))
            }
            _ => Answer::no().with_reply(RemoteReply::imap(
                "NO [AUTHENTICATIONFAILED] Authentication failed.",
            )),
        })
    }

    async fn verify_recipient(&self, directory: &str, address: &str) -> Result<Answer, RpcError> {
        check(directory)?;
        Ok(match address {
            "alice@example.org" => Answer::yes().with_reply(RemoteReply::smtp(250, "2.1.5 OK")),
            "flaky@example.org" => Answer::temporary_failure()
                .with_reply(RemoteReply::smtp(451, "4.3.0 Try again later")),
            "cached@example.org" => Answer::yes(),
            "full@example.org" => Answer::new(Verdict::Refused)
                .with_reply(RemoteReply::smtp(552, "5.2.2 Mailbox full")),
            _ => Answer::no().with_reply(RemoteReply::smtp(550, "5.1.1 User unknown")),
        })
    }

    async fn vrfy(&self, directory: &str, address: &str) -> Result<Expansion, RpcError> {
        check(directory)?;
        Ok(match address {
            "alice" => Expansion::Found {
                values: vec!["Alice <alice@example.org>".into()],
                reply: Some(RemoteReply::smtp(250, "Alice <alice@example.org>")),
            },
            "hidden" => Expansion::CannotTell {
                reply: Some(RemoteReply::smtp(
                    252,
                    "2.5.2 Cannot VRFY user, but will accept message",
                )),
            },
            "flaky" => Expansion::TemporaryFailure { reply: None },
            _ => Expansion::NotFound {
                reply: Some(RemoteReply::smtp(550, "5.1.1 User unknown")),
            },
        })
    }

    async fn expn(&self, directory: &str, address: &str) -> Result<Expansion, RpcError> {
        check(directory)?;
        Ok(match address {
            "staff" => Expansion::Found {
                values: vec!["<alice@example.org>".into(), "<bob@example.org>".into()],
                reply: Some(RemoteReply::smtp(250, "<bob@example.org>")),
            },
            _ => Expansion::NotFound {
                reply: Some(RemoteReply::smtp(550, "5.1.1 No such list")),
            },
        })
    }

    async fn is_local_domain(&self, directory: &str, domain: &str) -> Result<Answer, RpcError> {
        check(directory)?;
        Ok(if domain == "example.org" {
            Answer::yes()
        } else {
            Answer::no()
        })
    }

    async fn in_list(&self, list: &str, value: &str) -> Result<Answer, RpcError> {
        check(list)?;
        Ok(match (list, value) {
            ("corp/blocked-ips", "192.0.2.1") => Answer::yes(),
            ("remote/relay", _) => Answer::temporary_failure(),
            _ => Answer::no(),
        })
    }

    async fn remote_states(&self) -> Result<Vec<RemoteState>, RpcError> {
        Ok(table_states())
    }
}

/// What the table says of its remotes: one reachable, one not.
fn table_states() -> Vec<RemoteState> {
    vec![
        RemoteState {
            remote: "mailstore".into(),
            reachability: Reachability::Reachable,
            checked_at: UNIX_EPOCH + Duration::from_millis(1_763_790_000_250),
        },
        RemoteState {
            remote: "relay".into(),
            reachability: Reachability::Unreachable {
                reason: "127.0.0.1:2525: greeting refused: 554 5.3.2 not now".into(),
            },
            checked_at: UNIX_EPOCH + Duration::from_millis(1_763_790_001_000),
        },
    ]
}

/// The table served on a loopback port, and a client of it.
struct Running {
    table: Arc<TableDirectory>,
    endpoint: String,
    client: GrpcDirectory,
}

async fn start() -> Running {
    let table = Arc::new(TableDirectory::default());
    let service: Arc<dyn DirectoryService> = table.clone();
    let endpoint = serve(Server::builder().add_service(directory::server(service))).await;
    let client = GrpcDirectory::connect(&endpoint).unwrap();
    Running {
        table,
        endpoint,
        client,
    }
}

fn auth(directory: &str, username: &str, mechanism: Mechanism, secret: &[u8]) -> AuthRequest {
    AuthRequest {
        directory: directory.into(),
        mechanism,
        username: username.into(),
        secret: SecretSlice::from(secret.to_vec()),
        authzid: Some("admin".into()),
        client: "2001:db8::25".parse().unwrap(),
    }
}

/// Names the variant, for comparing errors (which carry no `PartialEq`).
fn variant(error: &RpcError) -> &'static str {
    match error {
        RpcError::InvalidEndpoint { .. } => "invalid-endpoint",
        RpcError::Transport(_) => "transport",
        RpcError::Protocol(_) => "protocol",
        RpcError::InvalidArgument(_) => "invalid-argument",
        RpcError::Unavailable(_) => "unavailable",
        RpcError::Internal(_) => "internal",
    }
}

#[tokio::test]
async fn answers_through_grpc_equal_answers_in_process() {
    let Running { table, client, .. } = start().await;
    let users = [
        ("alice", Mechanism::Plain, PASSWORD),
        ("alice", Mechanism::Login, PASSWORD),
        ("alice", Mechanism::Plain, b"wrong".as_slice()),
        ("busy", Mechanism::Login, PASSWORD),
        ("blocked", Mechanism::Plain, PASSWORD),
    ];
    for (username, mechanism, secret) in users {
        let local = table
            .authenticate(auth("corp", username, mechanism, secret))
            .await
            .unwrap();
        let remote = guarded(client.authenticate(auth("corp", username, mechanism, secret)))
            .await
            .unwrap();
        assert_eq!(remote, local, "authenticate {username}");
        if username == "blocked" {
            assert_eq!(remote.verdict, Verdict::Blocked);
        }
    }
    for address in [
        "alice@example.org",
        "nobody@example.org",
        "flaky@example.org",
        "cached@example.org",
        "full@example.org",
    ] {
        let local = table.verify_recipient("corp", address).await.unwrap();
        let remote = guarded(client.verify_recipient("corp", address))
            .await
            .unwrap();
        assert_eq!(remote, local, "verify_recipient {address}");
    }
    for address in ["alice", "hidden", "flaky", "nobody"] {
        let local = table.vrfy("corp", address).await.unwrap();
        let remote = guarded(client.vrfy("corp", address)).await.unwrap();
        assert_eq!(remote, local, "vrfy {address}");
    }
    for list in ["staff", "nobody"] {
        let local = table.expn("corp", list).await.unwrap();
        let remote = guarded(client.expn("corp", list)).await.unwrap();
        assert_eq!(remote, local, "expn {list}");
    }
    for domain in ["example.org", "example.net"] {
        let local = table.is_local_domain("corp", domain).await.unwrap();
        let remote = guarded(client.is_local_domain("corp", domain))
            .await
            .unwrap();
        assert_eq!(remote, local, "is_local_domain {domain}");
    }
    for (list, value) in [
        ("corp/blocked-ips", "192.0.2.1"),
        ("corp/blocked-ips", "192.0.2.2"),
        ("remote/relay", "x"),
    ] {
        let local = table.in_list(list, value).await.unwrap();
        let remote = guarded(client.in_list(list, value)).await.unwrap();
        assert_eq!(remote, local, "in_list {list} {value}");
    }
}

#[tokio::test]
async fn secret_reaches_the_server_intact_and_never_shows_in_debug() {
    let Running { table, client, .. } = start().await;
    let request = auth("corp", "alice", Mechanism::Plain, PASSWORD);
    let printable = String::from_utf8_lossy(PASSWORD).into_owned();
    let debug = format!("{request:?}");
    assert!(!debug.contains("correct horse"), "{debug}");
    assert!(debug.contains("alice"), "{debug}");

    let answer = guarded(client.authenticate(request)).await.unwrap();
    assert!(answer.is_yes());
    assert_eq!(*table.secrets_seen.lock().unwrap(), vec![PASSWORD.to_vec()]);

    // The wire message's Debug is redacted as well, should anything log it.
    let wire = proto::AuthenticateRequest {
        directory: "corp".into(),
        mechanism: proto::Mechanism::Plain.into(),
        username: "alice".into(),
        secret: PASSWORD.to_vec(),
        authzid: None,
        client_address: "192.0.2.1".into(),
    };
    let debug = format!("{wire:?}");
    assert!(!debug.contains("correct horse"), "{debug}");
    assert!(!debug.contains(&printable), "{debug}");
    assert!(
        !debug.contains(&format!("{:?}", PASSWORD.to_vec())),
        "{debug}"
    );
}

#[tokio::test]
async fn vrfy_cannot_tell_stays_cannot_tell() {
    let Running { client, .. } = start().await;
    let expansion = guarded(client.vrfy("corp", "hidden")).await.unwrap();
    match expansion {
        Expansion::CannotTell { reply: Some(reply) } => assert_eq!(reply.code, 252),
        other => panic!("expected CannotTell with the 252 reply, got {other:?}"),
    }
}

#[tokio::test]
async fn each_error_variant_round_trips() {
    let Running { table, client, .. } = start().await;
    for kind in [
        "protocol",
        "invalid-argument",
        "unavailable",
        "internal",
        "transport",
    ] {
        let directory = format!("err-{kind}");
        let local = table
            .verify_recipient(&directory, "alice@example.org")
            .await
            .unwrap_err();
        let remote = guarded(client.verify_recipient(&directory, "alice@example.org"))
            .await
            .unwrap_err();
        assert_eq!(variant(&remote), variant(&local), "{remote}");
        assert_eq!(variant(&remote), kind);
        match (&local, &remote) {
            (RpcError::Transport(local), RpcError::Transport(remote)) => {
                assert_eq!(remote.message(), local.message());
            }
            _ => assert_eq!(remote.to_string(), local.to_string()),
        }
    }
}

#[tokio::test]
async fn closed_port_is_a_transport_error() {
    let client = GrpcDirectory::connect(&closed_endpoint().await).unwrap();
    let error = guarded(client.verify_recipient("corp", "alice@example.org"))
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::Transport(_)), "{error:?}");
}

#[tokio::test]
async fn bad_endpoint_is_refused_at_construction() {
    for endpoint in ["https://directory:7000", "http://exa mple:1"] {
        let error = GrpcDirectory::connect(endpoint).unwrap_err();
        assert!(
            matches!(error, RpcError::InvalidEndpoint { .. }),
            "{endpoint}: {error:?}"
        );
    }
}

/// A raw server that breaks the contract, to check the client turns each break into an error.
struct ContractBreaker;

#[async_trait]
impl proto::directory_server::Directory for ContractBreaker {
    async fn authenticate(
        &self,
        _: Request<proto::AuthenticateRequest>,
    ) -> Result<Response<proto::Answer>, Status> {
        Ok(Response::new(proto::Answer {
            verdict: proto::Verdict::Unspecified.into(),
            reply: None,
        }))
    }

    async fn verify_recipient(
        &self,
        _: Request<proto::AddressRequest>,
    ) -> Result<Response<proto::Answer>, Status> {
        Ok(Response::new(proto::Answer {
            verdict: proto::Verdict::Yes.into(),
            reply: Some(proto::RemoteReply {
                code: 2500,
                text: "2.1.5 OK".into(),
            }),
        }))
    }

    async fn vrfy(
        &self,
        _: Request<proto::AddressRequest>,
    ) -> Result<Response<proto::Expansion>, Status> {
        Ok(Response::new(proto::Expansion {
            result: proto::ExpansionResult::Unspecified.into(),
            values: Vec::new(),
            reply: None,
        }))
    }

    async fn expn(
        &self,
        _: Request<proto::AddressRequest>,
    ) -> Result<Response<proto::Expansion>, Status> {
        Ok(Response::new(proto::Expansion {
            result: proto::ExpansionResult::NotFound.into(),
            values: vec!["<alice@example.org>".into()],
            reply: None,
        }))
    }

    async fn is_local_domain(
        &self,
        _: Request<proto::DomainRequest>,
    ) -> Result<Response<proto::Answer>, Status> {
        Ok(Response::new(proto::Answer {
            verdict: 17,
            reply: None,
        }))
    }

    async fn in_list(
        &self,
        _: Request<proto::InListRequest>,
    ) -> Result<Response<proto::Answer>, Status> {
        Err(Status::unimplemented("not here"))
    }
    async fn remote_states(
        &self,
        _: Request<proto::RemoteStatesRequest>,
    ) -> Result<Response<proto::RemoteStatesReply>, Status> {
        let state = |remote: &str, reachability: proto::Reachability, ms: i64, reason: &str| {
            proto::RemoteState {
                remote: remote.into(),
                reachability: reachability.into(),
                checked_at_unix_ms: ms,
                reason: reason.into(),
            }
        };
        Ok(Response::new(proto::RemoteStatesReply {
            remotes: vec![
                state("", proto::Reachability::Reachable, 1, ""),
                state("good", proto::Reachability::Reachable, 1_000, ""),
                state("unspecified", proto::Reachability::Unspecified, 1, ""),
                state("negative-time", proto::Reachability::Reachable, -1, ""),
                state("silent", proto::Reachability::Unreachable, 1, ""),
                state("down", proto::Reachability::Unreachable, 2_000, "refused"),
            ],
        }))
    }

    // A limiter reply (a flag and a count) has nothing that can break the contract.
    async fn take_rate(
        &self,
        _: Request<proto::TakeRateRequest>,
    ) -> Result<Response<proto::LimitReply>, Status> {
        Err(Status::unimplemented("not part of this test"))
    }

    async fn take_slot(
        &self,
        _: Request<proto::TakeSlotRequest>,
    ) -> Result<Response<proto::LimitReply>, Status> {
        Err(Status::unimplemented("not part of this test"))
    }

    async fn release_slot(
        &self,
        _: Request<proto::ReleaseSlotRequest>,
    ) -> Result<Response<proto::ReleaseSlotReply>, Status> {
        Err(Status::unimplemented("not part of this test"))
    }
}

#[tokio::test]
async fn contract_breaks_from_the_wire_are_errors_not_answers() {
    let router = Server::builder().add_service(proto::directory_server::DirectoryServer::new(
        ContractBreaker,
    ));
    let client = GrpcDirectory::connect(&serve(router).await).unwrap();

    let unspecified = guarded(client.authenticate(auth("corp", "alice", Mechanism::Plain, b"x")))
        .await
        .unwrap_err();
    assert!(
        matches!(unspecified, RpcError::Protocol(_)),
        "{unspecified:?}"
    );

    let code_too_big = guarded(client.verify_recipient("corp", "alice@example.org"))
        .await
        .unwrap_err();
    assert!(
        matches!(code_too_big, RpcError::Protocol(_)),
        "{code_too_big:?}"
    );

    let no_result = guarded(client.vrfy("corp", "alice")).await.unwrap_err();
    assert!(matches!(no_result, RpcError::Protocol(_)), "{no_result:?}");

    let values_not_found = guarded(client.expn("corp", "staff")).await.unwrap_err();
    assert!(
        matches!(values_not_found, RpcError::Protocol(_)),
        "{values_not_found:?}"
    );

    let unknown_verdict = guarded(client.is_local_domain("corp", "example.org"))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown_verdict, RpcError::Protocol(_)),
        "{unknown_verdict:?}"
    );

    // A status no ferrymail service produced says nothing about the directory.
    let unmarked = guarded(client.in_list("corp/x", "y")).await.unwrap_err();
    assert!(matches!(unmarked, RpcError::Transport(_)), "{unmarked:?}");

    // Broken remote states are left out one by one; the good ones still arrive.
    let states = guarded(client.remote_states()).await.unwrap();
    let ids: Vec<&str> = states.iter().map(|s| s.remote.as_str()).collect();
    assert_eq!(ids, ["good", "down"], "{states:?}");
    assert!(states[0].is_reachable());
    assert_eq!(
        states[1].reachability,
        Reachability::Unreachable {
            reason: "refused".into()
        }
    );
}

#[tokio::test]
async fn remote_states_through_grpc_equal_remote_states_in_process() {
    let Running { table, client, .. } = start().await;
    let local = table.remote_states().await.unwrap();
    let remote = guarded(client.remote_states()).await.unwrap();
    assert_eq!(remote, local);
    assert_eq!(remote, table_states());
}

#[tokio::test]
async fn unspecified_mechanism_from_a_raw_client_is_invalid_argument() {
    let Running {
        table, endpoint, ..
    } = start().await;
    let mut raw = proto::directory_client::DirectoryClient::connect(endpoint)
        .await
        .unwrap();
    let status = guarded(raw.authenticate(proto::AuthenticateRequest {
        directory: "corp".into(),
        mechanism: proto::Mechanism::Unspecified.into(),
        username: "alice".into(),
        secret: PASSWORD.to_vec(),
        authzid: None,
        client_address: "192.0.2.1".into(),
    }))
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(table.secrets_seen.lock().unwrap().is_empty());
}
