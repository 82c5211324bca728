//! `vaultgate run`: wiring of the webhook, the reconciler and the metrics/health server.
//!
//! `run` is what both the binary and the sandbox call, so the sandbox exercises the same code
//! path as a deployment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::admission::{LiveMode, TlsSource, WebhookConfig};
use crate::metrics::Metrics;
use crate::reconcile::ControllerConfig;
use crate::telemetry::LogFormat;
use crate::vault::VaultClients;

/// `vaultgate run`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Serve only the admission webhook (no reconciler).
    #[arg(
        long,
        env = "VAULTGATE_WEBHOOK_ONLY",
        conflicts_with = "controller_only"
    )]
    pub webhook_only: bool,
    /// Run only the reconciler (no webhook).
    #[arg(long, env = "VAULTGATE_CONTROLLER_ONLY")]
    pub controller_only: bool,
    /// HTTPS address of the admission webhook.
    #[arg(long, env = "VAULTGATE_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub webhook_addr: SocketAddr,
    /// Plain-HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, env = "VAULTGATE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Serving certificate (PEM) of the webhook; reloaded when the file changes. Without it,
    /// vaultgate manages its own CA and certificate in a Secret.
    #[arg(long, env = "VAULTGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the serving certificate.
    #[arg(long, env = "VAULTGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that signs the API server's client certificate for the webhook. With it,
    /// the webhook serves only clients holding such a certificate, and checks stores under
    /// review against Vault with their credentials; reloaded when the file changes.
    #[arg(long, env = "VAULTGATE_WEBHOOK_CLIENT_CA")]
    pub webhook_client_ca: Option<PathBuf>,
    /// Namespace vaultgate runs in (for its Lease and certificate Secret).
    #[arg(
        long,
        env = "VAULTGATE_POD_NAMESPACE",
        default_value = "vaultgate-system"
    )]
    pub pod_namespace: String,
    /// Service in front of the webhook (its DNS names go into the self-managed certificate).
    #[arg(
        long,
        env = "VAULTGATE_SERVICE_NAME",
        default_value = "vaultgate-webhook"
    )]
    pub service_name: String,
    /// Secret holding the self-managed CA and serving certificate.
    #[arg(
        long,
        env = "VAULTGATE_CERT_SECRET",
        default_value = "vaultgate-webhook-tls"
    )]
    pub cert_secret: String,
    /// Name of the Validating- and MutatingWebhookConfiguration whose caBundle vaultgate keeps
    /// current when it manages its own certificates.
    #[arg(
        long,
        env = "VAULTGATE_WEBHOOK_CONFIG_NAME",
        default_value = "vaultgate"
    )]
    pub webhook_config_name: String,
    /// Only reconcile ExternalSecrets (and SecretStores) in this namespace.
    #[arg(long, env = "VAULTGATE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Only handle stores whose `spec.controller` equals this class.
    #[arg(long, env = "VAULTGATE_CONTROLLER_CLASS", default_value = "")]
    pub controller_class: String,
    /// Elect a leader on a Lease so that only one replica reconciles.
    #[arg(long, env = "VAULTGATE_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "VAULTGATE_LEASE_NAME",
        default_value = "vaultgate-controller"
    )]
    pub lease_name: String,
    /// Live admission checks against Vault and the cluster.
    #[arg(long, env = "VAULTGATE_ADMISSION_LIVE", value_enum, default_value_t = LiveMode::Warn)]
    pub admission_live: LiveMode,
    /// Time budget of the live admission checks (keep it well under the webhook's timeoutSeconds).
    #[arg(long, env = "VAULTGATE_ADMISSION_LIVE_BUDGET", value_parser = crate::api::duration::parse_flag, default_value = "2s")]
    pub admission_live_budget: Duration,
    /// How many ExternalSecrets are reconciled at once.
    #[arg(long, env = "VAULTGATE_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Log format.
    #[arg(long, env = "VAULTGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter, in `tracing` EnvFilter syntax.
    #[arg(long, env = "VAULTGATE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Entry point of `vaultgate run` from the command line.
pub fn main(args: Config) -> anyhow::Result<()> {
    crate::telemetry::init(args.log_format, &args.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let kube = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        run(args, kube, shutdown).await
    })
}

/// Makes ring the process's rustls provider (both ring and the default features are linked,
/// so rustls cannot pick one by itself).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

