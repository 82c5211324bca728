//! The rules for the generator kinds: a Password whose constraints cannot be met, an SSH key
//! of a size that cannot be made, a VaultDynamicSecret's method, path and provider, and a
//! ClusterGenerator holding the one spec its kind names.

use super::Problem;
use super::store::{generator_provider, retry_settings};
use crate::api::generators::{
    ClusterGenerator, Password, PasswordSpec, SSHKey, SSHKeySpec, SshKeyType, VaultDynamicSecret,
    VaultDynamicSecretSpec,
};
use crate::generators::{Source, password, sshkey, vault_dynamic};

/// `field: message` (as the pure generators word their refusals) as a problem.
fn split(text: &str) -> Problem {
    match text.split_once(": ") {
        Some((field, message)) => Problem::new(field, message),
        None => Problem::new("spec", text),
    }
}

pub fn password(pw: &Password) -> Vec<Problem> {
    password_spec(&pw.spec, "spec")
}

fn password_spec(spec: &PasswordSpec, at: &str) -> Vec<Problem> {
    match password::plan(spec, at) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| split(e)).collect(),
    }
}

pub fn ssh_key(k: &SSHKey) -> Vec<Problem> {
    ssh_key_spec(&k.spec, "spec")
}

fn ssh_key_spec(spec: &SSHKeySpec, at: &str) -> Vec<Problem> {
    let mut p: Vec<Problem> = sshkey::plan(spec, at)
        .err()
        .iter()
        .map(|e| split(e))
        .collect();
    // ESO falls back to P-256 for any other size; a size that is not used is refused here.
    if spec.key_type == Some(SshKeyType::Ecdsa)
        && let Some(size) = spec.key_size
        && ![256, 384, 521].contains(&size)
    {
        p.push(Problem::new(
            format!("{at}.keySize"),
            format!("an ECDSA key is 256, 384 or 521 bits (got {size})"),
        ));
    }
    p
}

pub fn vault_dynamic_secret(v: &VaultDynamicSecret) -> Vec<Problem> {
    let ns = v.metadata.namespace.as_deref().unwrap_or_default();
    vault_dynamic_spec(&v.spec, Some(ns), "spec")
}

/// The methods a VaultDynamicSecret may name (ESO makes any other a write too).
const METHODS: [&str; 5] = ["GET", "LIST", "DELETE", "POST", "PUT"];

fn vault_dynamic_spec(spec: &VaultDynamicSecretSpec, ns: Option<&str>, at: &str) -> Vec<Problem> {
    let mut p = Vec::new();
    let path = spec.path.trim_matches('/');
    if path.is_empty() || path.split('/').any(|s| s == ".." || s == ".") || path.contains('\0') {
        p.push(Problem::new(
            format!("{at}.path"),
            format!(
                "{:?} is not a Vault path (e.g. database/creds/app)",
                spec.path
            ),
        ));
    }
    if let Some(m) = spec.method.as_deref()
        && !m.is_empty()
        && !METHODS.contains(&m)
    {
        p.push(Problem::new(
            format!("{at}.method"),
            format!("{m:?}: use one of {}", METHODS.join(", ")),
        ));
    }
    if let Err(e) = vault_dynamic::call(spec, at) {
        p.push(split(&e));
    }
    let reads = matches!(spec.method.as_deref(), None | Some("") | Some("GET"));
    if !reads && spec.get_parameters.as_ref().is_some_and(|g| !g.is_empty()) {
        p.push(Problem::new(
            format!("{at}.getParameters"),
            "only a GET sends getParameters; a write sends parameters",
        ));
    }
    if let Some(r) = &spec.retry_settings {
        retry_settings(&mut p, r, &format!("{at}.retrySettings"));
    }
    p.extend(generator_provider(
        &spec.provider,
        ns,
        &format!("{at}.provider"),
    ));
    p
}

pub fn cluster_generator(cg: &ClusterGenerator) -> Vec<Problem> {
    match Source::from_cluster(&cg.spec, "spec") {
        Err(e) => vec![split(&e)],
        Ok(Source::Password(s)) => password_spec(&s, "spec.generator.passwordSpec"),
        Ok(Source::SshKey(s)) => ssh_key_spec(&s, "spec.generator.sshKeySpec"),
        Ok(Source::VaultDynamic(s)) => {
            vault_dynamic_spec(&s, None, "spec.generator.vaultDynamicSecretSpec")
        }
        Ok(Source::Uuid) => Vec::new(),
    }
}

#[cfg(test)]
#[path = "generators_tests.rs"]
mod tests;
