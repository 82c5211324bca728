//! The webhook over real HTTPS: AdmissionReview round trips for every kind and version, HTTP/2
//! and HTTP/1.1, malformed and oversize bodies, and certificate reload while serving.

use rustls::pki_types::pem::PemObject;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vaultgate::admission::LiveMode;
use vaultgate::admission::{TlsSource, WebhookConfig, serve_listener};
use vaultgate::metrics::Metrics;

struct Server {
    addr: std::net::SocketAddr,
    dir: PathBuf,
    ca_pem: String,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    metrics: Metrics,
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "vaultgate-admission-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

async fn start(tag: &str) -> Server {
    start_valid_for(tag, Duration::from_secs(3600)).await
}

async fn start_valid_for(tag: &str, validity: Duration) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir(tag);
    let bundle = vaultgate::certs::generate(&names(), validity).unwrap();
    vaultgate::certs::write_dir(&bundle, &dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = WebhookConfig {
        addr,
        tls: TlsSource::Files {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        },
        client_ca: None,
        live: LiveMode::Off,
        live_budget: Duration::from_secs(2),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new();
    let task = tokio::spawn(serve_listener(
        listener,
        cfg,
        None,
        None,
        metrics.clone(),
        ready.clone(),
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ready.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "webhook did not become ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Server {
        addr,
        dir,
        ca_pem: bundle.ca_cert_pem,
        ready,
        shutdown,
        task,
        metrics,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    fn client(&self) -> reqwest::Client {
        client_for(&self.ca_pem, false)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("graceful shutdown finishes")
            .unwrap()
            .unwrap();
        assert!(!self.ready.load(Ordering::SeqCst));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn client_for(ca_pem: &str, http1: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(5));
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

fn plural(kind: &str) -> &'static str {
    match kind {
        "ExternalSecret" => "externalsecrets",
        "SecretStore" => "secretstores",
        _ => "clustersecretstores",
    }
}

fn review(uid: &str, version: &str, op: &str, object: &Value) -> Value {
    let kind = object["kind"].as_str().unwrap();
    let gvk = json!({"group": "external-secrets.io", "version": version, "kind": kind});
    let gvr = json!({"group": "external-secrets.io", "version": version, "resource": plural(kind)});
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

fn external_secret(version: &str, spec: Value) -> Value {
    json!({
        "apiVersion": format!("external-secrets.io/{version}"),
        "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": "team-a"},
        "spec": spec,
    })
}

fn store(version: &str, kind: &str, vault: Value) -> Value {
    let mut v = json!({
        "apiVersion": format!("external-secrets.io/{version}"),
        "kind": kind,
        "metadata": {"name": "vault"},
        "spec": {"provider": {"vault": vault}},
    });
    if kind == "SecretStore" {
        v["metadata"]["namespace"] = json!("team-a");
    }
    v
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let resp = client.post(url).json(body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    out
}

fn decoded_patch(resp: &Value) -> Option<Value> {
    let p = resp["response"]["patch"].as_str()?;
    assert_eq!(resp["response"]["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

fn apply_patch(obj: &Value, resp: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(p) = decoded_patch(resp) {
        let p: json_patch::Patch = serde_json::from_value(p).unwrap();
        json_patch::patch(&mut out, &p).unwrap();
    }
    out
}

#[tokio::test]
async fn round_trip_for_every_kind_and_version() {
    let s = start("roundtrip").await;
    let c = s.client();
    for version in ["v1", "v1beta1"] {
        // ExternalSecret: defaults patched in, then validated.
        let es = external_secret(
            version,
            json!({"secretStoreRef": {"name": "vault"},
                   "data": [{"secretKey": "password", "remoteRef": {"key": "app/db", "property": "password"}}]}),
        );
        let uid = format!("es-{version}");
        let m = post(&c, &s.url("/mutate"), &review(&uid, version, "CREATE", &es)).await;
        assert_eq!(m["response"]["uid"], uid);
        assert_eq!(m["response"]["allowed"], true);
        let defaulted = apply_patch(&es, &m);
        assert_eq!(defaulted["spec"]["refreshInterval"], "1h0m0s");
        assert_eq!(defaulted["spec"]["refreshPolicy"], "Periodic");
        assert_eq!(defaulted["spec"]["secretStoreRef"]["kind"], "SecretStore");
        assert_eq!(defaulted["spec"]["target"]["name"], "app");
        assert_eq!(defaulted["spec"]["target"]["creationPolicy"], "Owner");
        assert_eq!(defaulted["spec"]["target"]["deletionPolicy"], "Retain");
        // Already complete: no patch at all.
        let again = post(
            &c,
            &s.url("/mutate"),
            &review(&uid, version, "CREATE", &defaulted),
        )
        .await;
        assert!(again["response"].get("patch").is_none(), "{again}");
        let v = post(
            &c,
            &s.url("/validate"),
            &review(&uid, version, "CREATE", &defaulted),
        )
        .await;
        assert_eq!(v["response"]["uid"], uid);
        assert_eq!(v["response"]["allowed"], true, "{v}");

        // An invalid ExternalSecret is denied with the field path and value.
        let bad = external_secret(
            version,
            json!({"secretStoreRef": {"name": "vault"},
                   "data": [{"secretKey": "a", "remoteRef": {"key": "/etc/passwd"}}]}),
        );
        let v = post(
            &c,
            &s.url("/validate"),
            &review("bad-es", version, "CREATE", &bad),
        )
        .await;
        assert_eq!(v["response"]["uid"], "bad-es");
        assert_eq!(v["response"]["allowed"], false);
        let msg = v["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("spec.data[0].remoteRef.key") && msg.contains("\"/etc/passwd\""),
            "{msg}"
        );

        for kind in ["SecretStore", "ClusterSecretStore"] {
            let st = store(
                version,
                kind,
                json!({"server": "https://vault:8200", "path": "secret",
                       "auth": {"kubernetes": {"role": "app", "serviceAccountRef": {"name": "app"}}}}),
            );
            let uid = format!("{kind}-{version}");
            let m = post(&c, &s.url("/mutate"), &review(&uid, version, "CREATE", &st)).await;
            assert_eq!(m["response"]["uid"], uid);
            let defaulted = apply_patch(&st, &m);
            assert_eq!(defaulted["spec"]["provider"]["vault"]["version"], "v2");
            assert_eq!(
                defaulted["spec"]["provider"]["vault"]["auth"]["kubernetes"]["mountPath"],
                "kubernetes"
            );
            let v = post(
                &c,
                &s.url("/validate"),
                &review(&uid, version, "CREATE", &defaulted),
            )
            .await;
            assert_eq!(v["response"]["allowed"], true, "{v}");
            // Two auth methods: denied.
            let bad = store(
                version,
                kind,
                json!({"server": "https://vault:8200",
                       "auth": {"kubernetes": {"role": "app"},
                                "tokenSecretRef": {"name": "t", "key": "token"}}}),
            );
            let v = post(
                &c,
                &s.url("/validate"),
                &review(&uid, version, "UPDATE", &bad),
            )
            .await;
            assert_eq!(v["response"]["allowed"], false);
            assert!(
                v["response"]["status"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("spec.provider.vault.auth: exactly one auth method may be set"),
                "{v}"
            );
        }
    }
    // DELETE is never refused, whatever the object.
    let bad = external_secret("v1", json!({}));
    let mut del = review("del", "v1", "DELETE", &bad);
    del["request"]["oldObject"] = bad.clone();
    del["request"]["object"] = Value::Null;
    let v = post(&c, &s.url("/validate"), &del).await;
    assert_eq!(v["response"]["allowed"], true);
    // A spec-unchanged update (say, a finalizer removed) is not judged again.
    let mut upd = review("upd", "v1", "UPDATE", &bad);
    upd["request"]["oldObject"] = bad.clone();
    let v = post(&c, &s.url("/validate"), &upd).await;
    assert_eq!(v["response"]["allowed"], true);
    let text = s.metrics.render();
    assert!(
        text.contains(
            "vaultgate_admission_requests_total{endpoint=\"validate\",kind=\"ExternalSecret\",result=\"denied\"} 2"
        ),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test]
async fn http2_and_http1() {
    let s = start("h2").await;
    let es = external_secret("v1", json!({"secretStoreRef": {"name": "v"}, "data": []}));
    let body = review("h2", "v1", "CREATE", &es);
    let r = s
        .client()
        .post(s.url("/mutate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let r = client_for(&s.ca_pem, true)
        .post(s.url("/mutate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
    // TLS 1.2 clients are served too.
    let tls12 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(s.ca_pem.as_bytes()).unwrap()])
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let r = tls12
        .post(s.url("/mutate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn malformed_and_oversize_bodies() {
    let s = start("malformed").await;
    let c = s.client();
    for (body, want) in [
        ("not json".to_string(), "malformed AdmissionReview"),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_string(),
            "carries no request",
        ),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}"#
                .to_string(),
            "malformed AdmissionReview",
        ),
        (String::new(), "malformed AdmissionReview"),
    ] {
        for ep in ["/mutate", "/validate"] {
            let r = c
                .post(s.url(ep))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{ep} {body}");
            let text = r.text().await.unwrap();
            assert!(text.contains(want), "{ep}: {text}");
        }
    }
    // 4 MiB: beyond the API server's own limit.
    let big = vec![b' '; 4 * 1024 * 1024];
    let r = c.post(s.url("/validate")).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // Only POST on the two endpoints.
    let r = c.get(s.url("/validate")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = c.post(s.url("/other")).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Still serving after all that.
    let es = external_secret("v1", json!({"secretStoreRef": {"name": "v"}, "data": []}));
    post(&c, &s.url("/mutate"), &review("ok", "v1", "CREATE", &es)).await;
    s.stop().await;
}

#[tokio::test]
async fn certificate_is_reloaded_while_serving() {
    let s = start("reload").await;
    let es = external_secret("v1", json!({"secretStoreRef": {"name": "v"}, "data": []}));
    let body = review("r", "v1", "CREATE", &es);
    // A half-written pair (new certificate, old key) is not taken: the old one keeps serving.
    let next = vaultgate::certs::generate(&names(), Duration::from_secs(3600)).unwrap();
    std::fs::write(s.dir.join("tls.crt"), &next.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let old = client_for(&s.ca_pem, false);
    assert_eq!(
        old.post(s.url("/mutate"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Completing the pair switches to the new certificate without a restart.
    std::fs::write(s.dir.join("tls.key"), &next.key_pem).unwrap();
    let fresh = client_for(&next.ca_cert_pem, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // New clients each time: no pooled connection from before the switch.
        let fresh = client_for(&next.ca_cert_pem, false);
        if let Ok(r) = fresh.post(s.url("/mutate")).json(&body).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "new certificate never served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(fresh);
    // Clients trusting only the old CA are now refused.
    let old = client_for(&s.ca_pem, false);
    assert!(old.post(s.url("/mutate")).json(&body).send().await.is_err());
    s.stop().await;
}

#[tokio::test]
async fn refuses_to_start_with_a_mismatched_pair() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("mismatch");
    let a = vaultgate::certs::generate(&names(), Duration::from_secs(3600)).unwrap();
    let b = vaultgate::certs::generate(&names(), Duration::from_secs(3600)).unwrap();
    std::fs::write(dir.join("tls.crt"), &a.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &b.key_pem).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let err = serve_listener(
        listener,
        WebhookConfig {
            addr,
            tls: TlsSource::Files {
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
            },
            client_ca: None,
            live: LiveMode::Off,
            live_budget: Duration::from_secs(1),
        },
        None,
        None,
        Metrics::new(),
        ready.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("does not match"), "{err:#}");
    assert!(!ready.load(Ordering::SeqCst));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn not_ready_while_the_certificate_is_expired() {
    let s = start_valid_for("expiry", Duration::from_secs(2)).await;
    let deadline = Instant::now() + Duration::from_secs(8);
    while s.ready.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "still ready with an expired certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A valid pair brings it back.
    let next = vaultgate::certs::generate(&names(), Duration::from_secs(3600)).unwrap();
    vaultgate::certs::write_dir(&next, &s.dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    while !s.ready.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "not ready again after a valid certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

/// A body streamed without a length (chunked) is cut off at the limit too.
#[tokio::test]
async fn chunked_oversize_body_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start("chunked").await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(s.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(
        b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    // The server may answer and close before everything is sent: stop writing then.
    while sent < 4 * 1024 * 1024 {
        let head = format!("{:x}\r\n", chunk.len());
        if tls.write_all(head.as_bytes()).await.is_err()
            || tls.write_all(&chunk).await.is_err()
            || tls.write_all(b"\r\n").await.is_err()
        {
            break;
        }
        sent += chunk.len();
    }
    let _ = tls.write_all(b"0\r\n\r\n").await;
    let _ = tls.flush().await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    s.stop().await;
}
