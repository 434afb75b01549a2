//! The fuzz targets' harness on the stable toolchain: replays the seed corpus, then a few
//! thousand inputs built and mutated by a seeded generator, and checks every session with
//! the properties the fuzz target checks (`session_harness::check`). Deterministic: the
//! same seed gives the same inputs on every run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ferrymail_smtp_ingress::session_harness::{self, Protocol, Transcript};

/// Seeds of the `smtp_session` fuzz target: real sessions.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/smtp_session");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path: PathBuf = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "the seed corpus is missing");
    seeds
}

/// Runs `input` and fails the test, showing the input and the replies, when a property
/// does not hold.
fn run_checked(protocol: Protocol, input: &[u8], write_size: usize) -> Transcript {
    let transcript = session_harness::run_session(protocol, input, write_size);
    if let Err(why) = session_harness::check(protocol, &transcript) {
        panic!(
            "{why}\nprotocol: {protocol:?}, write size {write_size}\ninput: {:?}\noutput:\n{}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&transcript.output)
        );
    }
    transcript
}

fn output(transcript: &Transcript) -> String {
    String::from_utf8_lossy(&transcript.output).into_owned()
}

#[test]
fn every_seed_session_keeps_the_properties_whatever_the_read_sizes() {
    for (name, input) in corpus() {
        for protocol in [Protocol::Smtp, Protocol::Lmtp] {
            // Whole, one byte at a time, and in pieces that cut lines anywhere.
            for write_size in [64 * 1024, 1, 7] {
                let started = std::time::Instant::now();
                run_checked(protocol, &input, write_size);
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(2),
                    "seed {name} took {:?}",
                    started.elapsed()
                );
            }
        }
    }
}

/// The harness really drives sessions: the seeds reach the queue, the refusals and the
/// directory's answers. Without this, a harness that sent nothing would pass everything.
#[test]
fn the_seeds_reach_what_they_were_written_for() {
    let seeds = corpus();
    let seed = |name: &str| {
        seeds
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, input)| input.clone())
            .unwrap_or_else(|| panic!("no seed {name}"))
    };

    let one = run_checked(Protocol::Smtp, &seed("one-message"), 64 * 1024);
    assert_eq!(one.committed, ["FUZZ1"], "{}", output(&one));
    assert!(output(&one).contains("250 2.0.0 Message queued as FUZZ1\r\n221 "));

    let two = run_checked(Protocol::Smtp, &seed("helo-no-rset"), 1);
    assert_eq!(two.committed.len(), 2, "{}", output(&two));

    let bdat = run_checked(Protocol::Smtp, &seed("bdat"), 7);
    assert_eq!(bdat.committed.len(), 1, "{}", output(&bdat));
    assert!(output(&bdat).contains("250 2.0.0 14 octets received"));

    let refused = run_checked(Protocol::Smtp, &seed("queue-refusals"), 64 * 1024);
    assert!(refused.committed.is_empty(), "{}", output(&refused));
    assert!(output(&refused).contains("451 4.3.0 "));
    assert!(output(&refused).contains("452 4.3.1 "));

    let relay = run_checked(Protocol::Smtp, &seed("auth-plain-relay"), 64 * 1024);
    assert!(output(&relay).contains("235 2.7.0 "), "{}", output(&relay));
    assert_eq!(relay.committed.len(), 1, "{}", output(&relay));

    let lookups = output(&run_checked(
        Protocol::Smtp,
        &seed("directory-failures"),
        64 * 1024,
    ));
    assert!(lookups.contains("451 4.4.3 "), "{lookups}");
    assert!(lookups.contains("450 4.7.1 Try later"), "{lookups}");
    assert!(lookups.contains("554 5.7.1 "), "{lookups}");

    let lmtp = run_checked(Protocol::Lmtp, &seed("lmtp"), 64 * 1024);
    let answers = output(&lmtp)
        .matches("250 2.0.0 Message queued as FUZZ1")
        .count();
    assert_eq!(
        answers,
        2,
        "one answer per accepted recipient: {}",
        output(&lmtp)
    );

    let cut = run_checked(Protocol::Smtp, &seed("data-then-eof"), 64 * 1024);
    assert!(cut.committed.is_empty(), "a cut message is never committed");
}

