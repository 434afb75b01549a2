//! The milter client against a scripted fake milter: a TCP listener replaying bytes.
//!
//! The fake stands for broken peers no real milter produces (down, silent, garbage,
//! oversized or truncated packets, a connection closed mid-message, actions it did not
//! negotiate), and for checking the order of the steps byte by byte. Real milters (rspamd,
//! OpenDKIM) are tested in `real_peers`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrymail_config::model::milter::Milter;
use ferrymail_config::model::stage_rules::Stage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::codec::{Packet, read_packet, strings};
use super::session::MilterSession;
use crate::filter::{Action, Filter, FilterRequest, Modification, SessionFacts, TransactionFacts};

/// What the fake does on receiving a packet.
enum Act {
    /// Answers with these bytes.
    Send(Vec<u8>),
    /// Says nothing (macros, abort, quit).
    Nothing,
    /// Never answers.
    Hang,
    /// Closes the connection.
    Close,
}

/// A reply packet's bytes.
fn reply(code: u8, data: &[u8]) -> Vec<u8> {
    Packet::new(code, data.to_vec()).encode()
}

/// The option negotiation reply: version 6, `actions`, no protocol steps left out.
fn optneg(actions: u32) -> Vec<u8> {
    let mut data = 6u32.to_be_bytes().to_vec();
    data.extend(actions.to_be_bytes());
    data.extend(0u32.to_be_bytes());
    reply(b'O', &data)
}

/// The usual answers: negotiate every action, continue at every step, nothing to macros.
fn usual(packet: &Packet) -> Act {
    match packet.code {
        b'O' => Act::Send(optneg(0xff)),
        b'D' | b'A' | b'Q' => Act::Nothing,
        b'E' => Act::Send(reply(b'a', b"")),
        _ => Act::Send(reply(b'c', b"")),
    }
}

type Script = Arc<dyn Fn(&Packet) -> Act + Send + Sync>;

/// Starts a fake milter answering with `script`; returns its address and the command codes
/// it received, in order.
async fn fake(script: Script) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, script.clone(), log.clone()));
        }
    });
    (address, seen)
}

async fn serve(mut stream: TcpStream, script: Script, seen: Arc<Mutex<Vec<u8>>>) {
    while let Ok(packet) = read_packet(&mut stream, 1 << 20).await {
        seen.lock().unwrap().push(packet.code);
        match script(&packet) {
            Act::Send(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Act::Nothing => {}
            Act::Hang => {
                let _ = stream.read(&mut [0u8; 1]).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Act::Close => return,
        }
    }
}

fn config(address: SocketAddr, stages: &[Stage], tempfail: bool) -> Arc<Milter> {
    Arc::new(Milter {
        id: "fake".into(),
        hostname: address.ip().to_string(),
        port: address.port(),
        stages: stages.to_vec(),
        tls: false,
        allow_invalid_certs: false,
        timeout_connect: Duration::from_secs(5),
        timeout_command: Duration::from_secs(5),
        timeout_data: Duration::from_millis(300),
        tempfail_on_error: tempfail,
        max_response_size: 4096,
        version: 6,
        actions: 0xff,
        protocol: 0x42,
    })
}

fn session() -> SessionFacts {
    SessionFacts {
        client: "192.0.2.7:40000".parse().unwrap(),
        local: "127.0.0.1:25".parse().unwrap(),
        client_name: Some("client.example.net".into()),
        hostname: "mx.example.org".into(),
        listener: "smtp".into(),
        lmtp: false,
        helo: Some("client.example.net".into()),
        tls: None,
        authenticated_as: None,
        auth_mechanism: None,
    }
}

fn transaction() -> TransactionFacts {
    TransactionFacts {
        sender: "alice@example.net".into(),
        sender_params: vec!["BODY=8BITMIME".into()],
        recipients: vec!["bob@example.org".into(), "carol@example.org".into()],
        queue_id: Some("0123456789abcdef".into()),
    }
}

const MESSAGE: &[u8] = b"Received: from client.example.net\r\nFrom: alice@example.net\r\n\
Subject: hello\r\n\r\nHello Bob.\r\n";

/// Asks `filter` at DATA with the whole message.
async fn at_data(filter: &mut MilterSession) -> crate::filter::Verdict {
    let session = session();
    let transaction = transaction();
    let request = FilterRequest {
        stage: Stage::Data,
        session: &session,
        transaction: Some(&transaction),
        recipient: None,
        message: Some(MESSAGE),
    };
    filter.check(&request).await
}

/// Whether the verdict is the `451 4.3.0` of a broken milter.
fn is_filter_tempfail(verdict: &crate::filter::Verdict) -> bool {
    matches!(&verdict.action, Action::TempFail(r) if r.0.starts_with("451 4.3.0"))
        && verdict.modifications.is_empty()
}

/// A fake milter that follows `usual` but does `at_eom` at the end of message.
async fn with_eom(at_eom: impl Fn() -> Act + Send + Sync + 'static) -> SocketAddr {
    let script: Script =
        Arc::new(move |p: &Packet| if p.code == b'E' { at_eom() } else { usual(p) });
    fake(script).await.0
}

#[tokio::test]
async fn steps_missed_are_sent_in_protocol_order_at_data() {
    let (address, seen) = fake(Arc::new(usual)).await;
    let mut filter = MilterSession::new(config(address, &[Stage::Data], true));
    assert!(filter.wants(Stage::Data) && !filter.wants(Stage::Rcpt));
    let verdict = at_data(&mut filter).await;
    assert!(matches!(verdict.action, Action::Accept), "{verdict:?}");
    filter.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let commands: Vec<u8> = seen
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&c| c != b'D')
        .collect();
    assert_eq!(
        String::from_utf8(commands).unwrap(),
        "OCHMRRTLLLNBEQ",
        "negotiate, connect, helo, mail, two rcpt, data, three fields, eoh, body, eom, quit"
    );
}

#[tokio::test]
async fn a_milter_that_is_down_defers_or_is_passed_over() {
    let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = unused.local_addr().unwrap();
    drop(unused);
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        false,
    )))
    .await;
    assert!(matches!(verdict.action, Action::Continue) && verdict.modifications.is_empty());
}

