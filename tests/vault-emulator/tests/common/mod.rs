//! Shared helpers for the conformance tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use vault_emulator::{VaultEmulator, VaultEmulatorConfig};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Bounds every network wait in the tests.
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), f)
        .await
        .expect("operation timed out")
}

pub async fn start() -> VaultEmulator {
    init();
    VaultEmulator::start(VaultEmulatorConfig::default())
        .await
        .expect("emulator starts")
}

pub async fn start_tls() -> VaultEmulator {
    init();
    VaultEmulator::start(VaultEmulatorConfig {
        tls: true,
        ..Default::default()
    })
    .await
    .expect("emulator starts")
}

pub fn client(vault: &VaultEmulator, token: &str) -> VaultClient {
    client_ns(vault, token, None)
}

pub fn client_ns(vault: &VaultEmulator, token: &str, namespace: Option<&str>) -> VaultClient {
    init();
    let mut b = VaultClientSettingsBuilder::default();
    b.address(vault.addr())
        .token(token)
        .timeout(Some(Duration::from_secs(10)));
    if let Some(ns) = namespace {
        b.set_namespace(ns.to_string());
    }
    let ca = vault.ca_pem().map(|ca| TempFile::new("ca.pem", &ca));
    if let Some(ca) = &ca {
        b.ca_certs(vec![ca.path.clone()]);
    }
    VaultClient::new(b.build().expect("settings")).expect("client")
}

/// A file in a directory of its own, both removed when dropped. vaultrs takes CA certificates
/// only as file paths and reads them when the client is built: keep this until then.
pub struct TempFile {
    dir: std::path::PathBuf,
    pub path: String,
}

impl TempFile {
    pub fn new(name: &str, content: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!(
            "vault-emulator-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write temp");
        TempFile {
            path: path.to_string_lossy().into_owned(),
            dir,
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A plain HTTP client for raw-shape checks (trusting the emulator CA when
/// serving TLS).
pub fn raw(vault: &VaultEmulator) -> reqwest::Client {
    init();
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ca) = vault.ca_pem() {
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes()).expect("ca");
        b = b.tls_certs_only(certs);
    } else {
        b = b.tls_certs_only(Vec::new());
    }
    b.build().expect("reqwest client")
}

/// Sends a request and returns status and JSON body (Null when empty).
pub async fn call(
    http: &reqwest::Client,
    vault: &VaultEmulator,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    call_ns(http, vault, method, path, token, None, body).await
}

pub async fn call_ns(
    http: &reqwest::Client,
    vault: &VaultEmulator,
    method: &str,
    path: &str,
    token: Option<&str>,
    namespace: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http.request(
        method,
        format!("{}/v1/{}", vault.addr(), path.trim_start_matches('/')),
    );
    if let Some(t) = token {
        req = req.header("X-Vault-Token", t);
    }
    if let Some(ns) = namespace {
        req = req.header("X-Vault-Namespace", ns);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = within(req.send()).await.expect("request sent");
    let status = resp.status().as_u16();
    let text = within(resp.text()).await.expect("body");
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, v)
}

/// The `errors` array of an error body.
pub fn errors(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .map(|e| e.as_str().expect("string error").to_string())
        .collect()
}

pub fn api_status(e: &vaultrs::error::ClientError) -> Option<u16> {
    match e {
        vaultrs::error::ClientError::APIError { code, .. } => Some(*code),
        _ => None,
    }
}

/// Serves an axum router over HTTPS on 127.0.0.1 with an rcgen certificate
/// for 127.0.0.1; returns the base URL and the CA PEM.
pub async fn https_server(router: axum::Router) -> (String, String) {
    init();
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test api CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    (format!("https://{addr}"), ca_cert.pem())
}
