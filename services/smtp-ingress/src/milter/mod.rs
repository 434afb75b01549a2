//! The milter client: Sendmail's and Postfix's mail filter protocol (versions 2 and 6), so a
//! site can plug in rspamd, OpenDKIM or clamav-milter (`session.milter.<id>`).
//!
//! Each SMTP session has its own connection to each milter, opened when the milter is first
//! asked and kept until the session ends. The files follow the protocol's layers: packet
//! framing ([`codec`]), option negotiation ([`negotiation`]), the macros ([`macros`]), the
//! message's fields and body ([`message`]), the connection and its time limits
//! ([`conversation`]), replies and their verdicts ([`reply`]), the session's order of steps
//! and failure handling ([`session`]), construction from the settings ([`from_settings`]).

mod codec;
mod conversation;
mod error;
mod from_settings;
mod macros;
mod message;
mod negotiation;
mod reply;
mod session;

pub(crate) use from_settings::session_milters;

#[cfg(test)]
mod broken_peers;
#[cfg(test)]
mod real_peers;
