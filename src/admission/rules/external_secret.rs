//! The rules for an ExternalSecret (either version: the schema is the same).

use std::collections::HashSet;

use crate::api::{
    CreationPolicy, DeletionPolicy, ExternalSecret, ExternalSecretDataRemoteRef, MergeStrategy,
    StoreSourceRef,
};
use crate::vault::paths::quoted;

use super::regex::RegexBudget;
use super::templates::{template_keys, templates_fit};
use super::{NOT_SUPPORTED, Problem};

/// Secret types a template may not produce: the token controllers own them (ESO refuses them).
const FORBIDDEN_SECRET_TYPES: [&str; 2] = [
    "kubernetes.io/service-account-token",
    "bootstrap.kubernetes.io/token",
];

/// The rules for an ExternalSecret (either version: the schema is the same).
pub fn external_secret(es: &ExternalSecret) -> Vec<Problem> {
    let mut p = Vec::new();
    let spec = &es.spec;

    // Templates are parsed only when they are of a size worth parsing.
    let templates_fit = match templates_fit(spec) {
        Ok(()) => true,
        Err(problem) => {
            p.push(problem);
            false
        }
    };

    // ESO: policies that contradict each other.
    if let Some(target) = &spec.target {
        let creation = target.creation_policy.unwrap_or_default();
        let deletion = target.deletion_policy.unwrap_or_default();
        if deletion == DeletionPolicy::Delete
            && !matches!(creation, CreationPolicy::Owner | CreationPolicy::Orphan)
        {
            p.push(Problem::new(
                "spec.target.deletionPolicy",
                format!(
                    "deletionPolicy Delete needs creationPolicy Owner or Orphan, not {creation:?}"
                ),
            ));
        }
        if deletion == DeletionPolicy::Merge && creation == CreationPolicy::None {
            p.push(Problem::new(
                "spec.target.deletionPolicy",
                "deletionPolicy Merge cannot be used with creationPolicy None",
            ));
        }
        if let Some(t) = &target.template {
            if let Some(ty) = t
                .type_
                .as_deref()
                .filter(|ty| FORBIDDEN_SECRET_TYPES.contains(ty))
            {
                p.push(Problem::new(
                    "spec.target.template.type",
                    format!("{} cannot be written by an ExternalSecret", quoted(ty)),
                ));
            }
            template_keys(&mut p, t);
            // Parse every template (and name unknown functions) now rather than at sync.
            if templates_fit {
                for (field, message) in crate::template::check_templates(spec) {
                    if field.starts_with("spec.target.template") {
                        p.push(Problem::new(field, message));
                    }
                }
            }
        }
        if let Some(m) = &target.manifest {
            p.push(Problem::new(
                "spec.target.manifest",
                format!(
                    "{NOT_SUPPORTED} (kind {:?}): the target is always a Secret",
                    m.kind
                ),
            ));
        }
        if let Some(name) = target.name.as_deref().filter(|n| n.is_empty()) {
            p.push(Problem::new(
                "spec.target.name",
                format!("{name:?} is empty"),
            ));
        }
    }

    let data = spec.data.as_deref().unwrap_or_default();
    let data_from = spec.data_from.as_deref().unwrap_or_default();
    if data.is_empty() && data_from.is_empty() {
        p.push(Problem::new(
            "spec",
            "either data or dataFrom must be specified",
        ));
    }

    let mut regexes = RegexBudget::default();
    // Duplicates among a few keys are found by looking back; a set (an allocation and a hash
    // per key) only pays for itself among many.
    const FEW_KEYS: usize = 16;
    let mut keys = (data.len() > FEW_KEYS).then(|| HashSet::with_capacity(data.len()));
    for (i, d) in data.iter().enumerate() {
        // Field paths are built only for problems: valid objects cost no allocation here.
        let at = || format!("spec.data[{i}]");
        if !crate::vault::values::is_valid_secret_key(&d.secret_key) {
            p.push(Problem::new(
                format!("{}.secretKey", at()),
                format!(
                    "{} is not a valid Secret key (letters, digits, '-', '.' and '_'; at most 253 characters)",
                    quoted(&d.secret_key)
                ),
            ));
        }
        let duplicate = match &mut keys {
            Some(keys) => !keys.insert(d.secret_key.as_str()),
            None => data[..i].iter().any(|e| e.secret_key == d.secret_key),
        };
        if duplicate {
            p.push(Problem::new(
                format!("{}.secretKey", at()),
                format!("duplicate secretKey {}", quoted(&d.secret_key)),
            ));
        }
        remote_ref(&mut p, "data", i, ".remoteRef", &d.remote_ref);
        if let Some(s) = &d.source_ref {
            data_source_ref(&mut p, &format!("{}.sourceRef", at()), s);
        }
    }

    for (i, d) in data_from.iter().enumerate() {
        let at = || format!("spec.dataFrom[{i}]");
        let set = usize::from(d.extract.is_some()) + usize::from(d.find.is_some());
        if let Some(s) = &d.source_ref {
            source_ref(&mut p, &format!("{}.sourceRef", at()), s);
            if s.generator_ref.is_some() && set != 0 {
                p.push(Problem::new(
                    at(),
                    "an entry with a sourceRef.generatorRef sets neither extract nor find",
                ));
            }
        } else if set != 1 {
            p.push(Problem::new(
                at(),
                "exactly one of extract or find must be set",
            ));
        }
        if let Some(e) = &d.extract {
            remote_ref(&mut p, "dataFrom", i, ".extract", e);
        }
        if let Some(f) = &d.find {
            if let Some(path) = &f.path
                && let Err(e) = check_key(path)
            {
                p.push(Problem::new(format!("{}.find.path", at()), e));
            }
            if let Some(re) = f.name.as_ref().and_then(|n| n.regexp.as_deref())
                && let Err(e) = regexes.check(re)
            {
                p.push(Problem::new(
                    format!("{}.find.name.regexp", at()),
                    format!("{} {e}", quoted(re)),
                ));
            }
        }
        for (j, rw) in d.rewrite.iter().flatten().enumerate() {
            let at = || format!("spec.dataFrom[{i}].rewrite[{j}]");
            if let Some(r) = &rw.regexp
                && let Err(e) = regexes.check(&r.source)
            {
                p.push(Problem::new(
                    format!("{}.regexp.source", at()),
                    format!("{} {e}", quoted(&r.source)),
                ));
            }
            if let Some(t) = &rw.transform
                && templates_fit
                && let Err(e) = crate::template::engine::check("transform", &t.template)
            {
                p.push(Problem::new(
                    format!("{}.transform.template", at()),
                    e.to_string(),
                ));
            }
            if let Some(m) = &rw.merge
                && m.strategy == Some(MergeStrategy::Json)
                && m.into.as_deref().is_none_or(str::is_empty)
            {
                p.push(Problem::new(
                    format!("{}.merge.into", at()),
                    "strategy JSON needs the key to merge into",
                ));
            }
            if rw.regexp.is_none() && rw.transform.is_none() && rw.merge.is_none() {
                p.push(Problem::new(
                    at(),
                    "one of regexp, transform or merge must be set",
                ));
            }
        }
    }

    // ESO's generator examples name no store: one is needed only for entries that read one.
    match spec
        .secret_store_ref
        .as_ref()
        .and_then(|r| r.name.as_deref())
    {
        Some(n) if !n.is_empty() => {}
        _ if !crate::generators::needs_store(spec) => {}
        other => p.push(Problem::new(
            "spec.secretStoreRef.name",
            format!(
                "a store name is required (got {})",
                quoted(other.unwrap_or(""))
            ),
        )),
    }
    if let Some(ri) = &spec.refresh_interval
        && let Err(e) = crate::api::duration::parse(ri)
    {
        p.push(Problem::new("spec.refreshInterval", e.to_string()));
    }
    for (i, w) in spec
        .sync_windows
        .iter()
        .flat_map(|s| &s.windows)
        .enumerate()
    {
        if let Err((field, why)) = crate::reconcile::sync_window::check(w) {
            p.push(Problem::new(
                format!("spec.syncWindows.windows[{i}].{field}"),
                why,
            ));
        }
    }
    p
}

