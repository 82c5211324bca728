//! The validating webhook's static rules: pure functions over the typed objects (plus the raw
//! JSON where the typed form cannot tell), each problem naming the field path and the offending
//! value — never a secret value.
//!
//! ESO's own webhook rules come first in each function, vaultgate's stricter ones after.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{LazyLock, Mutex};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::api::{
    CaProvider, ClusterSecretStore, CreationPolicy, DeletionPolicy, ExternalSecret,
    ExternalSecretDataRemoteRef, SecretKeySelector, SecretStore, SecretStoreSpec,
    ServiceAccountSelector, StoreSourceRef, VaultAuth, VaultProvider,
};

/// One reason to refuse an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `spec.data[0].remoteRef.key`.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The message for fields accepted for compatibility but not implemented.
pub const NOT_SUPPORTED: &str = "not supported by vaultgate";
/// The message for templates, until template rendering exists.
pub const TEMPLATES_NOT_SUPPORTED: &str = "templates are not supported yet";

/// Secret types a template may not produce: the token controllers own them (ESO refuses them).
const FORBIDDEN_SECRET_TYPES: [&str; 2] = [
    "kubernetes.io/service-account-token",
    "bootstrap.kubernetes.io/token",
];

/// Joins problems into one admission message.
pub fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a Secret key is valid (`^[-._a-zA-Z0-9]+$`), without a regex on the hot path.
pub fn valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Whether `re` compiles, remembered per pattern: the same manifests are applied over and over,
/// and compiling a regex costs far more than the rest of the validation.
pub fn regex_compiles(re: &str) -> Result<(), String> {
    static SEEN: LazyLock<Mutex<HashMap<String, Result<(), String>>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    if let Some(r) = SEEN.lock().unwrap_or_else(|e| e.into_inner()).get(re) {
        return r.clone();
    }
    let result = regex::Regex::new(re)
        .map(|_| ())
        .map_err(|e| e.to_string().lines().last().unwrap_or_default().to_string());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    // Bounded: patterns come from users; forgetting them all now and then is harmless.
    if seen.len() >= 4096 {
        seen.clear();
    }
    seen.insert(re.to_string(), result.clone());
    result
}

/// The rules for an ExternalSecret (either version: the schema is the same).
pub fn external_secret(es: &ExternalSecret) -> Vec<Problem> {
    let mut p = Vec::new();
    let spec = &es.spec;

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
                    format!("{ty:?} cannot be written by an ExternalSecret"),
                ));
            }
            p.push(Problem::new(
                "spec.target.template",
                TEMPLATES_NOT_SUPPORTED,
            ));
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

    let mut keys = HashSet::with_capacity(data.len());
    for (i, d) in data.iter().enumerate() {
        let at = format!("spec.data[{i}]");
        if !valid_secret_key(&d.secret_key) {
            p.push(Problem::new(
                format!("{at}.secretKey"),
                format!(
                    "{:?} is not a valid Secret key (letters, digits, '-', '.' and '_' only)",
                    d.secret_key
                ),
            ));
        }
        if !keys.insert(d.secret_key.as_str()) {
            p.push(Problem::new(
                format!("{at}.secretKey"),
                format!("duplicate secretKey {:?}", d.secret_key),
            ));
        }
        remote_ref(&mut p, &format!("{at}.remoteRef"), &d.remote_ref);
        if let Some(s) = &d.source_ref {
            source_ref(&mut p, &format!("{at}.sourceRef"), s);
        }
    }

    for (i, d) in data_from.iter().enumerate() {
        let at = format!("spec.dataFrom[{i}]");
        let set = usize::from(d.extract.is_some()) + usize::from(d.find.is_some());
        if let Some(s) = &d.source_ref {
            source_ref(&mut p, &format!("{at}.sourceRef"), s);
        } else if set != 1 {
            p.push(Problem::new(
                &at,
                "exactly one of extract or find must be set",
            ));
        }
        if let Some(e) = &d.extract {
            remote_ref(&mut p, &format!("{at}.extract"), e);
        }
        if let Some(f) = &d.find {
            if let Some(path) = &f.path
                && let Err(e) = check_key(path)
            {
                p.push(Problem::new(format!("{at}.find.path"), e));
            }
            if let Some(re) = f.name.as_ref().and_then(|n| n.regexp.as_deref())
                && let Err(e) = regex_compiles(re)
            {
                p.push(Problem::new(
                    format!("{at}.find.name.regexp"),
                    format!("{re:?} does not compile: {e}"),
                ));
            }
        }
        for (j, rw) in d.rewrite.iter().flatten().enumerate() {
            let at = format!("{at}.rewrite[{j}]");
            if let Some(r) = &rw.regexp
                && let Err(e) = regex_compiles(&r.source)
            {
                p.push(Problem::new(
                    format!("{at}.regexp.source"),
                    format!("{:?} does not compile: {e}", r.source),
                ));
            }
            if rw.transform.is_some() {
                p.push(Problem::new(
                    format!("{at}.transform"),
                    TEMPLATES_NOT_SUPPORTED,
                ));
            }
            if rw.merge.is_some() {
                p.push(Problem::new(format!("{at}.merge"), NOT_SUPPORTED));
            }
            if rw.regexp.is_none() && rw.transform.is_none() && rw.merge.is_none() {
                p.push(Problem::new(
                    &at,
                    "one of regexp, transform or merge must be set",
                ));
            }
        }
    }

    match spec
        .secret_store_ref
        .as_ref()
        .and_then(|r| r.name.as_deref())
    {
        Some(n) if !n.is_empty() => {}
        other => p.push(Problem::new(
            "spec.secretStoreRef.name",
            format!("a store name is required (got {:?})", other.unwrap_or("")),
        )),
    }
    if let Some(ri) = &spec.refresh_interval
        && let Err(e) = crate::api::duration::parse(ri)
    {
        p.push(Problem::new("spec.refreshInterval", e.to_string()));
    }
    if spec.sync_windows.is_some() {
        p.push(Problem::new("spec.syncWindows", NOT_SUPPORTED));
    }
    p
}

