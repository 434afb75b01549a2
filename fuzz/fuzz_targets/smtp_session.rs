//! The session state machine: the input is everything a client sends, replayed against an
//! SMTP listener (whole, then in small pieces so lines are cut across reads) and an LMTP
//! listener; every session must keep the properties of `session_harness::check`.

#![no_main]

use ferrymail_smtp_ingress::session_harness::{self, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    for (protocol, write_size) in [
        (Protocol::Smtp, 64 * 1024),
        (Protocol::Smtp, 7),
        (Protocol::Lmtp, 64 * 1024),
    ] {
        let transcript = session_harness::run_session(protocol, input, write_size);
        if let Err(why) = session_harness::check(protocol, &transcript) {
            panic!(
                "{why}\nprotocol {protocol:?}, write size {write_size}\noutput:\n{}",
                String::from_utf8_lossy(&transcript.output)
            );
        }
    }
});
