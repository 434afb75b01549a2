//! `ferrymail all` with its data on a filesystem that fills up: every message is answered
//! 250 or 451 (never 5xx, never lost), `/readyz` names the store while it cannot write, and
//! once there is room again the process recovers without a restart and delivers every
//! message it acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, Ferrymail, HttpResponse, PEER_PATIENCE, SmallFilesystem,
    SmtpSink, SmtpSinkOptions, embedded_store, http_get, python, relay_config,
};

/// Sends messages `first..last` (subject `full-disk-N`, 200 kB each), one per session;
/// prints `N code` for each answer to DATA (or to the command that refused it).
fn send(smtp: SocketAddr, first: u32, last: u32) -> Vec<(u32, u16)> {
    let out = python(&format!(
        r#"
import smtplib
body = b"x" * 998 + b"\r\n"
for n in range({first}, {last}):
    message = b"Subject: full-disk-%d\r\n\r\n" % n + body * 200
    try:
        s = smtplib.SMTP("{host}", {port}, timeout=60)
        s.sendmail("sender@remote.test", ["{rcpt}"], message)
        print(n, 250)
        s.quit()
    except smtplib.SMTPResponseException as e:
        print(n, e.smtp_code)
    except smtplib.SMTPRecipientsRefused as e:
        print(n, list(e.recipients.values())[0][0])
"#,
        host = smtp.ip(),
        port = smtp.port(),
        rcpt = ALICE.0,
    ));
    out.lines()
        .map(|line| {
            let (n, code) = line.split_once(' ').unwrap();
            (n.parse().unwrap(), code.parse().unwrap())
        })
        .collect()
}

/// Polls `/readyz` until `done` holds for its answer.
fn wait_readyz(
    admin: SocketAddr,
    what: &str,
    done: impl Fn(&HttpResponse) -> bool,
) -> HttpResponse {
    let deadline = Instant::now() + PEER_PATIENCE * 2;
    loop {
        let response = http_get(admin, "/readyz").unwrap();
        if done(&response) {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never became {what}: {} {}",
            response.status,
            response.body
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_makes_the_process_unready_until_there_is_room_and_loses_nothing() {
    let mut fs = match SmallFilesystem::mount(64 << 20) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!(
                "skipped: this test fills a filesystem of its own and cannot mount one: {why}"
            );
            return;
        }
    };
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let store = embedded_store(&fs.path().join("data"));
    let mut process = Ferrymail::start("all", &relay_config(&store, &dovecot, &sink, ""));
    let smtp = process.address("smtp");
    let admin = process.address("admin");
    wait_readyz(admin, "ready", |r| r.status == 200);

    tokio::task::block_in_place(|| {
        assert_eq!(send(smtp, 0, 1), [(0, 250)]);
        sink.wait_for_messages(1);
        // Room for a few of the messages below, not for all of them.
        fs.fill_leaving(4 << 20);

        let answers = send(smtp, 1, 60);
        assert!(
            answers
                .iter()
                .all(|(_, code)| matches!(code, 250 | 451 | 452)),
            "a full disk is a temporary refusal, never a 5xx: {answers:?}"
        );
        let refused = answers.iter().filter(|(_, code)| *code != 250).count();
        assert!(refused > 0, "the disk never filled up: {answers:?}");
        let unready = wait_readyz(admin, "unready naming the store", |r| {
            r.status == 503 && r.body.contains("store: ")
        });
        assert!(
            unready.body.contains("No space left on device"),
            "{}",
            unready.body
        );

        fs.release_all();
        wait_readyz(admin, "ready again", |r| r.status == 200);
        let after = send(smtp, 100, 101);
        assert_eq!(after, [(100, 250)]);

        // Every acknowledged message reaches the sink (some twice, at worst: a delivery
        // whose result could not be recorded is made again).
        let acknowledged: Vec<u32> = std::iter::once(0)
            .chain(answers.iter().filter(|(_, c)| *c == 250).map(|(n, _)| *n))
            .chain(std::iter::once(100))
            .collect();
        let deadline = Instant::now() + PEER_PATIENCE * 2;
        loop {
            let delivered = sink.messages();
            let missing: Vec<u32> = acknowledged
                .iter()
                .copied()
                .filter(|n| {
                    let subject = format!("Subject: full-disk-{n}");
                    !delivered
                        .iter()
                        .any(|m| m.lines().any(|l| l.trim_end() == subject))
                })
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "acknowledged but never delivered: {missing:?}\n{}",
                process.dump()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}
