//! Kubernetes auth: a ServiceAccount token (requested for serviceAccountRef, read from a
//! Secret, or, for a ClusterSecretStore only, the pod's own) sent with the role.

use serde_json::json;
use zeroize::Zeroizing;

use super::{KubernetesSource, LoginRequest, Resolver, kubernetes_source, mount_login, token_text};
use crate::api::{StoreKind, VaultKubernetesAuth};
use crate::vault::VaultError;

/// The pod's own ServiceAccount token, used by kubernetes auth without a reference.
const POD_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

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

pub(super) async fn request(
    resolver: &Resolver<'_>,
    k: &VaultKubernetesAuth,
) -> Result<LoginRequest, VaultError> {
    // ESO's order: serviceAccountRef, then secretRef, then the pod's own token.
    let jwt = match (kubernetes_source(k), &k.service_account_ref, &k.secret_ref) {
        (KubernetesSource::ServiceAccount, Some(sa), _) => {
            resolver
                .service_account_token(
                    sa,
                    sa.audiences.clone().unwrap_or_default(),
                    600,
                    "spec.provider.vault.auth.kubernetes.serviceAccountRef",
                )
                .await?
        }
        (KubernetesSource::Secret, _, Some(sel)) => {
            let f = "spec.provider.vault.auth.kubernetes.secretRef";
            token_text(&resolver.secret_value(sel, Some("token"), f).await?, f)?
        }
        _ => {
            if let Some(why) = pod_token_refusal(k, resolver.store.kind == StoreKind::SecretStore) {
                return Err(VaultError::config(format!(
                    "spec.provider.vault.auth.kubernetes: {why}"
                )));
            }
            let raw = Zeroizing::new(tokio::fs::read(POD_TOKEN_FILE).await.map_err(|e| {
                VaultError::config(format!(
                    "kubernetes auth without serviceAccountRef or secretRef uses the pod's \
                     token {POD_TOKEN_FILE}, which cannot be read: {e}"
                ))
            })?);
            token_text(&raw, POD_TOKEN_FILE)?
        }
    };
    Ok(LoginRequest {
        path: mount_login(&k.mount_path, "kubernetes"),
        body: json!({"role": k.role, "jwt": jwt.as_str()}),
    })
}
