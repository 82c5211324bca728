//! The admission webhook: defaults (`POST /mutate`) and validation (`POST /validate`) of
//! ExternalSecrets, SecretStores and ClusterSecretStores in `v1` and `v1beta1`, served over
//! rustls with hot-reloaded or self-managed certificates.
//!
//! The decisions are pure ([`defaults`], [`rules`]); the live checks against the cluster and
//! Vault ([`live`]) and the HTTPS plumbing ([`tls`], [`selfcert`]) are shells around them.

pub mod budget;
pub mod client_ca;
pub mod defaults;
mod handler;
pub mod live;
mod object;
mod review;
pub mod rules;
pub mod selfcert;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub use handler::{Endpoint, review};
pub use live::{Findings, LiveChecker};
pub use review::Answer;

/// Largest AdmissionReview accepted: the API server's own request limit (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// Requests read, decided or checked at once; more wait for a slot (backpressure rather than
/// errors), and the wait counts against their time limit.
pub const MAX_CONCURRENT: usize = 512;

/// What the live admission checks do when they find a problem or cannot reach Vault.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LiveMode {
    /// No live checks.
    Off,
    /// Problems become admission warnings; the object is admitted.
    #[default]
    Warn,
    /// Problems deny the request.
    Enforce,
}

/// The kinds this webhook handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ExternalSecret,
    ClusterExternalSecret,
    SecretStore,
    ClusterSecretStore,
    PushSecret,
    ClusterPushSecret,
    Password,
    Uuid,
    SshKey,
    VaultDynamicSecret,
    ClusterGenerator,
}

impl Kind {
    /// The kind of a `group/version/kind`, when vaultgate serves it (the push kinds in
    /// `v1alpha1`, the others in `v1` and `v1beta1`).
    pub fn from_gvk(group: &str, version: &str, kind: &str) -> Option<Kind> {
        let k = Kind::from_name(kind)?;
        if k.is_generator() {
            let served = group == crate::api::generators::GROUP
                && version == crate::api::generators::VERSION;
            return served.then_some(k);
        }
        if group != crate::api::GROUP {
            return None;
        }
        let served = match k {
            Kind::PushSecret | Kind::ClusterPushSecret => version == "v1alpha1",
            _ => crate::api::VERSIONS.contains(&version),
        };
        served.then_some(k)
    }

    pub fn from_name(kind: &str) -> Option<Kind> {
        match kind {
            "ExternalSecret" => Some(Kind::ExternalSecret),
            "ClusterExternalSecret" => Some(Kind::ClusterExternalSecret),
            "SecretStore" => Some(Kind::SecretStore),
            "ClusterSecretStore" => Some(Kind::ClusterSecretStore),
            "PushSecret" => Some(Kind::PushSecret),
            "ClusterPushSecret" => Some(Kind::ClusterPushSecret),
            "Password" => Some(Kind::Password),
            "UUID" => Some(Kind::Uuid),
            "SSHKey" => Some(Kind::SshKey),
            "VaultDynamicSecret" => Some(Kind::VaultDynamicSecret),
            "ClusterGenerator" => Some(Kind::ClusterGenerator),
            _ => None,
        }
    }

    /// One of the `generators.external-secrets.io` kinds.
    pub fn is_generator(self) -> bool {
        matches!(
            self,
            Kind::Password
                | Kind::Uuid
                | Kind::SshKey
                | Kind::VaultDynamicSecret
                | Kind::ClusterGenerator
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ExternalSecret => "ExternalSecret",
            Kind::ClusterExternalSecret => "ClusterExternalSecret",
            Kind::SecretStore => "SecretStore",
            Kind::ClusterSecretStore => "ClusterSecretStore",
            Kind::PushSecret => "PushSecret",
            Kind::ClusterPushSecret => "ClusterPushSecret",
            Kind::Password => "Password",
            Kind::Uuid => "UUID",
            Kind::SshKey => "SSHKey",
            Kind::VaultDynamicSecret => "VaultDynamicSecret",
            Kind::ClusterGenerator => "ClusterGenerator",
        }
    }
}

/// The served kind of a manifest (`apiVersion` + `kind`), if vaultgate handles it.
pub fn kind_of(obj: &serde_json::Value) -> Option<Kind> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let (group, version) = api_version.split_once('/')?;
    Kind::from_gvk(group, version, obj.get("kind")?.as_str()?)
}

/// The static rules for a manifest of `kind` (as JSON); an unreadable spec is one problem.
pub fn static_problems(kind: Kind, obj: &serde_json::Value) -> Vec<rules::Problem> {
    match object::Typed::from_value(kind, obj) {
        Ok(t) => t.rules(),
        Err(e) => vec![rules::Problem::new("spec", e)],
    }
}

/// The admission warnings the static rules give a manifest of `kind` (as JSON).
pub fn static_notes(kind: Kind, obj: &serde_json::Value) -> Vec<rules::Problem> {
    object::Typed::from_value(kind, obj)
        .map(|t| t.notes())
        .unwrap_or_default()
}

/// A manifest as the typed object the rules and live checks take.
pub(crate) fn handler_typed(kind: Kind, obj: &serde_json::Value) -> Result<object::Typed, String> {
    object::Typed::from_value(kind, obj)
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files, reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// A CA and serving certificate kept in a Secret, rotated before expiry, with the CA
    /// injected into the webhook configurations.
    SelfManaged {
        namespace: String,
        secret_name: String,
        service_name: String,
        webhook_config_name: String,
    },
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub addr: SocketAddr,
    pub tls: TlsSource,
    /// CA (PEM) whose client certificates the webhook requires; `None` serves anyone.
    pub client_ca: Option<PathBuf>,
    pub live: LiveMode,
    pub live_budget: Duration,
}

