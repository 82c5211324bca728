//! HTTPS listener, authentication, audit, fault injection and discovery.

use crate::auth::{Signer, User};
use crate::registry::{Registry, builtins};
use crate::status::ApiError;
use crate::store::Store;
use crate::{AuditRecord, FaultFilter, KubeEmulatorConfig, api};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct Shared {
    pub store: Store,
    registry: RwLock<Arc<Registry>>,
    pub signer: Signer,
    pub url: String,
    pub bookmark_interval: Duration,
    pub latency: Mutex<Duration>,
    pub audit: Mutex<Vec<AuditRecord>>,
    pub webhook_calls: Mutex<Vec<crate::admission::WebhookCall>>,
    pub faults: Mutex<Vec<(FaultFilter, usize, u16)>>,
    pub drop_tx: tokio::sync::watch::Sender<u64>,
    pub services: Mutex<HashMap<(String, String, u16), SocketAddr>>,
    pub webhook_client_identity: Option<crate::ClientIdentity>,
}

impl Shared {
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn update_registry(&self, f: impl FnOnce(&mut Registry)) {
        let mut g = self.registry.write().unwrap_or_else(|e| e.into_inner());
        let mut r = (**g).clone();
        f(&mut r);
        *g = Arc::new(r);
    }

    fn take_fault(&self, verb: &str, resource: &str) -> Option<u16> {
        let mut f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let idx = f.iter().position(|(flt, n, _)| {
            *n > 0
                && flt.verb.as_deref().is_none_or(|v| v == verb)
                && flt.resource.as_deref().is_none_or(|r| r == resource)
        })?;
        let code = f[idx].2;
        f[idx].1 -= 1;
        if f[idx].1 == 0 {
            f.remove(idx);
        }
        Some(code)
    }
}

pub struct ServerHandle {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    accept: Mutex<Option<JoinHandle<()>>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl ServerHandle {
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }
}

struct Tls {
    ca_pem: String,
    ca_der: Vec<u8>,
    config: rustls::ServerConfig,
}

fn make_tls() -> anyhow::Result<Tls> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kube-emulator-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let cert = params.signed_by(&key, &issuer)?;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| anyhow::anyhow!("serving key: {e}"))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), ca_cert.der().clone()], key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        config,
    })
}

pub async fn start(cfg: KubeEmulatorConfig) -> anyhow::Result<(Arc<Shared>, ServerHandle)> {
    let tls = make_tls()?;
    let listener = TcpListener::bind(
        cfg.bind
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .await?;
    let addr = listener.local_addr()?;
    let url = format!("https://{addr}");
    let (drop_tx, _) = tokio::sync::watch::channel(0u64);
    let shared = Arc::new(Shared {
        store: Store::new(cfg.history_size, 65_536),
        registry: RwLock::new(Arc::new(Registry::new(builtins()))),
        signer: Signer::new(url.clone())?,
        url,
        bookmark_interval: cfg.bookmark_interval,
        latency: Mutex::new(cfg.latency),
        audit: Mutex::new(vec![]),
        webhook_calls: Mutex::new(vec![]),
        faults: Mutex::new(vec![]),
        drop_tx,
        services: Mutex::new(HashMap::new()),
        webhook_client_identity: cfg.webhook_client_identity.clone(),
    });
    for ns in ["default", "kube-system", "kube-public"] {
        api::create_or_replace(
            &shared,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await
        .map_err(|e| anyhow::anyhow!("bootstrapping namespace {ns}: {e}"))?;
    }
    shared.store.compact();

    let router = axum::Router::new()
        .fallback(entry)
        .with_state(shared.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.config));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let accept = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let router = router.clone();
            let mut stop_rx = stop_rx.clone();
            conns.spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(router);
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let conn =
                    builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = stop_rx.wait_for(|s| *s) => {}
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    Ok((
        shared,
        ServerHandle {
            addr,
            ca_pem: tls.ca_pem,
            ca_der: tls.ca_der,
            accept: Mutex::new(Some(accept)),
            stop,
        },
    ))
}

/// `/openapi/v2` in the representation the client accepts (kubectl asks for protobuf).
fn openapi_v2_response(headers: &HeaderMap) -> Response {
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if accept.contains("protobuf") {
        let mut r = Response::new(Body::from(crate::openapi_v2::protobuf()));
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static(crate::openapi_v2::PROTOBUF),
        );
        return r;
    }
    json_response(200, &crate::openapi_v2::json())
}

/// A JSON response.
pub fn json_response(code: u16, v: &Value) -> Response {
    bytes_response(code, serde_json::to_vec(v).unwrap_or_default())
}

pub fn bytes_response(code: u16, body: Vec<u8>) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from(body))
        .expect("static response parts are valid")
}

pub fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, tok) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| tok.trim())
}

impl Shared {
    /// Authenticate a bearer token; service-account tokens must name an existing account.
    pub fn authenticate(&self, token: &str) -> Option<User> {
        let user = self.signer.authenticate(token)?;
        if let Some(rest) = user.username.strip_prefix("system:serviceaccount:") {
            let (ns, name) = rest.split_once(':')?;
            let sa = self
                .store
                .get("/serviceaccounts", &crate::store::key(Some(ns), name))?;
            if !user.uid.is_empty() && sa["metadata"]["uid"].as_str() != Some(user.uid.as_str()) {
                return None;
            }
        }
        Some(user)
    }

    pub fn record(&self, rec: AuditRecord) {
        self.audit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rec);
    }
}

/// Parsed target of a resource request.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: Option<String>,
    pub name: String,
}

async fn entry(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let mut rec = AuditRecord {
        user: "system:anonymous".into(),
        verb: req.method().as_str().to_lowercase(),
        api_group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        code: 0,
        uri: req.uri().path().to_string(),
    };
    let resp = route(&shared, req, &mut rec).await;
    rec.code = resp.status().as_u16();
    shared.record(rec);
    resp
}

