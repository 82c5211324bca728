//! A Kubernetes API server emulator for tests: HTTPS, in-memory objects, the
//! behaviour of kube-apiserver for what vaultgate, kube-rs and kubectl use.
//!
//! Served: core v1 namespaces, secrets, configmaps, serviceaccounts (+ `token`),
//! events; coordination.k8s.io leases; events.k8s.io events (same storage as
//! core events); authentication.k8s.io tokenreviews; admissionregistration.k8s.io
//! webhook configurations; apiextensions.k8s.io CRDs and every CRD's versions.
//! Discovery (plain and aggregated v2), OpenAPI v3 (operations only, enough for
//! kubectl's server-side validation check), Table and PartialObjectMetadata
//! representations.
//!
//! Not modelled: RBAC (any authenticated user may do anything), conversion
//! webhooks (versions differ only in apiVersion), protobuf responses (JSON is
//! always answered; protobuf request bodies are decoded for Secret, ConfigMap,
//! Namespace, ServiceAccount and TokenRequest, as kubectl sends them), the
//! definitions of `/openapi/v2`, unknown-field detection for built-in kinds.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let kube = kube_emulator::KubeEmulator::start(Default::default()).await?;
//! let client = kube.client().await;
//! # let _ = client; Ok(()) }
//! ```

pub mod admission;
mod api;
mod auth;
mod objects;
mod openapi_v2;
mod output;
mod patch;
mod protobuf;
mod registry;
pub mod schema;
mod selectors;
mod server;
mod ssa;
mod status;
mod store;
mod watch;

pub use auth::User;
pub use status::ApiError;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Start-up settings.
#[derive(Debug, Clone)]
pub struct KubeEmulatorConfig {
    /// Address to listen on; default `127.0.0.1:0`.
    pub bind: Option<SocketAddr>,
    /// Watch events retained for resumption; older versions get 410 Gone.
    pub history_size: usize,
    /// Interval between BOOKMARK events on watches that ask for them.
    pub bookmark_interval: Duration,
    /// Delay applied to every request before it is handled.
    pub latency: Duration,
    /// The client certificate presented to every admission webhook, as kube-apiserver does when
    /// its AdmissionConfiguration names a kubeconfig whose user `*` has one.
    pub webhook_client_identity: Option<ClientIdentity>,
}

/// A client certificate (chain) and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Default for KubeEmulatorConfig {
    fn default() -> Self {
        KubeEmulatorConfig {
            bind: None,
            history_size: 100_000,
            bookmark_interval: Duration::from_secs(5),
            latency: Duration::ZERO,
            webhook_client_identity: None,
        }
    }
}

/// Which requests an injected failure applies to; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct FaultFilter {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: Option<String>,
    /// Plural resource name (`secrets`, `externalsecrets`).
    pub resource: Option<String>,
}

impl FaultFilter {
    pub fn any() -> Self {
        Self::default()
    }
    pub fn verb(verb: &str) -> Self {
        FaultFilter {
            verb: Some(verb.into()),
            resource: None,
        }
    }
    pub fn resource(resource: &str) -> Self {
        FaultFilter {
            verb: None,
            resource: Some(resource.into()),
        }
    }
    pub fn verb_resource(verb: &str, resource: &str) -> Self {
        FaultFilter {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
        }
    }
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub user: String,
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub code: u16,
    /// Request path, also set for non-resource requests (discovery, /version, ...).
    pub uri: String,
}

/// A running emulator; clones share the same server.
#[derive(Clone)]
pub struct KubeEmulator {
    shared: Arc<server::Shared>,
    handle: Arc<server::ServerHandle>,
}

