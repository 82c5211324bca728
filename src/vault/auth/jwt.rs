//! JWT auth: a JWT from a Secret, or a ServiceAccount token requested for the purpose, sent
//! with the role.

use serde_json::json;

use super::{LoginRequest, Resolver, mount_login, token_text};
use crate::api::VaultJwtAuth;
use crate::vault::VaultError;

pub(super) async fn request(
    resolver: &Resolver<'_>,
    j: &VaultJwtAuth,
) -> Result<LoginRequest, VaultError> {
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
    Ok(LoginRequest {
        path: mount_login(&j.path, "jwt"),
        body: json!({"role": j.role.clone().unwrap_or_default(), "jwt": jwt.as_str()}),
    })
}
