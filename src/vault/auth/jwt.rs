//! JWT auth: a JWT from a Secret, or a ServiceAccount token requested for the purpose, sent
//! with the role.

use serde_json::json;

use super::{JwtSource, LoginRequest, Resolver, jwt_source, mount_login, token_text};
use crate::api::VaultJwtAuth;
use crate::vault::VaultError;

pub(super) async fn request(
    resolver: &Resolver<'_>,
    j: &VaultJwtAuth,
) -> Result<LoginRequest, VaultError> {
    // ESO's order: secretRef, then kubernetesServiceAccountToken.
    let jwt = match (
        jwt_source(j),
        &j.secret_ref,
        &j.kubernetes_service_account_token,
    ) {
        (JwtSource::Secret, Some(sel), _) => {
            let f = "spec.provider.vault.auth.jwt.secretRef";
            token_text(&resolver.secret_value(sel, None, f).await?, f)?
        }
        (JwtSource::ServiceAccountToken, _, Some(t)) => {
            resolver
                .service_account_token(
                    &t.service_account_ref,
                    t.audiences.clone().unwrap_or_else(|| vec!["vault".into()]),
                    t.expiration_seconds.unwrap_or(600),
                    "spec.provider.vault.auth.jwt.kubernetesServiceAccountToken",
                )
                .await?
        }
        _ => {
            return Err(VaultError::config(
                "spec.provider.vault.auth.jwt needs secretRef or kubernetesServiceAccountToken",
            ));
        }
    };
    Ok(LoginRequest {
        path: mount_login(&j.path, "jwt"),
        body: json!({"role": j.role.clone().unwrap_or_default(), "jwt": jwt.as_str()}),
    })
}
