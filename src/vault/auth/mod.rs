//! Vault login: which auth method a store uses, the login of each (one file per method), and
//! the login reply they share.

mod approle;
mod cert;
mod jwt;
mod kubernetes;
mod precedence;
mod resolver;
mod token;
mod userpass_ldap;

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use zeroize::Zeroizing;

pub use kubernetes::pod_token_refusal;
pub use precedence::auth_precedence;
pub(crate) use precedence::{JwtSource, KubernetesSource, jwt_source, kubernetes_source};
pub(crate) use resolver::Resolver;
pub use resolver::has_referent_refs;

use super::VaultError;
use super::answers;
use super::http::{Reply, Req, Transport};
use crate::api::VaultAuth;

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

/// A login call: where to POST, and the credentials to send.
struct LoginRequest {
    path: String,
    body: Value,
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
    const SET: &str = "chosen method is set";
    let LoginRequest { path, body } = match kind {
        AuthKind::Token => {
            return token::read(resolver, auth.token_secret_ref.as_ref().expect(SET)).await;
        }
        AuthKind::AppRole => approle::request(resolver, auth.app_role.as_ref().expect(SET)).await?,
        AuthKind::Kubernetes => {
            kubernetes::request(resolver, auth.kubernetes.as_ref().expect(SET)).await?
        }
        AuthKind::Jwt => jwt::request(resolver, auth.jwt.as_ref().expect(SET)).await?,
        AuthKind::UserPass => {
            userpass_ldap::userpass(resolver, auth.user_pass.as_ref().expect(SET)).await?
        }
        AuthKind::Ldap => userpass_ldap::ldap(resolver, auth.ldap.as_ref().expect(SET)).await?,
        AuthKind::Cert => cert::request(auth.cert.as_ref().expect(SET)),
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

/// A key selector for tests: key `k` of Secret `s`, in namespace `ns` if given.
#[cfg(test)]
fn sel(ns: Option<&str>) -> crate::api::SecretKeySelector {
    crate::api::SecretKeySelector {
        name: Some("s".into()),
        namespace: ns.map(Into::into),
        key: Some("k".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{VaultIamAuth, VaultUserPassAuth};
    use serde_json::json;

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