impl KubeEmulator {
    pub async fn start(cfg: KubeEmulatorConfig) -> anyhow::Result<Self> {
        let (shared, handle) = server::start(cfg).await?;
        Ok(KubeEmulator {
            shared,
            handle: Arc::new(handle),
        })
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> String {
        self.handle.ca_pem.clone()
    }

    pub fn admin_token(&self) -> String {
        self.shared.signer.admin_token.clone()
    }

    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: emulator\n  user:\n    token: {token}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: default\ncurrent-context: emulator\n",
            self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: impl AsRef<Path>, token: &str) -> anyhow::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml(token))?;
        Ok(())
    }

    /// A kube client configured for this server with the given bearer token.
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cfg = kube::Config::new(self.url().parse().expect("server URL parses"));
        cfg.root_cert = Some(vec![self.handle.ca_der.clone()]);
        cfg.auth_info.token = Some(token.to_string().into());
        cfg.default_namespace = "default".into();
        cfg.connect_timeout = Some(Duration::from_secs(10));
        kube::Client::try_from(cfg).expect("client config for the emulator is valid")
    }

    /// An admin client.
    pub async fn client(&self) -> kube::Client {
        self.client_with_token(&self.admin_token())
    }

    /// A service-account token as TokenRequest would issue it (the account need not exist).
    pub fn issue_token(&self, ns: &str, sa: &str, audiences: &[String], ttl_secs: i64) -> String {
        let uid = self
            .shared
            .store
            .get("/serviceaccounts", &store::key(Some(ns), sa))
            .and_then(|o| o["metadata"]["uid"].as_str().map(String::from))
            .unwrap_or_default();
        self.shared
            .signer
            .issue(ns, sa, &uid, audiences, ttl_secs)
            .0
    }

    pub fn jwt_public_key_pem(&self) -> String {
        self.shared.signer.public_key_pem()
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.shared.signer.jwks()
    }

    pub fn issuer(&self) -> String {
        self.shared.signer.issuer.clone()
    }

    /// Route webhook calls for Service `namespace/name:port` to a local address.
    pub fn map_service(&self, namespace: &str, name: &str, port: u16, addr: SocketAddr) {
        self.shared
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.into(), name.into(), port), addr);
    }

    /// Create or replace every document of a YAML file (CRDs become served).
    pub async fn apply_yaml_file(&self, path: impl AsRef<Path>) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path.as_ref())?;
        self.apply_yaml(&text).await
    }

    /// Create or replace every document of a YAML stream.
    pub async fn apply_yaml(&self, text: &str) -> anyhow::Result<()> {
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc)?;
            if v.is_null() {
                continue;
            }
            api::create_or_replace(&self.shared, v)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    }

    /// Fail the next `n` requests matching `filter` with a Status of `status`.
    pub fn fail_next(&self, filter: FaultFilter, n: usize, status: u16) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((filter, n, status));
    }

    /// End every open watch stream (clients see the stream close and re-watch).
    pub fn drop_watches(&self) {
        self.shared.drop_tx.send_modify(|g| *g += 1);
    }

    /// Forget the event history: watches from earlier versions get 410 Gone.
    pub fn compact(&self) {
        self.shared.store.compact();
    }

    /// Delay every request by `d`.
    pub fn set_latency(&self, d: Duration) {
        *self
            .shared
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = d;
    }

    pub fn audit(&self) -> Vec<AuditRecord> {
        self.shared
            .audit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn clear_audit(&self) {
        self.shared
            .audit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Every admission webhook call so far, in the order they ended, each timed from sending
    /// the AdmissionReview to its answer: the latency the API server sees.
    pub fn webhook_calls(&self) -> Vec<admission::WebhookCall> {
        self.shared
            .webhook_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn clear_webhook_calls(&self) {
        self.shared
            .webhook_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Stored writes (create, update, delete) per resource, keyed `group/plural`
    /// (core resources as `/secrets`).
    pub fn write_counts(&self) -> HashMap<String, u64> {
        self.shared.store.writes()
    }

    /// Stored writes of one resource by plural name (any group).
    pub fn writes_of(&self, plural: &str) -> u64 {
        self.shared
            .store
            .writes()
            .iter()
            .filter(|(k, _)| k.rsplit('/').next() == Some(plural))
            .map(|(_, v)| *v)
            .sum()
    }

    /// Number of stored objects of a resource by plural name (any group).
    pub fn object_count(&self, plural: &str) -> usize {
        let reg = self.shared.registry();
        reg.by_id
            .values()
            .filter(|d| d.plural == plural && !d.is_events_v1())
            .map(|d| self.shared.store.count(&d.id()))
            .sum()
    }

    /// The stored objects of a resource by plural name (any group), as the API server holds
    /// them at this instant: for a harness that must tell when a state is reached without the
    /// cost of a list through the API (which would take part in what it measures).
    pub fn objects(&self, plural: &str) -> Vec<Arc<serde_json::Value>> {
        let reg = self.shared.registry();
        reg.by_id
            .values()
            .filter(|d| d.plural == plural && !d.is_events_v1())
            .flat_map(|d| self.shared.store.list(&d.id(), None).1)
            .collect()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.current_rv()
    }

    /// Stop listening and end all connections.
    pub async fn shutdown(self) {
        self.drop_watches();
        self.handle.shutdown().await;
    }
}

/// An API server that accepts connections and never answers (down behind a load balancer,
/// overloaded, a request that hangs), and a client pointed at it. The listener lives as long as
/// the task; abort it to close the connections.
pub async fn silent_api_server() -> (kube::Client, tokio::task::JoinHandle<()>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = silent.local_addr().expect("bound address");
    let held = tokio::spawn(async move {
        // Held open, read from never.
        let mut conns = vec![];
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let config = kube::Config::new(format!("http://{addr}").parse().expect("a URL"));
    let client = kube::Client::try_from(config).expect("a client");
    (client, held)
}
