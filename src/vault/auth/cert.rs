//! Cert auth: the client certificate is presented on every connection to Vault (as ESO does),
//! and the login names the certificate role.

use serde_json::json;
use zeroize::Zeroizing;

use super::{LoginRequest, Resolver, mount_login};
use crate::api::{VaultCertAuth, VaultProvider};
use crate::vault::VaultError;

pub(super) fn request(c: &VaultCertAuth) -> LoginRequest {
    LoginRequest {
        path: mount_login(&c.path, "cert"),
        body: json!({"name": c.vault_role.clone().unwrap_or_default()}),
    }
}

/// The PEM certificate chain and key the connection presents: cert auth's own
/// clientCert/secretRef, else the client certificate of `tls`.
pub(super) async fn client_identity(
    resolver: &Resolver<'_>,
    p: &VaultProvider,
) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
    let cert_auth = p.auth.as_ref().and_then(|a| a.cert.as_ref());
    let own_cert = cert_auth.filter(|c| c.client_cert.is_some() || c.secret_ref.is_some());
    let pair = match (own_cert, &p.tls) {
        (Some(c), _) => {
            let cert = c.client_cert.as_ref().ok_or_else(|| {
                VaultError::config("spec.provider.vault.auth.cert.clientCert is not set")
            })?;
            let key = c.secret_ref.as_ref().ok_or_else(|| {
                VaultError::config("spec.provider.vault.auth.cert.secretRef is not set")
            })?;
            Some((
                resolver
                    .secret_value(
                        cert,
                        Some("tls.crt"),
                        "spec.provider.vault.auth.cert.clientCert",
                    )
                    .await?,
                resolver
                    .secret_value(
                        key,
                        Some("tls.key"),
                        "spec.provider.vault.auth.cert.secretRef",
                    )
                    .await?,
            ))
        }
        (None, Some(t)) => match (&t.cert_secret_ref, &t.key_secret_ref) {
            (Some(c), Some(k)) => Some((
                resolver
                    .secret_value(c, Some("tls.crt"), "spec.provider.vault.tls.certSecretRef")
                    .await?,
                resolver
                    .secret_value(k, Some("tls.key"), "spec.provider.vault.tls.keySecretRef")
                    .await?,
            )),
            (None, None) => None,
            _ => {
                return Err(VaultError::config(
                    "spec.provider.vault.tls needs both certSecretRef and keySecretRef",
                ));
            }
        },
        (None, None) if cert_auth.is_some() => {
            return Err(VaultError::config(
                "spec.provider.vault.auth.cert needs clientCert and secretRef (or a client \
                 certificate in spec.provider.vault.tls)",
            ));
        }
        (None, None) => None,
    };
    let Some((cert, key)) = pair else {
        return Ok(None);
    };
    let mut pem = Zeroizing::new(Vec::with_capacity(cert.len() + key.len() + 1));
    pem.extend_from_slice(&cert);
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(&key);
    Ok(Some(pem))
}