/// Pieces of real commands the generator strings together, valid and not.
const FRAGMENTS: &[&[u8]] = &[
    b"EHLO client.example.net\r\n",
    b"HELO client.example.net\r\n",
    b"LHLO client.example.net\r\n",
    b"EHLO blocked.test\r\n",
    b"MAIL FROM:<a@example.net>\r\n",
    b"MAIL FROM:<>\r\n",
    b"MAIL FROM:<x@blocked.test>\r\n",
    b"MAIL FROM:<a@example.net> SIZE=70000\r\n",
    b"MAIL FROM:<a@example.net> BODY=8BITMIME RET=FULL ENVID=abc SMTPUTF8\r\n",
    b"MAIL FROM:<a@example.net> HOLDFOR=60 MT-PRIORITY=9\r\n",
    b"RCPT TO:<bob@example.org>\r\n",
    b"RCPT TO:<unknown@example.org>\r\n",
    b"RCPT TO:<tempfail@example.org>\r\n",
    b"RCPT TO:<rpcfail@example.org>\r\n",
    b"RCPT TO:<friend@elsewhere.test>\r\n",
    b"RCPT TO:<user%elsewhere.test@example.org>\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org\r\n",
    b"DATA\r\n",
    b"Subject: x\r\n\r\nbody\r\n.\r\n",
    b"queue-fail\r\n.\r\n",
    b"queue-quota\r\n.\r\n",
    b"..dot-stuffed\r\n",
    b".\r\n",
    b"BDAT 5\r\nhello",
    b"BDAT 3 LAST\r\nend",
    b"BDAT 0 LAST\r\n",
    b"BDAT 99999999999999999999\r\n",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    b"AUTH PLAIN AGJvYgBub3Bl\r\n",
    b"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
    b"AUTH LOGIN dGVtcGZhaWw=\r\neA==\r\n",
    b"AUTH PLAIN\r\n*\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"VRFY alice\r\n",
    b"EXPN list\r\n",
    b"HELP\r\n",
    b"STARTTLS\r\n",
    b"\r\n",
    b"\n",
    b"\0",
    b"\xff\xfe",
    b"GARBAGE\r\n",
];

/// One generated input: fragments strung together, each sometimes damaged.
fn generated(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut input = Vec::new();
    for _ in 0..rng.usize(1..24) {
        let fragment = FRAGMENTS[rng.usize(..FRAGMENTS.len())];
        input.extend_from_slice(fragment);
        if rng.u8(..) < 40 {
            mutate(rng, &mut input);
        }
    }
    input
}

/// Flips, inserts, deletes, duplicates or truncates a little of `input`.
fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>) {
    if input.is_empty() {
        input.push(rng.u8(..));
        return;
    }
    let at = rng.usize(..input.len());
    match rng.u8(..6) {
        0 => input[at] ^= 1 << rng.u8(..8),
        1 => input.insert(at, rng.u8(..)),
        2 => {
            input.remove(at);
        }
        3 => {
            let end = (at + rng.usize(1..32)).min(input.len());
            let copy = input[at..end].to_vec();
            let to = rng.usize(..=input.len());
            input.splice(to..to, copy);
        }
        4 => input.truncate(at),
        _ => {
            // Interesting bytes for a line parser.
            let byte = [b'\r', b'\n', b'.', b'<', b'>', b':', b' ', b'=', 0][rng.usize(..9)];
            input.insert(at, byte);
        }
    }
}

