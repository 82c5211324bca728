//! The HTTP(S) front: connection handling, request parsing, fault
//! injection, counters, authentication, ACL checks and routing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::database::DbStore;
use crate::policy;
use crate::raw::{RawResponse, RespBody, full, path_matches};
use crate::state::{Engine, State};
use crate::util::Resp;
use crate::{RequestRecord, auth, kv, sys, token};

/// The operation a request performs, as Vault's ACL sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    List,
    Write,
    Delete,
    Patch,
}

/// One parsed API request.
pub(crate) struct Ctx {
    pub op: Op,
    /// The path after `/v1/`.
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub ns: String,
    pub token: Option<String>,
    pub body: Value,
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

pub(crate) struct Fault {
    /// Matched with [`path_matches`]: a prefix, `*` standing for any run
    /// of characters.
    pub pattern: Option<String>,
    pub remaining: usize,
    pub answer: FaultAnswer,
}

#[derive(Clone)]
pub(crate) enum FaultAnswer {
    /// A Vault-style error body with this status.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Exactly this answer.
    Raw(Arc<RawResponse>),
}

const LOG_CAPACITY: usize = 10_000;
const ENDPOINT_KEYS_CAPACITY: usize = 4_096;

#[derive(Default)]
pub(crate) struct Metrics {
    pub total: AtomicU64,
    pub logins: AtomicU64,
    pub kv_reads: AtomicU64,
    pub log: Mutex<VecDeque<RequestRecord>>,
    pub by_endpoint: Mutex<HashMap<String, u64>>,
    pub last_headers: Mutex<HashMap<String, Vec<(String, String)>>>,
}

impl Metrics {
    pub fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.logins.store(0, Ordering::Relaxed);
        self.kv_reads.store(0, Ordering::Relaxed);
        lock(&self.log).clear();
        lock(&self.by_endpoint).clear();
    }

    pub fn to_json(&self) -> Value {
        let by: BTreeMap<String, u64> = lock(&self.by_endpoint)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        json!({
            "requests": self.total.load(Ordering::Relaxed),
            "logins": self.logins.load(Ordering::Relaxed),
            "kv_reads": self.kv_reads.load(Ordering::Relaxed),
            "by_endpoint": by,
        })
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Shared {
    pub state: RwLock<State>,
    pub metrics: Metrics,
    pub faults: Mutex<VecDeque<Fault>>,
    pub has_faults: AtomicBool,
    pub latency_ms: AtomicU64,
    pub sealed: AtomicBool,
    pub root_token: String,
    pub tls: bool,
}

impl Shared {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push_fault(&self, pattern: Option<String>, n: usize, answer: FaultAnswer) {
        if n == 0 {
            return;
        }
        lock(&self.faults).push_back(Fault {
            pattern,
            remaining: n,
            answer,
        });
        self.has_faults.store(true, Ordering::Release);
    }

    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
        self.has_faults.store(false, Ordering::Release);
    }

    /// Adds or updates an entry in the directory behind an LDAP mount of
    /// the root namespace.
    pub fn ldap_set_user(
        &self,
        mount: &str,
        user: &str,
        password: &str,
        groups: &[String],
    ) -> Result<(), String> {
        let mut st = self.write();
        let ns = st.ns_mut("").expect("root namespace");
        let key = format!("{}/", mount.trim_matches('/'));
        match ns.auths.get_mut(&key).map(|a| &mut a.backend) {
            Some(auth::AuthBackend::Ldap(l)) => {
                l.set_password(user, password, groups);
                Ok(())
            }
            _ => Err(format!("no ldap auth method at {mount:?}")),
        }
    }

    fn take_fault(&self, path: &str) -> Option<FaultAnswer> {
        if !self.has_faults.load(Ordering::Acquire) {
            return None;
        }
        let mut faults = lock(&self.faults);
        let idx = faults.iter().position(|f| {
            f.remaining > 0 && f.pattern.as_deref().is_none_or(|p| path_matches(p, path))
        })?;
        let f = &mut faults[idx];
        f.remaining -= 1;
        let out = f.answer.clone();
        if f.remaining == 0 {
            faults.remove(idx);
        }
        if faults.is_empty() {
            self.has_faults.store(false, Ordering::Release);
        }
        Some(out)
    }
}

type Certs = Option<Arc<Vec<CertificateDer<'static>>>>;

/// Accepts connections until shutdown; while "down" the listener is closed
/// (new connections are refused) and open connections are dropped.
pub(crate) async fn run(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut down: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if *down.borrow() {
            listener = None;
            tokio::select! {
                r = down.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
            continue;
        }
        if listener.is_none() {
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::warn!("rebinding {addr} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let l = listener.as_ref().expect("bound above");
        tokio::select! {
            acc = l.accept() => {
                let Ok((tcp, _)) = acc else { continue };
                let _ = tcp.set_nodelay(true);
                let shared = shared.clone();
                let tls = tls.clone();
                let down = down.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_conn(tcp, None, shared, down, shutdown).await,
                        Some(acceptor) => {
                            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                                Ok(Ok(s)) => s,
                                _ => return,
                            };
                            let certs = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect::<Vec<_>>()));
                            serve_conn(stream, certs, shared, down, shutdown).await
                        }
                    }
                });
            }
            r = down.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

