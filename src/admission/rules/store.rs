//! The rules for SecretStores and ClusterSecretStores (the Vault provider).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{
    CaProvider, ClusterSecretStore, SecretKeySelector, SecretStore, SecretStoreSpec,
    ServiceAccountSelector, VaultAuth, VaultProvider,
};
use crate::vault::paths::quoted;

use super::regex::RegexBudget;
use super::{NOT_SUPPORTED, Problem};

/// spec keeps only vault's).
pub fn secret_store(ss: &SecretStore, providers: &[String]) -> Vec<Problem> {
    let ns = ss.metadata.namespace.as_deref().unwrap_or_default();
    store(&ss.spec, Scope::Namespaced(ns), providers)
}

/// The rules for a ClusterSecretStore.
pub fn cluster_secret_store(css: &ClusterSecretStore, providers: &[String]) -> Vec<Problem> {
    store(&css.spec.store, Scope::Cluster, providers)
}

#[derive(Clone, Copy)]
enum Scope<'a> {
    Namespaced(&'a str),
    Cluster,
}

impl Scope<'_> {
    fn is_namespaced(self) -> bool {
        matches!(self, Scope::Namespaced(_))
    }
}

fn store(spec: &SecretStoreSpec, scope: Scope<'_>, providers: &[String]) -> Vec<Problem> {
    let mut p = Vec::new();

    let others: Vec<&str> = providers
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "vault")
        .collect();
    match (&spec.provider.vault, others.is_empty()) {
        (Some(_), true) => {}
        (Some(_), false) => p.push(Problem::new(
            "spec.provider",
            format!(
                "exactly one provider may be set, found vault and {}",
                others.join(", ")
            ),
        )),
        (None, _) => p.push(Problem::new(
            "spec.provider",
            if others.is_empty() {
                "a provider is required: vaultgate serves the vault provider".to_string()
            } else {
                format!(
                    "provider {} {NOT_SUPPORTED}: only vault is",
                    others.join(", ")
                )
            },
        )),
    }

    if let Some(ri) = &spec.refresh_interval {
        match ri {
            IntOrString::Int(n) if *n < 0 => p.push(Problem::new(
                "spec.refreshInterval",
                format!("{n} is negative"),
            )),
            IntOrString::Int(_) => {}
            IntOrString::String(s) => {
                if let Err(e) = crate::api::duration::parse(s) {
                    p.push(Problem::new("spec.refreshInterval", e.to_string()));
                }
            }
        }
    }
    if let Some(rs) = &spec.retry_settings {
        retry_settings(&mut p, rs, "spec.retrySettings");
    }
    let mut regexes = RegexBudget::default();
    for (i, c) in spec.conditions.iter().flatten().enumerate() {
        for (j, re) in c.namespace_regexes.iter().flatten().enumerate() {
            if let Err(e) = regexes.check(re) {
                p.push(Problem::new(
                    format!("spec.conditions[{i}].namespaceRegexes[{j}]"),
                    format!("{} {e}", quoted(re)),
                ));
            }
        }
        if let Some(sel) = &c.namespace_selector
            && let Err(e) = crate::api::selector::selector_matches(sel, &Default::default())
        {
            p.push(Problem::new(
                format!("spec.conditions[{i}].namespaceSelector"),
                e,
            ));
        }
    }

    if let Some(v) = &spec.provider.vault {
        vault(&mut p, v, scope);
    }
    p
}

fn vault(p: &mut Vec<Problem>, v: &VaultProvider, scope: Scope<'_>) {
    const AT: &str = "spec.provider.vault";
    if let Err(e) = check_server(&v.server) {
        p.push(Problem::new(format!("{AT}.server"), e));
    }
    if let Some(path) = &v.path
        && (path.split('/').any(|s| s == ".." || s == ".") || path.contains('\0'))
    {
        p.push(Problem::new(
            format!("{AT}.path"),
            format!("{} is not a KV mount path", quoted(path)),
        ));
    }
    if let Some(ca) = &v.ca_provider {
        ca_provider(p, &format!("{AT}.caProvider"), ca, scope);
    }
    if let Some(tls) = &v.tls {
        match (&tls.cert_secret_ref, &tls.key_secret_ref) {
            (Some(c), Some(k)) => {
                secret_ref(p, &format!("{AT}.tls.certSecretRef"), c, scope, false);
                secret_ref(p, &format!("{AT}.tls.keySecretRef"), k, scope, false);
            }
            (None, None) => {}
            _ => p.push(Problem::new(
                format!("{AT}.tls"),
                "certSecretRef and keySecretRef must be set together",
            )),
        }
    }
    match &v.auth {
        None => p.push(Problem::new(
            format!("{AT}.auth"),
            "exactly one auth method is required (tokenSecretRef, appRole, kubernetes, ldap, userPass, jwt or cert)",
        )),
        Some(a) => auth(p, a, scope),
    }
}

