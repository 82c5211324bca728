//! Auth methods: their configuration endpoints and logins.

mod approle;
mod cert;
pub(crate) mod jwt;
mod kubernetes;
mod userpass;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::server::{Ctx, Shared};
use crate::state::{AuthMount, TokenSpec};
use crate::util::{Resp, envelope, opt_bool, opt_u64, parse_duration, string_list};

pub(crate) use approle::AppRole;
pub(crate) use cert::CertAuth;
pub(crate) use jwt::JwtAuth;
pub(crate) use kubernetes::KubeAuth;
pub(crate) use userpass::{Ldap, Userpass};

pub(crate) enum AuthBackend {
    Token,
    AppRole(AppRole),
    Userpass(Userpass),
    Ldap(Ldap),
    Kubernetes(KubeAuth),
    Jwt(JwtAuth),
    Cert(CertAuth),
}

impl AuthBackend {
    pub fn new(kind: &str) -> Option<(&'static str, AuthBackend)> {
        Some(match kind {
            "approle" => ("approle", AuthBackend::AppRole(AppRole::default())),
            "userpass" => ("userpass", AuthBackend::Userpass(Userpass::default())),
            "ldap" => ("ldap", AuthBackend::Ldap(Ldap::default())),
            "kubernetes" => ("kubernetes", AuthBackend::Kubernetes(KubeAuth::default())),
            "jwt" => ("jwt", AuthBackend::Jwt(JwtAuth::default())),
            "oidc" => ("oidc", AuthBackend::Jwt(JwtAuth::default())),
            "cert" => ("cert", AuthBackend::Cert(CertAuth::default())),
            _ => return None,
        })
    }
}

pub(crate) fn is_login_path(backend: &AuthBackend, rest: &str) -> bool {
    let rest = rest.trim_end_matches('/');
    match backend {
        AuthBackend::Token => false,
        AuthBackend::Userpass(_) | AuthBackend::Ldap(_) => {
            rest.starts_with("login/") || rest == "login"
        }
        _ => rest == "login",
    }
}

/// The `token_*` fields every role-like object carries.
#[derive(Clone, Default)]
pub(crate) struct TokenParams {
    pub policies: Vec<String>,
    pub ttl: u64,
    pub max_ttl: u64,
    pub explicit_max_ttl: u64,
    pub no_default_policy: bool,
    pub num_uses: u64,
    pub period: u64,
    pub bound_cidrs: Vec<String>,
}

impl TokenParams {
    /// Applies the fields present in `body` (legacy `policies`/`ttl`/`max_ttl`
    /// aliases included), leaving the others unchanged.
    pub fn update(&mut self, body: &Value) -> Result<(), String> {
        if body.get("token_policies").is_some() {
            self.policies = string_list(body.get("token_policies"))?;
        } else if body.get("policies").is_some() {
            self.policies = string_list(body.get("policies"))?;
        }
        for (field, alias, slot) in [
            ("token_ttl", "ttl", &mut self.ttl),
            ("token_max_ttl", "max_ttl", &mut self.max_ttl),
            ("token_explicit_max_ttl", "", &mut self.explicit_max_ttl),
            ("token_period", "period", &mut self.period),
        ] {
            let v = body.get(field).or_else(|| {
                if alias.is_empty() {
                    None
                } else {
                    body.get(alias)
                }
            });
            if let Some(v) = v {
                *slot = parse_duration(v).map_err(|e| format!("invalid {field}: {e}"))?;
            }
        }
        if let Some(b) = opt_bool(body, "token_no_default_policy")? {
            self.no_default_policy = b;
        }
        if let Some(n) = opt_u64(body, "token_num_uses")? {
            self.num_uses = n;
        }
        if body.get("token_bound_cidrs").is_some() {
            self.bound_cidrs = string_list(body.get("token_bound_cidrs"))?;
        }
        if self.max_ttl > 0 && self.ttl > self.max_ttl {
            return Err("\"token_ttl\" value must be less than \"token_max_ttl\" value".into());
        }
        Ok(())
    }

    pub fn write_json(&self, m: &mut Map<String, Value>) {
        m.insert("token_policies".into(), json!(self.policies));
        m.insert("policies".into(), json!(self.policies));
        m.insert("token_ttl".into(), json!(self.ttl));
        m.insert("ttl".into(), json!(self.ttl));
        m.insert("token_max_ttl".into(), json!(self.max_ttl));
        m.insert("max_ttl".into(), json!(self.max_ttl));
        m.insert(
            "token_explicit_max_ttl".into(),
            json!(self.explicit_max_ttl),
        );
        m.insert(
            "token_no_default_policy".into(),
            json!(self.no_default_policy),
        );
        m.insert("token_num_uses".into(), json!(self.num_uses));
        m.insert("token_period".into(), json!(self.period));
        m.insert("period".into(), json!(self.period));
        m.insert("token_bound_cidrs".into(), json!(self.bound_cidrs));
        m.insert("token_type".into(), json!("default"));
    }
}

/// A successful credential check, before a token is issued.
pub(crate) struct LoginOk {
    pub params: TokenParams,
    pub metadata: BTreeMap<String, String>,
    pub display_name: String,
}

