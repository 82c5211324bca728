//! HTTPS for the webhook: rustls (TLS 1.2 and 1.3, ALPN h2 and http/1.1) with a certificate
//! that can be swapped while serving, hyper's auto (HTTP/1.1 + HTTP/2) connections and a
//! graceful shutdown.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often the certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// A client that does not finish its handshake in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The current serving certificate; swapped whole, read at every handshake.
#[derive(Default, Debug)]
pub struct CertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertResolver {
    pub fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(key));
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// The rustls configuration: TLS 1.2+ (rustls has nothing older), HTTP/2 preferred by ALPN.
pub fn server_config(resolver: Arc<CertResolver>) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Parses a PEM certificate chain and private key into a rustls key, refusing a key that does
/// not belong to the certificate and a certificate that has expired.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<CertifiedKey> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .context("reading the certificate PEM")?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in the certificate PEM");
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .context("reading the private key PEM")?
        .context("no private key in the key PEM")?;
    let pem = std::str::from_utf8(cert_pem).context("the certificate PEM is not text")?;
    let not_after = crate::certs::not_after(pem)?;
    anyhow::ensure!(
        not_after > SystemTime::now(),
        "the certificate expired at {}",
        humantime(not_after)
    );
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(certs, key, &provider)
        .context("the private key does not match the certificate")?;
    // `from_der` lets an undecidable comparison pass; insist on a real match.
    ck.keys_match()
        .context("the private key does not match the certificate")?;
    Ok(ck)
}

fn humantime(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default()
}

/// Modification times and sizes of both files: a change in either means "look again".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    cert: (Option<SystemTime>, u64),
    key: (Option<SystemTime>, u64),
}

fn stamp_of(path: &Path) -> (Option<SystemTime>, u64) {
    match std::fs::metadata(path) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    }
}

pub fn stamp(cert: &Path, key: &Path) -> Stamp {
    Stamp {
        cert: stamp_of(cert),
        key: stamp_of(key),
    }
}

pub struct Loaded {
    pub key: CertifiedKey,
    pub stamp: Stamp,
    pub not_after: SystemTime,
}

/// Reads both files once.
pub fn load_files(cert: &Path, key: &Path) -> anyhow::Result<Loaded> {
    let stamp = stamp(cert, key);
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let ck = certified_key(&cert_pem, &key_pem)
        .with_context(|| format!("loading {} and {}", cert.display(), key.display()))?;
    let not_after = crate::certs::not_after(&String::from_utf8_lossy(&cert_pem))?;
    Ok(Loaded {
        key: ck,
        stamp,
        not_after,
    })
}

/// The files being watched and what was last loaded from them.
pub struct Watched {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub stamp: Stamp,
    pub not_after: SystemTime,
}

/// Polls the files and swaps the certificate once both have changed into a matching pair.
/// A half-written pair (new certificate, old key) is skipped until the next poll completes it.
/// `ready` turns false while the certificate served has expired and no valid one replaced it.
pub async fn watch_files(
    mut w: Watched,
    resolver: Arc<CertResolver>,
    ready: Arc<AtomicBool>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut reported: Option<Stamp> = None;
    let mut expired = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let now = stamp(&w.cert, &w.key);
        if now != w.stamp {
            match load_files(&w.cert, &w.key) {
                Ok(l) => {
                    resolver.set(l.key);
                    w.stamp = l.stamp;
                    w.not_after = l.not_after;
                    reported = None;
                    tracing::info!(cert = %w.cert.display(), "webhook certificate reloaded");
                }
                Err(e) => {
                    // Report each broken state once, not at every poll.
                    if reported != Some(now) {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "webhook certificate not reloaded; still serving the previous one"
                        );
                        reported = Some(now);
                    }
                }
            }
        }
        // Only ever turned false for an expired certificate, and back once a valid one is
        // loaded; never after shutdown began (the server turns it false then).
        let valid = w.not_after > SystemTime::now();
        if !valid && !expired {
            expired = true;
            ready.store(false, Ordering::SeqCst);
            tracing::error!(cert = %w.cert.display(), "the webhook certificate has expired; not ready until it is replaced");
        } else if valid && expired && !shutdown.is_cancelled() {
            expired = false;
            ready.store(true, Ordering::SeqCst);
        }
    }
}

/// Accepts TLS connections and serves `app` on each (HTTP/1.1 or HTTP/2) until `shutdown`,
/// then lets in-flight requests finish. `ready` is true while serving with a certificate.
pub async fn serve_https(
    listener: TcpListener,
    resolver: Arc<CertResolver>,
    app: axum::Router,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        resolver.current().is_some(),
        "no serving certificate loaded"
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(resolver)?);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "admission webhook serving HTTPS");
    ready.store(true, Ordering::SeqCst);
    loop {
        let (tcp, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a webhook connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "webhook connection ended with an error");
            }
        });
    }
    ready.store(false, Ordering::SeqCst);
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("webhook connections still open after the drain timeout; closing");
    }
    Ok(())
}