async fn serve_conn<I>(
    io: I,
    certs: Certs,
    shared: Arc<Shared>,
    mut down: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        let certs = certs.clone();
        async move { Ok::<_, Infallible>(handle_http(shared, req, certs).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = async { let _ = down.wait_for(|d| *d).await; } => {}
        _ = shutdown.changed() => {}
    }
}

fn to_response(resp: Resp, head: bool) -> Response<RespBody> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("cache-control", "no-store");
    for (k, v) in &resp.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = match resp.body {
        Some(v) if !head => {
            builder = builder.header("content-type", "application/json");
            let mut s = serde_json::to_vec(&v).unwrap_or_default();
            s.push(b'\n');
            Bytes::from(s)
        }
        _ => Bytes::new(),
    };
    builder
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k, true), decode(v, true));
    }
    out
}

fn percent_decode(s: &str) -> String {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string())
}

async fn handle_http(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    certs: Certs,
) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let raw_path = percent_decode(parts.uri.path());
    let head = parts.method == Method::HEAD;

    if let Some(rest) = raw_path.strip_prefix("/_emulator/") {
        let body = match Limited::new(body, 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return to_response(emulator_api(&shared, &parts.method, rest, &body), head);
    }

    let ns_header = header_str(&parts.headers, "x-vault-namespace")
        .map(|n| n.trim().trim_matches('/').to_string())
        .unwrap_or_default();
    let ns = if ns_header == "root" {
        String::new()
    } else {
        ns_header
    };
    let path = raw_path.strip_prefix("/v1/").unwrap_or("").to_string();
    let (ns, path) = split_path_namespace(&shared, ns, path);
    let method = parts.method.clone();

    {
        let hdrs: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut last = lock(&shared.metrics.last_headers);
        if last.len() >= ENDPOINT_KEYS_CAPACITY && !last.contains_key(&path) {
            last.clear();
        }
        last.insert(path.clone(), hdrs);
    }

    let latency = shared.latency_ms.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }

    let mut counted_login = false;
    let mut counted_kv = false;
    let mut raw = None;
    let fault = if raw_path.starts_with("/v1/") {
        shared.take_fault(&path)
    } else {
        None
    };
    let resp = if !raw_path.starts_with("/v1/") {
        Resp::not_found()
    } else if let Some(FaultAnswer::Status {
        status,
        retry_after,
    }) = fault
    {
        let mut r = Resp::err(status, fault_message(status, &path));
        if let Some(s) = retry_after {
            r.headers.push(("retry-after".into(), s.to_string()));
        }
        r
    } else if let Some(FaultAnswer::Raw(r)) = fault {
        let status = r.status;
        raw = Some(r);
        Resp::new(status, None)
    } else {
        let body_bytes = match Limited::new(body, 32 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let query = parse_query(parts.uri.query());
        match build_ctx(
            &method,
            path.clone(),
            query,
            ns.clone(),
            &parts.headers,
            &body_bytes,
            certs,
        ) {
            Err(r) => r,
            Ok(ctx) => {
                let (r, login, kvr) = dispatch(&shared, &ctx).await;
                counted_login = login;
                counted_kv = kvr;
                r
            }
        }
    };

    let m = &shared.metrics;
    m.total.fetch_add(1, Ordering::Relaxed);
    if counted_login {
        m.logins.fetch_add(1, Ordering::Relaxed);
    }
    if counted_kv {
        m.kv_reads.fetch_add(1, Ordering::Relaxed);
    }
    {
        let mut log = lock(&m.log);
        if log.len() >= LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(RequestRecord {
            method: method.to_string(),
            path: path.clone(),
            namespace: ns,
            status: resp.status,
            at: std::time::Instant::now(),
        });
    }
    {
        let key = format!("{} {}", method, endpoint_class(&path));
        let mut by = lock(&m.by_endpoint);
        if by.len() < ENDPOINT_KEYS_CAPACITY || by.contains_key(&key) {
            *by.entry(key).or_default() += 1;
        }
    }
    match raw {
        Some(r) => r.to_response(),
        None => to_response(resp, head),
    }
}

