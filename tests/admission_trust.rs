//! The webhook's trust boundary: any pod that reaches the webhook can send it a made-up
//! AdmissionReview. Such a review must not make vaultgate read a credential, mint a token or
//! connect anywhere its body names; an ExternalSecret review may use a store only as the API
//! server holds it. With `--webhook-client-ca`, only the API server's client certificate opens
//! a connection, and stores under review are checked with their credentials again.

#[path = "support/live.rs"]
mod live;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use live::{Env, env, es, read, review_body};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vaultgate::admission::LiveMode;
use vaultgate::admission::{TlsSource, WebhookConfig, serve_listener};
use vaultgate::api::SecretStore;
use vaultgate::metrics::Metrics;
use vaultgate::vault::VaultClients;

/// A server a forged store names: it counts the connections made to it.
struct Attacker {
    url: String,
    connections: Arc<AtomicUsize>,
}

async fn attacker() -> Attacker {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(tcp);
        }
    });
    Attacker { url, connections }
}

/// A CA and a client certificate it signed, as PEM.
struct ClientPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn client_pki(name: &str) -> ClientPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    ClientPki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "vaultgate-trust-{tag}-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The webhook served over HTTPS as `vaultgate run` serves it, with live checks in `enforce`.
struct Webhook {
    url: String,
    ca_pem: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    vault: VaultClients,
}