#[test]
fn thousands_of_generated_and_mutated_sessions_keep_the_properties() {
    let seeds = corpus();
    let mut rng = fastrand::Rng::with_seed(0x5eed_f022);
    let mut committed = 0;
    for round in 0..3000 {
        let input = if round % 2 == 0 {
            generated(&mut rng)
        } else {
            let mut input = seeds[rng.usize(..seeds.len())].1.clone();
            for _ in 0..rng.usize(1..8) {
                mutate(&mut rng, &mut input);
            }
            input
        };
        let protocol = if round % 5 == 0 {
            Protocol::Lmtp
        } else {
            Protocol::Smtp
        };
        // Byte-at-a-time reads are the slowest; short inputs get them.
        let write_size = match rng.usize(..5) {
            0 if input.len() < 300 => 1,
            0 | 1 => 3 + rng.usize(..14),
            2 => 512,
            _ => 64 * 1024,
        };
        committed += run_checked(protocol, &input, write_size).committed.len();
    }
    // The generator must reach the end of DATA often, or it tests only the early stages.
    assert!(committed > 100, "only {committed} messages committed");
}

/// The properties catch what they are meant to: checked on transcripts written by hand.
#[test]
fn the_checks_refuse_bad_sessions() {
    let transcript = |output: &str, committed: &[&str]| Transcript {
        output: output.as_bytes().to_vec(),
        committed: committed.iter().map(|s| s.to_string()).collect(),
        violations: Vec::new(),
        ended: true,
    };
    let check = |t: &Transcript| session_harness::check(Protocol::Smtp, t);
    let good = "220 mx ESMTP\r\n250-mx\r\n250 PIPELINING\r\n354 go\r\n250 2.0.0 Message queued as FUZZ1\r\n221 2.0.0 Bye\r\n";
    assert_eq!(check(&transcript(good, &["FUZZ1"])), Ok(()));

    let refused = [
        // 250 for a message the queue did not commit.
        transcript(good, &[]),
        // A committed message the client never hears about.
        transcript(
            "220 mx\r\n354 go\r\n451 4.3.0 later\r\n221 2.0.0 Bye\r\n",
            &["FUZZ1"],
        ),
        // 250 right after DATA, no queue id.
        transcript("220 mx\r\n354 go\r\n250 2.0.0 OK\r\n", &[]),
        // Malformed lines.
        transcript("220 mx\r\n25 short\r\n", &[]),
        transcript("220 mx\r\n250x\r\n", &[]),
        transcript("220 mx\r\n650 no such class\r\n", &[]),
        transcript("220 mx\r\n250 bare\nLF\r\n", &[]),
        transcript("220 mx\r\n250 no CRLF", &[]),
        transcript("220 mx\r\n250-first\r\n550 last\r\n", &[]),
        transcript("220 mx\r\n250-never ends\r\n", &[]),
        transcript(&format!("220 mx\r\n250 {}\r\n", "x".repeat(600)), &[]),
        // No greeting, and replies after the end.
        transcript("250 2.0.0 OK\r\n", &[]),
        transcript("220 mx\r\n221 2.0.0 Bye\r\n250 2.0.0 OK\r\n", &[]),
    ];
    for bad in &refused {
        assert!(
            check(bad).is_err(),
            "accepted: {:?}",
            String::from_utf8_lossy(&bad.output)
        );
    }
    let hung = Transcript {
        ended: false,
        ..transcript(good, &["FUZZ1"])
    };
    assert!(check(&hung).is_err());
}

/// Found by this harness: a BDAT transfer left unfinished (QUIT, the client leaving) was
/// committed as a truncated message when the session ended, since the end of the body
/// stream read as the end of the message.
#[test]
fn an_unfinished_bdat_transfer_is_never_committed() {
    let start = "EHLO c.example.net\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nBDAT 5\r\nhello";
    for end in ["QUIT\r\n", "", "NOOP\r\n", "DATA\r\n"] {
        for write_size in [64 * 1024, 1] {
            let input = format!("{start}{end}");
            let cut = run_checked(Protocol::Smtp, input.as_bytes(), write_size);
            assert!(cut.committed.is_empty(), "{input:?}: {}", output(&cut));
        }
    }
}

/// Found by this harness: a new greeting did not abandon a BDAT transfer, so a `BDAT LAST`
/// after it finished the message of the transaction the greeting had reset (RFC 5321
/// §4.1.4: EHLO resets as RSET does).
#[test]
fn a_new_greeting_abandons_a_bdat_transfer() {
    let input = "EHLO c.example.net\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nBDAT 5\r\nhelloEHLO c.example.net\r\nBDAT 3 LAST\r\nend";
    let reset = run_checked(Protocol::Smtp, input.as_bytes(), 64 * 1024);
    assert!(reset.committed.is_empty(), "{}", output(&reset));
    assert!(
        output(&reset).ends_with("503 5.5.1 Need MAIL and RCPT first\r\n"),
        "{}",
        output(&reset)
    );
}