/// Moves leading path segments that name a child namespace into the
/// namespace, as Vault does for `/v1/ns1/secret/data/x`.
fn split_path_namespace(shared: &Shared, mut ns: String, mut path: String) -> (String, String) {
    let st = shared.read();
    if st.namespaces.len() < 2 {
        return (ns, path);
    }
    loop {
        let Some((first, rest)) = path.split_once('/') else {
            return (ns, path);
        };
        let candidate = if ns.is_empty() {
            first.to_string()
        } else {
            format!("{ns}/{first}")
        };
        if first.is_empty() || !st.namespaces.contains_key(&candidate) {
            return (ns, path);
        }
        ns = candidate;
        path = rest.to_string();
    }
}

/// Groups paths for the per-endpoint counters without growing per secret.
fn endpoint_class(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').collect();
    match segs.as_slice() {
        ["sys", rest @ ..] => format!("sys/{}", rest.first().copied().unwrap_or("")),
        ["auth", "token", op, ..] => format!("auth/token/{op}"),
        ["auth", mount, op, ..] => format!("auth/{mount}/{op}"),
        [
            mount,
            "data" | "metadata" | "delete" | "undelete" | "destroy" | "config" | "subkeys",
            ..,
        ] => {
            format!("{mount}/{}", segs[1])
        }
        [mount, ..] => format!("{mount}/*"),
        [] => String::new(),
    }
}

fn fault_message(status: u16, path: &str) -> String {
    match status {
        429 => format!("request path \"{path}\": rate limit quota exceeded"),
        503 => "Vault is sealed".into(),
        500 => "internal error".into(),
        502 => "bad gateway".into(),
        403 => "permission denied".into(),
        _ => format!("injected fault ({status})"),
    }
}

fn build_ctx(
    method: &Method,
    path: String,
    query: BTreeMap<String, String>,
    ns: String,
    headers: &HeaderMap,
    body: &Bytes,
    certs: Certs,
) -> Result<Ctx, Resp> {
    let list_q = query.get("list").is_some_and(|v| v == "true" || v == "1");
    let op = match method.as_str() {
        "GET" | "HEAD" if list_q => Op::List,
        "GET" | "HEAD" => Op::Read,
        "LIST" => Op::List,
        "POST" | "PUT" => Op::Write,
        "DELETE" => Op::Delete,
        "PATCH" => Op::Patch,
        _ => return Err(Resp::err(405, "unsupported operation")),
    };
    let body = if body.iter().all(|b| b.is_ascii_whitespace()) {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Err(Resp::bad_request(
                    "failed to parse JSON input: body must be a JSON object",
                ));
            }
            Err(e) => {
                return Err(Resp::bad_request(format!(
                    "failed to parse JSON input: {e}"
                )));
            }
        }
    };
    let token = header_str(headers, "x-vault-token")
        .or_else(|| {
            header_str(headers, "authorization")
                .and_then(|a| a.strip_prefix("Bearer ").map(|s| s.to_string()))
        })
        .filter(|t| !t.is_empty());
    Ok(Ctx {
        op,
        path,
        query,
        ns,
        token,
        body,
        peer_certs: certs,
    })
}

