//! Token auth: a static token read from a Secret. It is not ours, so it is never renewed or
//! revoked here.

use super::{LoginToken, Resolver, token_text};
use crate::api::SecretKeySelector;
use crate::vault::VaultError;

pub(super) async fn read(
    resolver: &Resolver<'_>,
    sel: &SecretKeySelector,
) -> Result<LoginToken, VaultError> {
    let field = "spec.provider.vault.auth.tokenSecretRef";
    let raw = resolver.secret_value(sel, None, field).await?;
    Ok(LoginToken {
        token: token_text(&raw, field)?,
        ttl: None,
        renewable: false,
        from_login: false,
    })
}