/// Found by this harness: MAIL during a BDAT transfer opened a second transaction beside
/// the one still being received.
#[test]
fn mail_during_a_bdat_transfer_is_nested() {
    let input = "EHLO c.example.net\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nBDAT 5\r\nhelloMAIL FROM:<b@example.net>\r\nBDAT 3 LAST\r\nend";
    let nested = run_checked(Protocol::Smtp, input.as_bytes(), 64 * 1024);
    let text = output(&nested);
    assert!(text.contains("503 5.5.1 Nested MAIL command\r\n"), "{text}");
    assert_eq!(nested.committed, ["FUZZ1"], "{text}");
}

/// Found by this harness: smtp-proto refuses a command line over 4096 octets only when it
/// spans reads, so the same line was answered `250` when it arrived in one piece and `500`
/// when it arrived in several.
#[test]
fn an_overlong_command_is_refused_however_it_arrives() {
    let input = format!(
        "EHLO c.example.net\r\nNOOP {}\r\nQUIT\r\n",
        "x".repeat(10_000)
    );
    for write_size in [64 * 1024, 4096, 1000] {
        let text = output(&run_checked(Protocol::Smtp, input.as_bytes(), write_size));
        assert!(
            text.ends_with("500 5.5.2 Line too long\r\n221 2.0.0 Bye\r\n"),
            "write size {write_size}: {text}"
        );
    }
    let limit = format!(
        "EHLO c.example.net\r\nNOOP {}\r\nQUIT\r\n",
        "x".repeat(4096 - 7)
    );
    let text = output(&run_checked(Protocol::Smtp, limit.as_bytes(), 64 * 1024));
    assert!(
        text.ends_with("250 2.0.0 OK\r\n221 2.0.0 Bye\r\n"),
        "{text}"
    );
}

/// Found by the `smtp_command` fuzz target: smtp-proto's MAIL parser reads past a bare LF,
/// so `MAIL FROM` ended by LF got no reply of its own and swallowed the next line, differently
/// as the input was cut. The session now hands the parser whole CRLF lines and refuses a line
/// ended by a bare LF.
#[test]
fn a_bare_lf_command_line_gets_its_own_reply() {
    let input = "EHLO c.example.net\r\nMAIL FROM\n NOOP\r\nQUIT\r\n";
    for write_size in [64 * 1024, 1] {
        let text = output(&run_checked(Protocol::Smtp, input.as_bytes(), write_size));
        let after_ehlo = text.split("250 8BITMIME\r\n").nth(1).unwrap_or(&text);
        assert_eq!(
            after_ehlo.lines().count(),
            3,
            "write size {write_size}: {text}"
        );
        assert!(
            after_ehlo.starts_with("500 5.5.2 Bare LF"),
            "write size {write_size}: {text}"
        );
    }
}

/// Found by the `smtp_session` fuzz target: replies queued for pipelined commands were not
/// sent before the server waited for the rest of a BDAT chunk, so a client that went away
/// then never heard that its earlier message was committed (and would send it again).
#[test]
fn replies_go_out_before_waiting_for_the_rest_of_a_chunk() {
    let input = "EHLO c.example.net\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nBDAT 5 LAST\r\nhelloMAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nBDAT 10\r\nabc";
    for write_size in [64 * 1024, 1] {
        let cut = run_checked(Protocol::Smtp, input.as_bytes(), write_size);
        assert_eq!(cut.committed, ["FUZZ1"], "{}", output(&cut));
        assert!(
            output(&cut).ends_with("250 2.0.0 Message queued as FUZZ1\r\n250 2.1.0 OK\r\n250 2.1.5 <bob@example.org> OK\r\n"),
            "write size {write_size}: {}",
            output(&cut)
        );
    }
}
