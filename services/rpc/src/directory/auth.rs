//! An authentication request: [`AuthRequest`] and its [`Mechanism`].

use std::net::IpAddr;

use secrecy::SecretSlice;

/// SASL mechanism the SMTP client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// AUTH PLAIN (RFC 4616).
    Plain,
    /// AUTH LOGIN.
    Login,
}

/// Credentials to check against a directory. `Debug` never shows the secret.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    /// Name of a configured directory.
    pub directory: String,
    /// Mechanism the client used.
    pub mechanism: Mechanism,
    /// Authentication identity.
    pub username: String,
    /// The password as the client sent it: bytes, since SASL does not promise UTF-8 to us.
    pub secret: SecretSlice<u8>,
    /// Authorization identity (SASL PLAIN authzid), when the client gave one.
    pub authzid: Option<String>,
    /// The SMTP client's address: failures are counted per address and per login name.
    pub client: IpAddr,
}