async fn webhook(e: &Env, client_ca: Option<&Path>) -> Webhook {
    let dir = temp_dir("serving");
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let bundle = vaultgate::certs::generate(&names, Duration::from_secs(3600)).unwrap();
    vaultgate::certs::write_dir(&bundle, &dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Metrics::new();
    let vault = VaultClients::new(e.client.clone(), metrics.clone());
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_listener(
        listener,
        WebhookConfig {
            addr,
            tls: TlsSource::Files {
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
            },
            client_ca: client_ca.map(Path::to_path_buf),
            live: LiveMode::Enforce,
            live_budget: Duration::from_secs(2),
        },
        Some(e.client.clone()),
        Some(vault.clone()),
        metrics,
        ready.clone(),
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the webhook did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Webhook {
        url: format!("https://127.0.0.1:{}", addr.port()),
        ca_pem: bundle.ca_cert_pem,
        shutdown,
        task,
        vault,
    }
}

impl Webhook {
    /// A client trusting the webhook's certificate, presenting `identity` if given.
    fn client(&self, identity: Option<&ClientPki>) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let tls = match identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// POSTs a review of `object` to /validate; the answer's `response`.
    async fn validate(&self, client: &reqwest::Client, object: &Value) -> reqwest::Result<Value> {
        let resp = client
            .post(format!("{}/validate", self.url))
            .header("content-type", "application/json")
            .body(review_body(object, false))
            .send()
            .await?;
        assert_eq!(resp.status(), 200);
        let review: Value = resp.json().await?;
        Ok(review["response"].clone())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.vault.revoke_all().await;
    }
}

fn warnings(resp: &Value) -> Vec<String> {
    resp["warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The credentials a forged store could aim at: a Vault token in `kube-system` and a
/// ServiceAccount there that a TokenRequest would mint a token for.
async fn add_targets(e: &Env) {
    e.kube
        .apply_yaml(
            r#"
apiVersion: v1
kind: Secret
metadata: {name: vault-root, namespace: kube-system}
stringData: {token: the-root-token}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: cluster-admin-sa, namespace: kube-system}
"#,
        )
        .await
        .unwrap();
}

/// The forged stores of the threat: each names a credential in `kube-system` and a server of
/// the attacker's.
fn forged_stores(server: &str) -> Vec<(&'static str, Value)> {
    let store = |kind: &str, ns: Option<&str>, auth: Value| {
        let mut meta = json!({"name": "forged"});
        if let Some(ns) = ns {
            meta["namespace"] = json!(ns);
        }
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": kind, "metadata": meta,
            "spec": {"provider": {"vault": {"server": server, "path": "secret", "version": "v2",
                                            "auth": auth}}}
        })
    };
    vec![
        (
            "a SecretStore in kube-system sending its token Secret",
            store(
                "SecretStore",
                Some("kube-system"),
                json!({"tokenSecretRef": {"name": "vault-root", "key": "token"}}),
            ),
        ),
        (
            "a SecretStore minting a token of a powerful ServiceAccount",
            store(
                "SecretStore",
                Some("kube-system"),
                json!({"kubernetes": {"role": "r", "mountPath": "kubernetes",
                                      "serviceAccountRef": {"name": "cluster-admin-sa"}}}),
            ),
        ),
        (
            "a ClusterSecretStore naming the token Secret",
            store(
                "ClusterSecretStore",
                None,
                json!({"tokenSecretRef": {"name": "vault-root", "key": "token",
                                          "namespace": "kube-system"}}),
            ),
        ),
    ]
}

/// What vaultgate asked the API server for the forged stores' credentials.
fn credential_reads(e: &Env) -> Vec<String> {
    e.kube
        .audit()
        .into_iter()
        .filter(|r| {
            (r.resource == "secrets" && r.name == "vault-root")
                || (r.resource == "serviceaccounts" && r.subresource == "token")
        })
        .map(|r| format!("{} {}/{} {}", r.verb, r.resource, r.subresource, r.name))
        .collect()
}

#[tokio::test]
async fn forged_store_reviews_use_no_credential_and_reach_no_server() {
    let e = env().await;
    add_targets(&e).await;
    let evil = attacker().await;
    let hook = webhook(&e, None).await;
    let client = hook.client(None);
    let logins = e.vault.count_logins();
    for (what, store) in forged_stores(&evil.url) {
        let resp = hook.validate(&client, &store).await.unwrap();
        assert_eq!(resp["allowed"], true, "{what}: {resp}");
        assert!(
            warnings(&resp)
                .iter()
                .any(|w| w.contains("is checked once it is stored")),
            "{what}: the answer says when the login is checked: {resp}"
        );
    }
    // Give anything started in the background the time to show itself.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(credential_reads(&e), Vec::<String>::new());
    assert_eq!(evil.connections.load(Ordering::SeqCst), 0);
    assert_eq!(e.vault.count_logins(), logins);
    hook.stop().await;
}

#[tokio::test]
async fn an_authenticated_api_server_gets_the_credentialed_store_checks() {
    let e = env().await;
    add_targets(&e).await;
    let evil = attacker().await;
    let pki = client_pki("apiserver");
    let dir = temp_dir("client-ca");
    std::fs::write(dir.join("ca.crt"), &pki.ca_pem).unwrap();
    let hook = webhook(&e, Some(&dir.join("ca.crt"))).await;
    let client = hook.client(Some(&pki));
    for (what, store) in forged_stores(&evil.url) {
        let resp = hook.validate(&client, &store).await.unwrap();
        // The login is tried (and fails: nothing answers there as Vault would).
        assert_eq!(resp["allowed"], false, "{what}: {resp}");
    }
    let reads = credential_reads(&e);
    assert!(
        reads.iter().any(|r| r.starts_with("get secrets"))
            && reads
                .iter()
                .any(|r| r.starts_with("create serviceaccounts/token")),
        "{reads:?}"
    );
    assert!(evil.connections.load(Ordering::SeqCst) > 0);
    // A store that works is admitted after a real login.
    let good = live::secret_store("good", "vault-userpass", "secret", &e.vault.addr());
    let logins = e.vault.count_logins();
    let resp = hook.validate(&client, &good).await.unwrap();
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(e.vault.count_logins() > logins);
    hook.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_only_its_certificates_connect() {
    let e = env().await;
    let pki = client_pki("apiserver");
    let other = client_pki("somebody else");
    let dir = temp_dir("client-ca-only");
    std::fs::write(dir.join("ca.crt"), &pki.ca_pem).unwrap();
    let hook = webhook(&e, Some(&dir.join("ca.crt"))).await;
    let object = es(
        "team-a",
        "app",
        ("SecretStore", "vault"),
        read("app/db", "password"),
    );
    for (what, identity) in [("no certificate", None), ("another CA's", Some(&other))] {
        let err = hook
            .validate(&hook.client(identity), &object)
            .await
            .expect_err(what);
        assert!(err.is_connect() || err.is_request(), "{what}: {err:?}");
    }
    let resp = hook
        .validate(&hook.client(Some(&pki)), &object)
        .await
        .unwrap();
    assert_eq!(resp["allowed"], true, "{resp}");

    // The CA file rotates without a restart: the new CA's certificates connect, the old
    // one's no longer do.
    let next = client_pki("apiserver, rotated");
    std::fs::write(dir.join("ca.crt"), &next.ca_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while hook
        .validate(&hook.client(Some(&next)), &object)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the rotated CA was not loaded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        hook.validate(&hook.client(Some(&pki)), &object)
            .await
            .is_err()
    );
    hook.stop().await;
}

#[tokio::test]
async fn forged_external_secret_reviews_learn_no_more_than_the_bound() {
    let e = env().await;
    let evil = attacker().await;
    let hook = webhook(&e, None).await;
    let client = hook.client(None);

    // Claiming the one namespace a ClusterSecretStore admits, a caller learns whether each
    // path it names exists and may be read there, and whether a property it names exists:
    // no value, no other key, no metadata.
    let css = ("ClusterSecretStore", "only-team-a");
    let probes = json!([
        {"secretKey": "a", "remoteRef": {"key": "app/db", "property": "password"}},
        {"secretKey": "b", "remoteRef": {"key": "app/db", "property": "nope"}},
        {"secretKey": "c", "remoteRef": {"key": "app/gone"}},
        {"secretKey": "d", "remoteRef": {"key": "other/x"}},
    ]);
    let resp = hook
        .validate(&client, &es("team-a", "probe", css, probes))
        .await
        .unwrap();
    assert_eq!(resp["allowed"], false, "{resp}");
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.data[1].remoteRef.property")
            && msg.contains("spec.data[2].remoteRef.key")
            && msg.contains("spec.data[3].remoteRef.key")
            && !msg.contains("spec.data[0]"),
        "{msg}"
    );
    for never in ["s3cr3t", "\"user\"", "current_version"] {
        assert!(!msg.contains(never), "{never:?} revealed: {msg}");
    }
    // Claiming another namespace, the store's conditions refuse before Vault is asked.
    let reads = e.vault.count_kv_reads();
    let resp = hook
        .validate(
            &client,
            &es("team-b", "probe", css, read("app/db", "password")),
        )
        .await
        .unwrap();
    assert_eq!(resp["allowed"], false);
    assert_eq!(e.vault.count_kv_reads(), reads);

    // A store whose login failed at reconcile is not logged in with again: the answer quotes
    // its status.
    let stores: Api<SecretStore> = Api::namespaced(e.client.clone(), "team-a");
    stores
        .patch_status(
            "vault",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{
                "type": "Ready", "status": "False", "reason": "InvalidProviderConfig",
                "message": "unable to log in to Vault: permission denied"}]}})),
        )
        .await
        .unwrap();
    let (logins, requests) = (e.vault.count_logins(), e.vault.count_requests());
    let resp = hook
        .validate(
            &client,
            &es(
                "team-a",
                "app",
                ("SecretStore", "vault"),
                read("app/db", "password"),
            ),
        )
        .await
        .unwrap();
    assert_eq!(resp["allowed"], false, "{resp}");
    assert_eq!(
        resp["status"]["message"],
        "spec.secretStoreRef: SecretStore team-a/vault is not ready: InvalidProviderConfig: unable to log in to Vault: permission denied"
    );
    assert_eq!(
        (e.vault.count_logins(), e.vault.count_requests()),
        (logins, requests)
    );
    assert_eq!(evil.connections.load(Ordering::SeqCst), 0);
    hook.stop().await;
}

