//! smtp-ingress: the stateless SMTP/LMTP front door.
//!
//! It will accept sessions on the `smtp` and `lmtp` listeners, check logins and recipients
//! through the `Directory` service and hand messages to the `Queue` service, answering `250`
//! only once the queue has made a message durable. None of that is built yet: the role
//! starts, serves its admin endpoints and says so.

/// What this role cannot do yet; shown at start-up and in `/readyz`.
pub const NOT_BUILT: &str =
    "accepting SMTP/LMTP sessions is not implemented yet; smtp and lmtp listeners are not opened";
