//! The validating webhook's static rules: pure functions over the typed objects (plus the raw
//! JSON where the typed form cannot tell), each problem naming the field path and the offending
//! value — never a secret value.
//!
//! ESO's own webhook rules come first in each function, vaultgate's stricter ones after.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{LazyLock, Mutex};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{
    CaProvider, ClusterSecretStore, CreationPolicy, DeletionPolicy, ExternalSecret,
    ExternalSecretDataRemoteRef, ExternalSecretSpec, ExternalSecretTemplate, SecretKeySelector,
    SecretStore, SecretStoreSpec, ServiceAccountSelector, StoreSourceRef, VaultAuth, VaultProvider,
};
use crate::vault::paths::quoted;

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

/// Secret types a template may not produce: the token controllers own them (ESO refuses them).
const FORBIDDEN_SECRET_TYPES: [&str; 2] = [
    "kubernetes.io/service-account-token",
    "bootstrap.kubernetes.io/token",
];

/// Most problems one admission message lists; the others are only counted.
pub const MAX_LISTED: usize = 20;
/// Longest text of one problem in an admission message.
const MAX_PROBLEM_TEXT: usize = 1024;

/// Joins problems into one admission message of a readable size: the first [`MAX_LISTED`],
/// each cut at 1 KiB, then how many more there are.
pub fn join(problems: &[Problem]) -> String {
    let mut parts: Vec<String> = problems
        .iter()
        .take(MAX_LISTED)
        .map(|p| {
            let mut text = p.to_string();
            if text.len() > MAX_PROBLEM_TEXT {
                let mut cut = MAX_PROBLEM_TEXT;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str("...");
            }
            text
        })
        .collect();
    if problems.len() > MAX_LISTED {
        parts.push(format!("and {} more problems", problems.len() - MAX_LISTED));
    }
    parts.join("; ")
}

/// Longest regular expression accepted (the patterns of real manifests are a few dozen bytes).
pub const MAX_REGEX_LEN: usize = 4096;
/// The compiled-size limits a regular expression is tried with, smallest first. The last is the
/// regex crate's default, which the reconciler compiles with: what compiles here runs there.
const REGEX_SIZE_LIMITS: [usize; 4] = [16 << 10, 128 << 10, 1 << 20, 10 << 20];
/// Compiling takes time in proportion to the size limit tried (a pattern such as `\p{L}{1000}`
/// takes over 100 ms to reach 10 MiB, even in a release build), so one object's regular
/// expressions may together use only this much of it: one of the largest plus small ones.
/// Without it, a manifest of thousands of such patterns would hold a worker for minutes.
pub const REGEX_BUDGET: usize = 12 << 20;

/// What checking one pattern found, and how much compiling it took (the sum of the size limits
/// tried); remembered per pattern.
#[derive(Clone)]
struct RegexOutcome {
    result: Result<(), String>,
    cost: usize,
}

/// The compile budget of one object's regular expressions; see [`REGEX_BUDGET`].
pub struct RegexBudget {
    left: usize,
}

impl Default for RegexBudget {
    fn default() -> Self {
        RegexBudget { left: REGEX_BUDGET }
    }
}

impl RegexBudget {
    /// Whether `re` compiles (as the reconciler compiles it), within what is left of the
    /// budget; once a pattern does not fit, none after it is checked. The error completes a
    /// sentence that starts with the quoted pattern.
    pub fn check(&mut self, re: &str) -> Result<(), String> {
        // The same manifests are applied over and over, and compiling a regex costs far more
        // than the rest of the validation: outcomes are remembered per pattern.
        static SEEN: LazyLock<Mutex<HashMap<String, RegexOutcome>>> =
            LazyLock::new(|| Mutex::new(HashMap::new()));
        if re.len() > MAX_REGEX_LEN {
            return Err(format!("is longer than {MAX_REGEX_LEN} bytes"));
        }
        let over_budget = || {
            format!(
                "was not checked: this object's regular expressions would take more than {} MiB compiled together; use fewer or simpler ones",
                REGEX_BUDGET >> 20
            )
        };
        let seen = SEEN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(re)
            .cloned();
        if let Some(o) = seen {
            // Charged as when it was compiled, so the answer never depends on what was seen.
            if o.cost > self.left {
                self.left = 0;
                return Err(over_budget());
            }
            self.left -= o.cost;
            return o.result;
        }
        let mut cost = 0;
        let mut result = None;
        for limit in REGEX_SIZE_LIMITS {
            if cost + limit > self.left {
                // Not remembered: with more budget left, it may well be checked.
                self.left = 0;
                return Err(over_budget());
            }
            cost += limit;
            match crate::goregex::builder(re).size_limit(limit).build() {
                Ok(_) => {
                    result = Some(Ok(()));
                    break;
                }
                Err(regex::Error::CompiledTooBig(_)) => continue,
                Err(e) => {
                    result = Some(Err(format!(
                        "does not compile: {}",
                        crate::goregex::message(&e)
                    )));
                    break;
                }
            }
        }
        let result = result.unwrap_or_else(|| {
            Err(format!(
                "compiles to more than {} MiB, the most vaultgate runs: counted repetitions of Unicode classes such as \\p{{L}} are large; use e.g. [A-Za-z] or a smaller count",
                REGEX_SIZE_LIMITS[REGEX_SIZE_LIMITS.len() - 1] >> 20
            ))
        });
        self.left -= cost;
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: patterns come from users; forgetting them all now and then is harmless.
        if seen.len() >= 4096 {
            seen.clear();
        }
        seen.insert(
            re.to_string(),
            RegexOutcome {
                result: result.clone(),
                cost,
            },
        );
        result
    }
}

