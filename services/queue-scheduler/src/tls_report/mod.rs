//! SMTP TLS reports (RFC 8460), sent exactly once per policy domain and period across every
//! scheduler, with the rows, lease and sender DMARC aggregate reports use
//! (`aggregate_report`, `model::report_rows`).
//!
//! Recording: MX delivery reports the TLS of each session (`ferrymail_outbound::tls_report`):
//! the policy that applied (MTA-STS, DANE or none) and success or the RFC's failure kind.
//! When `report.tls.aggregate.send` is on, the attempt's results are counted after it, in
//! the recipient domain's rows of the current period, one transaction per attempt and no
//! DNS lookup: whether the domain wants reports is asked once, at report time.
//!
//! Reporting (`build`): the lease holder looks up `_smtp._tls.<domain>`, builds the JSON
//! report with mail-auth's types, gzips it, and sends it to each `rua`: `mailto:` as a
//! queued message in the transaction that deletes the rows, `https:` as a POST first (an
//! unreachable endpoint keeps the rows for a later try). A domain without a record gets no
//! report and its rows go.

pub(crate) mod build;
mod message;
mod post;
mod recording;
mod row;

pub(crate) use recording::TlsCollector;
