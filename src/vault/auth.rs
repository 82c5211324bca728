//! Store credentials: reading the referenced Secrets, ConfigMaps and ServiceAccount tokens, and
//! the Vault login of each auth method.

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::answers;
use super::http::{Reply, Req, TlsMaterial, Transport};
use super::{StoreHandle, VaultError};
use crate::api::{
    CaProviderType, SecretKeySelector, ServiceAccountSelector, StoreKind, VaultAuth,
    VaultKubernetesAuth, VaultProvider,
};

/// The pod's own ServiceAccount token, used by kubernetes auth without a reference.
const POD_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The one auth method of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthKind {
    Token,
    AppRole,
    Kubernetes,
    Jwt,
    UserPass,
    Ldap,
    Cert,
}

impl AuthKind {
    pub fn name(self) -> &'static str {
        match self {
            AuthKind::Token => "token",
            AuthKind::AppRole => "appRole",
            AuthKind::Kubernetes => "kubernetes",
            AuthKind::Jwt => "jwt",
            AuthKind::UserPass => "userPass",
            AuthKind::Ldap => "ldap",
            AuthKind::Cert => "cert",
        }
    }
}

/// Picks the auth method; more than one is refused (ESO silently takes the first).
pub(crate) fn auth_kind(auth: Option<&VaultAuth>) -> Result<AuthKind, VaultError> {
    let Some(a) = auth else {
        return Err(VaultError::config(
            "spec.provider.vault.auth is missing: set one auth method",
        ));
    };
    if a.iam.is_some() {
        return Err(VaultError::Unsupported {
            what: "Vault auth method iam (AWS) is not supported by vaultgate".into(),
        });
    }
    if a.gcp.is_some() {
        return Err(VaultError::Unsupported {
            what: "Vault auth method gcp is not supported by vaultgate".into(),
        });
    }
    let set = [
        (a.token_secret_ref.is_some(), AuthKind::Token),
        (a.app_role.is_some(), AuthKind::AppRole),
        (a.kubernetes.is_some(), AuthKind::Kubernetes),
        (a.jwt.is_some(), AuthKind::Jwt),
        (a.user_pass.is_some(), AuthKind::UserPass),
        (a.ldap.is_some(), AuthKind::Ldap),
        (a.cert.is_some(), AuthKind::Cert),
    ];
    let chosen: Vec<AuthKind> = set.iter().filter(|(on, _)| *on).map(|(_, k)| *k).collect();
    match chosen.as_slice() {
        [one] => Ok(*one),
        [] => Err(VaultError::config(
            "spec.provider.vault.auth sets no auth method",
        )),
        many => Err(VaultError::config(format!(
            "spec.provider.vault.auth sets several auth methods ({}): keep exactly one",
            many.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

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
        // Cert auth presents its certificate on every connection, as ESO does. Without
        // clientCert/secretRef it uses the client certificate of `tls`.
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
                    self.secret_value(
                        cert,
                        Some("tls.crt"),
                        "spec.provider.vault.auth.cert.clientCert",
                    )
                    .await?,
                    self.secret_value(
                        key,
                        Some("tls.key"),
                        "spec.provider.vault.auth.cert.secretRef",
                    )
                    .await?,
                ))
            }
            (None, Some(t)) => match (&t.cert_secret_ref, &t.key_secret_ref) {
                (Some(c), Some(k)) => Some((
                    self.secret_value(c, Some("tls.crt"), "spec.provider.vault.tls.certSecretRef")
                        .await?,
                    self.secret_value(k, Some("tls.key"), "spec.provider.vault.tls.keySecretRef")
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
        if let Some((cert, key)) = pair {
            let mut pem = Zeroizing::new(Vec::with_capacity(cert.len() + key.len() + 1));
            pem.extend_from_slice(&cert);
            if !pem.ends_with(b"\n") {
                pem.push(b'\n');
            }
            pem.extend_from_slice(&key);
            out.identity_pem = Some(pem);
        }
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

/// Text from a Secret that must be a token-like value (no surrounding whitespace).
fn token_text(bytes: &[u8], field: &str) -> Result<Zeroizing<String>, VaultError> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| VaultError::config(format!("{field}: the value is not UTF-8 text")))?;
    let t = s.trim();
    if t.is_empty() {
        return Err(VaultError::config(format!("{field}: the value is empty")));
    }
    Ok(Zeroizing::new(t.to_string()))
}

/// A token obtained from a store's credentials.
pub(crate) struct LoginToken {
    pub token: Zeroizing<String>,
    /// Lease of the token; `None` for a static token (never renewed here).
    pub ttl: Option<Duration>,
    pub renewable: bool,
    /// Came from a Vault login (so it is ours to renew and revoke).
    pub from_login: bool,
}

/// Why Kubernetes auth may not fall back to vaultgate's own token: a namespaced store is
/// written by a namespace's users, and vaultgate's token (which may read every Secret) would
/// go to the server they name. A ClusterSecretStore, written by a cluster admin, keeps ESO's
/// fallback.
pub fn pod_token_refusal(k: &VaultKubernetesAuth, namespaced: bool) -> Option<&'static str> {
    (namespaced && k.service_account_ref.is_none() && k.secret_ref.is_none()).then_some(
        "a SecretStore needs serviceAccountRef or secretRef: without them vaultgate would log in \
         with its own service account token, which only a ClusterSecretStore may do",
    )
}

/// Logs in with the store's auth method (for token auth: reads the static token).
pub(crate) async fn login(
    resolver: &Resolver<'_>,
    kind: AuthKind,
    transport: &Transport,
    login_namespace: Option<&str>,
    metrics: &crate::metrics::Metrics,
    attempts: &std::sync::atomic::AtomicU64,
) -> Result<LoginToken, VaultError> {
    let p = resolver
        .store
        .spec
        .provider
        .vault
        .as_ref()
        .ok_or_else(|| VaultError::config("spec.provider.vault is not set"))?;
    let auth = p
        .auth
        .as_ref()
        .ok_or_else(|| VaultError::config("spec.provider.vault.auth is missing"))?;
    let (path, body): (String, Value) = match kind {
        AuthKind::Token => {
            let sel = auth
                .token_secret_ref
                .as_ref()
                .expect("chosen method is set");
            let field = "spec.provider.vault.auth.tokenSecretRef";
            let raw = resolver.secret_value(sel, None, field).await?;
            return Ok(LoginToken {
                token: token_text(&raw, field)?,
                ttl: None,
                renewable: false,
                from_login: false,
            });
        }
        AuthKind::AppRole => {
            let a = auth.app_role.as_ref().expect("chosen method is set");
            let role_id = match (&a.role_id, &a.role_ref) {
                (Some(id), _) if !id.is_empty() => Zeroizing::new(id.clone()),
                (_, Some(r)) => {
                    let f = "spec.provider.vault.auth.appRole.roleRef";
                    token_text(&resolver.secret_value(r, None, f).await?, f)?
                }
                _ => {
                    return Err(VaultError::config(
                        "spec.provider.vault.auth.appRole needs roleId or roleRef",
                    ));
                }
            };
            let f = "spec.provider.vault.auth.appRole.secretRef";
            let secret_id = token_text(&resolver.secret_value(&a.secret_ref, None, f).await?, f)?;
            (
                mount_login(&a.path, "approle"),
                json!({"role_id": role_id.as_str(), "secret_id": secret_id.as_str()}),
            )
        }
        AuthKind::Kubernetes => {
            let k = auth.kubernetes.as_ref().expect("chosen method is set");
            let jwt = if let Some(sa) = &k.service_account_ref {
                resolver
                    .service_account_token(
                        sa,
                        sa.audiences.clone().unwrap_or_default(),
                        600,
                        "spec.provider.vault.auth.kubernetes.serviceAccountRef",
                    )
                    .await?
            } else if let Some(sel) = &k.secret_ref {
                let f = "spec.provider.vault.auth.kubernetes.secretRef";
                token_text(&resolver.secret_value(sel, Some("token"), f).await?, f)?
            } else if let Some(why) =
                pod_token_refusal(k, resolver.store.kind == StoreKind::SecretStore)
            {
                return Err(VaultError::config(format!(
                    "spec.provider.vault.auth.kubernetes: {why}"
                )));
            } else {
                let raw = Zeroizing::new(tokio::fs::read(POD_TOKEN_FILE).await.map_err(|e| {
                    VaultError::config(format!(
                        "kubernetes auth without serviceAccountRef or secretRef uses the pod's \
                         token {POD_TOKEN_FILE}, which cannot be read: {e}"
                    ))
                })?);
                token_text(&raw, POD_TOKEN_FILE)?
            };
            (
                mount_login(&k.mount_path, "kubernetes"),
                json!({"role": k.role, "jwt": jwt.as_str()}),
            )
        }
        AuthKind::Jwt => {
            let j = auth.jwt.as_ref().expect("chosen method is set");
            let jwt = if let Some(sel) = &j.secret_ref {
                let f = "spec.provider.vault.auth.jwt.secretRef";
                token_text(&resolver.secret_value(sel, None, f).await?, f)?
            } else if let Some(t) = &j.kubernetes_service_account_token {
                resolver
                    .service_account_token(
                        &t.service_account_ref,
                        t.audiences.clone().unwrap_or_else(|| vec!["vault".into()]),
                        t.expiration_seconds.unwrap_or(600),
                        "spec.provider.vault.auth.jwt.kubernetesServiceAccountToken",
                    )
                    .await?
            } else {
                return Err(VaultError::config(
                    "spec.provider.vault.auth.jwt needs secretRef or kubernetesServiceAccountToken",
                ));
            };
            (
                mount_login(&j.path, "jwt"),
                json!({"role": j.role.clone().unwrap_or_default(), "jwt": jwt.as_str()}),
            )
        }
        AuthKind::UserPass | AuthKind::Ldap => {
            let (mount, default, username, sel, field) = match kind {
                AuthKind::UserPass => {
                    let u = auth.user_pass.as_ref().expect("chosen method is set");
                    (&u.path, "userpass", &u.username, &u.secret_ref, "userPass")
                }
                _ => {
                    let u = auth.ldap.as_ref().expect("chosen method is set");
                    (&u.path, "ldap", &u.username, &u.secret_ref, "ldap")
                }
            };
            if username.is_empty() || username.contains('/') {
                return Err(VaultError::config(format!(
                    "spec.provider.vault.auth.{field}.username {username:?} is empty or contains \"/\""
                )));
            }
            let sel = sel.as_ref().ok_or_else(|| {
                VaultError::config(format!(
                    "spec.provider.vault.auth.{field}.secretRef (the password) is not set"
                ))
            })?;
            let f = format!("spec.provider.vault.auth.{field}.secretRef");
            let raw = resolver.secret_value(sel, None, &f).await?;
            let password = Zeroizing::new(
                String::from_utf8(raw.to_vec())
                    .map_err(|_| VaultError::config(format!("{f}: the password is not UTF-8")))?,
            );
            (
                format!("{}/{username}", mount_login(mount, default)),
                json!({"password": password.as_str()}),
            )
        }
        AuthKind::Cert => {
            let c = auth.cert.as_ref().expect("chosen method is set");
            (
                mount_login(&c.path, "cert"),
                json!({"name": c.vault_role.clone().unwrap_or_default()}),
            )
        }
    };
    // The request body holds credentials: keep it zeroized once sent.
    let body = ZeroizingJson(body);
    metrics.vault_logins.with_label_values(&[kind.name()]).inc();
    attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let reply = transport
        .send(&Req {
            call: "login",
            method: Method::POST,
            path: &path,
            query: None,
            token: None,
            namespace: Some(login_namespace),
            body: Some(&body.0),
        })
        .await
        .map_err(|e| match e {
            VaultError::Unavailable { message } => VaultError::Unavailable {
                message: format!("login at {path}: {message}"),
            },
            other => other,
        })?;
    login_reply(kind, &path, reply)
}

fn mount_login(path: &str, default: &str) -> String {
    let m = path.trim_matches('/');
    format!("auth/{}/login", if m.is_empty() { default } else { m })
}

/// Parses a login (or renew) reply into a token.
pub(crate) fn login_reply(
    kind: AuthKind,
    path: &str,
    reply: Reply,
) -> Result<LoginToken, VaultError> {
    let auth_err = |message: String| VaultError::Auth {
        method: kind.name().into(),
        message,
    };
    match reply.status {
        200..=299 => {}
        // Not Vault's error body: whatever answered, it says nothing about the credentials.
        s if reply.not_json.is_some() => {
            return Err(VaultError::bad_answer(format!(
                "POST {path}: HTTP {s}{}",
                reply.detail()
            )));
        }
        404 => {
            return Err(auth_err(format!(
                "POST {path}: HTTP 404{}: is the auth method mounted at this path (and in this \
                 Vault namespace)?",
                reply.detail()
            )));
        }
        s => {
            return Err(auth_err(format!(
                "POST {path}: HTTP {s}{}: check the role and the credentials in the referenced \
                 Secret",
                reply.detail()
            )));
        }
    }
    let answer = answers::login(&reply.body)
        .map_err(|e| VaultError::bad_answer(format!("POST {path}: unusable login answer: {e}")))?;
    Ok(LoginToken {
        token: Zeroizing::new(answer.token.to_string()),
        ttl: Some(answer.ttl),
        renewable: answer.renewable,
        from_login: true,
    })
}

/// A JSON body whose strings are wiped on drop.
struct ZeroizingJson(Value);

impl Drop for ZeroizingJson {
    fn drop(&mut self) {
        fn wipe(v: &mut Value) {
            match v {
                Value::String(s) => zeroize::Zeroize::zeroize(s),
                Value::Object(m) => m.values_mut().for_each(wipe),
                Value::Array(a) => a.iter_mut().for_each(wipe),
                _ => {}
            }
        }
        wipe(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        VaultAppRole, VaultCertAuth, VaultClientTls, VaultIamAuth, VaultKubernetesAuth,
        VaultUserPassAuth,
    };

    fn sel(ns: Option<&str>) -> SecretKeySelector {
        SecretKeySelector {
            name: Some("s".into()),
            namespace: ns.map(Into::into),
            key: Some("k".into()),
        }
    }

    #[test]
    fn one_auth_method() {
        assert!(matches!(auth_kind(None), Err(VaultError::Config { .. })));
        let token = VaultAuth {
            token_secret_ref: Some(sel(None)),
            ..Default::default()
        };
        assert_eq!(auth_kind(Some(&token)).unwrap(), AuthKind::Token);
        let two = VaultAuth {
            user_pass: Some(VaultUserPassAuth::default()),
            ..token.clone()
        };
        let e = auth_kind(Some(&two)).unwrap_err().to_string();
        assert!(e.contains("token, userPass"), "{e}");
        let iam = VaultAuth {
            iam: Some(VaultIamAuth::default()),
            ..Default::default()
        };
        assert!(matches!(
            auth_kind(Some(&iam)),
            Err(VaultError::Unsupported { .. })
        ));
        assert!(auth_kind(Some(&VaultAuth::default())).is_err());
    }

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

    #[test]
    fn login_paths_and_replies() {
        assert_eq!(mount_login("", "approle"), "auth/approle/login");
        assert_eq!(
            mount_login("/team-a/approle/", "approle"),
            "auth/team-a/approle/login"
        );
        let ok = Reply {
            status: 200,
            body: json!({"auth": {"client_token": "s.abc", "lease_duration": 3600, "renewable": true}}),
            not_json: None,
        };
        let t = login_reply(AuthKind::AppRole, "auth/approle/login", ok).unwrap();
        assert_eq!(t.token.as_str(), "s.abc");
        assert_eq!(t.ttl, Some(Duration::from_secs(3600)));
        assert!(t.renewable && t.from_login);
        let bad = Reply {
            status: 400,
            body: json!({"errors": ["invalid role or secret ID"]}),
            not_json: None,
        };
        let e = login_reply(AuthKind::AppRole, "auth/approle/login", bad)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("HTTP 400: invalid role or secret ID"), "{e}");
        let empty = Reply {
            status: 200,
            body: json!({"auth": null}),
            not_json: None,
        };
        let e = login_reply(AuthKind::Jwt, "auth/jwt/login", empty)
            .err()
            .unwrap();
        assert!(matches!(e, VaultError::BadAnswer { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "POST auth/jwt/login: unusable login answer: the answer holds no \"auth\" (no token)"
        );
        let typed = Reply {
            status: 200,
            body: json!({"auth": {"client_token": "s.abc", "lease_duration": "1h"}}),
            not_json: None,
        };
        let e = login_reply(AuthKind::AppRole, "auth/approle/login", typed)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"auth.lease_duration\" is a string"), "{e}");
        assert!(!e.contains("s.abc"), "{e}");
        let page = Reply {
            status: 404,
            body: Value::Null,
            not_json: Some("the body is not valid JSON".into()),
        };
        let e = login_reply(AuthKind::AppRole, "auth/approle/login", page)
            .err()
            .unwrap();
        assert!(matches!(e, VaultError::BadAnswer { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "POST auth/approle/login: HTTP 404, and the body is not valid JSON"
        );
    }
}
