//! A Kubernetes API server emulator for tests: HTTPS, in-memory objects, the
//! behaviour of kube-apiserver for what vaultgate and kubectl use.

pub mod admission;
pub mod schema;
