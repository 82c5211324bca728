//! HTTPS for the webhook: rustls (TLS 1.2 and 1.3, ALPN h2 and http/1.1) with a certificate
//! that can be swapped while serving, hyper's auto (HTTP/1.1 + HTTP/2) connections, time
//! limits on slow or silent clients, and a graceful shutdown.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// A client that does not finish its TLS handshake in this time is dropped (a client that
/// connects and never starts TLS, or stalls in the middle of it).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must arrive complete within this time (slow-loris): the first request
/// counted from the end of the TLS handshake, later HTTP/1.1 requests from the end of the
/// previous response, so an idle HTTP/1.1 keep-alive connection is closed after this long too.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in progress is closed after this long without a new request
/// (HTTP/2 connections would otherwise stay open for as long as the client likes, and so would
/// connections to peers that vanished without closing them).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; more wait in the listen backlog. With the per-connection
/// buffers below, this bounds what clients can make the server hold before any request is read.
pub const MAX_CONNECTIONS: usize = 128;
/// HTTP/2 flow-control windows: what one stream, and one connection, may send ahead of the
/// handler reading it (hyper's defaults are a megabyte or more per connection).
const H2_STREAM_WINDOW: u32 = 64 << 10;
const H2_CONNECTION_WINDOW: u32 = 128 << 10;
/// The most an HTTP/1.1 connection buffers while reading a request's headers.
const H1_MAX_BUFFER: usize = 64 << 10;
/// How long in-flight requests get to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The time limits on each client connection (see the constants for what each bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub handshake: Duration,
    pub header_read: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: HANDSHAKE_TIMEOUT,
            header_read: HEADER_READ_TIMEOUT,
            idle: IDLE_TIMEOUT,
        }
    }
}

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

/// The rustls configuration: TLS 1.2+ (rustls has nothing older), HTTP/2 preferred by ALPN;
/// with `client_ca`, a client certificate signed by it is required.
pub fn server_config(
    resolver: Arc<CertResolver>,
    client_ca: Option<Arc<super::client_ca::ClientCa>>,
) -> anyhow::Result<Arc<ServerConfig>> {
    anyhow::ensure!(
        resolver.current().is_some(),
        "no serving certificate loaded"
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(ca),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Parses a PEM certificate chain and private key into a rustls key, refusing a key that does
/// not belong to the certificate and a certificate that has expired.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<CertifiedKey> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .context("reading the certificate PEM")?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in the certificate PEM");
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            anyhow::bail!("no private key in the key PEM")
        }
        r => r.context("reading the private key PEM")?,
    };
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
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
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
    config: Arc<ServerConfig>,
    app: axum::Router,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_https_with(listener, config, app, ready, shutdown, Timeouts::default()).await
}

/// [`serve_https`] with other time limits than the defaults.
pub async fn serve_https_with(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: axum::Router,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    timeouts: Timeouts,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Header time limits are the connection watchdog's: it also covers protocol detection and
    // HTTP/2's preface, which no hyper timer does.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(H1_MAX_BUFFER);
    builder
        .http2()
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW);
    let builder = Arc::new(builder);
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    // Cancelled when the drain time is over: connections still open then are dropped.
    let hard_stop = CancellationToken::new();
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "admission webhook serving HTTPS");
    ready.store(true, Ordering::SeqCst);
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = open.clone().acquire_owned() => s.expect("never closed"),
        };
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
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let hard_stop = hard_stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            let _ = tcp.set_nodelay(true);
            let handshake = tokio::time::timeout(timeouts.handshake, acceptor.accept(tcp));
            let tls = tokio::select! {
                _ = hard_stop.cancelled() => return,
                r = handshake => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "webhook TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("webhook TLS handshake timed out");
                        return;
                    }
                },
            };
            serve_connection(&builder, tls, app, timeouts, shutdown, hard_stop).await;
        });
    }
    ready.store(false, Ordering::SeqCst);
    drop(listener);
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("webhook connections still open after the drain timeout; closing");
        hard_stop.cancel();
    }
    Ok(())
}

/// Requests in progress on one connection and when the connection last became idle.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds after `start` when the last request ended.
    last_ms: AtomicU64,
    /// Whether the connection speaks HTTP/2 (known from its first request).
    h2: AtomicBool,
}

