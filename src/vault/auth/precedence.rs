//! Which credential a Kubernetes or JWT login uses when a store names two, in ESO's order
//! (`providers/v1/vault/auth_kubernetes.go`, `auth_jwt.go`): ESO's own examples name both, so
//! both are admitted, and the admission warning says which one is used.

use crate::api::{VaultAuth, VaultJwtAuth, VaultKubernetesAuth};

/// The token a Kubernetes login sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KubernetesSource {
    /// A token requested for `serviceAccountRef` (first in ESO).
    ServiceAccount,
    /// The token in the Secret of `secretRef`.
    Secret,
    /// Neither: the pod's own token.
    PodToken,
}

pub(crate) fn kubernetes_source(k: &VaultKubernetesAuth) -> KubernetesSource {
    match (&k.service_account_ref, &k.secret_ref) {
        (Some(_), _) => KubernetesSource::ServiceAccount,
        (None, Some(_)) => KubernetesSource::Secret,
        (None, None) => KubernetesSource::PodToken,
    }
}

/// The JWT a JWT login sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JwtSource {
    /// The JWT in the Secret of `secretRef` (first in ESO).
    Secret,
    /// A token requested for `kubernetesServiceAccountToken`.
    ServiceAccountToken,
    None,
}

pub(crate) fn jwt_source(j: &VaultJwtAuth) -> JwtSource {
    match (&j.secret_ref, &j.kubernetes_service_account_token) {
        (Some(_), _) => JwtSource::Secret,
        (None, Some(_)) => JwtSource::ServiceAccountToken,
        (None, None) => JwtSource::None,
    }
}

/// One note per login that names two credentials: the field, and which one is used.
pub fn auth_precedence(a: &VaultAuth) -> Vec<(String, &'static str)> {
    let mut notes = Vec::new();
    if let Some(k) = &a.kubernetes
        && k.service_account_ref.is_some()
        && k.secret_ref.is_some()
    {
        notes.push((
            "spec.provider.vault.auth.kubernetes".to_string(),
            "serviceAccountRef and secretRef are both set: the login uses a token requested for \
             serviceAccountRef and ignores secretRef, as ESO does",
        ));
    }
    if let Some(j) = &a.jwt
        && j.secret_ref.is_some()
        && j.kubernetes_service_account_token.is_some()
    {
        notes.push((
            "spec.provider.vault.auth.jwt".to_string(),
            "secretRef and kubernetesServiceAccountToken are both set: the login uses the JWT \
             of secretRef and ignores kubernetesServiceAccountToken, as ESO does",
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        SecretKeySelector, ServiceAccountSelector, VaultKubernetesServiceAccountTokenAuth,
    };

    fn sel() -> SecretKeySelector {
        SecretKeySelector {
            name: Some("s".into()),
            namespace: None,
            key: Some("k".into()),
        }
    }

    fn sa() -> ServiceAccountSelector {
        ServiceAccountSelector {
            name: "sa".into(),
            ..Default::default()
        }
    }

    #[test]
    fn kubernetes_precedence_is_esos() {
        let cases = [
            (true, true, KubernetesSource::ServiceAccount, 1),
            (true, false, KubernetesSource::ServiceAccount, 0),
            (false, true, KubernetesSource::Secret, 0),
            (false, false, KubernetesSource::PodToken, 0),
        ];
        for (with_sa, with_secret, source, notes) in cases {
            let k = VaultKubernetesAuth {
                role: "r".into(),
                service_account_ref: with_sa.then(sa),
                secret_ref: with_secret.then(sel),
                ..Default::default()
            };
            assert_eq!(kubernetes_source(&k), source, "{with_sa} {with_secret}");
            let a = VaultAuth {
                kubernetes: Some(k),
                ..Default::default()
            };
            let n = auth_precedence(&a);
            assert_eq!(n.len(), notes);
            if notes == 1 {
                assert!(
                    n[0].1
                        .contains("uses a token requested for serviceAccountRef")
                );
            }
        }
    }

    #[test]
    fn jwt_precedence_is_esos() {
        let token = || VaultKubernetesServiceAccountTokenAuth {
            service_account_ref: sa(),
            ..Default::default()
        };
        let cases = [
            (true, true, JwtSource::Secret, 1),
            (true, false, JwtSource::Secret, 0),
            (false, true, JwtSource::ServiceAccountToken, 0),
            (false, false, JwtSource::None, 0),
        ];
        for (with_secret, with_token, source, notes) in cases {
            let j = VaultJwtAuth {
                secret_ref: with_secret.then(sel),
                kubernetes_service_account_token: with_token.then(token),
                ..Default::default()
            };
            assert_eq!(jwt_source(&j), source, "{with_secret} {with_token}");
            let a = VaultAuth {
                jwt: Some(j),
                ..Default::default()
            };
            let n = auth_precedence(&a);
            assert_eq!(n.len(), notes);
            if notes == 1 {
                assert!(n[0].1.contains("uses the JWT of secretRef"));
            }
        }
    }
}