#[tokio::test]
async fn a_slow_milter_times_out() {
    let address = with_eom(|| Act::Hang).await;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");
}

#[tokio::test]
async fn garbage_is_an_error_not_a_verdict() {
    let address = with_eom(|| Act::Send(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec())).await;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");
    // An unknown reply code in a well-formed packet.
    let address = with_eom(|| Act::Send(reply(b'Z', b""))).await;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");
}

#[tokio::test]
async fn an_oversized_packet_is_refused() {
    let address = with_eom(|| {
        let value = "x".repeat(5000);
        Act::Send(reply(b'h', &strings(&["X-Big", value.as_str()])))
    })
    .await;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");
}

#[tokio::test]
async fn a_truncated_packet_or_a_close_mid_message_leaves_nothing_applied() {
    let address = with_eom(|| {
        let mut bytes = reply(b'h', &strings(&["X-Spam", "yes"]));
        let full = reply(b'h', &strings(&["X-Spam-Score", "10"]));
        bytes.extend_from_slice(&full[..full.len() - 3]);
        Act::Send(bytes)
    })
    .await;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");

    let script: Script = Arc::new(|p: &Packet| if p.code == b'B' { Act::Close } else { usual(p) });
    let address = fake(script).await.0;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");

    // Modifications followed by a close, with tempfail-on-error off: the message goes on
    // unchanged, never half edited.
    let address = with_eom(|| Act::Send(reply(b'h', &strings(&["X-Spam", "yes"])))).await;
    let mut filter = MilterSession::new(config(address, &[Stage::Data], false));
    let verdict = at_data(&mut filter).await;
    assert!(matches!(verdict.action, Action::Continue) && verdict.modifications.is_empty());
}

#[tokio::test]
async fn an_action_not_negotiated_is_an_error() {
    let script: Script = Arc::new(|p: &Packet| match p.code {
        b'O' => Act::Send(optneg(0x01)),
        b'E' => {
            let mut bytes = reply(b'h', &strings(&["X-A", "1"]));
            bytes.extend(reply(b'-', &strings(&["<bob@example.org>"])));
            bytes.extend(reply(b'c', b""));
            Act::Send(bytes)
        }
        _ => usual(p),
    });
    let address = fake(script).await.0;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");

    // Asking at negotiation for more than was offered.
    let script: Script = Arc::new(|p: &Packet| match p.code {
        b'O' => Act::Send(optneg(0x1ff)),
        _ => usual(p),
    });
    let address = fake(script).await.0;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");
}

