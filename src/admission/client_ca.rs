//! Client certificates for the webhook (`--webhook-client-ca`): with a CA configured, only
//! clients holding a certificate it signed (the API server, given a kubeconfig for the webhook
//! in its AdmissionConfiguration) complete the TLS handshake. The CA file is reloaded when it
//! changes, so that it can rotate without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio_util::sync::CancellationToken;

/// The verifier of the CA currently loaded; swapped whole when the file changes.
#[derive(Debug)]
pub struct ClientCa {
    path: PathBuf,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl ClientCa {
    /// Loads the CA bundle at `path`; an unreadable or empty bundle is an error.
    pub fn load(path: &Path) -> anyhow::Result<ClientCa> {
        Ok(ClientCa {
            path: path.to_path_buf(),
            current: RwLock::new(verifier(path)?),
        })
    }

    fn get(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Polls the file and swaps the CA when it changed into a readable bundle; a broken file
    /// keeps the previous CA (and is reported once per change).
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut seen = stamp(&self.path);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let now = stamp(&self.path);
            if now == seen {
                continue;
            }
            seen = now;
            match verifier(&self.path) {
                Ok(v) => {
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = v;
                    tracing::info!(ca = %self.path.display(), "webhook client CA reloaded");
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "webhook client CA not reloaded; still requiring the previous one"
                ),
            }
        }
    }
}

fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// A verifier that requires a client certificate chaining to one of the bundle's CAs.
fn verifier(path: &Path) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.with_context(|| format!("reading the certificates of {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("a CA certificate of {}", path.display()))?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in {}", path.display());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .with_context(|| format!("the client CA {}", path.display()))
}

impl ClientCertVerifier for ClientCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: they would have to outlive a reload. A client with one certificate (the API
    /// server's kubeconfig names one) sends it without them.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.get().supported_verify_schemes()
    }
}