fn auth(p: &mut Vec<Problem>, a: &VaultAuth, scope: Scope<'_>) {
    const AT: &str = "spec.provider.vault.auth";
    let methods: Vec<&str> = [
        ("tokenSecretRef", a.token_secret_ref.is_some()),
        ("appRole", a.app_role.is_some()),
        ("kubernetes", a.kubernetes.is_some()),
        ("ldap", a.ldap.is_some()),
        ("userPass", a.user_pass.is_some()),
        ("jwt", a.jwt.is_some()),
        ("cert", a.cert.is_some()),
        ("iam", a.iam.is_some()),
        ("gcp", a.gcp.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect();
    match methods.len() {
        0 => p.push(Problem::new(
            AT,
            "exactly one auth method is required (tokenSecretRef, appRole, kubernetes, ldap, userPass, jwt or cert)",
        )),
        1 => {}
        _ => p.push(Problem::new(
            AT,
            format!(
                "exactly one auth method may be set, found {}",
                methods.join(", ")
            ),
        )),
    }
    for cloud in ["iam", "gcp"] {
        if methods.contains(&cloud) {
            p.push(Problem::new(
                format!("{AT}.{cloud}"),
                format!("auth method {cloud} is {NOT_SUPPORTED}"),
            ));
        }
    }

    if let Some(r) = &a.token_secret_ref {
        secret_ref(p, &format!("{AT}.tokenSecretRef"), r, scope, true);
    }
    if let Some(ar) = &a.app_role {
        let at = format!("{AT}.appRole");
        mount(p, &format!("{at}.path"), &ar.path);
        match (
            ar.role_id.as_deref().filter(|r| !r.is_empty()),
            &ar.role_ref,
        ) {
            (None, None) => p.push(Problem::new(
                format!("{at}.roleId"),
                "one of roleId or roleRef is required",
            )),
            (Some(_), Some(_)) => p.push(Problem::new(
                format!("{at}.roleRef"),
                "set roleId or roleRef, not both",
            )),
            (None, Some(r)) => secret_ref(p, &format!("{at}.roleRef"), r, scope, true),
            (Some(_), None) => {}
        }
        secret_ref(p, &format!("{at}.secretRef"), &ar.secret_ref, scope, true);
    }
    if let Some(k) = &a.kubernetes {
        let at = format!("{AT}.kubernetes");
        mount(p, &format!("{at}.mountPath"), &k.mount_path);
        if k.role.is_empty() {
            p.push(Problem::new(
                format!("{at}.role"),
                "a Vault role is required",
            ));
        }
        if let Some(why) = crate::vault::pod_token_refusal(k, scope.is_namespaced()) {
            p.push(Problem::new(&at, why));
        }
        if let Some(sa) = &k.service_account_ref {
            service_account(p, &format!("{at}.serviceAccountRef"), sa, scope);
        }
        if let Some(r) = &k.secret_ref {
            // The key defaults to `token`.
            secret_ref(p, &format!("{at}.secretRef"), r, scope, false);
        }
    }
    if let Some(l) = &a.ldap {
        let at = format!("{AT}.ldap");
        mount(p, &format!("{at}.path"), &l.path);
        username_secret(p, &at, &l.username, l.secret_ref.as_ref(), scope);
    }
    if let Some(u) = &a.user_pass {
        let at = format!("{AT}.userPass");
        mount(p, &format!("{at}.path"), &u.path);
        username_secret(p, &at, &u.username, u.secret_ref.as_ref(), scope);
    }
    if let Some(j) = &a.jwt {
        let at = format!("{AT}.jwt");
        mount(p, &format!("{at}.path"), &j.path);
        if j.secret_ref.is_none() && j.kubernetes_service_account_token.is_none() {
            p.push(Problem::new(
                &at,
                "one of secretRef or kubernetesServiceAccountToken is required",
            ));
        }
        // Both may be set, as in ESO's own example: the one not used is still checked, so
        // that dropping the other later does not reveal a broken reference.
        if let Some(r) = &j.secret_ref {
            secret_ref(p, &format!("{at}.secretRef"), r, scope, true);
        }
        if let Some(t) = &j.kubernetes_service_account_token {
            service_account(
                p,
                &format!("{at}.kubernetesServiceAccountToken.serviceAccountRef"),
                &t.service_account_ref,
                scope,
            );
            if let Some(s) = t.expiration_seconds.filter(|s| *s < 600) {
                p.push(Problem::new(
                    format!("{at}.kubernetesServiceAccountToken.expirationSeconds"),
                    format!("{s} is below 600, the shortest token Kubernetes issues"),
                ));
            }
        }
    }
    if let Some(c) = &a.cert {
        let at = format!("{AT}.cert");
        mount(p, &format!("{at}.path"), &c.path);
        match &c.client_cert {
            Some(r) => secret_ref(p, &format!("{at}.clientCert"), r, scope, true),
            None => p.push(Problem::new(
                format!("{at}.clientCert"),
                "a client certificate reference is required",
            )),
        }
        match &c.secret_ref {
            Some(r) => secret_ref(p, &format!("{at}.secretRef"), r, scope, true),
            None => p.push(Problem::new(
                format!("{at}.secretRef"),
                "a reference to the client key is required",
            )),
        }
    }
}

/// What an admitted store should be told: which of two credentials given together is used,
/// as ESO uses it.
pub fn store_notes(spec: &SecretStoreSpec) -> Vec<Problem> {
    let auth = spec.provider.vault.as_ref().and_then(|v| v.auth.as_ref());
    auth.into_iter()
        .flat_map(crate::vault::auth_precedence)
        .map(|(field, note)| Problem::new(field, note))
        .collect()
}

fn username_secret(
    p: &mut Vec<Problem>,
    at: &str,
    username: &str,
    secret: Option<&SecretKeySelector>,
    scope: Scope<'_>,
) {
    if username.is_empty() {
        p.push(Problem::new(
            format!("{at}.username"),
            "a username is required",
        ));
    }
    match secret {
        Some(r) => secret_ref(p, &format!("{at}.secretRef"), r, scope, true),
        None => p.push(Problem::new(
            format!("{at}.secretRef"),
            "a reference to the password is required",
        )),
    }
}

fn mount(p: &mut Vec<Problem>, at: &str, path: &str) {
    let bad = path.is_empty()
        || path.contains('\0')
        || path.split('/').any(|s| s == ".." || s == ".")
        || path.starts_with('/');
    if bad {
        p.push(Problem::new(
            at,
            format!(
                "{} is not an auth mount path (e.g. \"approle\")",
                quoted(path)
            ),
        ));
    }
}

/// The namespace rule: a SecretStore may only reference its own namespace.
fn own_namespace(p: &mut Vec<Problem>, at: &str, ns: Option<&str>, scope: Scope<'_>) {
    if let (Scope::Namespaced(own), Some(ns)) = (scope, ns)
        && !ns.is_empty()
        && ns != own
    {
        p.push(Problem::new(
            format!("{at}.namespace"),
            format!(
                "{} is not the store's namespace {}: a SecretStore may only reference objects in its own namespace",
                quoted(ns),
                quoted(own)
            ),
        ));
    }
}

fn secret_ref(
    p: &mut Vec<Problem>,
    at: &str,
    r: &SecretKeySelector,
    scope: Scope<'_>,
    key_required: bool,
) {
    if r.name.as_deref().is_none_or(str::is_empty) {
        p.push(Problem::new(
            format!("{at}.name"),
            "a Secret name is required",
        ));
    }
    if key_required && r.key.as_deref().is_none_or(str::is_empty) {
        p.push(Problem::new(format!("{at}.key"), "a key is required"));
    }
    own_namespace(p, at, r.namespace.as_deref(), scope);
}

fn service_account(p: &mut Vec<Problem>, at: &str, sa: &ServiceAccountSelector, scope: Scope<'_>) {
    if sa.name.is_empty() {
        p.push(Problem::new(
            format!("{at}.name"),
            "a ServiceAccount name is required",
        ));
    }
    own_namespace(p, at, sa.namespace.as_deref(), scope);
}

fn ca_provider(p: &mut Vec<Problem>, at: &str, ca: &CaProvider, scope: Scope<'_>) {
    match scope {
        Scope::Cluster if ca.namespace.as_deref().is_none_or(str::is_empty) => {
            p.push(Problem::new(
                format!("{at}.namespace"),
                "a ClusterSecretStore's caProvider needs a namespace",
            ));
        }
        _ => own_namespace(p, at, ca.namespace.as_deref(), scope),
    }
}

/// `server` must be an absolute http(s) URL with a host.
pub fn check_server(server: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{} is not an http(s) URL such as \"https://vault.example.com:8200\"",
            quoted(server)
        )
    };
    let uri: http::Uri = server.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad()),
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() => Ok(()),
        _ => Err(bad()),
    }
}