async fn route(shared: &Arc<Shared>, req: Request<Body>, rec: &mut AuditRecord) -> Response {
    let latency = *shared.latency.lock().unwrap_or_else(|e| e.into_inner());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/.well-known/openid-configuration" => {
            return json_response(
                200,
                &json!({
                    "issuer": shared.signer.issuer,
                    "jwks_uri": format!("{}/openid/v1/jwks", shared.url),
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["ES256"],
                }),
            );
        }
        "/openid/v1/jwks" => return json_response(200, &shared.signer.jwks()),
        "/healthz" | "/livez" | "/readyz" => {
            return (StatusCode::OK, [("content-type", "text/plain")], "ok").into_response();
        }
        "/version" => {
            return json_response(
                200,
                &json!({
                    "major": "1", "minor": "34", "gitVersion": "v1.34.0-emulator",
                    "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                    "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
                }),
            );
        }
        _ => {}
    }
    let user = match bearer(req.headers()).and_then(|t| shared.authenticate(t)) {
        Some(u) => u,
        None => {
            rec.verb = verb_of(req.method(), &path, req.uri().query().unwrap_or_default());
            return error_response(&ApiError::unauthorized());
        }
    };
    rec.user = user.username.clone();
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(|s| s.as_str()).collect();
    let reg = shared.registry();
    // Discovery.
    let discovery = match segs.as_slice() {
        ["api"] => Some(Some(reg.api_versions())),
        ["apis"] => Some(Some(reg.api_group_list())),
        ["api", "v1"] => Some(reg.resource_list("", "v1")),
        ["apis", g] => Some(reg.api_group(g)),
        ["apis", g, v] => Some(reg.resource_list(g, v)),
        ["openapi", "v3"] => Some(Some(reg.openapi_v3_root())),
        ["openapi", "v3", "api", v] => Some(reg.openapi_v3_gv("", v)),
        ["openapi", "v3", "apis", g, v] => Some(reg.openapi_v3_gv(g, v)),
        ["openapi", "v2"] if req.method() == Method::GET => {
            return openapi_v2_response(req.headers());
        }
        ["openapi", ..] => Some(None),
        [] => Some(Some(
            json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version", "/openid/v1/jwks", "/.well-known/openid-configuration"]}),
        )),
        _ => None,
    };
    // Aggregated discovery, when the client asks for it first.
    let wants_aggregated = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split(',').next())
        .is_some_and(|first| {
            first.contains("as=APIGroupDiscoveryList")
                && first.contains("g=apidiscovery.k8s.io")
                && first.contains("v=v2")
                && !first.contains("v=v2beta1")
        });
    if wants_aggregated
        && req.method() == Method::GET
        && matches!(segs.as_slice(), ["api"] | ["apis"])
    {
        let body = reg.aggregated(segs.as_slice() == ["api"]);
        let mut r = json_response(200, &body);
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            ),
        );
        return r;
    }
    if let Some(d) = discovery {
        return match d {
            Some(v) if req.method() == Method::GET => json_response(200, &v),
            Some(_) => error_response(&ApiError::method_not_allowed(req.method().as_str())),
            None => error_response(&ApiError::path_not_found()),
        };
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return error_response(&ApiError::path_not_found()),
    };
    let mut t = Target {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    let is_ns_resource = |r: &str| reg.lookup(group, version, r).is_some_and(|d| d.namespaced);
    match rest {
        ["namespaces", ns, r, tail @ ..] if is_ns_resource(r) => {
            t.namespace = Some((*ns).into());
            t.resource = (*r).into();
            match tail {
                [] => {}
                [n] => t.name = (*n).into(),
                [n, s] => {
                    t.name = (*n).into();
                    t.subresource = (*s).into();
                }
                _ => return error_response(&ApiError::path_not_found()),
            }
        }
        [r] => t.resource = (*r).into(),
        [r, n] => {
            t.resource = (*r).into();
            t.name = (*n).into();
        }
        [r, n, s] => {
            t.resource = (*r).into();
            t.name = (*n).into();
            t.subresource = (*s).into();
        }
        _ => return error_response(&ApiError::path_not_found()),
    }
    let query = req.uri().query().unwrap_or_default().to_string();
    let verb = verb_of(req.method(), &path, &query);
    let verb = if t.name.is_empty() {
        verb
    } else {
        match verb.as_str() {
            "list" => "get".to_string(),
            "deletecollection" => "delete".to_string(),
            v => v.to_string(),
        }
    };
    rec.verb = verb.clone();
    rec.api_group = t.group.clone();
    rec.resource = t.resource.clone();
    rec.subresource = t.subresource.clone();
    rec.namespace = t.namespace.clone().unwrap_or_default();
    rec.name = t.name.clone();
    match shared.take_fault(&verb, &t.resource) {
        Some(code) => error_response(&ApiError::from_code(code)),
        None => api::handle(shared.clone(), reg, t, verb, user, req).await,
    }
}

fn verb_of(method: &Method, path: &str, query: &str) -> String {
    let has_name = {
        // A name follows the resource when the path has an odd number of segments after the version.
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let after = match segs.first() {
            Some(&"api") => segs.len().saturating_sub(2),
            _ => segs.len().saturating_sub(3),
        };
        let after = if segs.get(if segs.first() == Some(&"api") { 2 } else { 3 })
            == Some(&"namespaces")
            && after >= 3
        {
            after - 2
        } else {
            after
        };
        after >= 2
    };
    let watch = form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    match *method {
        Method::GET if watch => "watch",
        Method::GET if has_name => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if has_name => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
    .to_string()
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(x) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
