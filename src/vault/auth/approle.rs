//! AppRole auth: a role ID (inline or from a Secret) and a secret ID from a Secret.

use serde_json::json;
use zeroize::Zeroizing;

use super::{LoginRequest, Resolver, mount_login, token_text};
use crate::api::VaultAppRole;
use crate::vault::VaultError;

pub(super) async fn request(
    resolver: &Resolver<'_>,
    a: &VaultAppRole,
) -> Result<LoginRequest, VaultError> {
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
    Ok(LoginRequest {
        path: mount_login(&a.path, "approle"),
        body: json!({"role_id": role_id.as_str(), "secret_id": secret_id.as_str()}),
    })
}
