//! What a store references in Kubernetes: Secrets, ConfigMaps and ServiceAccount tokens, read
//! in the store's namespace or, for a ClusterSecretStore, the reference's or the
//! ExternalSecret's (referent), and the TLS material built from them.

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use zeroize::Zeroizing;

use super::cert;
use crate::api::{
    CaProviderType, SecretKeySelector, ServiceAccountSelector, StoreKind, VaultProvider,
};
use crate::vault::http::TlsMaterial;
use crate::vault::{StoreHandle, VaultError};

/// Whether a ClusterSecretStore resolves some reference in the ExternalSecret's namespace, so
/// that its login identity depends on that namespace.
pub fn has_referent_refs(p: &VaultProvider) -> bool {
    let sk = |s: &Option<SecretKeySelector>| s.as_ref().is_some_and(|s| s.namespace.is_none());
    let sa = |s: &Option<ServiceAccountSelector>| s.as_ref().is_some_and(|s| s.namespace.is_none());
    let tls = p
        .tls
        .as_ref()
        .is_some_and(|t| sk(&t.cert_secret_ref) || sk(&t.key_secret_ref));
    let ca = p
        .ca_provider
        .as_ref()
        .is_some_and(|c| c.namespace.is_none());
    let auth = p.auth.as_ref().is_some_and(|a| {
        sk(&a.token_secret_ref)
            || a.app_role
                .as_ref()
                .is_some_and(|r| sk(&r.role_ref) || sk(&Some(r.secret_ref.clone())))
            || a.kubernetes
                .as_ref()
                .is_some_and(|k| sa(&k.service_account_ref) || sk(&k.secret_ref))
            || a.jwt.as_ref().is_some_and(|j| {
                sk(&j.secret_ref)
                    || j.kubernetes_service_account_token
                        .as_ref()
                        .is_some_and(|t| sa(&Some(t.service_account_ref.clone())))
            })
            || a.user_pass.as_ref().is_some_and(|u| sk(&u.secret_ref))
            || a.ldap.as_ref().is_some_and(|u| sk(&u.secret_ref))
            || a.cert
                .as_ref()
                .is_some_and(|c| sk(&c.client_cert) || sk(&c.secret_ref))
    });
    tls || ca || auth
}

/// Reads what a store references in Kubernetes, applying the referent rule.
pub(crate) struct Resolver<'a> {
    pub kube: &'a kube::Client,
    pub store: &'a StoreHandle,
    pub es_namespace: &'a str,
}

impl Resolver<'_> {
    /// SecretStore: always its own namespace. ClusterSecretStore: the reference's namespace,
    /// else the ExternalSecret's (referent).
    pub fn namespace_for(&self, explicit: Option<&str>) -> String {
        match (self.store.kind, &self.store.namespace) {
            (StoreKind::SecretStore, Some(ns)) => ns.clone(),
            _ => explicit
                .filter(|n| !n.is_empty())
                .unwrap_or(self.es_namespace)
                .to_string(),
        }
    }

    /// The bytes of one Secret key; `default_key` when the selector names none.
    pub async fn secret_value(
        &self,
        sel: &SecretKeySelector,
        default_key: Option<&str>,
        field: &str,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let name = sel
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| VaultError::config(format!("{field}.name is not set")))?;
        let key = sel
            .key
            .as_deref()
            .filter(|k| !k.is_empty())
            .or(default_key)
            .ok_or_else(|| VaultError::config(format!("{field}.key is not set")))?;
        let ns = self.namespace_for(sel.namespace.as_deref());
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), &ns);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| kube_error(e, &format!("Secret {ns}/{name} ({field})")))?
            .ok_or_else(|| {
                VaultError::config(format!("{field}: Secret {ns}/{name} does not exist"))
            })?;
        let data = secret.data.unwrap_or_default();
        let value = data.get(key).ok_or_else(|| {
            VaultError::config(format!("{field}: Secret {ns}/{name} has no key {key:?}"))
        })?;
        Ok(Zeroizing::new(value.0.clone()))
    }

    async fn config_map_value(
        &self,
        name: &str,
        explicit_ns: Option<&str>,
        key: &str,
        field: &str,
    ) -> Result<Vec<u8>, VaultError> {
        let ns = self.namespace_for(explicit_ns);
        let api: Api<ConfigMap> = Api::namespaced(self.kube.clone(), &ns);
        let cm = api
            .get_opt(name)
            .await
            .map_err(|e| kube_error(e, &format!("ConfigMap {ns}/{name} ({field})")))?
            .ok_or_else(|| {
                VaultError::config(format!("{field}: ConfigMap {ns}/{name} does not exist"))
            })?;
        if let Some(v) = cm.data.as_ref().and_then(|d| d.get(key)) {
            return Ok(v.as_bytes().to_vec());
        }
        if let Some(v) = cm.binary_data.as_ref().and_then(|d| d.get(key)) {
            return Ok(v.0.clone());
        }
        Err(VaultError::config(format!(
            "{field}: ConfigMap {ns}/{name} has no key {key:?}"
        )))
    }

    /// A short-lived token of a ServiceAccount (TokenRequest).
    pub async fn service_account_token(
        &self,
        sa: &ServiceAccountSelector,
        audiences: Vec<String>,
        expiration_seconds: i64,
        field: &str,
    ) -> Result<Zeroizing<String>, VaultError> {
        let ns = self.namespace_for(sa.namespace.as_deref());
        let api: Api<ServiceAccount> = Api::namespaced(self.kube.clone(), &ns);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences,
                expiration_seconds: Some(expiration_seconds),
                ..Default::default()
            },
            ..Default::default()
        };
        let resp = api
            .create_token_request(&sa.name, &PostParams::default(), &req)
            .await
            .map_err(|e| {
                kube_error(
                    e,
                    &format!("a token for ServiceAccount {ns}/{} ({field})", sa.name),
                )
            })?;
        let token = resp.status.map(|s| s.token).unwrap_or_default();
        if token.is_empty() {
            return Err(VaultError::config(format!(
                "{field}: the TokenRequest for ServiceAccount {ns}/{} returned no token",
                sa.name
            )));
        }
        Ok(Zeroizing::new(token))
    }

    /// CA and client certificate material of the store.
    pub async fn tls_material(&self, p: &VaultProvider) -> Result<TlsMaterial, VaultError> {
        let mut out = TlsMaterial::default();
        if let Some(b) = p.ca_bundle.as_deref().filter(|b| !b.trim().is_empty()) {
            out.ca_pem = Some(decode_ca_bundle(b)?);
        } else if let Some(cp) = &p.ca_provider {
            let key = cp.key.as_deref().filter(|k| !k.is_empty()).ok_or_else(|| {
                VaultError::config("spec.provider.vault.caProvider.key is not set")
            })?;
            let field = "spec.provider.vault.caProvider";
            out.ca_pem = Some(match cp.type_ {
                CaProviderType::Secret => {
                    let sel = SecretKeySelector {
                        name: Some(cp.name.clone()),
                        namespace: cp.namespace.clone(),
                        key: Some(key.to_string()),
                    };
                    self.secret_value(&sel, None, field).await?.to_vec()
                }
                CaProviderType::ConfigMap => {
                    self.config_map_value(&cp.name, cp.namespace.as_deref(), key, field)
                        .await?
                }
            });
        }
        out.identity_pem = cert::client_identity(self, p).await?;
        Ok(out)
    }
}