/// Test-control endpoints for out-of-process users (benchmarks, the
/// sandbox); not part of Vault's API.
fn emulator_api(shared: &Shared, method: &Method, rest: &str, body: &Value) -> Resp {
    let num = |k: &str| body.get(k).and_then(Value::as_u64);
    match (method.as_str(), rest) {
        ("GET", "counters") => Resp::new(200, Some(shared.metrics.to_json())),
        ("POST", "counters/reset") => {
            shared.metrics.reset();
            Resp::no_content()
        }
        ("GET", "requests") => {
            let log: Vec<Value> = lock(&shared.metrics.log)
                .iter()
                .map(|r| json!({"method": r.method, "path": r.path, "namespace": r.namespace, "status": r.status}))
                .collect();
            Resp::new(200, Some(json!({ "requests": log })))
        }
        ("POST", "faults") => {
            let (Some(count), Some(status)) = (num("count"), num("status")) else {
                return Resp::bad_request("count and status are required");
            };
            let pattern = body
                .get("path_prefix")
                .and_then(Value::as_str)
                .map(|p| p.trim_start_matches('/').to_string());
            shared.push_fault(
                pattern,
                count as usize,
                FaultAnswer::Status {
                    status: status as u16,
                    retry_after: num("retry_after"),
                },
            );
            Resp::no_content()
        }
        ("POST", "raw") => match RawResponse::from_json(body) {
            Ok((raw, count)) => {
                let pattern = body
                    .get("path_prefix")
                    .and_then(Value::as_str)
                    .map(|p| p.trim_start_matches('/').to_string());
                shared.push_fault(pattern, count, FaultAnswer::Raw(Arc::new(raw)));
                Resp::no_content()
            }
            Err(e) => Resp::bad_request(e),
        },
        ("DELETE", "faults") => {
            shared.clear_faults();
            Resp::no_content()
        }
        ("POST", "latency") => {
            shared
                .latency_ms
                .store(num("ms").unwrap_or(0), Ordering::Relaxed);
            Resp::no_content()
        }
        ("POST", "sealed") => {
            let sealed = body.get("sealed").and_then(Value::as_bool).unwrap_or(false);
            shared.sealed.store(sealed, Ordering::Relaxed);
            Resp::no_content()
        }
        ("POST", "clock") => {
            let Some(s) = num("advance_s") else {
                return Resp::bad_request("advance_s is required");
            };
            shared.write().leases.advance(Duration::from_secs(s));
            Resp::no_content()
        }
        ("GET", "leases") => {
            let mut st = shared.write();
            let live = st.leases.live("");
            let c = st.leases.counters;
            Resp::new(
                200,
                Some(json!({
                    "issued": c.issued,
                    "renewed": c.renewed,
                    "revoked": c.revoked,
                    "expired": c.expired,
                    "live": live,
                })),
            )
        }
        ("POST", r) if r.starts_with("ldap/") => {
            // ldap/<mount>/users/<name> {"password": .., "groups": [..]}
            let Some((mount, user)) = r["ldap/".len()..].rsplit_once("/users/") else {
                return Resp::not_found();
            };
            let Some(password) = body.get("password").and_then(Value::as_str) else {
                return Resp::bad_request("password is required");
            };
            let groups = crate::util::string_list(body.get("groups")).unwrap_or_default();
            match shared.ldap_set_user(mount, user, password, &groups) {
                Ok(()) => Resp::no_content(),
                Err(e) => Resp::bad_request(e),
            }
        }
        _ => Resp::not_found(),
    }
}

/// Paths every Vault token may use regardless of its policies.
fn acl_exempt(path: &str) -> bool {
    path.starts_with("sys/internal/ui/mounts") || path == "sys/capabilities-self"
}

/// Paths that need `sudo` on top of the operation's capability.
fn needs_sudo(path: &str, op: Op) -> bool {
    (path.starts_with("sys/auth/") && matches!(op, Op::Write | Op::Delete))
        || (path.starts_with("sys/policy")
            && op == Op::Delete
            && path.trim_end_matches('/').ends_with("/root"))
}