// The watchdog reads these counters only to decide whether to close an idle connection; no
// other memory is published through them, so relaxed ordering is enough.
impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            h2: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_since(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// How long the connection may stay without a request in progress. An HTTP/1.1 client
    /// that is not sending a request is either idle or sending one slowly (a slow-loris
    /// holding the connection by trickling headers): both end at the header limit, counted
    /// from the end of the previous response. An idle HTTP/2 connection gets the idle limit.
    fn idle_limit(&self, timeouts: &Timeouts) -> Duration {
        if self.requests.load(Ordering::Relaxed) == 0 {
            timeouts.header_read
        } else if self.h2.load(Ordering::Relaxed) {
            timeouts.idle
        } else {
            timeouts.header_read.min(timeouts.idle)
        }
    }
}

/// Marks a request in progress from the moment its headers were read until its response is
/// ready (or the request is abandoned).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(a: &Arc<Activity>, version: http::Version) -> Busy {
        if version == http::Version::HTTP_2 {
            a.h2.store(true, Ordering::Relaxed);
        }
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.requests.fetch_add(1, Ordering::Relaxed);
        // No clock read here: the idle time only counts while nothing is in flight, from the
        // end of the last request (see `Drop`).
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The app, counting the requests in progress on one connection.
#[derive(Clone)]
struct Tracked {
    app: axum::Router,
    activity: Arc<Activity>,
}

impl<B> tower::Service<http::Request<B>> for Tracked
where
    axum::Router: tower::Service<
            http::Request<B>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        >,
    <axum::Router as tower::Service<http::Request<B>>>::Future: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // The router is always ready; its own layers apply backpressure.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let busy = Busy::start(&self.activity, req.version());
        let response = tower::Service::call(&mut self.app, req);
        Box::pin(async move {
            let r = response.await;
            drop(busy);
            r
        })
    }
}

/// What the watchdog of a connection decided.
enum Verdict {
    /// Ask the connection to close (after its requests in progress), and give it until then.
    Close(Instant),
    /// Drop it now, for the reason given.
    Drop(&'static str),
}

/// Watches one connection until it must be closed or dropped: when asked to shut down, when
/// its first request's headers have not arrived `header_read` after the handshake (this also
/// covers the protocol detection and HTTP/2's preface, which no hyper timer does), when it has
/// been without a request in progress for its idle limit (see [`Activity::idle_limit`]), and
/// when a connection asked to close has not done so by `closing`.
async fn watchdog(
    activity: Arc<Activity>,
    timeouts: Timeouts,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    closing: Option<Instant>,
) -> Verdict {
    loop {
        let check_at = match closing {
            Some(deadline) => deadline,
            None if activity.in_flight.load(Ordering::Relaxed) > 0 => {
                Instant::now() + timeouts.header_read.min(timeouts.idle)
            }
            None => activity.idle_since() + activity.idle_limit(&timeouts),
        };
        tokio::select! {
            _ = hard_stop.cancelled() => return Verdict::Drop("the drain time is over"),
            _ = shutdown.cancelled(), if closing.is_none() => {
                return Verdict::Close(Instant::now() + DRAIN_TIMEOUT);
            }
            _ = tokio::time::sleep_until(check_at) => {
                if let Some(deadline) = closing {
                    if Instant::now() >= deadline {
                        return Verdict::Drop("webhook connection did not close in time");
                    }
                    continue;
                }
                if activity.in_flight.load(Ordering::Relaxed) > 0 {
                    continue;
                }
                if Instant::now() < activity.idle_since() + activity.idle_limit(&timeouts) {
                    continue;
                }
                if activity.requests.load(Ordering::Relaxed) == 0 {
                    // Nothing was ever asked on it: nothing is lost by dropping it.
                    return Verdict::Drop("webhook client sent no complete request in time");
                }
                tracing::debug!("webhook connection idle; closing");
                return Verdict::Close(Instant::now() + timeouts.header_read);
            }
        }
    }
}

/// Serves HTTP on one TLS connection under its [`watchdog`]: asked to close, the connection is
/// shut down gracefully; dropped, it is dropped.
async fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    app: axum::Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let service = Tracked {
        app,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let watch = |closing| {
        Box::pin(watchdog(
            activity.clone(),
            timeouts,
            shutdown.clone(),
            hard_stop.clone(),
            closing,
        ))
    };
    let mut dog = watch(None);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "webhook connection ended with an error");
                }
                return;
            }
            verdict = &mut dog => match verdict {
                Verdict::Drop(why) => {
                    tracing::debug!("{why}; connection dropped");
                    return;
                }
                Verdict::Close(deadline) => {
                    conn.as_mut().graceful_shutdown();
                    dog = watch(Some(deadline));
                }
            },
        }
    }
}
