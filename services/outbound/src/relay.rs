//! Relay delivery: one message to a `remote.<id>` over SMTP or LMTP, with the remote's TLS
//! options and credentials, the body streamed from the blob store.
//!
//! Sessions are reused between messages (`pool`), within the remote's `limits.requests` and
//! `limits.errors`. The session and the transaction are shared with MX delivery (`session`,
//! `transaction`); what is the relay's own is where it connects, its TLS options, AUTH and
//! the reuse.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use ferrymail_config::model::outbound::Timeouts;
use ferrymail_config::model::remote::{Remote, RemoteProtocol};
use ferrymail_rpc::queue::{Envelope, Recipient};
use futures::Stream;
use mail_send::Credentials;

pub use super::host_health::Connection;
use super::host_health::of_opening;
use super::pool::{ReuseLimits, SessionPool};
use super::session::{Session, connect};
use super::transaction::{settle, unanswered};
use super::{Deadline, DeliveryError, Outcome};
use ferrymail_tls::TlsSettings;

/// What one relay delivery needs besides the body.
pub struct RelayJob<'a> {
    /// The remote's id, for replies and logs.
    pub id: &'a str,
    /// The remote.
    pub remote: &'a Remote,
    /// Our name in EHLO/LHLO.
    pub helo: &'a str,
    /// The envelope.
    pub envelope: &'a Envelope,
    /// The recipients to deliver, in order.
    pub recipients: &'a [Recipient],
    /// After it, the message is not handed over.
    pub deadline: &'a Deadline,
}

/// The outcome of a relay delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayDelivery {
    /// One outcome per recipient, in order.
    pub outcomes: Vec<Outcome>,
    /// What became of the connection.
    pub connection: Connection,
}

/// Delivers the message to the job's recipients; one outcome per recipient, in order, and
/// what became of the connection.
#[tracing::instrument(name = "delivery.relay", skip_all, fields(remote = job.id, server.address = %job.remote.address, server.port = job.remote.port))]
pub async fn deliver(
    job: &RelayJob<'_>,
    tls: &TlsSettings,
    pool: &SessionPool,
    body: impl Stream<Item = Result<Bytes, impl std::fmt::Display>>,
) -> RelayDelivery {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; job.recipients.len()];
    let connection = Mutex::new(Connection::Unknown);
    let result = transaction(job, tls, pool, body, &mut outcomes, &connection).await;
    let place = format!(
        "remote.{} ({}:{})",
        job.id, job.remote.address, job.remote.port
    );
    let failure = result.err().map(|error| unanswered(&place, error));
    let mut connection = connection
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    if let Connection::Failed(reason) = &mut connection {
        *reason = format!("{place}: {reason}");
    }
    RelayDelivery {
        outcomes: settle(outcomes, failure),
        connection,
    }
}

/// Sends the message over a kept session or a new one, then keeps the session for the next
/// message or closes it; an `Err` leaves the recipients without an answer to be failed
/// temporarily.
async fn transaction(
    job: &RelayJob<'_>,
    tls: &TlsSettings,
    pool: &SessionPool,
    body: impl Stream<Item = Result<Bytes, impl std::fmt::Display>>,
    outcomes: &mut [Option<Outcome>],
    connection: &Mutex<Connection>,
) -> Result<(), DeliveryError> {
    let key = pool_key(job);
    let opening = || open(job, tls, connection);
    let pooled = pool
        .transact(
            Some(&key),
            opening,
            (job.envelope, job.recipients),
            body,
            job.deadline,
            outcomes,
        )
        .await?;
    // A kept session carried it, or a new one was opened.
    *connection.lock().unwrap_or_else(PoisonError::into_inner) = Connection::Reached;
    let remote = job.remote;
    let limits = ReuseLimits {
        requests: remote.max_requests,
        errors: remote.max_errors,
        idle: usize::try_from(remote.concurrency).unwrap_or(usize::MAX),
    };
    pool.give_back(Some(&key), pooled, outcomes, limits).await;
    Ok(())
}

/// Which kept sessions a job may use: the remote's, as configured now.
fn pool_key(job: &RelayJob<'_>) -> String {
    format!(
        "{}\u{0}{}\u{0}{}",
        job.id, job.remote.address, job.remote.port
    )
}

/// Opens a session with the remote's TLS options and credentials, noting in `connection`
/// whether the relay could be reached.
async fn open(
    job: &RelayJob<'_>,
    tls: &TlsSettings,
    connection: &Mutex<Connection>,
) -> Result<Session, DeliveryError> {
    let reached = reach(job, tls).await;
    let noted = match &reached {
        Ok(_) => Connection::Reached,
        Err(error) => of_opening(error),
    };
    *connection.lock().unwrap_or_else(PoisonError::into_inner) = noted;
    let mut session = reached?;
    let remote = job.remote;
    if let Some(auth) = &remote.auth {
        // The password never crosses the network in clear text unless the remote allows it;
        // a missing (or stripped) STARTTLS is then a temporary failure, retried later.
        if !session.is_tls() && !remote.allow_plain_text {
            session.quit().await;
            return Err(DeliveryError::PlainTextAuth);
        }
        // Borrowed, so no copy of the password outlives the configuration's own.
        let credentials = Credentials::new(auth.username.as_str(), auth.secret.expose());
        session.authenticate(&credentials).await?;
    }
    Ok(session)
}

/// Connects to the remote, reads its greeting, says EHLO/LHLO and upgrades with STARTTLS when
/// offered: everything a relay that is down would fail.
async fn reach(job: &RelayJob<'_>, tls: &TlsSettings) -> Result<Session, DeliveryError> {
    let remote = job.remote;
    let lmtp = match remote.protocol {
        RemoteProtocol::Smtp => false,
        RemoteProtocol::Lmtp => true,
        RemoteProtocol::Imap => {
            return Err(DeliveryError::Protocol(
                "an imap remote cannot receive mail".into(),
            ));
        }
    };
    let timeouts = Timeouts::uniform(remote.timeout);
    let stream = connect(
        &remote.address,
        remote.port,
        remote.tls_implicit,
        remote.allow_invalid_certs,
        tls,
        timeouts.connect,
    )
    .await?;
    let session = Session::open(stream, lmtp, job.helo, timeouts).await?;
    // Opportunistic STARTTLS: upgrade when offered, carry on in clear text when not.
    if session.offers_starttls() {
        return session
            .starttls(&remote.address, remote.allow_invalid_certs, tls)
            .await;
    }
    Ok(session)
}