/// Returns the response plus whether it counts as a login and as a KV read.
async fn dispatch(shared: &Arc<Shared>, ctx: &Ctx) -> (Resp, bool, bool) {
    let path = ctx.path.as_str();
    if path == "sys/health" {
        return (sys::health(shared, ctx), false, false);
    }
    if shared.sealed.load(Ordering::Relaxed) {
        return (Resp::err(503, "Vault is sealed"), false, false);
    }
    if path == "sys/seal-status" {
        return (sys::seal_status(shared), false, false);
    }
    if path == "sys/leader" {
        return (sys::leader(ctx), false, false);
    }
    // As in Vault, no backend accepts a write to a directory-like path.
    if matches!(ctx.op, Op::Write) && path.ends_with('/') {
        return (
            Resp::bad_request("cannot write to a path ending in '/'"),
            false,
            false,
        );
    }

    // Login endpoints are unauthenticated.
    if let Some(sub) = path.strip_prefix("auth/") {
        let login = {
            let st = shared.read();
            st.ns(&ctx.ns).and_then(|ns| {
                ns.auth_for(sub)
                    .filter(|(mount, rest)| {
                        mount != "token/" && auth::is_login_path(&ns.auths[mount].backend, rest)
                    })
                    .map(|(m, r)| (m, r.to_string()))
            })
        };
        if let Some((mount, rest)) = login {
            if ctx.op != Op::Write {
                return (Resp::unsupported_op(), false, false);
            }
            let r = auth::login(shared, ctx, &mount, &rest).await;
            return (r, true, false);
        }
    }

    let Some(token_id) = ctx.token.as_deref() else {
        return (Resp::denied(), false, false);
    };

    // Everything below runs under one lock acquisition per request.
    // A dynamic engine's reads issue leases: they change state too.
    let needs_write =
        matches!(ctx.op, Op::Write | Op::Delete | Op::Patch) || on_dynamic_engine(shared, ctx);
    let exhausted = |st: &State| st.tokens.get(token_id).is_some_and(|t| t.exhausted());
    if needs_write {
        let mut st = shared.write();
        let (mut r, kvr) = authorized(&mut st, shared, ctx, token_id);
        stamp_mount_type(&st, ctx, &mut r);
        if exhausted(&st) {
            st.revoke_tree(token_id);
        }
        (r, false, kvr)
    } else {
        let (r, kvr, done) = {
            let st = shared.read();
            let guard = ReadOnly(&st);
            let (mut r, kvr) = authorized_read(&guard, shared, ctx, token_id);
            stamp_mount_type(&st, ctx, &mut r);
            (r, kvr, exhausted(&st))
        };
        if done {
            // A token's last use revokes it, as Vault does.
            shared.write().revoke_tree(token_id);
        }
        (r, false, kvr)
    }
}

struct ReadOnly<'a>(&'a State);

fn on_dynamic_engine(shared: &Shared, ctx: &Ctx) -> bool {
    if ctx.path.starts_with("sys/") || ctx.path.starts_with("auth/") {
        return false;
    }
    let st = shared.read();
    st.ns(&ctx.ns)
        .and_then(|ns| ns.mount_for(&ctx.path).map(|(m, _)| &ns.mounts[&m].engine))
        .is_some_and(|e| matches!(e, Engine::Database(_)))
}

/// Vault (1.14+) names the type of the mount that served a request in
/// every response envelope.
fn stamp_mount_type(st: &State, ctx: &Ctx, resp: &mut Resp) {
    let Some(Value::Object(body)) = resp.body.as_mut() else {
        return;
    };
    if !body.contains_key("request_id") {
        return;
    }
    let Some(ns) = st.ns(&ctx.ns) else { return };
    let kind = if ctx.path.starts_with("sys/") {
        Some("system")
    } else if let Some(sub) = ctx.path.strip_prefix("auth/") {
        ns.auth_for(sub).map(|(m, _)| ns.auths[&m].kind)
    } else {
        ns.mount_for(&ctx.path).map(|(m, _)| ns.mounts[&m].kind)
    };
    if let Some(kind) = kind {
        body.insert("mount_type".into(), Value::String(kind.to_string()));
    }
}

/// A namespace that does not exist has no routes; only a root token gets
/// as far as being told so, others are denied first.
fn unknown_namespace(st: &State, token_id: &str, path: &str) -> Resp {
    match st.tokens.get(token_id) {
        Some(t) if t.is_root() && !t.expired() => Resp::no_route(path),
        Some(t) if !t.expired() => Resp::denied(),
        _ => Resp::invalid_token(),
    }
}

/// ACL check common to reads and writes.
fn check_acl(st: &State, ctx: &Ctx, token_id: &str) -> Result<crate::state::Token, Resp> {
    let Some(ns) = st.ns(&ctx.ns) else {
        return Err(unknown_namespace(st, token_id, &ctx.path));
    };
    let Some(token) = st.token(token_id, &ctx.ns) else {
        return Err(Resp::invalid_token());
    };
    let token = token.clone();
    if !token.take_use() {
        return Err(Resp::invalid_token());
    }
    if acl_exempt(&ctx.path) {
        return Ok(token);
    }
    let mut acl_path = ctx.path.clone();
    if ctx.op == Op::List && !acl_path.ends_with('/') {
        acl_path.push('/');
    }
    let need = match ctx.op {
        Op::Read => policy::READ,
        Op::List => policy::LIST,
        Op::Delete => policy::DELETE,
        Op::Patch => policy::PATCH,
        Op::Write => match ns.mount_for(&ctx.path) {
            Some((m, rest)) if !ctx.path.starts_with("sys/") && !ctx.path.starts_with("auth/") => {
                if kv::exists(&ns.mounts[&m].engine, rest) {
                    policy::UPDATE
                } else {
                    policy::CREATE
                }
            }
            _ => policy::UPDATE,
        },
    };
    let caps = st.capabilities(&token, &ctx.ns, &acl_path);
    if caps & policy::DENY != 0 || caps & need == 0 {
        return Err(Resp::acl_denied());
    }
    if needs_sudo(&ctx.path, ctx.op) && caps & policy::SUDO == 0 {
        return Err(Resp::acl_denied());
    }
    Ok(token)
}

