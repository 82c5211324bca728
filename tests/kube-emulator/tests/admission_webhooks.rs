//! Admission webhooks called over HTTPS, checked against kube-apiserver's behaviour:
//! matching, ordering, patches, denials, failure policies, dry-run and warnings.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhookConfiguration,
};
use kube_emulator::admission::{
    AdmissionAttributes, AdmissionEnv, GroupVersionKind3, GroupVersionResource3, Operation,
    UserInfo, admit, rule_matches,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const NS: &str = "webhooks";
/// Bound on every single admission in these tests.
const LIMIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// PKI

struct Pki {
    ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn pki(sans: &[&str]) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    }
}

// ---------------------------------------------------------------------------
// Webhook server

/// What a test webhook answers: a delay, then an AdmissionReview body built
/// from the request.
type Responder = Arc<dyn Fn(&Value) -> (Duration, Value) + Send + Sync>;

#[derive(Clone)]
struct Recorded {
    path_and_query: String,
    review: Value,
}

struct Webhook {
    addr: SocketAddr,
    ca_pem: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
}

struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    connections: Arc<AtomicUsize>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            // Clients that reject the certificate abort the handshake: keep serving.
            if let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(stream)).await
            {
                self.connections.fetch_add(1, Ordering::SeqCst);
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[derive(Clone)]
struct ServerState {
    responder: Responder,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

async fn handle(State(st): State<ServerState>, uri: Uri, body: Bytes) -> axum::Json<Value> {
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    st.requests.lock().unwrap().push(Recorded {
        path_and_query: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        review: review.clone(),
    });
    let (delay, reply) = (st.responder)(&review);
    tokio::time::sleep(delay).await;
    axum::Json(reply)
}

/// Serves `app` over TLS on an ephemeral port; counts accepted TLS connections.
async fn serve_tls(pki: &Pki, app: Router) -> (SocketAddr, Arc<AtomicUsize>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![pki.cert_der.clone().into()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key_der.clone().into()),
    )
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(cfg)),
        connections: connections.clone(),
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, connections)
}

async fn start_webhook(sans: &[&str], responder: Responder) -> Webhook {
    let pki = pki(sans);
    let requests = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().fallback(handle).with_state(ServerState {
        responder,
        requests: requests.clone(),
    });
    let (addr, connections) = serve_tls(&pki, app).await;
    Webhook {
        addr,
        ca_pem: pki.ca_pem,
        requests,
        connections,
    }
}

fn uid_of(req: &Value) -> Value {
    req["request"]["uid"].clone()
}

fn allow(req: &Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
           "response": {"uid": uid_of(req), "allowed": true}})
}

fn allow_with(req: &Value, extra: Value) -> Value {
    let mut v = allow(req);
    for (k, x) in extra.as_object().unwrap() {
        v["response"][k] = x.clone();
    }
    v
}

fn patch_reply(req: &Value, ops: Value) -> Value {
    allow_with(
        req,
        json!({"patchType": "JSONPatch",
               "patch": base64::engine::general_purpose::STANDARD.encode(ops.to_string())}),
    )
}

fn deny(req: &Value, status: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
           "response": {"uid": uid_of(req), "allowed": false, "status": status}})
}

