//! What DMARC aggregate reports and SMTP TLS reports share: their settings, DKIM signing,
//! and the sender that takes each ended period's lease and commits its end exactly once
//! (the rows themselves are `model::report_rows`).

pub(crate) mod building;
mod counting;
pub(crate) mod sender;
pub(crate) mod settings;
pub(crate) mod signing;