fn remote_ref(p: &mut Vec<Problem>, at: &str, r: &ExternalSecretDataRemoteRef) {
    if let Err(e) = check_key(&r.key) {
        p.push(Problem::new(format!("{at}.key"), e));
    }
    if let Some(v) = &r.version
        && let Err(e) = check_version(v)
    {
        p.push(Problem::new(format!("{at}.version"), e));
    }
}

fn source_ref(p: &mut Vec<Problem>, at: &str, s: &StoreSourceRef) {
    if let Some(g) = &s.generator_ref {
        p.push(Problem::new(
            format!("{at}.generatorRef"),
            format!("{NOT_SUPPORTED} (generator {:?} {:?})", g.kind, g.name),
        ));
    }
    if let Some(r) = &s.store_ref {
        p.push(Problem::new(
            format!("{at}.storeRef"),
            format!(
                "{NOT_SUPPORTED} (store {:?}): use spec.secretStoreRef",
                r.name.as_deref().unwrap_or("")
            ),
        ));
    }
}

/// The remote key rule (no escape from the mount), shared with the Vault client.
pub fn check_key(key: &str) -> Result<(), String> {
    crate::vault::paths::check_key(key)
}

fn check_version(v: &str) -> Result<(), String> {
    crate::vault::paths::check_version(v)
}

/// The rules for a SecretStore; `raw` is the object as received (for fields the typed form drops).
pub fn secret_store(ss: &SecretStore, raw: Option<&Value>) -> Vec<Problem> {
    let ns = ss.metadata.namespace.as_deref().unwrap_or_default();
    store(&ss.spec, Scope::Namespaced(ns), raw)
}

/// The rules for a ClusterSecretStore.
pub fn cluster_secret_store(css: &ClusterSecretStore, raw: Option<&Value>) -> Vec<Problem> {
    store(&css.spec.store, Scope::Cluster, raw)
}

#[derive(Clone, Copy)]
enum Scope<'a> {
    Namespaced(&'a str),
    Cluster,
}

fn store(spec: &SecretStoreSpec, scope: Scope<'_>, raw: Option<&Value>) -> Vec<Problem> {
    let mut p = Vec::new();

    // Providers other than vault never reach the typed form: look at the raw object.
    let others: Vec<&str> = raw
        .and_then(|r| r.pointer("/spec/provider"))
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .map(String::as_str)
                .filter(|k| *k != "vault")
                .collect()
        })
        .unwrap_or_default();
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
        if let Some(ri) = &rs.retry_interval
            && let Err(e) = crate::api::duration::parse(ri)
        {
            p.push(Problem::new(
                "spec.retrySettings.retryInterval",
                e.to_string(),
            ));
        }
        if let Some(n) = rs.max_retries.filter(|n| *n < 0) {
            p.push(Problem::new(
                "spec.retrySettings.maxRetries",
                format!("{n} is negative"),
            ));
        }
    }
    for (i, c) in spec.conditions.iter().flatten().enumerate() {
        for (j, re) in c.namespace_regexes.iter().flatten().enumerate() {
            if let Err(e) = regex_compiles(re) {
                p.push(Problem::new(
                    format!("spec.conditions[{i}].namespaceRegexes[{j}]"),
                    format!("{re:?} does not compile: {e}"),
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
            format!("{path:?} is not a KV mount path"),
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
        if k.service_account_ref.is_some() && k.secret_ref.is_some() {
            p.push(Problem::new(
                &at,
                "set serviceAccountRef or secretRef, not both",
            ));
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
        match (&j.secret_ref, &j.kubernetes_service_account_token) {
            (None, None) => p.push(Problem::new(
                &at,
                "one of secretRef or kubernetesServiceAccountToken is required",
            )),
            (Some(_), Some(_)) => p.push(Problem::new(
                &at,
                "set secretRef or kubernetesServiceAccountToken, not both",
            )),
            (Some(r), None) => secret_ref(p, &format!("{at}.secretRef"), r, scope, true),
            (None, Some(t)) => {
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
            format!("{path:?} is not an auth mount path (e.g. \"approle\")"),
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
                "{ns:?} is not the store's namespace {own:?}: a SecretStore may only reference objects in its own namespace"
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
    let bad =
        || format!("{server:?} is not an http(s) URL such as \"https://vault.example.com:8200\"");
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
