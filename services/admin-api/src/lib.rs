//! The HTTP admin API, served on the `http` listener of the processes that host the queue.
//!
//! - Stalwart 0.15's queue paths and shapes, so its users' scripts keep working:
//!   `GET|PATCH|DELETE /api/queue/messages`, `GET|PATCH|DELETE /api/queue/messages/{id}`,
//!   `GET /api/queue/status`, `PATCH /api/queue/status/{stop|start}`.
//! - ferrymail's own operations: hold and release, bulk actions, destinations, totals and
//!   finding a message by its Message-ID.
//! - Its OpenAPI document at [`openapi::PATH`].
//!
//! Every `/api/queue` request needs credentials ([`gate`]): an API key (`Bearer`) or the
//! fallback administrator (`Basic`), over TLS or from this host; each operation then answers
//! the roles the gRPC permission table names for the same operation.

mod credentials;
pub mod gate;
mod message_json;
mod messages;
mod metrics;
pub mod openapi;
mod operations;
mod password_check;
mod problem;
mod query_params;
pub mod queue_json;
mod queue_slot;
mod routes;
mod selection;
mod timestamps;

pub use gate::Gate;
pub use metrics::ApiMetrics;
pub use password_check::PasswordCheck;
pub use problem::Problem;
pub use queue_slot::{Api, QueueSlot};
pub use routes::router;