/// `spec.<list>[<i>]<part>`: a remote reference's key and version.
fn remote_ref(
    p: &mut Vec<Problem>,
    list: &str,
    i: usize,
    part: &str,
    r: &ExternalSecretDataRemoteRef,
) {
    if let Err(e) = check_key(&r.key) {
        p.push(Problem::new(format!("spec.{list}[{i}]{part}.key"), e));
    }
    if let Some(v) = &r.version
        && let Err(e) = check_version(v)
    {
        p.push(Problem::new(format!("spec.{list}[{i}]{part}.version"), e));
    }
}

/// `dataFrom[].sourceRef`: a generator of a kind vaultgate serves, in its API version, or a
/// store of the entry's own.
fn source_ref(p: &mut Vec<Problem>, at: &str, s: &StoreSourceRef) {
    if let Some(g) = &s.generator_ref {
        generator_ref(p, &format!("{at}.generatorRef"), g);
        if s.store_ref.is_some() {
            p.push(Problem::new(
                at.to_string(),
                "set one of generatorRef and storeRef, not both",
            ));
        }
    }
    store_source_ref(p, at, s);
}

/// A `generatorRef` (an ExternalSecret's or a PushSecret's): a kind vaultgate serves, in its
/// API version.
pub(super) fn generator_ref(p: &mut Vec<Problem>, at: &str, g: &crate::api::GeneratorRef) {
    let kind = crate::generators::kind_name(g.kind);
    if !SERVED_GENERATORS.contains(&kind.as_str()) {
        p.push(Problem::new(
            format!("{at}.kind"),
            format!(
                "{NOT_SUPPORTED} (generator kind {kind}; served: {})",
                SERVED_GENERATORS.join(", ")
            ),
        ));
    }
    if g.api_version != crate::api::generators::API_VERSION {
        p.push(Problem::new(
            format!("{at}.apiVersion"),
            format!(
                "{} is not served (use {})",
                quoted(&g.api_version),
                crate::api::generators::API_VERSION
            ),
        ));
    }
}