#[tokio::test]
async fn the_api_server_with_a_client_certificate_calls_a_webhook_that_requires_one() {
    let pki = client_pki("apiserver");
    let e = live::env_with(kube_emulator::KubeEmulatorConfig {
        webhook_client_identity: Some(kube_emulator::ClientIdentity {
            cert_pem: pki.cert_pem.clone(),
            key_pem: pki.key_pem.clone(),
        }),
        ..Default::default()
    })
    .await;
    let dir = temp_dir("apiserver-identity");
    std::fs::write(dir.join("ca.crt"), &pki.ca_pem).unwrap();
    let hook = webhook(&e, Some(&dir.join("ca.crt"))).await;
    live::register_webhook(&e, &hook.url, &hook.ca_pem).await;
    // Through the API server, a store with a wrong password is refused after a real login.
    let stores: Api<SecretStore> = Api::namespaced(e.client.clone(), "team-a");
    let mut wrong = live::secret_store("wrong", "wrong-password", "secret", &e.vault.addr());
    wrong["metadata"] = json!({"name": "wrong", "namespace": "team-a"});
    let wrong: SecretStore = serde_json::from_value(wrong).unwrap();
    let err = stores
        .create(&PostParams::default(), &wrong)
        .await
        .expect_err("the login fails");
    assert!(
        err.to_string().contains("SecretStore team-a/wrong"),
        "{err}"
    );
    hook.stop().await;
}