fn authorized_read(
    st: &ReadOnly<'_>,
    shared: &Arc<Shared>,
    ctx: &Ctx,
    token_id: &str,
) -> (Resp, bool) {
    let st = st.0;
    let token = match check_acl(st, ctx, token_id) {
        Ok(t) => t,
        Err(r) => return (r, false),
    };
    let path = ctx.path.as_str();
    if path.starts_with("sys/") {
        return (sys::read(st, shared, ctx, &token), false);
    }
    if let Some(sub) = path.strip_prefix("auth/") {
        let ns = st.ns(&ctx.ns).expect("checked");
        return match ns.auth_for(sub) {
            Some((m, rest)) if m == "token/" => (token::read(st, ctx, &token, rest), false),
            Some((m, rest)) => (auth::read(&ns.auths[&m], ctx, rest), false),
            None => (Resp::no_route(path), false),
        };
    }
    let ns = st.ns(&ctx.ns).expect("checked");
    match ns.mount_for(path) {
        Some((m, rest)) => {
            let mount = &ns.mounts[&m];
            if matches!(mount.engine, Engine::Builtin) {
                return (builtin(&m, ctx), false);
            }
            let counted = kv::is_kv_read(&mount.engine, rest, ctx.op);
            (
                kv::read(&mount.engine, path, rest, ctx.op, &ctx.query),
                counted,
            )
        }
        None => (Resp::no_route(path), false),
    }
}

fn builtin(mount: &str, ctx: &Ctx) -> Resp {
    if mount == "cubbyhole/" && ctx.op == Op::List {
        return Resp::not_found();
    }
    if mount == "cubbyhole/" && ctx.op == Op::Read {
        return Resp::not_found();
    }
    Resp::no_route(&ctx.path)
}

fn authorized(st: &mut State, shared: &Arc<Shared>, ctx: &Ctx, token_id: &str) -> (Resp, bool) {
    let token = match check_acl(st, ctx, token_id) {
        Ok(t) => t,
        Err(r) => return (r, false),
    };
    let path = ctx.path.as_str();
    if path.starts_with("sys/") {
        return (sys::write(st, shared, ctx, &token), false);
    }
    if let Some(sub) = path.strip_prefix("auth/") {
        let found = st
            .ns(&ctx.ns)
            .expect("checked")
            .auth_for(sub)
            .map(|(m, r)| (m, r.to_string()));
        return match found {
            Some((m, rest)) if m == "token/" => (token::write(st, ctx, &token, &rest), false),
            Some((m, rest)) => {
                let ns = st.ns_mut(&ctx.ns).expect("checked");
                let am = ns.auths.get_mut(&m).expect("found");
                (auth::write(am, ctx, &rest), false)
            }
            None => (Resp::no_route(path), false),
        };
    }
    let ns = st.ns_mut(&ctx.ns).expect("checked");
    match ns.mount_for(path).map(|(m, r)| (m, r.to_string())) {
        Some((m, rest)) => {
            let ns_id = ns.id.clone();
            let mount = ns.mounts.get_mut(&m).expect("found");
            if matches!(mount.engine, Engine::Builtin) {
                return (builtin(&m, ctx), false);
            }
            if let Engine::Database(db) = &mut mount.engine {
                if !DbStore::is_creds(&rest, ctx.op) {
                    return (db.handle(path, &rest, ctx.op, &ctx.body), false);
                }
                let role = rest.trim_start_matches("creds/");
                let minted = match db.mint(role, &token.display_name) {
                    Ok(m) => m,
                    Err(r) => return (r, false),
                };
                let issuer = format!("{m}creds/{role}");
                let (id, ttl) =
                    st.leases
                        .issue(&ctx.ns, &ns_id, &issuer, minted.default_ttl, minted.max_ttl);
                let mut body = crate::util::envelope(Some(minted.data), None, ttl, true);
                body["lease_id"] = Value::String(id);
                return (Resp::new(200, Some(body)), false);
            }
            (
                kv::write(&mut mount.engine, path, &rest, ctx.op, &ctx.body),
                false,
            )
        }
        None => (Resp::no_route(path), false),
    }
}
