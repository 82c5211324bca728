//! Self-managed webhook certificates against the Kubernetes emulator: shared creation by
//! racing replicas, renewal, CA injection, and pick-up by a running replica.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kube_emulator::KubeEmulator;
use tokio_util::sync::CancellationToken;
use vaultgate::admission::selfcert::{self, CertManager, Plan};
use vaultgate::admission::tls::{CertResolver, certified_key};

const NS: &str = "vaultgate-system";

async fn kube() -> (KubeEmulator, kube::Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let k = KubeEmulator::start(Default::default()).await.unwrap();
    k.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: vaultgate-system}\n")
        .await
        .unwrap();
    let c = k.client().await;
    (k, c)
}

fn manager(client: &kube::Client, service: &str) -> CertManager {
    CertManager::new(
        client.clone(),
        NS.into(),
        "vaultgate-webhook-tls".into(),
        service.into(),
        "vaultgate".into(),
    )
}

#[test]
fn rotation_is_due_with_a_third_left() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let day = Duration::from_secs(86_400);
    let cases = [
        (0, false),
        (100, false),
        (199, false),
        (201, true),
        (300, true),
        (301, true),
    ];
    for (elapsed_days, due) in cases {
        assert_eq!(
            selfcert::needs_rotation(t0, t0 + day * 300, t0 + day * elapsed_days),
            due,
            "{elapsed_days} days"
        );
    }
}

#[test]
fn plans() {
    let names = selfcert::dns_names("vaultgate-webhook", NS);
    assert_eq!(
        names,
        [
            "vaultgate-webhook",
            "vaultgate-webhook.vaultgate-system",
            "vaultgate-webhook.vaultgate-system.svc",
            "vaultgate-webhook.vaultgate-system.svc.cluster.local",
        ]
    );
    let now = SystemTime::now();
    assert!(matches!(
        selfcert::plan(None, &names, now),
        Plan::Regenerate(_)
    ));
    let year = Duration::from_secs(365 * 86_400);
    let b = vaultgate::certs::generate(&names, year).unwrap();
    assert_eq!(selfcert::plan(Some(&b), &names, now), Plan::Keep);
    // Later in life: renew the serving certificate, keep the CA.
    assert!(matches!(
        selfcert::plan(Some(&b), &names, now + year * 3 / 4),
        Plan::RenewServing(_)
    ));
    // Other names, a broken key, a certificate from another CA: renew.
    let other = selfcert::dns_names("other", NS);
    assert!(matches!(
        selfcert::plan(Some(&b), &other, now),
        Plan::RenewServing(_)
    ));
    let mut broken = b.clone();
    broken.key_pem = vaultgate::certs::generate(&names, year).unwrap().key_pem;
    assert!(matches!(
        selfcert::plan(Some(&broken), &names, now),
        Plan::RenewServing(_)
    ));
    let mut foreign = b.clone();
    let f = vaultgate::certs::generate(&names, year).unwrap();
    foreign.cert_pem = f.cert_pem;
    foreign.key_pem = f.key_pem;
    assert!(matches!(
        selfcert::plan(Some(&foreign), &names, now),
        Plan::RenewServing(_)
    ));
    // A CA that is unreadable or close to its end: start over.
    let mut bad_ca = b.clone();
    bad_ca.ca_cert_pem = "garbage".into();
    assert!(matches!(
        selfcert::plan(Some(&bad_ca), &names, now),
        Plan::Regenerate(_)
    ));
    assert!(matches!(
        selfcert::plan(
            Some(&b),
            &names,
            now + Duration::from_secs(8 * 365 * 86_400)
        ),
        Plan::Regenerate(_)
    ));
}

