//! The credentials of a request: its `Authorization` header, Basic or Bearer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;

/// What a client presented.
#[derive(Debug)]
pub enum Presented {
    /// `Basic`: Stalwart's fallback administrator.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: SecretString,
    },
    /// `Bearer`: an API key.
    Bearer(SecretString),
}

/// Why the header does not carry usable credentials.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// No `Authorization` header.
    #[error("authentication required: send Authorization: Bearer <token> or Basic credentials")]
    Missing,
    /// A scheme other than Basic and Bearer.
    #[error("unsupported authorization scheme: use Bearer or Basic")]
    UnsupportedScheme,
    /// The header is not well formed.
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
}

/// Reads the `Authorization` header's value, if any.
pub fn parse(header: Option<&[u8]>) -> Result<Presented, CredentialError> {
    let header = header.ok_or(CredentialError::Missing)?;
    let header =
        std::str::from_utf8(header).map_err(|_| CredentialError::Malformed("not UTF-8"))?;
    let (scheme, value) = header
        .trim()
        .split_once(' ')
        .ok_or(CredentialError::Malformed(
            "no credentials after the scheme",
        ))?;
    let value = value.trim();
    if value.is_empty() {
        return Err(CredentialError::Malformed(
            "no credentials after the scheme",
        ));
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Presented::Bearer(SecretString::from(value.to_owned())));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(CredentialError::UnsupportedScheme);
    }
    let decoded = STANDARD
        .decode(value)
        .map_err(|_| CredentialError::Malformed("Basic credentials are not base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| CredentialError::Malformed("Basic credentials are not UTF-8"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or(CredentialError::Malformed("Basic credentials have no `:`"))?;
    Ok(Presented::Basic {
        user: user.to_owned(),
        password: SecretString::from(password.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn basic_and_bearer_are_read() {
        let basic = format!("Basic {}", STANDARD.encode("admin:pa:ss"));
        match parse(Some(basic.as_bytes())) {
            Ok(Presented::Basic { user, password }) => {
                assert_eq!(user, "admin");
                assert_eq!(password.expose_secret(), "pa:ss");
            }
            other => panic!("{other:?}"),
        }
        match parse(Some(b"bearer  tok3n ")) {
            Ok(Presented::Bearer(token)) => assert_eq!(token.expose_secret(), "tok3n"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert_eq!(parse(None).err(), Some(CredentialError::Missing));
        let no_colon = format!("Basic {}", STANDARD.encode("admin"));
        let not_utf8 = format!("Basic {}", STANDARD.encode([0xff, b':', 0xfe]));
        for header in [
            b"Bearer".as_slice(),
            b"Bearer   ",
            b"Basic !!!",
            no_colon.as_bytes(),
            not_utf8.as_bytes(),
            &[0xff, 0xfe],
            b"",
        ] {
            assert!(
                matches!(parse(Some(header)), Err(CredentialError::Malformed(_))),
                "{header:?}"
            );
        }
        assert_eq!(
            parse(Some(b"Digest x=y")).err(),
            Some(CredentialError::UnsupportedScheme)
        );
    }

    #[test]
    fn the_debug_form_hides_secrets() {
        let bearer = parse(Some(b"Bearer hunter2")).map(|p| format!("{p:?}"));
        assert!(bearer.is_ok_and(|d| !d.contains("hunter2")));
    }
}
