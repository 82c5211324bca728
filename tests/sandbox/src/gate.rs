//! A gate between one vaultgate replica and the API server: it can fail that replica's Lease
//! requests (while everything else it sends goes through, the worst case for leader election),
//! and it timestamps every write the replica makes, so that tests can tell who wrote when.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{Method, Request, Response};
use kube::client::Body;

/// One write (POST, PUT, PATCH, DELETE) sent through the gate.
#[derive(Debug, Clone)]
pub struct GateWrite {
    /// When the request left the replica.
    pub sent: Instant,
    /// When its response came back.
    pub answered: Instant,
    pub method: String,
    pub path: String,
    /// HTTP status (injected failures included).
    pub status: u16,
}

impl GateWrite {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// A Lease request (leader election), as opposed to the replica's work.
    pub fn is_lease(&self) -> bool {
        self.path.contains("/leases")
    }
}

/// Writes kept at most (older ones are dropped).
const KEPT: usize = 200_000;

#[derive(Default)]
struct Inner {
    /// 0: Lease requests pass; otherwise they fail with this status.
    fail_leases: AtomicU16,
    writes: Mutex<Vec<GateWrite>>,
}

/// Cheap to clone; clones share the same state.
#[derive(Clone, Default)]
pub struct ApiGate {
    inner: Arc<Inner>,
}

impl ApiGate {
    /// Fail every Lease request of this replica with `status` (`None`: let them through).
    pub fn fail_leases(&self, status: Option<u16>) {
        self.inner
            .fail_leases
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Every write made through the gate so far, oldest first.
    pub fn writes(&self) -> Vec<GateWrite> {
        self.inner
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A client that sends through this gate to `upstream`.
    pub fn client(&self, upstream: kube::Client) -> kube::Client {
        let gate = self.clone();
        let default_ns = upstream.default_namespace().to_string();
        let service = tower::service_fn(move |req: Request<Body>| {
            let gate = gate.clone();
            let upstream = upstream.clone();
            async move { gate.pass(req, upstream).await }
        });
        kube::Client::new(service, default_ns)
    }

    async fn pass(
        &self,
        req: Request<Body>,
        upstream: kube::Client,
    ) -> Result<Response<Body>, tower::BoxError> {
        let write = matches!(
            *req.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        let (method, path) = (req.method().to_string(), req.uri().path().to_string());
        let sent = Instant::now();
        let fail = self.inner.fail_leases.load(Ordering::SeqCst);
        let result = if fail != 0 && path.contains("/leases") {
            Ok(injected(fail))
        } else {
            upstream.send(req).await.map_err(tower::BoxError::from)
        };
        if write {
            let status = match &result {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            let mut writes = self.inner.writes.lock().unwrap_or_else(|e| e.into_inner());
            if writes.len() >= KEPT {
                writes.drain(..KEPT / 2);
            }
            writes.push(GateWrite {
                sent,
                answered: Instant::now(),
                method,
                path,
                status,
            });
        }
        result
    }
}

/// A `Status` as the API server would send it.
fn injected(code: u16) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "injected by the sandbox's API gate",
        "reason": if code == 503 { "ServiceUnavailable" } else { "InternalError" },
        "code": code,
    });
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
        .expect("static response parts are valid")
}
