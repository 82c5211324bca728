//! Kubernetes auth: a ServiceAccount token (requested for serviceAccountRef, read from a
//! Secret, or, for a ClusterSecretStore only, the pod's own) sent with the role.

use serde_json::json;
use zeroize::Zeroizing;

use super::{LoginRequest, Resolver, mount_login, token_text};
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
    } else if let Some(why) = pod_token_refusal(k, resolver.store.kind == StoreKind::SecretStore) {
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
    Ok(LoginRequest {
        path: mount_login(&k.mount_path, "kubernetes"),
        body: json!({"role": k.role, "jwt": jwt.as_str()}),
    })
}