/// The generator kinds a `generatorRef` may name.
pub(crate) const SERVED_GENERATORS: [&str; 5] = [
    "Password",
    "UUID",
    "SSHKey",
    "VaultDynamicSecret",
    "ClusterGenerator",
];

/// `data[].sourceRef`: ESO 2.9 has no generator for a single key.
fn data_source_ref(p: &mut Vec<Problem>, at: &str, s: &StoreSourceRef) {
    if s.generator_ref.is_some() {
        p.push(Problem::new(
            format!("{at}.generatorRef"),
            "a generator fills keys through spec.dataFrom[].sourceRef.generatorRef, not spec.data",
        ));
    }
    store_source_ref(p, at, s);
}

/// An entry's own store (read through its own client, as ESO's client manager does): it
/// must name one; whether it exists and admits the namespace is a live check.
fn store_source_ref(p: &mut Vec<Problem>, at: &str, s: &StoreSourceRef) {
    if let Some(r) = &s.store_ref
        && r.name.as_deref().is_none_or(str::is_empty)
    {
        p.push(Problem::new(
            format!("{at}.storeRef.name"),
            format!(
                "a store name is required (got {})",
                quoted(r.name.as_deref().unwrap_or(""))
            ),
        ));
    }
}

/// The remote key rule (no escape from the mount), shared with the Vault client.
fn check_key(key: &str) -> Result<(), String> {
    crate::vault::paths::check_key(key)
}

fn check_version(v: &str) -> Result<(), String> {
    crate::vault::paths::check_version(v)
}