/// Readiness of the parts that run in this process.
#[derive(Clone, Default)]
pub struct Readiness {
    pub webhook: Arc<AtomicBool>,
    pub controller: Arc<AtomicBool>,
}

#[derive(Clone)]
struct HealthState {
    metrics: Metrics,
    ready: Readiness,
    need_webhook: bool,
    need_controller: bool,
}

/// Runs the configured parts until `shutdown` is cancelled or one of them fails; then stops the
/// others gracefully and revokes the Vault tokens vaultgate logged in for.
pub async fn run(
    args: Config,
    kube: kube::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_as(args, kube, shutdown, identity()).await
}

/// [`run`] under an explicit leader-election identity, for several replicas in one process
/// (where `POD_NAME` cannot tell them apart).
pub async fn run_as(
    args: Config,
    kube: kube::Client,
    shutdown: CancellationToken,
    identity: String,
) -> anyhow::Result<()> {
    install_crypto();
    let metrics = Metrics::new();
    let vault = VaultClients::new(kube.clone(), metrics.clone());
    let ready = Readiness::default();
    let need_webhook = !args.controller_only;
    let need_controller = !args.webhook_only;

    let health = HealthState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        need_webhook,
        need_controller,
    };
    let health_listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding --metrics-addr {}", args.metrics_addr))?;
    tracing::info!(addr = %health_listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let mut tasks = tokio::task::JoinSet::new();
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            axum::serve(health_listener, health_router(health))
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .context("metrics server")
        });
    }

    if need_webhook {
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => TlsSource::SelfManaged {
                namespace: args.pod_namespace.clone(),
                secret_name: args.cert_secret.clone(),
                service_name: args.service_name.clone(),
                webhook_config_name: args.webhook_config_name.clone(),
            },
        };
        let cfg = WebhookConfig {
            addr: args.webhook_addr,
            tls,
            client_ca: args.webhook_client_ca.clone(),
            live: args.admission_live,
            live_budget: args.admission_live_budget,
        };
        let (kube, vault, metrics, ready, shutdown) = (
            kube.clone(),
            vault.clone(),
            metrics.clone(),
            ready.webhook.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            crate::admission::serve(cfg, Some(kube), Some(vault), metrics, ready, shutdown)
                .await
                .context("admission webhook")
        });
    }

    if need_controller {
        let cfg = ControllerConfig {
            namespace: args.namespace.clone(),
            controller_class: args.controller_class.clone(),
            leader_elect: args.leader_elect,
            lease_name: args.lease_name.clone(),
            lease_namespace: args.pod_namespace.clone(),
            identity,
            concurrency: args.concurrency,
        };
        let (kube, vault, metrics, ready, shutdown) = (
            kube.clone(),
            vault.clone(),
            metrics.clone(),
            ready.controller.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            // The controller is ready to be asked about health as soon as it runs; leadership is
            // not readiness (a standby replica still serves the webhook).
            ready.store(true, Ordering::SeqCst);
            crate::reconcile::run(kube, vault, metrics, cfg, shutdown)
                .await
                .context("reconciler")
        });
    }

    // The first part to stop (error or shutdown) stops the rest.
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let r = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = r {
            tracing::error!(error = %format!("{e:#}"), "a part of vaultgate failed; shutting down");
            if result.is_ok() {
                result = Err(e);
            }
        }
        shutdown.cancel();
    }
    vault.revoke_all().await;
    tracing::info!("stopped");
    result
}

/// The identity in leader election: the pod name where there is one.
fn identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("vaultgate-{}", std::process::id()))
}

fn health_router(state: HealthState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics_handler(State(s): State<HealthState>) -> impl IntoResponse {
    s.metrics.runtime_alive_tasks.set(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as i64,
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<HealthState>) -> impl IntoResponse {
    let webhook = !s.need_webhook || s.ready.webhook.load(Ordering::SeqCst);
    let controller = !s.need_controller || s.ready.controller.load(Ordering::SeqCst);
    if webhook && controller {
        (StatusCode::OK, "ok".to_string())
    } else {
        let mut waiting = vec![];
        if !webhook {
            waiting.push("webhook TLS not serving yet");
        }
        if !controller {
            waiting.push("reconciler not started");
        }
        (StatusCode::SERVICE_UNAVAILABLE, waiting.join("; "))
    }
}
