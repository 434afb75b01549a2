//! Directory service: lookups delegated to remote IMAP/SMTP/LMTP servers.
//!
//! [`DirectoryService`] is the contract. The directory-proxy role implements it; `ferrymail all`
//! calls that implementation in-process, split roles call it through [`GrpcDirectory`], and a
//! role serving it over gRPC wraps it with [`server`].

mod answer;
mod auth;
mod client;
mod convert;
mod limit;
mod limit_convert;
mod remote_state;
mod server;
mod service;

pub use answer::{Answer, Expansion, RemoteReply, Verdict};
pub use auth::{AuthRequest, Mechanism};
pub use client::GrpcDirectory;
pub use limit::{
    LimitAnswer, LimitKey, MAX_KEY_VALUE_LEN, MAX_KEY_VALUES, RateRequest, SlotRequest,
};
pub use remote_state::{Reachability, RemoteState};
pub use server::{DirectoryHandler, server};
pub use service::DirectoryService;
