//! UserPass and LDAP auth: a username and a password from a Secret, posted to
//! `auth/<mount>/login/<username>`. The two differ only in their mount's default name.

use serde_json::json;
use zeroize::Zeroizing;

use super::{LoginRequest, Resolver, mount_login};
use crate::api::{SecretKeySelector, VaultLdapAuth, VaultUserPassAuth};
use crate::vault::VaultError;

pub(super) async fn userpass(
    resolver: &Resolver<'_>,
    u: &VaultUserPassAuth,
) -> Result<LoginRequest, VaultError> {
    request(
        resolver,
        &u.path,
        "userpass",
        &u.username,
        &u.secret_ref,
        "userPass",
    )
    .await
}

pub(super) async fn ldap(
    resolver: &Resolver<'_>,
    u: &VaultLdapAuth,
) -> Result<LoginRequest, VaultError> {
    request(
        resolver,
        &u.path,
        "ldap",
        &u.username,
        &u.secret_ref,
        "ldap",
    )
    .await
}

async fn request(
    resolver: &Resolver<'_>,
    mount: &str,
    default: &str,
    username: &str,
    sel: &Option<SecretKeySelector>,
    field: &str,
) -> Result<LoginRequest, VaultError> {
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
    Ok(LoginRequest {
        path: format!("{}/{username}", mount_login(mount, default)),
        body: json!({"password": password.as_str()}),
    })
}
