//! Self-managed webhook certificates, as ESO's cert-controller does them but in-process: a CA
//! and a serving certificate for the Service's DNS names kept in a Secret (created if absent,
//! so that replicas share one), the serving certificate renewed when less than a third of its
//! validity is left, and the CA injected as `caBundle` into every webhook entry of the
//! project's Validating- and MutatingWebhookConfiguration.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;

use super::tls::{self, CertResolver};
use crate::certs::{self, CertBundle};

/// How often the Secret and the webhook configurations are checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Pause between attempts while the certificates cannot be read or written.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Validity of a serving certificate.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

pub const KEY_CA_CERT: &str = "ca.crt";
pub const KEY_CA_KEY: &str = "ca.key";
pub const KEY_CERT: &str = "tls.crt";
pub const KEY_KEY: &str = "tls.key";

/// The DNS names a Service is reached by from the API server.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Whether a certificate valid from `not_before` to `not_after` is due for renewal at `now`:
/// less than a third of its validity left.
pub fn needs_rotation(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    let total = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    match not_after.duration_since(now) {
        Ok(left) => left < total / 3,
        Err(_) => true,
    }
}

/// What to do with the certificates found in the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Keep,
    /// The CA is fine; issue a new serving certificate (the caBundle stays the same).
    RenewServing(String),
    /// Start over with a new CA.
    Regenerate(String),
}

/// Decides from the bundle alone (pure, so that rotation is tested without a cluster).
pub fn plan(bundle: Option<&CertBundle>, names: &[String], now: SystemTime) -> Plan {
    let Some(b) = bundle else {
        return Plan::Regenerate("no certificates yet".into());
    };
    let ca = match validity(&b.ca_cert_pem) {
        Ok(v) => v,
        Err(e) => return Plan::Regenerate(format!("CA unreadable: {e:#}")),
    };
    if needs_rotation(ca.0, ca.1, now) {
        return Plan::Regenerate("the CA is close to expiry".into());
    }
    if let Err(e) = tls::certified_key(b.ca_cert_pem.as_bytes(), b.ca_key_pem.as_bytes()) {
        return Plan::Regenerate(format!("CA key unusable: {e:#}"));
    }
    if let Err(e) = tls::certified_key(b.cert_pem.as_bytes(), b.key_pem.as_bytes()) {
        return Plan::RenewServing(format!("serving certificate unusable: {e:#}"));
    }
    if let Some(first) = names.first()
        && let Err(e) = verifies_against(&b.ca_cert_pem, &b.cert_pem, first)
    {
        return Plan::RenewServing(format!("does not verify against the CA: {e:#}"));
    }
    match serving_facts(&b.cert_pem) {
        Err(e) => Plan::RenewServing(format!("serving certificate unreadable: {e:#}")),
        Ok(f) if !names.iter().all(|n| f.names.contains(n)) => {
            Plan::RenewServing("DNS names changed".into())
        }
        Ok(f) if needs_rotation(f.not_before, f.not_after, now) => {
            Plan::RenewServing("less than a third of its validity left".into())
        }
        Ok(_) => Plan::Keep,
    }
}

fn to_system(t: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64)
}

fn validity(pem: &str) -> anyhow::Result<(SystemTime, SystemTime)> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).context("reading PEM")?;
    let c = p.parse_x509().context("parsing the certificate")?;
    Ok((
        to_system(c.validity().not_before.timestamp()),
        to_system(c.validity().not_after.timestamp()),
    ))
}

struct ServingFacts {
    not_before: SystemTime,
    not_after: SystemTime,
    names: Vec<String>,
}

fn serving_facts(cert_pem: &str) -> anyhow::Result<ServingFacts> {
    let (_, p) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).context("reading PEM")?;
    let c = p.parse_x509().context("parsing the certificate")?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*ip) {
                        names.push(std::net::IpAddr::from(a).to_string());
                    } else if let Ok(a) = <[u8; 16]>::try_from(*ip) {
                        names.push(std::net::IpAddr::from(a).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(ServingFacts {
        not_before: to_system(c.validity().not_before.timestamp()),
        not_after: to_system(c.validity().not_after.timestamp()),
        names,
    })
}

/// Whether the CA signed the serving certificate for `name`, checked as a TLS client would
/// (every generated CA has the same subject, so comparing names proves nothing).
fn verifies_against(ca_pem: &str, cert_pem: &str, name: &str) -> anyhow::Result<()> {
    use rustls::client::danger::ServerCertVerifier;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca?)?;
    }
    let cert = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .context("no certificate")??;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string())?;
    verifier.verify_server_cert(
        &cert,
        &[],
        &server_name,
        &[],
        rustls::pki_types::UnixTime::now(),
    )?;
    Ok(())
}

fn bundle_from_secret(s: &Secret) -> Option<CertBundle> {
    let data = s.data.as_ref()?;
    let get = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(CertBundle {
        ca_cert_pem: get(KEY_CA_CERT)?,
        ca_key_pem: get(KEY_CA_KEY)?,
        cert_pem: get(KEY_CERT)?,
        key_pem: get(KEY_KEY)?,
    })
}