#[tokio::test]
async fn every_modification_arrives_with_the_final_answer() {
    let address = with_eom(|| {
        let mut bytes = reply(b'h', &strings(&["X-Spam", "no"]));
        let mut insert = 0u32.to_be_bytes().to_vec();
        insert.extend(strings(&["X-First", "1"]));
        bytes.extend(reply(b'i', &insert));
        let mut change = 1u32.to_be_bytes().to_vec();
        change.extend(strings(&["Subject", ""]));
        bytes.extend(reply(b'm', &change));
        bytes.extend(reply(b'p', b""));
        bytes.extend(reply(b'b', b"New "));
        bytes.extend(reply(b'b', b"body.\r\n"));
        bytes.extend(reply(b'+', &strings(&["<dave@example.org>"])));
        bytes.extend(reply(
            b'2',
            &strings(&["<erin@example.org>", "NOTIFY=NEVER"]),
        ));
        bytes.extend(reply(b'-', &strings(&["<bob@example.org>"])));
        bytes.extend(reply(b'e', &strings(&["<bounce@example.net>"])));
        bytes.extend(reply(b'c', b""));
        Act::Send(bytes)
    })
    .await;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(matches!(verdict.action, Action::Continue), "{verdict:?}");
    let address = |a: &str| a.to_owned();
    assert_eq!(
        verdict.modifications,
        [
            Modification::AddHeader {
                name: "X-Spam".into(),
                value: "no".into()
            },
            Modification::InsertHeader {
                index: 0,
                name: "X-First".into(),
                value: "1".into()
            },
            Modification::ChangeHeader {
                name: "Subject".into(),
                index: 1,
                value: None
            },
            Modification::AddRecipient {
                address: address("dave@example.org")
            },
            Modification::AddRecipient {
                address: address("erin@example.org")
            },
            Modification::DeleteRecipient {
                address: address("bob@example.org")
            },
            Modification::ChangeSender {
                address: address("bounce@example.net")
            },
            Modification::ReplaceBody(b"New body.\r\n".to_vec()),
        ]
    );
}

#[tokio::test]
async fn refusals_keep_their_class_and_drop_modifications() {
    let address = with_eom(|| {
        let mut bytes = reply(b'h', &strings(&["X-Spam", "yes"]));
        bytes.extend(reply(b'y', &strings(&["554 5.7.1 Gtube pattern"])));
        Act::Send(bytes)
    })
    .await;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(matches!(&verdict.action, Action::Reject(r) if r.0 == "554 5.7.1 Gtube pattern\r\n"));
    assert!(verdict.modifications.is_empty());

    for (code, expected) in [(b't', "451 4.7.1"), (b'r', "550 5.7.1")] {
        let address = with_eom(move || Act::Send(reply(code, b""))).await;
        let verdict = at_data(&mut MilterSession::new(config(
            address,
            &[Stage::Data],
            true,
        )))
        .await;
        let text = match &verdict.action {
            Action::TempFail(r) | Action::Reject(r) => r.0.clone(),
            other => panic!("{other:?}"),
        };
        assert!(text.starts_with(expected), "{text}");
    }

    let address = with_eom(|| {
        let mut bytes = reply(b'q', &strings(&["virus found"]));
        bytes.extend(reply(b'a', b""));
        Act::Send(bytes)
    })
    .await;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(matches!(&verdict.action, Action::Quarantine(r) if r == "virus found"));

    let address = with_eom(|| Act::Send(reply(b'd', b""))).await;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(matches!(verdict.action, Action::Discard));

    // A reply code that is not a refusal is a broken milter, not a 2xx for the client.
    let address = with_eom(|| Act::Send(reply(b'y', &strings(&["250 2.0.0 fine"])))).await;
    let verdict = at_data(&mut MilterSession::new(config(
        address,
        &[Stage::Data],
        true,
    )))
    .await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");
}

#[tokio::test]
async fn a_recipient_refused_at_rcpt_and_an_abort() {
    let script: Script = Arc::new(|p: &Packet| match p.code {
        b'R' if p.data.starts_with(b"<mallory@") => {
            Act::Send(reply(b'y', &strings(&["550 5.1.1 No such user"])))
        }
        _ => usual(p),
    });
    let (address, seen) = fake(script).await;
    let mut filter = MilterSession::new(config(address, &[Stage::Mail, Stage::Rcpt], true));
    let session = session();
    let mut transaction = transaction();
    transaction.recipients.clear();
    let mail = FilterRequest {
        stage: Stage::Mail,
        session: &session,
        transaction: Some(&transaction),
        recipient: None,
        message: None,
    };
    assert!(matches!(filter.check(&mail).await.action, Action::Continue));
    let rcpt = FilterRequest {
        stage: Stage::Rcpt,
        recipient: Some(("mallory@example.org", &[])),
        ..mail
    };
    let refused = filter.check(&rcpt).await;
    assert!(matches!(&refused.action, Action::Reject(r) if r.0.starts_with("550 5.1.1")));
    filter.abort().await;
    filter.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let commands: Vec<u8> = seen
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&c| c != b'D')
        .collect();
    assert_eq!(String::from_utf8(commands).unwrap(), "OCHMRAQ");
}

