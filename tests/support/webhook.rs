//! The webhook for tests of hostile input: the router in-process, or served over real HTTPS
//! with chosen time limits, plus AdmissionReview builders and the checks every answer must pass.

#![allow(dead_code)]

use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use vaultgate::admission::LiveMode;
use vaultgate::admission::tls::{self, CertResolver, Timeouts};
use vaultgate::admission::{AdmissionState, Callers, router};
use vaultgate::metrics::Metrics;

/// The webhook's routes with static rules only (no live checks), as `vaultgate run` builds them.
pub fn app() -> axum::Router {
    router(AdmissionState::new(
        Metrics::new(),
        LiveMode::Off,
        Duration::from_secs(2),
        Callers::Anyone,
        None,
        None,
    ))
}

/// One answer: status, body, and how long it took.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub took: Duration,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("a 200 answer is JSON ({e}): {}", self.text()))
    }
}

/// POSTs `body` to `path` on the router, in-process.
pub async fn call(app: &axum::Router, path: &str, body: Vec<u8>) -> Answer {
    let req = http::Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let start = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(30), app.clone().oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer in 30 s"))
        .unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        body,
        took: start.elapsed(),
    }
}

/// The uid of the request in `body`, when the body is JSON with a string uid there. Read
/// without building the rest, which may be nested deeper than a `Value` may be.
pub fn request_uid(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Review {
        request: Option<Request>,
    }
    #[derive(serde::Deserialize)]
    struct Request {
        uid: Option<String>,
    }
    let r: Review = serde_json::from_slice(body).ok()?;
    r.request?.uid
}

/// What every answer must be, whatever was sent: a 4xx with a message saying what is wrong, or
/// a 200 AdmissionReview answering the request's uid, whose denial (if any) gives a reason.
/// Returns the `response` of a 200.
pub fn check_answer(sent: &[u8], a: &Answer) -> Option<Value> {
    match a.status {
        200 => {
            let v = a.json();
            let resp = &v["response"];
            let uid = request_uid(sent).unwrap_or_else(|| {
                panic!(
                    "a 200 answer ({v}) to a request without a readable uid: {}",
                    String::from_utf8_lossy(&sent[..sent.len().min(2000)])
                )
            });
            assert_eq!(resp["uid"], json!(uid), "the answer's uid: {v}");
            let allowed = resp["allowed"]
                .as_bool()
                .unwrap_or_else(|| panic!("response.allowed is a boolean: {v}"));
            if !allowed {
                let msg = resp["status"]["message"].as_str().unwrap_or_default();
                assert!(!msg.trim().is_empty(), "a denial gives a reason: {v}");
            }
            Some(resp.clone())
        }
        400 => {
            let text = a.text();
            assert!(
                text.starts_with("malformed AdmissionReview: ") && text.len() > 27,
                "a 400 says what is malformed: {text:?}"
            );
            None
        }
        413 => {
            assert!(
                a.text().contains("at most 3 MiB") || a.text().contains("JSON values"),
                "a 413 gives the limit: {}",
                a.text()
            );
            None
        }
        s => panic!("unexpected status {s}: {}", a.text()),
    }
}

/// The denial message of a 200 answer, or `None` when it allowed.
pub fn denial(resp: &Value) -> Option<String> {
    (resp["allowed"] == false).then(|| {
        resp["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
}

fn plural(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
}

/// An AdmissionReview for `object`, whose `kind` and `apiVersion` give the request's kind.
pub fn review(uid: &str, op: &str, object: &Value) -> Value {
    let kind = object["kind"].as_str().unwrap_or("ExternalSecret");
    let (group, version) = object["apiVersion"]
        .as_str()
        .unwrap_or("external-secrets.io/v1")
        .split_once('/')
        .unwrap_or(("", "v1"));
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": plural(kind)});
    let mut req = json!({
        "uid": uid,
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": object["metadata"]["name"],
        "operation": op,
        "userInfo": {"username": "admin", "groups": ["system:masters"]},
        "object": object,
        "oldObject": null,
        "dryRun": false,
    });
    if let Some(ns) = object["metadata"]["namespace"].as_str() {
        req["namespace"] = json!(ns);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

pub fn external_secret(version: &str, spec: Value) -> Value {
    json!({
        "apiVersion": format!("external-secrets.io/{version}"),
        "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": "team-a"},
        "spec": spec,
    })
}

/// A valid ExternalSecret spec reading `key`.
pub fn es_spec(key: &str) -> Value {
    json!({
        "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
        "refreshInterval": "1h0m0s",
        "target": {"name": "app", "creationPolicy": "Owner", "deletionPolicy": "Retain"},
        "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
    })
}

pub fn store(version: &str, kind: &str) -> Value {
    let mut v = json!({
        "apiVersion": format!("external-secrets.io/{version}"),
        "kind": kind,
        "metadata": {"name": "vault"},
        "spec": {"provider": {"vault": {
            "server": "https://vault:8200", "path": "secret", "version": "v2",
            "auth": {"kubernetes": {"role": "app", "mountPath": "kubernetes",
                                      "serviceAccountRef": {"name": "app"}}}}}},
    });
    if kind == "SecretStore" {
        v["metadata"]["namespace"] = json!("team-a");
    }
    v
}

/// The webhook served over HTTPS on a local port.
pub struct Server {
    pub addr: SocketAddr,
    pub ca_pem: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub async fn start(timeouts: Timeouts) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let bundle = vaultgate::certs::generate(&names, Duration::from_secs(3600)).unwrap();
        let resolver = Arc::new(CertResolver::default());
        resolver.set(
            tls::certified_key(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes()).unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let shutdown = CancellationToken::new();
        let config = tls::server_config(resolver, None).unwrap();
        let task = tokio::spawn(tls::serve_https_with(
            listener,
            config,
            app(),
            ready.clone(),
            shutdown.clone(),
            timeouts,
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ready.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "webhook did not become ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Server {
            addr,
            ca_pem: bundle.ca_cert_pem,
            shutdown,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// A client trusting the server's CA; a new one has no pooled connection.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// POSTs `body` over HTTPS.
    pub async fn post(&self, client: &reqwest::Client, path: &str, body: Vec<u8>) -> Answer {
        let start = Instant::now();
        let resp = client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap().to_vec();
        Answer {
            status,
            body,
            took: start.elapsed(),
        }
    }

    /// A rustls client configuration trusting the server's CA, offering `alpn`.
    pub fn tls_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// A TLS connection to the server, handshake done.
    pub async fn connect_tls(
        &self,
        alpn: &[&[u8]],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let connector = tokio_rustls::TlsConnector::from(self.tls_config(alpn));
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("graceful shutdown finishes")
            .unwrap()
            .unwrap();
    }
}