/// Who can have sent a review. A review's body is only a claim about what the API server is
/// admitting: unless the connection proved it came from the API server, nothing in it may
/// decide where vaultgate sends a credential or whose credential it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// Any client that can reach the port (no client certificate asked for).
    Anyone,
    /// Only clients with a certificate signed by the configured CA (the API server).
    Authenticated,
}

/// What the handlers share: one reference, since axum clones the state for every request
/// (one atomic count shared by all workers rather than one per field).
#[derive(Clone)]
pub struct AdmissionState(Arc<Shared>);

/// The handlers' shared state, behind [`AdmissionState`].
pub struct Shared {
    pub(crate) metrics: Metrics,
    pub(crate) mode: LiveMode,
    pub(crate) callers: Callers,
    pub(crate) live: Option<LiveChecker>,
    /// Time limit of a request, from its headers to its answer (body, wait for a slot, checks).
    pub(crate) timeout: Duration,
    pub(crate) slots: tokio::sync::Semaphore,
    pub(crate) budget: budget::Budget,
}

impl std::ops::Deref for AdmissionState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AdmissionState {
    /// Live checks run only with a mode other than `off` and both clients present.
    pub fn new(
        metrics: Metrics,
        mode: LiveMode,
        live_budget: Duration,
        callers: Callers,
        kube: Option<kube::Client>,
        vault: Option<crate::vault::VaultClients>,
    ) -> Self {
        let live = match (mode, kube, vault) {
            (LiveMode::Off, _, _) => None,
            (_, Some(k), Some(v)) => Some(LiveChecker::new(k, v, live_budget)),
            _ => None,
        };
        AdmissionState(Arc::new(Shared {
            metrics,
            mode: if live.is_some() { mode } else { LiveMode::Off },
            callers,
            live,
            // The live budget plus room for the rest; still under the webhook's 5 s timeout
            // for the default budget.
            timeout: live_budget + Duration::from_secs(2),
            slots: tokio::sync::Semaphore::new(MAX_CONCURRENT),
            budget: budget::Budget::default(),
        }))
    }
}

/// The two endpoints. Their limits (body size: 413; time: 503; requests at once, shared by both)
/// are applied in the handler rather than by tower layers: for a review decided without waiting
/// they cost an atomic operation, where the layers' futures cost as much as the rules.
pub fn router(state: AdmissionState) -> Router {
    Router::new()
        .route("/mutate", post(handler::mutate))
        .route("/validate", post(handler::validate))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled (graceful: in-flight requests finish). Sets `ready`
/// once TLS serves a valid certificate.
pub async fn serve(
    cfg: WebhookConfig,
    kube: Option<kube::Client>,
    vault: Option<crate::vault::VaultClients>,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the webhook address {}: {e}", cfg.addr))?;
    serve_listener(listener, cfg, kube, vault, metrics, ready, shutdown).await
}

/// [`serve`] on a listener bound by the caller (tests bind port 0 and read the address).
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    cfg: WebhookConfig,
    kube: Option<kube::Client>,
    vault: Option<crate::vault::VaultClients>,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let resolver = Arc::new(tls::CertResolver::default());
    let background = shutdown.child_token();
    match &cfg.tls {
        TlsSource::Files { cert, key } => {
            let loaded = tls::load_files(cert, key)?;
            resolver.set(loaded.key);
            tokio::spawn(tls::watch_files(
                tls::Watched {
                    cert: cert.clone(),
                    key: key.clone(),
                    stamp: loaded.stamp,
                    not_after: loaded.not_after,
                },
                resolver.clone(),
                ready.clone(),
                tls::RELOAD_INTERVAL,
                background.clone(),
            ));
        }
        TlsSource::SelfManaged {
            namespace,
            secret_name,
            service_name,
            webhook_config_name,
        } => {
            let Some(client) = kube.clone() else {
                anyhow::bail!("self-managed webhook certificates need a Kubernetes client");
            };
            let manager = selfcert::CertManager::new(
                client,
                namespace.clone(),
                secret_name.clone(),
                service_name.clone(),
                webhook_config_name.clone(),
            );
            // The API server may not answer yet at start-up: keep trying (not ready meanwhile).
            let bundle = loop {
                match manager.ensure().await {
                    Ok(b) => break b,
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "webhook certificates not available yet; retrying"
                        );
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(selfcert::RETRY_INTERVAL) => {}
                        }
                    }
                }
            };
            resolver.set(tls::certified_key(
                bundle.cert_pem.as_bytes(),
                bundle.key_pem.as_bytes(),
            )?);
            manager.inject_ca(&bundle.ca_cert_pem).await;
            tokio::spawn(manager.run(
                resolver.clone(),
                selfcert::CHECK_INTERVAL,
                background.clone(),
            ));
        }
    }
    let client_ca = match &cfg.client_ca {
        None => None,
        Some(path) => {
            let ca = Arc::new(client_ca::ClientCa::load(path)?);
            tokio::spawn(ca.clone().watch(tls::RELOAD_INTERVAL, background.clone()));
            Some(ca)
        }
    };
    let callers = if client_ca.is_some() {
        Callers::Authenticated
    } else {
        Callers::Anyone
    };
    let config = tls::server_config(resolver, client_ca)?;
    let state = AdmissionState::new(metrics, cfg.live, cfg.live_budget, callers, kube, vault);
    let result = tls::serve_https(listener, config, router(state), ready, shutdown).await;
    background.cancel();
    result
}