#[tokio::test]
async fn a_refusal_before_the_end_of_message_is_followed_by_abort() {
    let script: Script = Arc::new(|p: &Packet| match p.code {
        b'L' if p.data.starts_with(b"Subject\0") => {
            Act::Send(reply(b'y', &strings(&["550 5.7.0 Subject refused"])))
        }
        _ => usual(p),
    });
    let (address, seen) = fake(script).await;
    let mut filter = MilterSession::new(config(address, &[Stage::Data], true));
    let verdict = at_data(&mut filter).await;
    assert!(matches!(&verdict.action, Action::Reject(r) if r.0.starts_with("550 5.7.0")));
    filter.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let commands: Vec<u8> = seen
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&c| c != b'D')
        .collect();
    assert_eq!(String::from_utf8(commands).unwrap(), "OCHMRRTLLLAQ");
}

#[tokio::test]
async fn version_2_has_no_data_step() {
    let script: Script = Arc::new(|p: &Packet| match p.code {
        // Only an offer of version 2 with version 2's actions is answered.
        b'O' if p.data[..8] != [0, 0, 0, 2, 0, 0, 0, 0x3f] => Act::Close,
        b'O' => {
            let mut data = 2u32.to_be_bytes().to_vec();
            data.extend(0x3fu32.to_be_bytes());
            Act::Send(reply(b'O', &data))
        }
        _ => usual(p),
    });
    let (address, seen) = fake(script).await;
    let mut milter = (*config(address, &[Stage::Data], true)).clone();
    (milter.version, milter.actions) = (2, 0x3f);
    let mut filter = MilterSession::new(Arc::new(milter));
    let verdict = at_data(&mut filter).await;
    assert!(matches!(verdict.action, Action::Accept), "{verdict:?}");
    let commands: Vec<u8> = seen
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&c| c != b'D')
        .collect();
    assert_eq!(String::from_utf8(commands).unwrap(), "OCHMRRLLLNBE");
}

fn ehlo(session: &SessionFacts) -> FilterRequest<'_> {
    FilterRequest {
        stage: Stage::Ehlo,
        session,
        transaction: None,
        recipient: None,
        message: None,
    }
}

#[tokio::test]
async fn ehlo_after_starttls_is_told_again_with_the_tls_macros() {
    let (address, seen) = fake(Arc::new(usual)).await;
    let mut filter = MilterSession::new(config(address, &[Stage::Ehlo], true));
    let mut session = session();
    assert!(matches!(
        filter.check(&ehlo(&session)).await.action,
        Action::Continue
    ));
    assert!(matches!(
        filter.check(&ehlo(&session)).await.action,
        Action::Continue
    ));
    session.tls = Some(("TLSv1.3".into(), "TLS13_AES_256_GCM_SHA384".into()));
    assert!(matches!(
        filter.check(&ehlo(&session)).await.action,
        Action::Continue
    ));
    let commands: Vec<u8> = seen.lock().unwrap().clone();
    // The same EHLO twice is told once (no macros before it: no TLS yet); after STARTTLS,
    // again, with the TLS macros first.
    assert_eq!(String::from_utf8(commands).unwrap(), "ODCHDH");
}

#[tokio::test]
async fn each_time_limit_applies_to_its_step() {
    // Silent at option negotiation: `timeout.connect`.
    let script: Script = Arc::new(|p: &Packet| if p.code == b'O' { Act::Hang } else { usual(p) });
    let address = fake(script).await.0;
    let mut milter = (*config(address, &[Stage::Data], true)).clone();
    milter.timeout_connect = Duration::from_millis(300);
    let verdict = at_data(&mut MilterSession::new(Arc::new(milter))).await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");

    // Silent after MAIL: `timeout.command`, even with a long `timeout.data`.
    let script: Script = Arc::new(|p: &Packet| if p.code == b'M' { Act::Hang } else { usual(p) });
    let address = fake(script).await.0;
    let mut milter = (*config(address, &[Stage::Data], true)).clone();
    (milter.timeout_command, milter.timeout_data) =
        (Duration::from_millis(300), Duration::from_secs(3600));
    let verdict = at_data(&mut MilterSession::new(Arc::new(milter))).await;
    assert!(is_filter_tempfail(&verdict), "{verdict:?}");
}