fn issue(shared: &Arc<Shared>, ctx: &Ctx, mount: &str, ok: LoginOk) -> Resp {
    let mut st = shared.write();
    if st.tokens.len() > 50_000 {
        st.sweep_expired();
    }
    let ttl = match (ok.params.ttl, ok.params.max_ttl) {
        (0, 0) => 0,
        (0, m) => m.min(crate::state::DEFAULT_TTL),
        (t, _) => t,
    };
    let spec = TokenSpec {
        policies: ok.params.policies.clone(),
        no_default_policy: ok.params.no_default_policy,
        ttl,
        explicit_max_ttl: ok.params.explicit_max_ttl.max(ok.params.max_ttl),
        renewable: true,
        display_name: ok.display_name,
        meta: Some(ok.metadata),
        path: format!("auth/{mount}login"),
        parent: None,
        num_uses: ok.params.num_uses,
    };
    let t = st.issue_token(&ctx.ns, spec);
    let token_policies = t.policies.clone();
    let auth = t.auth_json(&token_policies);
    Resp::new(200, Some(envelope(None, Some(auth), 0, false)))
}

pub(crate) async fn login(shared: &Arc<Shared>, ctx: &Ctx, mount: &str, rest: &str) -> Resp {
    enum Plan {
        Done(Result<LoginOk, Resp>),
        Kube(Box<kubernetes::LoginPlan>),
        Jwt(Box<jwt::LoginPlan>),
    }
    let plan = {
        let mut st = shared.write();
        let Some(ns) = st.ns_mut(&ctx.ns) else {
            return Resp::no_route(&ctx.path);
        };
        let Some(am) = ns.auths.get_mut(mount) else {
            return Resp::no_route(&ctx.path);
        };
        match &mut am.backend {
            AuthBackend::AppRole(a) => Plan::Done(a.login(&ctx.body)),
            AuthBackend::Userpass(u) => Plan::Done(u.login(rest, &ctx.body)),
            AuthBackend::Ldap(l) => Plan::Done(l.login(rest, &ctx.body)),
            AuthBackend::Cert(c) => Plan::Done(c.login(&ctx.body, ctx.peer_certs.as_deref())),
            AuthBackend::Kubernetes(k) => match k.plan(&ctx.body) {
                Ok(p) => Plan::Kube(Box::new(p)),
                Err(e) => return e,
            },
            AuthBackend::Jwt(j) => match j.plan(&ctx.body) {
                Ok(p) => Plan::Jwt(Box::new(p)),
                Err(e) => return e,
            },
            AuthBackend::Token => return Resp::no_route(&ctx.path),
        }
    };
    let result = match plan {
        Plan::Done(r) => r,
        Plan::Kube(p) => p.run().await,
        Plan::Jwt(p) => {
            let (r, refreshed) = p.run().await;
            if let Some(keys) = refreshed {
                let mut st = shared.write();
                if let Some(AuthBackend::Jwt(j)) = st
                    .ns_mut(&ctx.ns)
                    .and_then(|n| n.auths.get_mut(mount))
                    .map(|a| &mut a.backend)
                {
                    j.store_jwks(keys);
                }
            }
            r
        }
    };
    match result {
        Ok(ok) => issue(shared, ctx, mount, ok),
        Err(e) => e,
    }
}

pub(crate) fn read(am: &AuthMount, ctx: &Ctx, rest: &str) -> Resp {
    let rest = rest.trim_end_matches('/');
    let r = match &am.backend {
        AuthBackend::AppRole(a) => a.read(ctx.op, rest),
        AuthBackend::Userpass(u) => u.read(ctx.op, rest),
        AuthBackend::Ldap(l) => l.read(ctx.op, rest),
        AuthBackend::Kubernetes(k) => k.read(ctx.op, rest),
        AuthBackend::Jwt(j) => j.read(ctx.op, rest),
        AuthBackend::Cert(c) => c.read(ctx.op, rest),
        AuthBackend::Token => None,
    };
    r.unwrap_or_else(|| Resp::no_route(&ctx.path))
}

pub(crate) fn write(am: &mut AuthMount, ctx: &Ctx, rest: &str) -> Resp {
    let rest = rest.trim_end_matches('/');
    let r = match &mut am.backend {
        AuthBackend::AppRole(a) => a.write(ctx.op, rest, &ctx.body),
        AuthBackend::Userpass(u) => u.write(ctx.op, rest, &ctx.body),
        AuthBackend::Ldap(l) => l.write(ctx.op, rest, &ctx.body),
        AuthBackend::Kubernetes(k) => k.write(ctx.op, rest, &ctx.body),
        AuthBackend::Jwt(j) => j.write(ctx.op, rest, &ctx.body),
        AuthBackend::Cert(c) => c.write(ctx.op, rest, &ctx.body),
        AuthBackend::Token => None,
    };
    r.unwrap_or_else(|| Resp::no_route(&ctx.path))
}

/// LIST answer for a map of names: 404 when empty, like Vault.
pub(crate) fn list_keys<'a>(keys: impl Iterator<Item = &'a String>) -> Resp {
    let keys: Vec<&String> = keys.collect();
    if keys.is_empty() {
        return Resp::not_found();
    }
    Resp::data(json!({ "keys": keys }))
}

/// Splits `role/<name>/<tail>`-style paths.
pub(crate) fn split_named<'a>(rest: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let r = rest.strip_prefix(prefix)?.strip_prefix('/')?;
    Some(match r.split_once('/') {
        Some((n, t)) => (n, t),
        None => (r, ""),
    })
}
