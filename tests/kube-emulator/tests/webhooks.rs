//! Admission webhooks configured through the API and called on writes.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use base64::Engine as _;
use common::*;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use kube_emulator::admission::Operation;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((s, a)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(s)).await
            {
                return (tls, a);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

type Seen = Arc<Mutex<Vec<Value>>>;

const SLOW: Duration = Duration::from_millis(300);

/// A webhook at `hooks.webhooks.svc`: `/mutate` labels objects and warns,
/// `/validate` refuses ConfigMaps named `forbidden`.
async fn webhook_server() -> (SocketAddr, String, Seen) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["hooks.webhooks.svc".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let seen: Seen = Arc::default();
    async fn mutate(State(seen): State<Seen>, body: Bytes) -> axum::Json<Value> {
        let review: Value = serde_json::from_slice(&body).unwrap();
        seen.lock().unwrap().push(review.clone());
        if review["request"]["operation"] == "DELETE" {
            // There is no object to patch on delete.
            return axum::Json(json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": review["request"]["uid"], "allowed": true},
            }));
        }
        let patch = json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]);
        axum::Json(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {
                "uid": review["request"]["uid"], "allowed": true,
                "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string()),
                "warnings": ["labelled by the test webhook"],
            },
        }))
    }
    async fn validate(State(seen): State<Seen>, body: Bytes) -> axum::Json<Value> {
        let review: Value = serde_json::from_slice(&body).unwrap();
        seen.lock().unwrap().push(review.clone());
        let name = review["request"]["name"].as_str().unwrap_or_default();
        let allowed = name != "forbidden";
        axum::Json(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {
                "uid": review["request"]["uid"], "allowed": allowed,
                "status": {"code": 403, "reason": "Forbidden", "message": "forbidden names are refused"},
            },
        }))
    }
    // `/validate` 300 ms late, for timing tests.
    async fn slow(state: State<Seen>, body: Bytes) -> axum::Json<Value> {
        tokio::time::sleep(SLOW).await;
        validate(state, body).await
    }
    let router = axum::Router::new()
        .route("/mutate", axum::routing::post(mutate))
        .route("/validate", axum::routing::post(validate))
        .route("/slow", axum::routing::post(slow))
        .with_state(seen.clone());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
    };
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, ca.pem(), seen)
}

fn hook(name: &str, path: &str, ca: &str) -> Value {
    json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 5,
        "clientConfig": {
            "service": {"namespace": "webhooks", "name": "hooks", "port": 443, "path": path},
            "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
        },
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["configmaps"]}],
    })
}

/// A mutating webhook `m` at `mutate` and a validating one `v` at `validate`.
async fn register(client: &kube::Client, mutate: &str, validate: &str, ca: &str) {
    let mw: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let vw: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let config = |name: &str, path: &str| {
        let hook = hook(&format!("{name}.example.com"), path, ca);
        json!({"metadata": {"name": name}, "webhooks": [hook]})
    };
    let pp = PostParams::default();
    mw.create(&pp, &serde_json::from_value(config("m", mutate)).unwrap())
        .await
        .unwrap();
    vw.create(&pp, &serde_json::from_value(config("v", validate)).unwrap())
        .await
        .unwrap();
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn webhooks_mutate_warn_and_deny() {
    let k = start().await;
    let (addr, ca, seen) = webhook_server().await;
    k.map_service("webhooks", "hooks", 443, addr);
    let client = k.client().await;
    register(&client, "/mutate", "/validate", &ca).await;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let out = within(15, cms.create(&PostParams::default(), &cm("ok")))
        .await
        .unwrap();
    assert_eq!(out.metadata.labels.unwrap()["mutated"], "yes");

    let err = api_error(
        within(15, cms.create(&PostParams::default(), &cm("forbidden")))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    assert!(
        err.message.contains("forbidden names are refused"),
        "{}",
        err.message
    );
    assert!(cms.get_opt("forbidden").await.unwrap().is_none());

    // Dry-run runs admission marked as such and stores nothing.
    let before = seen.lock().unwrap().len();
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let out = within(15, cms.create(&pp, &cm("dry"))).await.unwrap();
    assert_eq!(out.metadata.labels.unwrap()["mutated"], "yes");
    assert!(cms.get_opt("dry").await.unwrap().is_none());
    let reviews = seen.lock().unwrap()[before..].to_vec();
    assert!(
        !reviews.is_empty()
            && reviews
                .iter()
                .all(|r| r["request"]["dryRun"] == json!(true))
    );

    // Deletes are admitted with the old object.
    within(15, cms.delete("ok", &DeleteParams::default()))
        .await
        .unwrap();
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last["request"]["operation"], "DELETE");
    assert_eq!(last["request"]["oldObject"]["metadata"]["name"], "ok");

    // Warnings come back as Warning headers.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(k.ca_pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let resp = http
        .post(format!("{}/api/v1/namespaces/default/configmaps", k.url()))
        .bearer_auth(k.admin_token())
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "warned"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let warnings: Vec<String> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(warnings, ["299 - \"labelled by the test webhook\""]);
}

#[tokio::test]
async fn each_webhook_call_is_timed_as_the_api_server_sees_it() {
    let k = start().await;
    let (addr, ca, _) = webhook_server().await;
    k.map_service("webhooks", "hooks", 443, addr);
    let client = k.client().await;
    register(&client, "/mutate", "/slow", &ca).await;
    // Writes of the configurations themselves are not admitted, so nothing is recorded yet.
    assert_eq!(k.webhook_calls(), []);

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    within(15, cms.create(&PostParams::default(), &cm("timed")))
        .await
        .unwrap();
    let calls = k.webhook_calls();
    let seen: Vec<(&str, bool, Operation, &str, bool)> = calls
        .iter()
        .map(|c| {
            (
                c.webhook.as_str(),
                c.mutating,
                c.operation,
                c.resource.as_str(),
                c.answered,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("m.example.com", true, Operation::Create, "configmaps", true),
            (
                "v.example.com",
                false,
                Operation::Create,
                "configmaps",
                true
            ),
        ]
    );
    // The slow webhook's call took its delay; the mutating one ended before it was sent.
    assert!(calls[1].duration >= SLOW, "{:?}", calls[1].duration);
    assert!(calls[0].duration < SLOW, "{:?}", calls[0].duration);
    assert!(calls[0].sent + calls[0].duration <= calls[1].sent);

    // A webhook that cannot be reached is recorded as not answered.
    k.map_service("webhooks", "hooks", 443, closed_port().await);
    k.clear_webhook_calls();
    assert!(
        cms.create(&PostParams::default(), &cm("unreached"))
            .await
            .is_err()
    );
    let calls = k.webhook_calls();
    assert!(
        !calls.is_empty() && calls.iter().all(|c| !c.answered),
        "{calls:?}"
    );
}

/// A local port nobody listens on.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}