fn responder(f: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Responder {
    Arc::new(move |r| (Duration::ZERO, f(r)))
}

/// Adds a label named after `name` to the object.
fn labeller(name: &'static str) -> Responder {
    responder(move |r| {
        let op = if r["request"]["object"]["metadata"]["labels"].is_object() {
            json!([{"op": "add", "path": format!("/metadata/labels/{name}"), "value": "yes"}])
        } else {
            json!([{"op": "add", "path": "/metadata/labels", "value": {name: "yes"}}])
        };
        patch_reply(r, op)
    })
}

// ---------------------------------------------------------------------------
// Environment and configuration

#[derive(Default)]
struct Env {
    services: HashMap<(String, String, u16), SocketAddr>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
}

impl Env {
    fn with_service(mut self, name: &str, hook: &Webhook) -> Env {
        self.services
            .insert((NS.into(), name.into(), 443), hook.addr);
        self
    }

    fn with_namespace(mut self, ns: &str, labels: &[(&str, &str)]) -> Env {
        self.namespaces.insert(
            ns.into(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }
}

impl AdmissionEnv for Env {
    fn resolve_service(&self, namespace: &str, name: &str, port: u16) -> Option<SocketAddr> {
        self.services
            .get(&(namespace.into(), name.into(), port))
            .copied()
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces.get(namespace).cloned()
    }
}

/// A webhook entry reaching service `<svc>.webhooks` at `path`, for secrets.
fn hook(name: &str, svc: &str, path: &str, ca_pem: &str, extra: Value) -> Value {
    let mut h = json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "clientConfig": {
            "service": {"namespace": NS, "name": svc, "path": path},
            "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        },
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
                   "apiVersions": ["v1"], "resources": ["secrets"]}],
    });
    for (k, v) in extra.as_object().unwrap() {
        h[k] = v.clone();
    }
    h
}

fn mutating(name: &str, hooks: Vec<Value>) -> MutatingWebhookConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": hooks,
    }))
    .unwrap()
}

fn validating(name: &str, hooks: Vec<Value>) -> ValidatingWebhookConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": hooks,
    }))
    .unwrap()
}

fn secret_create() -> AdmissionAttributes {
    AdmissionAttributes {
        operation: Operation::Create,
        kind: GroupVersionKind3 {
            group: "".into(),
            version: "v1".into(),
            kind: "Secret".into(),
        },
        resource: GroupVersionResource3 {
            group: "".into(),
            version: "v1".into(),
            resource: "secrets".into(),
        },
        sub_resource: None,
        name: "s1".into(),
        namespace: Some("team-a".into()),
        object: Some(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s1", "namespace": "team-a", "labels": {"app": "web"}},
            "data": {"k": "dg=="}})),
        old_object: None,
        dry_run: false,
        user: UserInfo {
            username: "alice".into(),
            uid: "u-1".into(),
            groups: vec!["system:authenticated".into()],
        },
        options: Some(json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"})),
    }
}

async fn run(
    m: &[MutatingWebhookConfiguration],
    v: &[ValidatingWebhookConfiguration],
    attrs: AdmissionAttributes,
    env: &Env,
) -> Result<kube_emulator::admission::Admitted, kube_emulator::admission::Rejection> {
    tokio::time::timeout(LIMIT, admit(m, v, attrs, env))
        .await
        .expect("admission finished in time")
}

// ---------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn mutating_webhooks_run_in_configuration_order_and_see_earlier_patches() {
    let a1 = start_webhook(&["a1.webhooks.svc"], labeller("a1")).await;
    let a2 = start_webhook(&["a2.webhooks.svc"], labeller("a2")).await;
    let b1 = start_webhook(&["b1.webhooks.svc"], labeller("b1")).await;
    let env = Env::default()
        .with_service("a1", &a1)
        .with_service("a2", &a2)
        .with_service("b1", &b1);
    // Listed out of order: kube sorts configurations by name.
    let configs = vec![
        mutating(
            "b-config",
            vec![hook(
                "b1.example.io",
                "b1",
                "/mutate",
                &b1.ca_pem,
                json!({}),
            )],
        ),
        mutating(
            "a-config",
            vec![
                hook("a1.example.io", "a1", "/mutate", &a1.ca_pem, json!({})),
                hook("a2.example.io", "a2", "/mutate", &a2.ca_pem, json!({})),
            ],
        ),
    ];
    let out = run(&configs, &[], secret_create(), &env).await.unwrap();
    assert_eq!(
        out.object.unwrap()["metadata"]["labels"],
        json!({"app": "web", "a1": "yes", "a2": "yes", "b1": "yes"})
    );

    let seen = |w: &Webhook| w.requests.lock().unwrap()[0].clone();
    assert_eq!(
        seen(&a2).review["request"]["object"]["metadata"]["labels"],
        json!({"app": "web", "a1": "yes"})
    );
    assert_eq!(
        seen(&b1).review["request"]["object"]["metadata"]["labels"],
        json!({"app": "web", "a1": "yes", "a2": "yes"})
    );

    // The request itself, as kube-apiserver sends it.
    let first = seen(&a1);
    assert_eq!(first.path_and_query, "/mutate?timeout=10s");
    let r = &first.review;
    assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(r["kind"], "AdmissionReview");
    let req = &r["request"];
    assert_eq!(req["uid"].as_str().unwrap().len(), 36);
    assert_eq!(
        req["kind"],
        json!({"group": "", "version": "v1", "kind": "Secret"})
    );
    assert_eq!(req["requestKind"], req["kind"]);
    assert_eq!(
        req["resource"],
        json!({"group": "", "version": "v1", "resource": "secrets"})
    );
    assert_eq!(req["requestResource"], req["resource"]);
    assert!(req.get("subResource").is_none());
    assert_eq!(req["name"], "s1");
    assert_eq!(req["namespace"], "team-a");
    assert_eq!(req["operation"], "CREATE");
    assert_eq!(
        req["userInfo"],
        json!({"username": "alice", "uid": "u-1", "groups": ["system:authenticated"]})
    );
    assert_eq!(req["oldObject"], Value::Null);
    assert_eq!(req["dryRun"], false);
    assert_eq!(req["options"]["kind"], "CreateOptions");
    // Every call gets its own uid.
    assert_ne!(req["uid"], seen(&b1).review["request"]["uid"]);
}

