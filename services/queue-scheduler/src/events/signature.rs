//! The signature of a webhook request, as Stalwart sends it: `X-Signature` is the base64 of
//! the HMAC-SHA256 of the body under `webhook.<id>.signature-key`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header the signature is sent in.
pub(crate) const SIGNATURE_HEADER: &str = "X-Signature";

/// The `X-Signature` value of `body` under `key`.
pub(crate) fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length, so this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (key "Jefe"), whose HMAC-SHA256 is
    /// 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843.
    #[test]
    fn matches_the_rfc_4231_vector() {
        let signature = sign(b"Jefe", b"what do ya want for nothing?");
        let expected = STANDARD.encode([
            0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
            0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
            0x64, 0xec, 0x38, 0x43,
        ]);
        assert_eq!(signature, expected);
    }

    #[test]
    fn another_key_or_body_changes_it() {
        let base = sign(b"key", b"{\"events\":[]}");
        assert_ne!(base, sign(b"key2", b"{\"events\":[]}"));
        assert_ne!(base, sign(b"key", b"{\"events\":[ ]}"));
    }
}