/// `retrySettings` (a store's or a generator's) under `at`.
pub fn retry_settings(p: &mut Vec<Problem>, rs: &crate::api::RetrySettings, at: &str) {
    if let Some(ri) = &rs.retry_interval
        && let Err(e) = crate::api::duration::parse(ri)
    {
        p.push(Problem::new(format!("{at}.retryInterval"), e.to_string()));
    }
    if let Some(n) = rs.max_retries.filter(|n| *n < 0) {
        p.push(Problem::new(
            format!("{at}.maxRetries"),
            format!("{n} is negative"),
        ));
    }
}

/// The Vault provider block of a generator, under `at` (e.g. `spec.provider`). Its references
/// are read in the namespace of the ExternalSecret using it: a VaultDynamicSecret's own
/// (`namespace` Some); for a ClusterGenerator any, so an explicit namespace is not checked.
pub fn generator_provider(v: &VaultProvider, namespace: Option<&str>, at: &str) -> Vec<Problem> {
    let mut p = Vec::new();
    let scope = match namespace {
        Some(ns) => Scope::Namespaced(ns),
        None => Scope::Cluster,
    };
    vault(&mut p, v, scope);
    for problem in &mut p {
        if let Some(rest) = problem.field.strip_prefix("spec.provider.vault") {
            problem.field = format!("{at}{rest}");
        }
    }
    p
}
