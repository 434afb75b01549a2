//! The custom resources: `RemoteHost` and `Directory`, group `ferrymail.io`, version
//! `v1alpha1`. Field names are the camelCase forms of the `remote.<id>` and
//! `directory.<name>` TOML keys, so a reader of the configuration reference recognises them.

mod directory;
mod remote_host;
mod secret_ref;
mod status;
pub mod unknown_fields;

pub use directory::{
    Directory, DirectoryLimits, DirectoryPool, DirectorySpec, DirectoryType, RemoteHostRef,
};
pub use remote_host::{
    RemoteAuth, RemoteHost, RemoteHostSpec, RemoteLimits, RemoteProbe, RemoteProtocol, Tls,
};
pub use secret_ref::SecretKeyRef;
pub use status::{Condition, ConditionStatus, ResourceStatus};

pub use remote_host::{Cache, CacheTtl};

/// API group of the resources.
pub const GROUP: &str = "ferrymail.io";
/// API version of the resources.
pub const VERSION: &str = "v1alpha1";