/// `caBundle` holds the base64 text of the manifest; a PEM pasted as is is accepted too.
pub(crate) fn decode_ca_bundle(b: &str) -> Result<Vec<u8>, VaultError> {
    let t = b.trim();
    if t.starts_with("-----BEGIN") {
        return Ok(t.as_bytes().to_vec());
    }
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| {
            VaultError::config(format!(
                "spec.provider.vault.caBundle is neither PEM nor base64 of PEM: {e}"
            ))
        })
}

fn kube_error(e: kube::Error, what: &str) -> VaultError {
    match &e {
        kube::Error::Api(s) if s.code == 403 => VaultError::config(format!(
            "vaultgate may not read {what}: {} (grant its ServiceAccount access)",
            s.message
        )),
        kube::Error::Api(s) if s.code == 404 => {
            VaultError::config(format!("{what} does not exist: {}", s.message))
        }
        kube::Error::Api(s) if s.code < 500 && s.code != 429 => {
            VaultError::config(format!("reading {what}: {}", s.message))
        }
        _ => VaultError::Unavailable {
            message: format!("Kubernetes API: reading {what}: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::sel;
    use super::*;
    use crate::api::{VaultAppRole, VaultAuth, VaultCertAuth, VaultClientTls, VaultKubernetesAuth};

    #[test]
    fn referent_detection() {
        let provider = |auth: VaultAuth| VaultProvider {
            server: "http://v".into(),
            auth: Some(auth),
            ..Default::default()
        };
        let cases = [
            (
                VaultAuth {
                    token_secret_ref: Some(sel(None)),
                    ..Default::default()
                },
                true,
            ),
            (
                VaultAuth {
                    token_secret_ref: Some(sel(Some("vault"))),
                    ..Default::default()
                },
                false,
            ),
            (
                VaultAuth {
                    app_role: Some(VaultAppRole {
                        role_id: Some("r".into()),
                        secret_ref: sel(Some("x")),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                false,
            ),
            (
                VaultAuth {
                    kubernetes: Some(VaultKubernetesAuth {
                        role: "r".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                false,
            ),
            (
                VaultAuth {
                    kubernetes: Some(VaultKubernetesAuth {
                        role: "r".into(),
                        service_account_ref: Some(ServiceAccountSelector {
                            name: "sa".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                true,
            ),
            (
                VaultAuth {
                    cert: Some(VaultCertAuth {
                        client_cert: Some(sel(Some("a"))),
                        secret_ref: Some(sel(None)),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                true,
            ),
        ];
        for (i, (auth, want)) in cases.into_iter().enumerate() {
            assert_eq!(has_referent_refs(&provider(auth)), want, "case {i}");
        }
        let mut p = provider(VaultAuth {
            token_secret_ref: Some(sel(Some("vault"))),
            ..Default::default()
        });
        p.tls = Some(VaultClientTls {
            cert_secret_ref: Some(sel(Some("a"))),
            key_secret_ref: Some(sel(None)),
        });
        assert!(has_referent_refs(&p));
    }

    #[test]
    fn ca_bundle_forms() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        assert_eq!(decode_ca_bundle(&b64).unwrap(), pem.as_bytes());
        assert_eq!(decode_ca_bundle(pem).unwrap(), pem.trim().as_bytes());
        assert!(decode_ca_bundle("not base64 !").is_err());
    }
}
