//! The values keys hold, and their conversions from TOML nodes, with messages that say what
//! was expected. Every type the key catalogue (`keys`) names is here.

pub mod auto_ban;
mod dkim;
mod duration;
mod enums;
mod filter_stage;
mod keywords;
pub mod limiter_match;
mod lookup_list;
mod name_server;
mod network;
mod pem;
mod rate;
mod referenced_files;
mod report_frequency;
mod rewrite_rules;
mod rule_settings;
pub mod rules;
mod scalar;
mod size;
pub mod stage_rules;
mod stored_password;
mod substitution;

pub use dkim::{Canonicalization, CanonicalizationMode, SignatureAlgorithm};
pub use duration::parse_duration;
pub(crate) use enums::enum_value;
pub use keywords::{
    DirectoryType, DnsblScope, IpStrategy, LimiterKey, ListenerProtocol, QuotaKey, RemoteProtocol,
    ResolverType, StoreType, ThrottleKey, TlsPolicy,
};
pub use lookup_list::LookupList;
pub use name_server::{NameServer, NameServerProtocol};
pub use network::Bind;
pub use pem::{CertificateChain, PrivateKey};
pub use rate::{Rate, parse_rate};
pub(crate) use referenced_files::RecordingEnvironment;
pub use report_frequency::{MIN_REPORT_PERIOD, ReportFrequency};
pub use rewrite_rules::{RewriteRule, RewriteRules};
pub use rule_settings::{
    Hop, NextHop, RelayRule, SealRule, SealSignature, SignRule, SignatureList, VerifyMode,
    VerifyRule,
};
pub use scalar::Secret;
pub use size::{ByteSize, parse_size};
pub use stored_password::StoredPassword;
pub use substitution::{Environment, ProcessEnvironment, machine_hostname};

use crate::diagnostics::Diagnostics;
use crate::source::Origin;
use crate::tree::Node;

/// Names the values a type accepts, for messages and the reference.
pub trait ValueType {
    /// The accepted values, in words ("duration", `"smtp" | "lmtp"`).
    const TYPE: &'static str;
    /// The same for a list of them.
    const LIST_TYPE: &'static str = "list";
}

/// Why a value was refused, and where.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) origin: Origin,
    pub(crate) message: String,
}

impl Invalid {
    pub(crate) fn at(node: &Node, message: impl Into<String>) -> Self {
        Self {
            origin: node.origin.clone(),
            message: message.into(),
        }
    }

    /// "expected X, found Y".
    pub(crate) fn expected(node: &Node, expected: &str) -> Self {
        Self::at(
            node,
            format!("expected {expected}, found {}", node.value.kind()),
        )
    }
}

/// What conversions may consult: the environment for `%{env:…}%` and `%{file:…}%`.
pub(crate) struct Context<'a> {
    pub(crate) diagnostics: &'a Diagnostics,
    pub(crate) env: &'a dyn Environment,
}

/// A type that can be read from a configuration value.
pub(crate) trait FromNode: ValueType + Sized {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid>;
}

impl<T: ValueType> ValueType for Vec<T> {
    const TYPE: &'static str = T::LIST_TYPE;
}

impl<T: FromNode> FromNode for Vec<T> {
    fn from_node(node: &Node, cx: &Context<'_>) -> Result<Self, Invalid> {
        let crate::tree::Value::Array(items) = &node.value else {
            return Err(Invalid::expected(node, T::LIST_TYPE));
        };
        items.iter().map(|item| T::from_node(item, cx)).collect()
    }
}
