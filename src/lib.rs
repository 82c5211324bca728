//! vaultgate: HashiCorp Vault secrets into Kubernetes, checked at the door.
//!
//! An ESO-compatible admission webhook (defaults and validation, with live checks against
//! Vault) and a reconciler that keeps each ExternalSecret's target Secret in sync.

pub mod admission;
pub mod api;
pub mod certs;
pub mod check;
pub mod cli;
pub mod crd;
pub mod decoding;
pub mod generators;
pub mod goregex;
pub mod json_values;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod telemetry;
pub mod template;
pub mod text;
pub mod vault;