#[tokio::test]
async fn replicas_share_one_secret_and_renewal_keeps_the_ca() {
    let (_k, client) = kube().await;
    let a = manager(&client, "vaultgate-webhook");
    let b = manager(&client, "vaultgate-webhook");
    let (ra, rb) = tokio::join!(a.ensure(), b.ensure());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.ca_cert_pem, rb.ca_cert_pem);
    assert_eq!(ra.cert_pem, rb.cert_pem);
    certified_key(ra.cert_pem.as_bytes(), ra.key_pem.as_bytes()).unwrap();
    // Nothing due: the same certificate again.
    assert_eq!(a.ensure().await.unwrap().cert_pem, ra.cert_pem);
    // A renamed Service: a new serving certificate from the same CA.
    let renamed = manager(&client, "renamed").ensure().await.unwrap();
    assert_ne!(renamed.cert_pem, ra.cert_pem);
    assert_eq!(renamed.ca_cert_pem, ra.ca_cert_pem);
    // Short-lived certificates are due at once (less than a third left after back-dating):
    // every check renews them, always from the same CA.
    let short = manager(&client, "short").with_validity(Duration::from_secs(60));
    let s1 = short.ensure().await.unwrap();
    let s2 = short.ensure().await.unwrap();
    assert_ne!(s1.cert_pem, renamed.cert_pem);
    assert_ne!(s1.cert_pem, s2.cert_pem);
    assert_eq!(s2.ca_cert_pem, ra.ca_cert_pem);
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), NS);
    let s = secrets.get("vaultgate-webhook-tls").await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(
        s.data.unwrap()["tls.crt"].0,
        s2.cert_pem.as_bytes(),
        "the Secret holds the latest certificate"
    );
}

#[tokio::test]
async fn ca_is_injected_into_every_webhook_entry() {
    let (k, client) = kube().await;
    // Two entries in each configuration.
    let doc = |kind: &str, path: &str| {
        format!(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: {kind}
metadata: {{name: vaultgate}}
webhooks:
- name: one.vaultgate.io
  admissionReviewVersions: ["v1"]
  sideEffects: None
  clientConfig: {{service: {{namespace: vaultgate-system, name: vaultgate-webhook, path: {path}}}}}
- name: two.vaultgate.io
  admissionReviewVersions: ["v1"]
  sideEffects: None
  clientConfig: {{service: {{namespace: vaultgate-system, name: vaultgate-webhook, path: {path}}}}}
"#
        )
    };
    k.apply_yaml(&doc("ValidatingWebhookConfiguration", "/validate"))
        .await
        .unwrap();
    k.apply_yaml(&doc("MutatingWebhookConfiguration", "/mutate"))
        .await
        .unwrap();
    let m = manager(&client, "vaultgate-webhook");
    let b = m.ensure().await.unwrap();
    assert_eq!(m.inject_ca(&b.ca_cert_pem).await, 2);
    // Already current: no writes.
    assert_eq!(m.inject_ca(&b.ca_cert_pem).await, 0);
    let v: kube::Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        kube::Api::all(client.clone());
    for w in v.get("vaultgate").await.unwrap().webhooks.unwrap() {
        assert_eq!(
            w.client_config.ca_bundle.unwrap().0,
            b.ca_cert_pem.as_bytes()
        );
    }
    let mu: kube::Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        kube::Api::all(client.clone());
    for w in mu.get("vaultgate").await.unwrap().webhooks.unwrap() {
        assert_eq!(
            w.client_config.ca_bundle.unwrap().0,
            b.ca_cert_pem.as_bytes()
        );
    }
    // No configurations at all (not deployed yet) is not an error.
    let other = CertManager::new(
        client.clone(),
        NS.into(),
        "vaultgate-webhook-tls".into(),
        "vaultgate-webhook".into(),
        "absent".into(),
    );
    assert_eq!(other.inject_ca(&b.ca_cert_pem).await, 0);
}

#[tokio::test]
async fn a_running_replica_picks_up_renewals() {
    let (_k, client) = kube().await;
    let mine = manager(&client, "vaultgate-webhook");
    let b = mine.ensure().await.unwrap();
    let resolver = Arc::new(CertResolver::default());
    resolver.set(certified_key(b.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap());
    let first = resolver.current().unwrap().cert[0].clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(mine.clone().run(
        resolver.clone(),
        Duration::from_millis(100),
        stop.clone(),
    ));
    // Another replica renews: a new serving certificate from the same CA in the Secret.
    let (cert, key) = vaultgate::certs::sign_serving(
        &b.ca_cert_pem,
        &b.ca_key_pem,
        &selfcert::dns_names("vaultgate-webhook", NS),
        Duration::from_secs(365 * 86_400),
    )
    .unwrap();
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), NS);
    let mut s = secrets.get("vaultgate-webhook-tls").await.unwrap();
    let data = s.data.as_mut().unwrap();
    data.insert("tls.crt".into(), k8s_openapi::ByteString(cert.into_bytes()));
    data.insert("tls.key".into(), k8s_openapi::ByteString(key.into_bytes()));
    secrets
        .replace("vaultgate-webhook-tls", &Default::default(), &s)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while resolver.current().unwrap().cert[0] == first {
        assert!(Instant::now() < deadline, "renewal never picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await.unwrap();
}