/// Whether `re` compiles as the reconciler compiles it (see [`RegexBudget::check`]).
pub fn regex_compiles(re: &str) -> Result<(), String> {
    RegexBudget::default().check(re)
}

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
            if t.metadata
                .as_ref()
                .and_then(|m| m.finalizers.as_ref())
                .is_some_and(|f| !f.is_empty())
            {
                p.push(Problem::new(
                    "spec.target.template.metadata.finalizers",
                    NOT_SUPPORTED,
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
            source_ref(&mut p, &format!("{}.sourceRef", at()), s);
        }
    }

    for (i, d) in data_from.iter().enumerate() {
        let at = || format!("spec.dataFrom[{i}]");
        let set = usize::from(d.extract.is_some()) + usize::from(d.find.is_some());
        if let Some(s) = &d.source_ref {
            source_ref(&mut p, &format!("{}.sourceRef", at()), s);
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
            if rw.merge.is_some() {
                p.push(Problem::new(format!("{}.merge", at()), NOT_SUPPORTED));
            }
            if rw.regexp.is_none() && rw.transform.is_none() && rw.merge.is_none() {
                p.push(Problem::new(
                    at(),
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
    if spec.sync_windows.is_some() {
        p.push(Problem::new("spec.syncWindows", NOT_SUPPORTED));
    }
    p
}

/// All the templates of one ExternalSecret together may be this long: all they render is one
/// Secret, which holds 1 MiB.
pub const MAX_TEMPLATES_LEN: usize = 1 << 20;
/// Actions (`{{ ... }}`) all the templates of one ExternalSecret may have together. Parsing
/// takes time in proportion to them (some 5 µs each in a debug build, where a MiB of them takes
/// over half a second), not to the text around them; real templates have dozens.
pub const MAX_TEMPLATE_ACTIONS: usize = 10_000;

/// Every template source of an ExternalSecret.
fn template_sources(spec: &ExternalSecretSpec) -> impl Iterator<Item = &str> {
    let tpl = spec.target.as_ref().and_then(|t| t.template.as_ref());
    let data = tpl
        .into_iter()
        .flat_map(|t| t.data.iter().flatten().map(|(_, v)| v));
    let meta = tpl
        .and_then(|t| t.metadata.as_ref())
        .into_iter()
        .flat_map(|m| {
            m.labels
                .iter()
                .flatten()
                .chain(m.annotations.iter().flatten())
                .map(|(_, v)| v)
        });
    let literals = tpl.into_iter().flat_map(|t| {
        t.template_from
            .iter()
            .flatten()
            .filter_map(|f| f.literal.as_ref())
    });
    let transforms = spec.data_from.iter().flatten().flat_map(|df| {
        df.rewrite
            .iter()
            .flatten()
            .filter_map(|r| r.transform.as_ref().map(|t| &t.template))
    });
    data.chain(meta)
        .chain(literals)
        .chain(transforms)
        .map(String::as_str)
}

/// Whether an ExternalSecret's templates are small enough to parse; a problem if not.
fn templates_fit(spec: &ExternalSecretSpec) -> Result<(), Problem> {
    let (mut len, mut actions) = (0usize, 0usize);
    for src in template_sources(spec) {
        len += src.len();
        actions += src.matches("{{").count();
    }
    const WHAT: &str = "the templates (spec.target.template and the rewrite transforms)";
    if len > MAX_TEMPLATES_LEN {
        return Err(Problem::new(
            "spec",
            format!(
                "{WHAT} are {len} bytes long together; at most {MAX_TEMPLATES_LEN} are accepted"
            ),
        ));
    }
    if actions > MAX_TEMPLATE_ACTIONS {
        return Err(Problem::new(
            "spec",
            format!(
                "{WHAT} have {actions} actions together; at most {MAX_TEMPLATE_ACTIONS} are accepted"
            ),
        ));
    }
    Ok(())
}

/// The keys a template writes, and literal label values, as the API server will check them on
/// the target Secret: a Secret that can never be written is refused now, not at every sync.
fn template_keys(p: &mut Vec<Problem>, t: &ExternalSecretTemplate) {
    const AT: &str = "spec.target.template";
    for k in t.data.iter().flatten().map(|(k, _)| k) {
        if !crate::vault::values::is_valid_secret_key(k) {
            p.push(Problem::new(
                format!("{AT}.data"),
                format!(
                    "key {} is not a valid Secret key (letters, digits, '-', '.' and '_'; at most 253 characters)",
                    quoted(k)
                ),
            ));
        }
    }
    let Some(m) = &t.metadata else { return };
    for (k, v) in m.labels.iter().flatten() {
        if !is_qualified_name(k) {
            p.push(Problem::new(
                format!("{AT}.metadata.labels"),
                format!("key {} is not a valid label key ({QUALIFIED})", quoted(k)),
            ));
        } else if !v.is_empty() && !v.contains("{{") && !is_name(v) {
            p.push(Problem::new(
                format!("{AT}.metadata.labels"),
                format!(
                    "the value of {} is not a valid label value ({NAME}): {}",
                    quoted(k),
                    quoted(v)
                ),
            ));
        }
    }
    for k in m.annotations.iter().flatten().map(|(k, _)| k) {
        if !is_qualified_name(k) {
            p.push(Problem::new(
                format!("{AT}.metadata.annotations"),
                format!(
                    "key {} is not a valid annotation key ({QUALIFIED})",
                    quoted(k)
                ),
            ));
        }
    }
}

const NAME: &str =
    "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
const QUALIFIED: &str = "a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, optionally after a DNS subdomain prefix and '/'";

/// A Kubernetes name part (label value, the name of a label key): `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`,
/// at most 63 characters.
fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label or annotation key: a name, optionally after a DNS subdomain and `/`.
fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        None => is_name(s),
        Some((prefix, name)) => {
            is_name(name)
                && !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|label| {
                    let dns = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
                    let b = label.as_bytes();
                    !b.is_empty()
                        && b.len() <= 63
                        && b.first().is_some_and(dns)
                        && b.last().is_some_and(dns)
                        && b.iter().all(|c| dns(c) || *c == b'-')
                })
        }
    }
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
                "{NOT_SUPPORTED} (store {}): use spec.secretStoreRef",
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

/// The rules for a SecretStore; `providers` are the keys under its `spec.provider` (the typed
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
        if k.service_account_ref.is_some() && k.secret_ref.is_some() {
            p.push(Problem::new(
                &at,
                "set serviceAccountRef or secretRef, not both",
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::{Kind, kind_of, static_problems};

    const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

    fn es_base(version: &str) -> Value {
        json!({
            "apiVersion": format!("external-secrets.io/{version}"),
            "kind": "ExternalSecret",
            "metadata": {"name": "app", "namespace": "team-a"},
            "spec": {
                "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
                "refreshInterval": "1h",
                "target": {"name": "app-secret"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "app/db", "property": "password"}}],
                "dataFrom": [
                    {"extract": {"key": "app/config"}},
                    {"find": {"path": "app", "name": {"regexp": "^db-.*"}},
                     "rewrite": [{"regexp": {"source": "db-(.*)", "target": "$1"}}]}
                ]
            }
        })
    }

    fn store_base(version: &str, kind: &str) -> Value {
        let mut v = json!({
            "apiVersion": format!("external-secrets.io/{version}"),
            "kind": kind,
            "metadata": {"name": "vault"},
            "spec": {"provider": {"vault": {
                "server": "https://vault.example:8200",
                "path": "secret",
                "version": "v2",
                "auth": {"appRole": {"path": "approle", "roleId": "abc",
                                     "secretRef": {"name": "approle", "key": "secret-id"}}}
            }}}
        });
        if kind == "SecretStore" {
            v["metadata"]["namespace"] = json!("team-a");
        }
        v
    }

    /// Applies a JSON merge patch (null deletes) and runs the rules.
    fn problems(base: &Value, patch: &Value) -> Vec<String> {
        let mut obj = base.clone();
        json_patch::merge(&mut obj, patch);
        let kind = kind_of(&obj).expect("served kind");
        static_problems(kind, &obj)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn assert_case(base: &Value, name: &str, patch: &Value, want: Option<(&str, &str)>) {
        let got = problems(base, patch);
        match want {
            None => assert!(got.is_empty(), "{name}: expected valid, got {got:?}"),
            Some((field, msg)) => assert!(
                got.iter()
                    .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(msg)),
                "{name}: expected `{field}: …{msg}…`, got {got:?}"
            ),
        }
    }

    #[test]
    fn kinds_and_versions_are_recognised() {
        for v in VERSIONS {
            assert_eq!(kind_of(&es_base(v)), Some(Kind::ExternalSecret));
            assert_eq!(
                kind_of(&store_base(v, "SecretStore")),
                Some(Kind::SecretStore)
            );
            assert_eq!(
                kind_of(&store_base(v, "ClusterSecretStore")),
                Some(Kind::ClusterSecretStore)
            );
        }
        assert_eq!(
            kind_of(
                &json!({"apiVersion": "external-secrets.io/v1alpha1", "kind": "ExternalSecret"})
            ),
            None
        );
        assert_eq!(
            kind_of(&json!({"apiVersion": "v1", "kind": "Secret"})),
            None
        );
    }

    #[test]
    fn external_secret_rules() {
        type Case = (&'static str, Value, Option<(&'static str, &'static str)>);
        // A spec whose data entries have the secretKeys `k{n}`, in this order.
        let keyed = |ns: &mut dyn Iterator<Item = usize>| {
            let data: Vec<Value> = ns
                .map(|n| json!({"secretKey": format!("k{n}"), "remoteRef": {"key": "x"}}))
                .collect();
            json!({"spec": {"data": data}})
        };
        let cases: Vec<Case> = vec![
            ("base is valid", json!({}), None),
            ("sync once", json!({"spec": {"refreshInterval": "0"}}), None),
            (
                "delete with orphan",
                json!({"spec": {"target": {"deletionPolicy": "Delete", "creationPolicy": "Orphan"}}}),
                None,
            ),
            ("data only", json!({"spec": {"dataFrom": null}}), None),
            ("dataFrom only", json!({"spec": {"data": null}}), None),
            (
                "versioned read",
                json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "app/db", "version": "3"}}]}}),
                None,
            ),
            (
                "delete with merge creation",
                json!({"spec": {"target": {"deletionPolicy": "Delete", "creationPolicy": "Merge"}}}),
                Some((
                    "spec.target.deletionPolicy",
                    "needs creationPolicy Owner or Orphan",
                )),
            ),
            (
                "merge deletion with none creation",
                json!({"spec": {"target": {"deletionPolicy": "Merge", "creationPolicy": "None"}}}),
                Some(("spec.target.deletionPolicy", "creationPolicy None")),
            ),
            (
                "neither data nor dataFrom",
                json!({"spec": {"data": null, "dataFrom": null}}),
                Some(("spec", "either data or dataFrom")),
            ),
            (
                "empty data lists",
                json!({"spec": {"data": [], "dataFrom": []}}),
                Some(("spec", "either data or dataFrom")),
            ),
            (
                "extract and find together",
                json!({"spec": {"dataFrom": [{"extract": {"key": "a"}, "find": {"path": "b"}}]}}),
                Some(("spec.dataFrom[0]", "exactly one of extract or find")),
            ),
            (
                "neither extract nor find",
                json!({"spec": {"dataFrom": [{}]}}),
                Some(("spec.dataFrom[0]", "exactly one of extract or find")),
            ),
            (
                "duplicate secretKey",
                json!({"spec": {"data": [
                    {"secretKey": "a", "remoteRef": {"key": "x"}},
                    {"secretKey": "a", "remoteRef": {"key": "y"}}]}}),
                Some(("spec.data[1].secretKey", "duplicate secretKey \"a\"")),
            ),
            (
                "distinct secretKeys, few and many",
                keyed(&mut (0..10).chain(100..140)),
                None,
            ),
            ("distinct secretKeys, few", keyed(&mut (0..16)), None),
            (
                // Past the few keys that are compared one by one.
                "duplicate secretKey among many",
                keyed(&mut (0..20).chain([3])),
                Some(("spec.data[20].secretKey", "duplicate secretKey \"k3\"")),
            ),
            (
                "duplicate secretKey as the last of a few",
                keyed(&mut (0..15).chain([0])),
                Some(("spec.data[15].secretKey", "duplicate secretKey \"k0\"")),
            ),
            (
                "service account token type",
                json!({"spec": {"target": {"template": {"type": "kubernetes.io/service-account-token"}}}}),
                Some((
                    "spec.target.template.type",
                    "kubernetes.io/service-account-token",
                )),
            ),
            (
                "bootstrap token type",
                json!({"spec": {"target": {"template": {"type": "bootstrap.kubernetes.io/token"}}}}),
                Some(("spec.target.template.type", "bootstrap.kubernetes.io/token")),
            ),
            (
                "template calling an unknown function",
                json!({"spec": {"target": {"template": {"data": {"a": "{{ .b | nosuchfunc }}"}}}}}),
                Some(("spec.target.template.data[a]", "nosuchfunc")),
            ),
            (
                "bad secretKey",
                json!({"spec": {"data": [{"secretKey": "pass word", "remoteRef": {"key": "x"}}]}}),
                Some((
                    "spec.data[0].secretKey",
                    "\"pass word\" is not a valid Secret key",
                )),
            ),
            (
                "key escaping upwards",
                json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "app/../../sys/seal"}}]}}),
                Some(("spec.data[0].remoteRef.key", "\"..\"")),
            ),
            (
                "absolute key",
                json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "/secret/app"}}]}}),
                Some(("spec.data[0].remoteRef.key", "starts with \"/\"")),
            ),
            (
                "sys key",
                json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "sys/mounts"}}]}}),
                Some(("spec.data[0].remoteRef.key", "sys/")),
            ),
            (
                "auth key",
                json!({"spec": {"dataFrom": [{"extract": {"key": "auth/token/lookup-self"}}]}}),
                Some(("spec.dataFrom[0].extract.key", "auth/")),
            ),
            (
                "NUL in key",
                json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "a\u{0}b"}}]}}),
                Some(("spec.data[0].remoteRef.key", "NUL")),
            ),
            (
                "find path escaping",
                json!({"spec": {"dataFrom": [{"find": {"path": "../other"}}]}}),
                Some(("spec.dataFrom[0].find.path", "\"..\"")),
            ),
            (
                "bad version",
                json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "x", "version": "latest"}}]}}),
                Some(("spec.data[0].remoteRef.version", "\"latest\"")),
            ),
            (
                "bad refresh interval",
                json!({"spec": {"refreshInterval": "1 hour"}}),
                Some(("spec.refreshInterval", "\"1 hour\"")),
            ),
            (
                "negative refresh interval",
                json!({"spec": {"refreshInterval": "-1h"}}),
                Some(("spec.refreshInterval", "negative")),
            ),
            (
                "find regexp does not compile",
                json!({"spec": {"dataFrom": [{"find": {"name": {"regexp": "db-("}}}]}}),
                Some((
                    "spec.dataFrom[0].find.name.regexp",
                    "\"db-(\" does not compile",
                )),
            ),
            (
                "find regexp a backtracking engine would take forever on",
                json!({"spec": {"dataFrom": [{"find": {"name": {"regexp": "(a+)+$"}}}]}}),
                None,
            ),
            (
                "find regexp beyond the compiled size limit",
                json!({"spec": {"dataFrom": [{"find": {"name": {"regexp": "a{1000}{1000}"}}}]}}),
                Some((
                    "spec.dataFrom[0].find.name.regexp",
                    "\"a{1000}{1000}\" compiles to more than 10 MiB",
                )),
            ),
            (
                "find regexp longer than 4096 bytes",
                json!({"spec": {"dataFrom": [{"find": {"name": {"regexp": "a".repeat(4097)}}}]}}),
                Some((
                    "spec.dataFrom[0].find.name.regexp",
                    "... (4097 bytes) is longer than 4096 bytes",
                )),
            ),
            (
                "find regexp nested too deep",
                json!({"spec": {"dataFrom": [{"find": {"name": {"regexp": "(".repeat(300) + &")".repeat(300)}}}]}}),
                Some(("spec.dataFrom[0].find.name.regexp", "nested")),
            ),
            (
                "templates longer than 1 MiB together",
                json!({"spec": {"target": {"template": {"data": {
                    "a": "{{ .a }}".repeat(70_000), "b": "{{ .b }}".repeat(70_000)}}}}}),
                Some(("spec", "are 1120000 bytes long together; at most 1048576")),
            ),
            (
                "templates with more than 10000 actions together",
                json!({"spec": {"target": {"template": {"data": {"a": "{{ .a }}".repeat(6000)}}},
                    "dataFrom": [{"extract": {"key": "a"},
                        "rewrite": [{"transform": {"template": "{{ .value }}".repeat(4001)}}]}]}}),
                Some(("spec", "have 10001 actions together; at most 10000")),
            ),
            (
                "template labels and annotations that a Secret can carry",
                json!({"spec": {"target": {"template": {
                    "data": {"config.yaml": "x", "a_b-c": "{{ .a }}"},
                    "metadata": {
                        "labels": {"app.kubernetes.io/name": "{{ .a | lower }} x", "team": "a.b-c_d", "empty": ""},
                        "annotations": {"example.com/note": "any\nthing\u{0}", "n": "x".repeat(1000)}}}}}}),
                None,
            ),
            (
                "template data key that is not a Secret key",
                json!({"spec": {"target": {"template": {"data": {"a/b": "x"}}}}}),
                Some((
                    "spec.target.template.data",
                    "key \"a/b\" is not a valid Secret key",
                )),
            ),
            (
                "template label key with a space",
                json!({"spec": {"target": {"template": {"metadata": {"labels": {"a b": "x"}}}}}}),
                Some((
                    "spec.target.template.metadata.labels",
                    "key \"a b\" is not a valid label key",
                )),
            ),
            (
                "template label key with an upper-case prefix",
                json!({"spec": {"target": {"template": {"metadata": {"labels": {"Example.com/a": "x"}}}}}}),
                Some((
                    "spec.target.template.metadata.labels",
                    "not a valid label key",
                )),
            ),
            (
                "template label value too long",
                json!({"spec": {"target": {"template": {"metadata": {"labels": {"a": "v".repeat(64)}}}}}}),
                Some((
                    "spec.target.template.metadata.labels",
                    "the value of \"a\" is not a valid label value",
                )),
            ),
            (
                "template label value with a NUL",
                json!({"spec": {"target": {"template": {"metadata": {"labels": {"a": "x\u{0}"}}}}}}),
                Some(("spec.target.template.metadata.labels", "\"x\\0\"")),
            ),
            (
                "template annotation key of 100k characters",
                json!({"spec": {"target": {"template": {"metadata": {"annotations": {"k".repeat(100_000): "x"}}}}}}),
                Some((
                    "spec.target.template.metadata.annotations",
                    "(100000 bytes) is not a valid annotation key",
                )),
            ),
            (
                "remote key longer than 4096 bytes",
                json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "k".repeat(5000)}}]}}),
                Some((
                    "spec.data[0].remoteRef.key",
                    "... (5000 bytes) is longer than 4096 bytes",
                )),
            ),
            (
                "rewrite regexp does not compile",
                json!({"spec": {"dataFrom": [{"extract": {"key": "a"},
                    "rewrite": [{"regexp": {"source": "[", "target": "x"}}]}]}}),
                Some((
                    "spec.dataFrom[0].rewrite[0].regexp.source",
                    "\"[\" does not compile",
                )),
            ),
            (
                "rewrite transform",
                json!({"spec": {"dataFrom": [{"extract": {"key": "a"},
                    "rewrite": [{"transform": {"template": "{{ .value | upper }}"}}]}]}}),
                None,
            ),
            (
                "rewrite transform with an unknown function",
                json!({"spec": {"dataFrom": [{"extract": {"key": "a"},
                    "rewrite": [{"transform": {"template": "{{ .value | nope }}"}}]}]}}),
                Some((
                    "spec.dataFrom[0].rewrite[0].transform.template",
                    "template: transform:1:13: function \"nope\" not defined",
                )),
            ),
            (
                "rewrite merge",
                json!({"spec": {"dataFrom": [{"extract": {"key": "a"},
                    "rewrite": [{"merge": {"into": "x"}}]}]}}),
                Some((
                    "spec.dataFrom[0].rewrite[0].merge",
                    "not supported by vaultgate",
                )),
            ),
            (
                "empty rewrite",
                json!({"spec": {"dataFrom": [{"extract": {"key": "a"}, "rewrite": [{}]}]}}),
                Some((
                    "spec.dataFrom[0].rewrite[0]",
                    "one of regexp, transform or merge",
                )),
            ),
            (
                "data storeRef",
                json!({"spec": {"data": [{"secretKey": "a", "remoteRef": {"key": "x"},
                    "sourceRef": {"storeRef": {"name": "other"}}}]}}),
                Some((
                    "spec.data[0].sourceRef.storeRef",
                    "not supported by vaultgate (store \"other\")",
                )),
            ),
            (
                "generatorRef",
                json!({"spec": {"dataFrom": [{"sourceRef": {"generatorRef": {"kind": "Password", "name": "pw"}}}]}}),
                Some((
                    "spec.dataFrom[0].sourceRef.generatorRef",
                    "not supported by vaultgate",
                )),
            ),
            (
                "manifest target",
                json!({"spec": {"target": {"manifest": {"apiVersion": "v1", "kind": "ConfigMap"}}}}),
                Some((
                    "spec.target.manifest",
                    "not supported by vaultgate (kind \"ConfigMap\")",
                )),
            ),
            (
                "sync windows",
                json!({"spec": {"syncWindows": {"kind": "allow", "windows": [{"duration": "1h", "schedule": "@daily"}]}}}),
                Some(("spec.syncWindows", "not supported by vaultgate")),
            ),
            (
                "no store name",
                json!({"spec": {"secretStoreRef": {"name": null}}}),
                Some(("spec.secretStoreRef.name", "a store name is required")),
            ),
            (
                "unreadable spec",
                json!({"spec": {"data": "not a list"}}),
                Some(("spec", "invalid type")),
            ),
        ];
        for v in VERSIONS {
            let base = es_base(v);
            for (name, patch, want) in &cases {
                assert_case(&base, &format!("{v} {name}"), patch, *want);
            }
        }
    }

    #[test]
    fn refusals_never_carry_more_than_names() {
        // A property is a key name and may appear; nothing from a Secret's data can, because
        // the rules never read any: a spot check that messages quote the field values given.
        let got = problems(
            &es_base("v1"),
            &json!({"spec": {"data": [{"secretKey": "bad key!", "remoteRef": {"key": "x"}}]}}),
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("\"bad key!\""), "{got:?}");
    }

    #[test]
    fn regex_compiling_is_bounded_per_object() {
        // Small patterns fit by the hundred; one large pattern (~11 MiB tried) fits too, and
        // then nothing more does, whether the patterns were seen before or not.
        for _ in 0..2 {
            let mut b = super::RegexBudget::default();
            for i in 0..50 {
                assert!(b.check(&format!("^team-{i}$")).is_ok());
            }
            assert!(b.check(r"\p{L}{100}").is_ok());
            for re in [r"\p{L}{101}", "^team-0$"] {
                let e = b.check(re).unwrap_err();
                assert!(e.starts_with("was not checked"), "{e}");
            }
        }
        // Hundreds of large patterns in one manifest are answered quickly.
        let many: Vec<_> = (0..300)
            .map(|i| json!({"find": {"name": {"regexp": format!(r"\p{{L}}{{1000}}{i}")}}}))
            .collect();
        let start = std::time::Instant::now();
        let got = problems(&es_base("v1"), &json!({"spec": {"dataFrom": many}}));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(got.len(), 300);
        assert!(
            got[0].contains("compiles to more than 10 MiB"),
            "{}",
            got[0]
        );
        assert!(got[1].contains("was not checked"), "{}", got[1]);
    }

    #[test]
    fn messages_stay_readable() {
        let problems: Vec<_> = (0..30)
            .map(|i| super::Problem::new(format!("spec.data[{i}]"), "x".repeat(100 * i)))
            .collect();
        let msg = super::join(&problems);
        assert!(msg.ends_with("; and 10 more problems"), "{msg}");
        assert!(msg.contains(&format!("spec.data[19]: {}...", "x".repeat(1024 - 15))));
        assert!(!msg.contains("spec.data[20]"));
        assert!(msg.len() < 20 * 1100, "{}", msg.len());
        assert_eq!(
            super::join(&problems[..2]),
            "spec.data[0]: ; spec.data[1]: ".to_string() + &"x".repeat(100)
        );
    }

    /// (name, only for this kind, merge patch, expected `(field, message)` or valid); run for
    /// both kinds unless restricted.
    type StoreCase = (
        &'static str,
        Option<&'static str>,
        Value,
        Option<(&'static str, &'static str)>,
    );

    fn store_cases() -> Vec<StoreCase> {
        let with_auth = |a: Value| json!({"spec": {"provider": {"vault": {"auth": a}}}});
        vec![
            ("base is valid", None, json!({}), None),
            (
                "token auth",
                None,
                with_auth(
                    json!({"appRole": null, "tokenSecretRef": {"name": "t", "key": "token"}}),
                ),
                None,
            ),
            (
                "kubernetes auth with service account",
                None,
                with_auth(
                    json!({"appRole": null, "kubernetes": {"role": "r", "serviceAccountRef": {"name": "sa"}}}),
                ),
                None,
            ),
            (
                "kubernetes auth with vaultgate's own token in a ClusterSecretStore",
                Some("ClusterSecretStore"),
                with_auth(json!({"appRole": null, "kubernetes": {"role": "r"}})),
                None,
            ),
            (
                "kubernetes auth with vaultgate's own token in a SecretStore",
                Some("SecretStore"),
                with_auth(json!({"appRole": null, "kubernetes": {"role": "r"}})),
                Some((
                    "spec.provider.vault.auth.kubernetes",
                    "needs serviceAccountRef or secretRef",
                )),
            ),
            (
                "ldap auth",
                None,
                with_auth(
                    json!({"appRole": null, "ldap": {"username": "u", "secretRef": {"name": "p", "key": "pw"}}}),
                ),
                None,
            ),
            (
                "userpass auth",
                None,
                with_auth(
                    json!({"appRole": null, "userPass": {"username": "u", "secretRef": {"name": "p", "key": "pw"}}}),
                ),
                None,
            ),
            (
                "jwt auth with a secret",
                None,
                with_auth(
                    json!({"appRole": null, "jwt": {"role": "r", "secretRef": {"name": "j", "key": "jwt"}}}),
                ),
                None,
            ),
            (
                "jwt auth with a service account token",
                None,
                with_auth(
                    json!({"appRole": null, "jwt": {"role": "r", "kubernetesServiceAccountToken": {"serviceAccountRef": {"name": "sa"}}}}),
                ),
                None,
            ),
            (
                "cert auth",
                None,
                with_auth(
                    json!({"appRole": null, "cert": {"clientCert": {"name": "c", "key": "tls.crt"}, "secretRef": {"name": "c", "key": "tls.key"}}}),
                ),
                None,
            ),
            (
                "approle with roleRef",
                None,
                with_auth(
                    json!({"appRole": {"roleId": null, "roleRef": {"name": "r", "key": "id"}}}),
                ),
                None,
            ),
            (
                "client tls both",
                None,
                json!({"spec": {"provider": {"vault": {"tls": {"certSecretRef": {"name": "c"}, "keySecretRef": {"name": "c"}}}}}}),
                None,
            ),
            (
                "refresh as seconds",
                None,
                json!({"spec": {"refreshInterval": 300}}),
                None,
            ),
            (
                "refresh as duration",
                None,
                json!({"spec": {"refreshInterval": "5m"}}),
                None,
            ),
            (
                "own namespace is fine",
                Some("SecretStore"),
                with_auth(
                    json!({"appRole": null, "tokenSecretRef": {"name": "t", "key": "token", "namespace": "team-a"}}),
                ),
                None,
            ),
            (
                "cluster store references any namespace",
                Some("ClusterSecretStore"),
                with_auth(
                    json!({"appRole": null, "tokenSecretRef": {"name": "t", "key": "token", "namespace": "vault-auth"}}),
                ),
                None,
            ),
            (
                "cluster store caProvider with namespace",
                Some("ClusterSecretStore"),
                json!({"spec": {"provider": {"vault": {"caProvider": {"type": "Secret", "name": "ca", "key": "ca.crt", "namespace": "vault"}}}}}),
                None,
            ),
            (
                "conditions",
                Some("ClusterSecretStore"),
                json!({"spec": {"conditions": [{"namespaceRegexes": ["^team-.*$"], "namespaces": ["ops"]}]}}),
                None,
            ),
            // Invalid ones.
            (
                "another provider",
                None,
                json!({"spec": {"provider": {"vault": null, "aws": {"service": "SecretsManager"}}}}),
                Some(("spec.provider", "provider aws not supported by vaultgate")),
            ),
            (
                "two providers",
                None,
                json!({"spec": {"provider": {"aws": {"service": "SecretsManager"}}}}),
                Some((
                    "spec.provider",
                    "exactly one provider may be set, found vault and aws",
                )),
            ),
            (
                "no provider",
                None,
                json!({"spec": {"provider": {"vault": null}}}),
                Some(("spec.provider", "a provider is required")),
            ),
            (
                "negative refresh seconds",
                None,
                json!({"spec": {"refreshInterval": -5}}),
                Some(("spec.refreshInterval", "-5 is negative")),
            ),
            (
                "bad refresh duration",
                None,
                json!({"spec": {"refreshInterval": "5 minutes"}}),
                Some(("spec.refreshInterval", "\"5 minutes\"")),
            ),
            (
                "bad retry interval",
                None,
                json!({"spec": {"retrySettings": {"maxRetries": 3, "retryInterval": "soon"}}}),
                Some(("spec.retrySettings.retryInterval", "\"soon\"")),
            ),
            (
                "approle without role id",
                None,
                with_auth(json!({"appRole": {"roleId": null}})),
                Some((
                    "spec.provider.vault.auth.appRole.roleId",
                    "one of roleId or roleRef",
                )),
            ),
            (
                "two auth methods",
                None,
                with_auth(json!({"tokenSecretRef": {"name": "t", "key": "token"}})),
                Some(("spec.provider.vault.auth", "found tokenSecretRef, appRole")),
            ),
            (
                "no auth method",
                None,
                with_auth(json!({"appRole": null})),
                Some((
                    "spec.provider.vault.auth",
                    "exactly one auth method is required",
                )),
            ),
            (
                "no auth at all",
                None,
                with_auth(Value::Null),
                Some((
                    "spec.provider.vault.auth",
                    "exactly one auth method is required",
                )),
            ),
            (
                "iam",
                None,
                with_auth(json!({"appRole": null, "iam": {"vaultRole": "r"}})),
                Some(("spec.provider.vault.auth.iam", "not supported by vaultgate")),
            ),
            (
                "gcp",
                None,
                with_auth(json!({"appRole": null, "gcp": {"role": "r"}})),
                Some(("spec.provider.vault.auth.gcp", "not supported by vaultgate")),
            ),
            (
                "server without scheme",
                None,
                json!({"spec": {"provider": {"vault": {"server": "vault:8200"}}}}),
                Some((
                    "spec.provider.vault.server",
                    "\"vault:8200\" is not an http(s) URL",
                )),
            ),
            (
                "server with another scheme",
                None,
                json!({"spec": {"provider": {"vault": {"server": "ftp://vault"}}}}),
                Some(("spec.provider.vault.server", "\"ftp://vault\"")),
            ),
            (
                "client tls half",
                None,
                json!({"spec": {"provider": {"vault": {"tls": {"certSecretRef": {"name": "c"}}}}}}),
                Some(("spec.provider.vault.tls", "must be set together")),
            ),
            (
                "jwt without credentials",
                None,
                with_auth(json!({"appRole": null, "jwt": {"role": "r"}})),
                Some((
                    "spec.provider.vault.auth.jwt",
                    "one of secretRef or kubernetesServiceAccountToken",
                )),
            ),
            (
                "userpass without password",
                None,
                with_auth(json!({"appRole": null, "userPass": {"username": "u"}})),
                Some((
                    "spec.provider.vault.auth.userPass.secretRef",
                    "password is required",
                )),
            ),
            (
                "cert without key",
                None,
                with_auth(
                    json!({"appRole": null, "cert": {"clientCert": {"name": "c", "key": "tls.crt"}}}),
                ),
                Some(("spec.provider.vault.auth.cert.secretRef", "required")),
            ),
            (
                "token ref without key",
                None,
                with_auth(json!({"appRole": null, "tokenSecretRef": {"name": "t"}})),
                Some((
                    "spec.provider.vault.auth.tokenSecretRef.key",
                    "a key is required",
                )),
            ),
            (
                "bad auth mount",
                None,
                with_auth(json!({"appRole": {"path": "../sys"}})),
                Some((
                    "spec.provider.vault.auth.appRole.path",
                    "not an auth mount path",
                )),
            ),
            (
                "secret ref in another namespace",
                Some("SecretStore"),
                with_auth(
                    json!({"appRole": null, "tokenSecretRef": {"name": "t", "key": "token", "namespace": "kube-system"}}),
                ),
                Some((
                    "spec.provider.vault.auth.tokenSecretRef.namespace",
                    "\"kube-system\" is not the store's namespace \"team-a\"",
                )),
            ),
            (
                "approle secret in another namespace",
                Some("SecretStore"),
                with_auth(json!({"appRole": {"secretRef": {"namespace": "other"}}})),
                Some((
                    "spec.provider.vault.auth.appRole.secretRef.namespace",
                    "\"other\"",
                )),
            ),
            (
                "service account in another namespace",
                Some("SecretStore"),
                with_auth(
                    json!({"appRole": null, "kubernetes": {"role": "r", "serviceAccountRef": {"name": "sa", "namespace": "other"}}}),
                ),
                Some((
                    "spec.provider.vault.auth.kubernetes.serviceAccountRef.namespace",
                    "\"other\"",
                )),
            ),
            (
                "caProvider in another namespace",
                Some("SecretStore"),
                json!({"spec": {"provider": {"vault": {"caProvider": {"type": "ConfigMap", "name": "ca", "namespace": "other"}}}}}),
                Some(("spec.provider.vault.caProvider.namespace", "\"other\"")),
            ),
            (
                "tls secret in another namespace",
                Some("SecretStore"),
                json!({"spec": {"provider": {"vault": {"tls": {"certSecretRef": {"name": "c", "namespace": "other"}, "keySecretRef": {"name": "c"}}}}}}),
                Some((
                    "spec.provider.vault.tls.certSecretRef.namespace",
                    "\"other\"",
                )),
            ),
            (
                "cluster caProvider without namespace",
                Some("ClusterSecretStore"),
                json!({"spec": {"provider": {"vault": {"caProvider": {"type": "Secret", "name": "ca", "key": "ca.crt"}}}}}),
                Some((
                    "spec.provider.vault.caProvider.namespace",
                    "needs a namespace",
                )),
            ),
            (
                "bad namespace regex",
                Some("ClusterSecretStore"),
                json!({"spec": {"conditions": [{"namespaceRegexes": ["team-("]}]}}),
                Some((
                    "spec.conditions[0].namespaceRegexes[0]",
                    "\"team-(\" does not compile",
                )),
            ),
        ]
    }

    #[test]
    fn store_rules() {
        for v in VERSIONS {
            for kind in ["SecretStore", "ClusterSecretStore"] {
                let base = store_base(v, kind);
                for (name, only, patch, want) in store_cases() {
                    if only.is_some_and(|k| k != kind) {
                        continue;
                    }
                    assert_case(&base, &format!("{v} {kind} {name}"), &patch, want);
                }
            }
        }
    }

    #[test]
    fn server_urls() {
        for ok in [
            "https://vault:8200",
            "http://127.0.0.1:8200",
            "https://vault.example.com",
        ] {
            assert!(super::check_server(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "vault",
            "https://",
            "ftp://x",
            "https:// vault",
            "/v1/secret",
        ] {
            assert!(super::check_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regex_results_are_remembered_consistently() {
        assert!(super::regex_compiles("^a+$").is_ok());
        assert!(super::regex_compiles("^a+$").is_ok());
        let e1 = super::regex_compiles("(").unwrap_err();
        let e2 = super::regex_compiles("(").unwrap_err();
        assert_eq!(e1, e2);
        assert!(!e1.is_empty());
    }
}
