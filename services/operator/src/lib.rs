//! operator: turns `RemoteHost` and `Directory` custom resources into the `remote.<id>` and
//! `directory.<name>` TOML every pod reads.
//!
//! - [`resources`]: the custom resource types; [`crd`] prints their definitions.
//! - [`render`]: resources (and which Secret keys exist) → TOML files, checked by the real
//!   configuration loader. Pure: the controller and `ferrymail operator render` share it.
//! - [`controller`]: watches the API, applies the rendered ConfigMap and Secret, reports
//!   status, events and metrics, and the `Reachable` condition of RemoteHosts from the
//!   directory-proxy's probes.

pub mod controller;
pub mod crd;
mod error;
pub mod manifests;
pub mod render;
pub mod resources;
mod yaml;

pub use error::OperatorError;