#[tokio::test]
async fn validating_denials_carry_kube_messages_and_codes() {
    let w = start_webhook(
        &["v.webhooks.svc"],
        responder(|r| match r["request"]["name"].as_str() {
            Some("msg") => deny(r, json!({"message": "nope"})),
            Some("reason") => deny(r, json!({"code": 422, "reason": "Invalid"})),
            _ => deny(r, json!({})),
        }),
    )
    .await;
    let env = Env::default().with_service("v", &w);
    let configs = vec![validating(
        "v",
        vec![hook(
            "deny.example.io",
            "v",
            "/validate",
            &w.ca_pem,
            json!({}),
        )],
    )];
    let with_name = |n: &str| {
        let mut a = secret_create();
        a.name = n.into();
        a
    };

    let r = run(&[], &configs, with_name("msg"), &env)
        .await
        .unwrap_err();
    assert_eq!(r.code, 403);
    assert_eq!(
        r.message,
        r#"admission webhook "deny.example.io" denied the request: nope"#
    );

    let r = run(&[], &configs, with_name("reason"), &env)
        .await
        .unwrap_err();
    assert_eq!((r.code, r.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        r.message,
        r#"admission webhook "deny.example.io" denied the request: Invalid"#
    );

    let r = run(&[], &configs, with_name("bare"), &env)
        .await
        .unwrap_err();
    assert_eq!(r.code, 403);
    assert_eq!(
        r.message,
        r#"admission webhook "deny.example.io" denied the request without explanation"#
    );
}

fn rule(v: Value) -> RuleWithOperations {
    serde_json::from_value(v).unwrap()
}

#[test]
fn rules_match_like_kube() {
    let secret = secret_create();
    let mut status = secret_create();
    status.sub_resource = Some("status".into());
    status.operation = Operation::Update;
    let mut cluster = secret_create();
    cluster.namespace = None;
    cluster.resource.resource = "clustersecretstores".into();
    cluster.resource.group = "external-secrets.io".into();
    let mut ns_obj = secret_create();
    ns_obj.resource.resource = "namespaces".into();
    ns_obj.namespace = Some("team-a".into());

    let base = |extra: Value| {
        let mut r = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                           "resources": ["*"]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        rule(r)
    };
    let cases: Vec<(&str, RuleWithOperations, &AdmissionAttributes, bool)> = vec![
        ("wildcards", base(json!({})), &secret, true),
        (
            "operation listed",
            base(json!({"operations": ["CREATE"]})),
            &secret,
            true,
        ),
        (
            "operation not listed",
            base(json!({"operations": ["DELETE"]})),
            &secret,
            false,
        ),
        (
            "group mismatch",
            base(json!({"apiGroups": ["apps"]})),
            &secret,
            false,
        ),
        (
            "version mismatch",
            base(json!({"apiVersions": ["v2"]})),
            &secret,
            false,
        ),
        (
            "resource listed",
            base(json!({"resources": ["secrets"]})),
            &secret,
            true,
        ),
        (
            "resource mismatch",
            base(json!({"resources": ["configmaps"]})),
            &secret,
            false,
        ),
        (
            "bare resource skips subresources",
            base(json!({"resources": ["secrets"]})),
            &status,
            false,
        ),
        (
            "* skips subresources",
            base(json!({"resources": ["*"]})),
            &status,
            false,
        ),
        (
            "*/* covers subresources",
            base(json!({"resources": ["*/*"]})),
            &status,
            true,
        ),
        (
            "resource/subresource",
            base(json!({"resources": ["secrets/status"]})),
            &status,
            true,
        ),
        (
            "resource/*",
            base(json!({"resources": ["secrets/*"]})),
            &status,
            true,
        ),
        (
            "*/status",
            base(json!({"resources": ["*/status"]})),
            &status,
            true,
        ),
        (
            "*/* covers main resource",
            base(json!({"resources": ["*/*"]})),
            &secret,
            true,
        ),
        (
            "namespaced scope",
            base(json!({"scope": "Namespaced"})),
            &secret,
            true,
        ),
        (
            "cluster scope on namespaced",
            base(json!({"scope": "Cluster"})),
            &secret,
            false,
        ),
        (
            "cluster scope",
            base(json!({"scope": "Cluster"})),
            &cluster,
            true,
        ),
        (
            "namespaced scope on cluster",
            base(json!({"scope": "Namespaced"})),
            &cluster,
            false,
        ),
        (
            "namespaces are cluster-scoped",
            base(json!({"scope": "Cluster"})),
            &ns_obj,
            true,
        ),
        (
            "namespaces are not namespaced",
            base(json!({"scope": "Namespaced"})),
            &ns_obj,
            false,
        ),
        ("scope *", base(json!({"scope": "*"})), &cluster, true),
    ];
    for (name, r, attrs, want) in cases {
        assert_eq!(rule_matches(&r, attrs), want, "case: {name}");
    }
}

#[tokio::test]
async fn namespace_and_object_selectors_decide_which_webhooks_run() {
    let w = start_webhook(
        &["sel.webhooks.svc"],
        responder(|r| deny(r, json!({"message": "matched"}))),
    )
    .await;
    let env = Env::default()
        .with_service("sel", &w)
        .with_namespace("team-a", &[("env", "prod")])
        .with_namespace("team-b", &[("env", "dev")]);
    let cfg = |extra: Value| {
        vec![validating(
            "sel",
            vec![hook("sel.example.io", "sel", "/", &w.ca_pem, extra)],
        )]
    };
    let in_ns = |ns: &str| {
        let mut a = secret_create();
        a.namespace = Some(ns.into());
        a
    };

    let by_ns = cfg(json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}));
    assert!(run(&[], &by_ns, in_ns("team-a"), &env).await.is_err());
    assert!(run(&[], &by_ns, in_ns("team-b"), &env).await.is_ok());
    let r = run(&[], &by_ns, in_ns("missing"), &env).await.unwrap_err();
    assert_eq!(
        (r.code, r.message.as_str()),
        (404, r#"namespaces "missing" not found"#)
    );

    let by_expr = cfg(json!({"namespaceSelector": {"matchExpressions": [
        {"key": "env", "operator": "NotIn", "values": ["prod"]}]}}));
    assert!(run(&[], &by_expr, in_ns("team-a"), &env).await.is_ok());
    assert!(run(&[], &by_expr, in_ns("team-b"), &env).await.is_err());

    // Cluster-scoped objects are never exempted by a namespace selector.
    let mut cluster = secret_create();
    cluster.namespace = None;
    assert!(run(&[], &by_ns, cluster, &env).await.is_err());

    let by_obj = cfg(json!({"objectSelector": {"matchLabels": {"app": "web"}}}));
    assert!(run(&[], &by_obj, secret_create(), &env).await.is_err());
    let mut other = secret_create();
    other.object.as_mut().unwrap()["metadata"]["labels"] = json!({"app": "db"});
    assert!(run(&[], &by_obj, other.clone(), &env).await.is_ok());
    // The old object's labels count too.
    other.operation = Operation::Update;
    other.old_object = Some(json!({"metadata": {"labels": {"app": "web"}}}));
    assert!(run(&[], &by_obj, other, &env).await.is_err());

    let exists = cfg(json!({"objectSelector": {"matchExpressions": [
        {"key": "skip", "operator": "DoesNotExist"}]}}));
    let mut skipped = secret_create();
    skipped.object.as_mut().unwrap()["metadata"]["labels"]["skip"] = json!("true");
    assert!(run(&[], &exists, skipped, &env).await.is_ok());
    assert!(run(&[], &exists, secret_create(), &env).await.is_err());

    assert_eq!(w.requests.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn timeouts_fail_or_are_ignored_per_failure_policy() {
    let w = start_webhook(
        &["slow.webhooks.svc"],
        Arc::new(|r| (Duration::from_secs(4), allow(r))),
    )
    .await;
    let env = Env::default().with_service("slow", &w);
    let cfg = |policy: &str| {
        vec![validating(
            "slow",
            vec![hook(
                "slow.example.io",
                "slow",
                "/check",
                &w.ca_pem,
                json!({"timeoutSeconds": 1, "failurePolicy": policy}),
            )],
        )]
    };

    let started = Instant::now();
    let r = run(&[], &cfg("Fail"), secret_create(), &env)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!((r.code, r.reason.as_str()), (500, "InternalError"));
    assert_eq!(
        r.message,
        r#"Internal error occurred: failed calling webhook "slow.example.io": failed to call webhook: Post "https://slow.webhooks.svc:443/check?timeout=1s": context deadline exceeded"#
    );

    let started = Instant::now();
    let out = run(&[], &cfg("Ignore"), secret_create(), &env)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(out.object, secret_create().object);
    assert_eq!(
        w.requests.lock().unwrap()[0].path_and_query,
        "/check?timeout=1s"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_call_failure() {
    let w = start_webhook(&["tls.webhooks.svc"], responder(allow)).await;
    let other_ca = pki(&["elsewhere"]).ca_pem;
    let env = Env::default().with_service("tls", &w);
    let cfg = |policy: &str| {
        vec![mutating(
            "tls",
            vec![hook(
                "tls.example.io",
                "tls",
                "/",
                &other_ca,
                json!({"failurePolicy": policy}),
            )],
        )]
    };
    let r = run(&cfg("Fail"), &[], secret_create(), &env)
        .await
        .unwrap_err();
    assert_eq!(r.code, 500);
    assert_eq!(
        r.message,
        r#"Internal error occurred: failed calling webhook "tls.example.io": failed to call webhook: Post "https://tls.webhooks.svc:443/?timeout=10s": tls: failed to verify certificate: x509: certificate signed by unknown authority"#
    );
    assert!(
        run(&cfg("Ignore"), &[], secret_create(), &env)
            .await
            .is_ok()
    );
    assert!(w.requests.lock().unwrap().is_empty());

    // A certificate for another name is refused as well.
    let wrong_name = start_webhook(&["someone-else.webhooks.svc"], responder(allow)).await;
    let env = Env::default().with_service("tls", &wrong_name);
    let cfg = vec![validating(
        "tls",
        vec![hook(
            "tls.example.io",
            "tls",
            "/",
            &wrong_name.ca_pem,
            json!({}),
        )],
    )];
    let r = run(&[], &cfg, secret_create(), &env).await.unwrap_err();
    assert!(
        r.message.ends_with(
            "x509: certificate is valid for someone-else.webhooks.svc, not tls.webhooks.svc"
        ),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn dry_run_requires_side_effect_free_webhooks() {
    let w = start_webhook(&["dry.webhooks.svc"], responder(allow)).await;
    let env = Env::default().with_service("dry", &w);
    let cfg = |side: &str| {
        vec![validating(
            "dry",
            vec![hook(
                "dry.example.io",
                "dry",
                "/",
                &w.ca_pem,
                json!({"sideEffects": side}),
            )],
        )]
    };
    let mut dry = secret_create();
    dry.dry_run = true;

    for side in ["Unknown", "Some"] {
        let r = run(&[], &cfg(side), dry.clone(), &env).await.unwrap_err();
        assert_eq!((r.code, r.reason.as_str()), (400, "BadRequest"));
        assert_eq!(
            r.message,
            r#"admission webhook "dry.example.io" does not support dry run"#
        );
        // Without dry-run the same webhook is simply called.
        assert!(run(&[], &cfg(side), secret_create(), &env).await.is_ok());
    }
    for side in ["None", "NoneOnDryRun"] {
        assert!(run(&[], &cfg(side), dry.clone(), &env).await.is_ok());
    }
    let reqs = w.requests.lock().unwrap();
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[2].review["request"]["dryRun"], true);
}

#[tokio::test]
async fn warnings_are_collected_from_every_webhook_in_order() {
    let m = start_webhook(
        &["m.webhooks.svc"],
        responder(|r| allow_with(r, json!({"warnings": ["from mutating"]}))),
    )
    .await;
    let v1 = start_webhook(
        &["v1.webhooks.svc"],
        responder(|r| allow_with(r, json!({"warnings": ["first validating", "again"]}))),
    )
    .await;
    let v2 = start_webhook(
        &["v2.webhooks.svc"],
        responder(|r| allow_with(r, json!({"warnings": ["second validating"]}))),
    )
    .await;
    let env = Env::default()
        .with_service("m", &m)
        .with_service("v1", &v1)
        .with_service("v2", &v2);
    let out = run(
        &[mutating(
            "m",
            vec![hook("m.example.io", "m", "/", &m.ca_pem, json!({}))],
        )],
        &[
            validating(
                "z",
                vec![hook("v2.example.io", "v2", "/", &v2.ca_pem, json!({}))],
            ),
            validating(
                "a",
                vec![hook("v1.example.io", "v1", "/", &v1.ca_pem, json!({}))],
            ),
        ],
        secret_create(),
        &env,
    )
    .await
    .unwrap();
    assert_eq!(
        out.warnings,
        vec![
            "from mutating",
            "first validating",
            "again",
            "second validating"
        ]
    );
}

#[tokio::test]
async fn malformed_answers_are_failures_and_bad_patches_are_internal_errors() {
    let w = start_webhook(
        &["odd.webhooks.svc"],
        responder(|r| match r["request"]["name"].as_str() {
            Some("wrong-uid") => {
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                        "response": {"uid": "other", "allowed": true}})
            }
            Some("v1beta1") => {
                json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                                      "response": {"uid": uid_of(r), "allowed": true}})
            }
            Some("no-response") => {
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})
            }
            Some("merge-patch") => allow_with(
                r,
                json!({"patchType": "MergePatch",
                       "patch": base64::engine::general_purpose::STANDARD.encode("{}")}),
            ),
            Some("bad-patch") => patch_reply(r, json!([{"op": "remove", "path": "/nope/nothing"}])),
            _ => patch_reply(
                r,
                json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]),
            ),
        }),
    )
    .await;
    let env = Env::default().with_service("odd", &w);
    let named = |n: &str| {
        let mut a = secret_create();
        a.name = n.into();
        a
    };
    let m = |policy: &str| {
        vec![mutating(
            "odd",
            vec![hook(
                "odd.example.io",
                "odd",
                "/",
                &w.ca_pem,
                json!({"failurePolicy": policy}),
            )],
        )]
    };
    let v = vec![validating(
        "odd",
        vec![hook("odd.example.io", "odd", "/", &w.ca_pem, json!({}))],
    )];
    let prefix = r#"Internal error occurred: failed calling webhook "odd.example.io": received invalid webhook response: "#;

    let r = run(&m("Fail"), &[], named("wrong-uid"), &env)
        .await
        .unwrap_err();
    assert_eq!(r.code, 500);
    let got = r.message.strip_prefix(prefix).unwrap_or(&r.message);
    assert!(got.starts_with("expected response.uid=\""), "{}", r.message);
    assert!(got.ends_with(r#"", got "other""#), "{}", r.message);
    assert!(
        run(&m("Ignore"), &[], named("wrong-uid"), &env)
            .await
            .is_ok()
    );

    let r = run(&m("Fail"), &[], named("v1beta1"), &env)
        .await
        .unwrap_err();
    assert_eq!(
        r.message,
        format!(
            "{prefix}expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview"
        )
    );

    let r = run(&m("Fail"), &[], named("no-response"), &env)
        .await
        .unwrap_err();
    assert_eq!(r.message, format!("{prefix}webhook response was absent"));

    let r = run(&m("Fail"), &[], named("merge-patch"), &env)
        .await
        .unwrap_err();
    assert_eq!(
        r.message,
        r#"Internal error occurred: failed calling webhook "odd.example.io": unsupported patch type "MergePatch""#
    );

    // A patch that does not apply is an internal error whatever the policy.
    for policy in ["Fail", "Ignore"] {
        let r = run(&m(policy), &[], named("bad-patch"), &env)
            .await
            .unwrap_err();
        assert_eq!(r.code, 500);
        assert!(
            r.message.starts_with("Internal error occurred: "),
            "{}",
            r.message
        );
        assert!(
            !r.message.contains("failed calling webhook"),
            "{}",
            r.message
        );
    }

    // Only AdmissionReview v1 is spoken.
    let old_only = vec![validating(
        "odd",
        vec![hook(
            "odd.example.io",
            "odd",
            "/",
            &w.ca_pem,
            json!({"admissionReviewVersions": ["v1beta1"]}),
        )],
    )];
    let r = run(&[], &old_only, named("any"), &env).await.unwrap_err();
    assert_eq!(
        r.message,
        r#"Internal error occurred: failed calling webhook "odd.example.io": could not create admission objects: webhook does not accept known AdmissionReview versions"#
    );

    // Validating webhooks may not patch.
    let r = run(&[], &v, named("patcher"), &env).await.unwrap_err();
    assert_eq!(
        r.message,
        format!("{prefix}validating webhook may not return response.patch")
    );

    // Mutating webhooks may not patch a DELETE (there is no object).
    let mut del = named("patcher");
    del.operation = Operation::Delete;
    del.old_object = del.object.take();
    let all_ops = vec![mutating(
        "odd",
        vec![hook(
            "odd.example.io",
            "odd",
            "/",
            &w.ca_pem,
            json!({"rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["secrets"]}]}),
        )],
    )];
    let r = run(&all_ops, &[], del, &env).await.unwrap_err();
    assert_eq!(
        r.message,
        r#"Internal error occurred: admission webhook "odd.example.io" attempted to modify the object, which is not supported for this operation"#
    );
}

#[tokio::test]
async fn url_client_config_and_unknown_services() {
    let w = start_webhook(&["127.0.0.1"], labeller("url")).await;
    let url = format!("https://127.0.0.1:{}/hook", w.addr.port());
    let mut h = hook("url.example.io", "unused", "/", &w.ca_pem, json!({}));
    h["clientConfig"] = json!({
        "url": url,
        "caBundle": base64::engine::general_purpose::STANDARD.encode(&w.ca_pem),
    });
    let out = run(
        &[mutating("url", vec![h])],
        &[],
        secret_create(),
        &Env::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.object.unwrap()["metadata"]["labels"]["url"], "yes");
    assert_eq!(
        w.requests.lock().unwrap()[0].path_and_query,
        "/hook?timeout=10s"
    );

    let cfg = vec![validating(
        "gone",
        vec![hook("gone.example.io", "gone", "/", &w.ca_pem, json!({}))],
    )];
    let r = run(&[], &cfg, secret_create(), &Env::default())
        .await
        .unwrap_err();
    assert_eq!(
        r.message,
        r#"Internal error occurred: failed calling webhook "gone.example.io": failed to call webhook: Post "https://gone.webhooks.svc:443/?timeout=10s": service "gone" not found"#
    );
}

#[tokio::test]
async fn if_needed_webhooks_are_reinvoked_after_later_changes() {
    let first = start_webhook(&["first.webhooks.svc"], responder(allow)).await;
    let second = start_webhook(&["second.webhooks.svc"], labeller("second")).await;
    let env = Env::default()
        .with_service("first", &first)
        .with_service("second", &second);
    let cfg = vec![mutating(
        "re",
        vec![
            hook(
                "first.example.io",
                "first",
                "/",
                &first.ca_pem,
                json!({"reinvocationPolicy": "IfNeeded"}),
            ),
            hook(
                "second.example.io",
                "second",
                "/",
                &second.ca_pem,
                json!({}),
            ),
        ],
    )];
    run(&cfg, &[], secret_create(), &env).await.unwrap();
    let seen = first.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].review["request"]["object"]["metadata"]["labels"]["second"],
        "yes"
    );
    assert_eq!(second.requests.lock().unwrap().len(), 1);

    // `Never` (the default) is not called again.
    let never = start_webhook(&["first.webhooks.svc"], responder(allow)).await;
    let env = Env::default()
        .with_service("first", &never)
        .with_service("second", &second);
    let cfg = vec![mutating(
        "re",
        vec![
            hook("first.example.io", "first", "/", &never.ca_pem, json!({})),
            hook(
                "second.example.io",
                "second",
                "/",
                &second.ca_pem,
                json!({}),
            ),
        ],
    )];
    run(&cfg, &[], secret_create(), &env).await.unwrap();
    assert_eq!(never.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn bursts_reuse_connections() {
    let w = start_webhook(&["burst.webhooks.svc"], responder(allow)).await;
    let env = Env::default().with_service("burst", &w);
    let cfg = vec![validating(
        "burst",
        vec![hook("burst.example.io", "burst", "/", &w.ca_pem, json!({}))],
    )];
    for _ in 0..40 {
        run(&[], &cfg, secret_create(), &env).await.unwrap();
    }
    assert_eq!(w.requests.lock().unwrap().len(), 40);
    assert!(
        w.connections.load(Ordering::SeqCst) <= 2,
        "{} TLS connections for 40 sequential calls",
        w.connections.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn validating_webhooks_run_concurrently_and_the_first_in_order_decides() {
    let slow_deny = start_webhook(
        &["a.webhooks.svc"],
        Arc::new(|r| {
            (
                Duration::from_millis(1200),
                deny(r, json!({"message": "a says no"})),
            )
        }),
    )
    .await;
    let slow_deny_too = start_webhook(
        &["b.webhooks.svc"],
        Arc::new(|r| {
            (
                Duration::from_millis(1200),
                deny(r, json!({"message": "b says no"})),
            )
        }),
    )
    .await;
    let env = Env::default()
        .with_service("a", &slow_deny)
        .with_service("b", &slow_deny_too);
    let cfg = vec![validating(
        "both",
        vec![
            hook("a.example.io", "a", "/", &slow_deny.ca_pem, json!({})),
            hook("b.example.io", "b", "/", &slow_deny_too.ca_pem, json!({})),
        ],
    )];
    let started = Instant::now();
    let r = run(&[], &cfg, secret_create(), &env).await.unwrap_err();
    assert!(
        // One after the other they would take 2.4 s.
        started.elapsed() < Duration::from_millis(2300),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        r.message,
        r#"admission webhook "a.example.io" denied the request: a says no"#
    );
    assert_eq!(slow_deny_too.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn error_statuses_from_the_webhook_are_call_failures() {
    let pki = pki(&["err.webhooks.svc"]);
    let app = Router::new()
        .fallback(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") });
    let (addr, _) = serve_tls(&pki, app).await;
    let mut env = Env::default();
    env.services.insert((NS.into(), "err".into(), 443), addr);
    let cfg = vec![validating(
        "err",
        vec![hook("err.example.io", "err", "/", &pki.ca_pem, json!({}))],
    )];
    let r = run(&[], &cfg, secret_create(), &env).await.unwrap_err();
    assert_eq!(r.code, 500);
    assert_eq!(
        r.message,
        r#"Internal error occurred: failed calling webhook "err.example.io": failed to call webhook: an error on the server ("boom") has prevented the request from succeeding"#
    );
}