fn bundle_data(b: &CertBundle) -> BTreeMap<String, ByteString> {
    [
        (KEY_CA_CERT, &b.ca_cert_pem),
        (KEY_CA_KEY, &b.ca_key_pem),
        (KEY_CERT, &b.cert_pem),
        (KEY_KEY, &b.key_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
    .collect()
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Keeps the webhook's certificates in a Secret and the CA in the webhook configurations.
#[derive(Clone)]
pub struct CertManager {
    client: kube::Client,
    namespace: String,
    secret_name: String,
    names: Vec<String>,
    webhook_config_name: String,
    validity: Duration,
}

impl CertManager {
    pub fn new(
        client: kube::Client,
        namespace: String,
        secret_name: String,
        service_name: String,
        webhook_config_name: String,
    ) -> Self {
        let names = dns_names(&service_name, &namespace);
        CertManager {
            client,
            namespace,
            secret_name,
            names,
            webhook_config_name,
            validity: SERVING_VALIDITY,
        }
    }

    /// Serving certificates with another validity (short ones exercise rotation).
    pub fn with_validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// The current certificates: read from the Secret, created or renewed there when needed.
    /// Replicas race on create and update; the loser re-reads and takes the winner's.
    pub async fn ensure(&self) -> anyhow::Result<CertBundle> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let what = format!("Secret {}/{}", self.namespace, self.secret_name);
        for _ in 0..5 {
            let existing = api
                .get_opt(&self.secret_name)
                .await
                .with_context(|| format!("reading {what}"))?;
            let current = existing.as_ref().and_then(bundle_from_secret);
            let next = match plan(current.as_ref(), &self.names, SystemTime::now()) {
                Plan::Keep => return current.context("bundle present when kept"),
                Plan::RenewServing(why) => {
                    let b = current.context("bundle present when renewed")?;
                    tracing::info!(secret = %what, reason = %why, "renewing the webhook serving certificate");
                    let (cert_pem, key_pem) = certs::sign_serving(
                        &b.ca_cert_pem,
                        &b.ca_key_pem,
                        &self.names,
                        self.validity,
                    )?;
                    CertBundle {
                        cert_pem,
                        key_pem,
                        ..b
                    }
                }
                Plan::Regenerate(why) => {
                    tracing::info!(secret = %what, reason = %why, "generating a webhook CA and serving certificate");
                    certs::generate(&self.names, self.validity)?
                }
            };
            let result = match existing {
                None => {
                    let secret = Secret {
                        metadata: ObjectMeta {
                            name: Some(self.secret_name.clone()),
                            namespace: Some(self.namespace.clone()),
                            labels: Some(BTreeMap::from([(
                                "app.kubernetes.io/managed-by".to_string(),
                                "vaultgate".to_string(),
                            )])),
                            ..Default::default()
                        },
                        type_: Some("kubernetes.io/tls".into()),
                        data: Some(bundle_data(&next)),
                        ..Default::default()
                    };
                    api.create(&PostParams::default(), &secret)
                        .await
                        .map(|_| ())
                }
                Some(mut secret) => {
                    // Replace with the resourceVersion read: a concurrent writer makes this a 409.
                    secret
                        .data
                        .get_or_insert_with(Default::default)
                        .extend(bundle_data(&next));
                    secret.string_data = None;
                    api.replace(&self.secret_name, &PostParams::default(), &secret)
                        .await
                        .map(|_| ())
                }
            };
            match result {
                Ok(()) => return Ok(next),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e).with_context(|| format!("writing {what}")),
            }
        }
        anyhow::bail!("{what} kept changing under concurrent writers; will retry")
    }

    /// Puts `ca_pem` into every webhook entry of both configurations; returns how many
    /// configurations were changed. Missing configurations are skipped (not deployed yet).
    pub async fn inject_ca(&self, ca_pem: &str) -> usize {
        let ca = ca_pem.as_bytes();
        let mut changed = 0;
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        match api.get_opt(&self.webhook_config_name).await {
            Ok(Some(mut cfg)) => {
                let mut dirty = false;
                for w in cfg.webhooks.iter_mut().flatten() {
                    dirty |= set_ca(&mut w.client_config, ca);
                }
                if dirty {
                    changed += self
                        .write(&api, &cfg, "ValidatingWebhookConfiguration")
                        .await;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading ValidatingWebhookConfiguration"),
        }
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        match api.get_opt(&self.webhook_config_name).await {
            Ok(Some(mut cfg)) => {
                let mut dirty = false;
                for w in cfg.webhooks.iter_mut().flatten() {
                    dirty |= set_ca(&mut w.client_config, ca);
                }
                if dirty {
                    changed += self.write(&api, &cfg, "MutatingWebhookConfiguration").await;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading MutatingWebhookConfiguration"),
        }
        changed
    }

    async fn write<K>(&self, api: &Api<K>, obj: &K, kind: &str) -> usize
    where
        K: kube::Resource
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        match api
            .replace(&self.webhook_config_name, &PostParams::default(), obj)
            .await
        {
            Ok(_) => {
                tracing::info!(kind, name = %self.webhook_config_name, "injected the webhook CA bundle");
                1
            }
            // Someone else wrote it meanwhile; the next check sees the result.
            Err(e) => {
                tracing::warn!(kind, error = %e, "injecting the webhook CA bundle");
                0
            }
        }
    }

    /// Checks every `interval` until `shutdown`: renews when due, picks up renewals made by
    /// other replicas, and keeps the CA bundle injected.
    pub async fn run(
        self,
        resolver: Arc<CertResolver>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut served: Option<String> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match self.ensure().await {
                Ok(b) => {
                    if served.as_deref() != Some(b.cert_pem.as_str()) {
                        match tls::certified_key(b.cert_pem.as_bytes(), b.key_pem.as_bytes()) {
                            Ok(k) => {
                                resolver.set(k);
                                served = Some(b.cert_pem.clone());
                            }
                            Err(e) => tracing::warn!(
                                error = format!("{e:#}"),
                                "webhook certificate from the Secret not usable"
                            ),
                        }
                    }
                    self.inject_ca(&b.ca_cert_pem).await;
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "checking the webhook certificates"
                ),
            }
        }
    }
}

fn set_ca(cc: &mut WebhookClientConfig, ca: &[u8]) -> bool {
    if cc.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(ca) {
        return false;
    }
    cc.ca_bundle = Some(ByteString(ca.to_vec()));
    true
}
