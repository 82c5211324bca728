//! The token auth method mounted at `auth/token/`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::server::{Ctx, Op};
use crate::state::{DEFAULT_TTL, State, Token, TokenSpec};
use crate::util::{Resp, envelope, opt_bool, opt_str, parse_duration, string_list};

pub(crate) fn read(st: &State, ctx: &Ctx, token: &Token, rest: &str) -> Resp {
    match (rest.trim_end_matches('/'), ctx.op) {
        ("lookup-self", Op::Read) => Resp::data(token.lookup_json()),
        ("accessors", Op::List) => {
            let keys: Vec<&String> = st
                .tokens
                .values()
                .filter(|t| t.namespace == ctx.ns)
                .map(|t| &t.accessor)
                .collect();
            Resp::data(json!({ "keys": keys }))
        }
        (r, Op::Read) if r.starts_with("lookup/") => {
            let id = &r["lookup/".len()..];
            lookup(st, ctx, id)
        }
        (r, _) if is_token_route(r) => Resp::unsupported_op(),
        _ => Resp::no_route(&ctx.path),
    }
}

fn is_token_route(r: &str) -> bool {
    matches!(
        r,
        "create"
            | "create-orphan"
            | "lookup"
            | "lookup-self"
            | "lookup-accessor"
            | "renew"
            | "renew-self"
            | "renew-accessor"
            | "revoke"
            | "revoke-self"
            | "revoke-accessor"
            | "revoke-orphan"
            | "accessors"
            | "roles"
            | "tidy"
    ) || r.starts_with("create/")
        || r.starts_with("lookup/")
}

fn lookup(st: &State, ctx: &Ctx, id: &str) -> Resp {
    if id.is_empty() {
        return Resp::bad_request("missing token to lookup");
    }
    match st.token(id, &ctx.ns) {
        Some(t) => Resp::data(t.lookup_json()),
        None => Resp::bad_request("bad token"),
    }
}

fn renew(st: &mut State, id: &str, increment: Option<u64>) -> Resp {
    let Some(t) = st.tokens.get_mut(id) else {
        return Resp::bad_request("bad token");
    };
    if t.expired() {
        return Resp::bad_request("bad token");
    }
    if t.expires_at.is_none() {
        // Tokens without a TTL (root) renew to themselves.
        let pol = t.policies.clone();
        return Resp::new(200, Some(envelope(None, Some(t.auth_json(&pol)), 0, false)));
    }
    if !t.renewable {
        return Resp::bad_request("lease is not renewable");
    }
    let mut ttl = increment.filter(|i| *i > 0).unwrap_or(t.creation_ttl);
    let max = if t.explicit_max_ttl > 0 {
        t.explicit_max_ttl
    } else {
        DEFAULT_TTL
    };
    let age = crate::state::now_secs().saturating_sub(t.creation_time);
    ttl = ttl.min(max.saturating_sub(age));
    t.expires_at = Some(SystemTime::now() + Duration::from_secs(ttl));
    let mut auth = t.auth_json(&t.policies.clone());
    auth["lease_duration"] = json!(ttl);
    Resp::new(200, Some(envelope(None, Some(auth), 0, false)))
}

fn increment(body: &Value) -> Result<Option<u64>, Resp> {
    match body.get("increment") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_duration(v).map(Some).map_err(Resp::bad_request),
    }
}

pub(crate) fn write(st: &mut State, ctx: &Ctx, token: &Token, rest: &str) -> Resp {
    let rest = rest.trim_end_matches('/');
    let body = &ctx.body;
    match (rest, ctx.op) {
        ("create" | "create-orphan", Op::Write) => create(st, ctx, token, rest == "create-orphan"),
        ("lookup" | "lookup-self", Op::Write) => {
            let id = opt_str(body, "token").unwrap_or_else(|| token.id.clone());
            if rest == "lookup-self" {
                return Resp::data(token.lookup_json());
            }
            lookup(st, ctx, &id)
        }
        ("lookup-accessor", Op::Write) => {
            let acc = opt_str(body, "accessor").unwrap_or_default();
            let Some(id) = st.accessors.get(&acc).cloned() else {
                return Resp::bad_request("invalid accessor");
            };
            match st.token(&id, &ctx.ns) {
                Some(t) => {
                    let mut j = t.lookup_json();
                    j["id"] = json!("");
                    Resp::data(j)
                }
                None => Resp::bad_request("invalid accessor"),
            }
        }
        ("renew-self", Op::Write) => match increment(body) {
            Ok(inc) => renew(st, &token.id.clone(), inc),
            Err(e) => e,
        },
        ("renew", Op::Write) => {
            let Some(id) = opt_str(body, "token") else {
                return Resp::bad_request("missing token");
            };
            match increment(body) {
                Ok(inc) => renew(st, &id, inc),
                Err(e) => e,
            }
        }
        ("renew-accessor", Op::Write) => {
            let acc = opt_str(body, "accessor").unwrap_or_default();
            let Some(id) = st.accessors.get(&acc).cloned() else {
                return Resp::bad_request("invalid accessor");
            };
            match increment(body) {
                Ok(inc) => renew(st, &id, inc),
                Err(e) => e,
            }
        }
        ("revoke-self", Op::Write) => {
            st.revoke_tree(&token.id);
            Resp::no_content()
        }
        ("revoke", Op::Write) => {
            let Some(id) = opt_str(body, "token") else {
                return Resp::bad_request("missing token");
            };
            st.revoke_tree(&id);
            Resp::no_content()
        }
        ("revoke-orphan", Op::Write) => {
            let Some(id) = opt_str(body, "token") else {
                return Resp::bad_request("missing token");
            };
            if let Some(t) = st.tokens.remove(&id) {
                st.accessors.remove(&t.accessor);
                for child in st.tokens.values_mut() {
                    if child.parent.as_deref() == Some(id.as_str()) {
                        child.parent = None;
                        child.orphan = true;
                    }
                }
            }
            Resp::no_content()
        }
        ("revoke-accessor", Op::Write) => {
            let acc = opt_str(body, "accessor").unwrap_or_default();
            let Some(id) = st.accessors.get(&acc).cloned() else {
                return Resp::bad_request("invalid accessor");
            };
            st.revoke_tree(&id);
            Resp::no_content()
        }
        (r, _) if is_token_route(r) => Resp::unsupported_op(),
        _ => Resp::no_route(&ctx.path),
    }
}

fn create(st: &mut State, ctx: &Ctx, parent: &Token, orphan_path: bool) -> Resp {
    let body = &ctx.body;
    let requested = match string_list(body.get("policies")) {
        Ok(p) => p,
        Err(e) => return Resp::bad_request(e),
    };
    let no_parent = match opt_bool(body, "no_parent") {
        Ok(v) => v.unwrap_or(false) || orphan_path,
        Err(e) => return Resp::bad_request(e),
    };
    let no_default_policy = match opt_bool(body, "no_default_policy") {
        Ok(v) => v.unwrap_or(false),
        Err(e) => return Resp::bad_request(e),
    };
    let renewable = match opt_bool(body, "renewable") {
        Ok(v) => v.unwrap_or(true),
        Err(e) => return Resp::bad_request(e),
    };
    let ttl = match body.get("ttl").map(parse_duration) {
        None => 0,
        Some(Ok(t)) => t,
        Some(Err(e)) => return Resp::bad_request(e),
    };
    let explicit_max_ttl = match body.get("explicit_max_ttl").map(parse_duration) {
        None => 0,
        Some(Ok(t)) => t,
        Some(Err(e)) => return Resp::bad_request(e),
    };
    let num_uses = crate::util::opt_u64(body, "num_uses")
        .ok()
        .flatten()
        .unwrap_or(0);
    let meta = match body.get("meta") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    _ => return Resp::bad_request("meta values must be strings"),
                }
            }
            Some(out)
        }
        Some(_) => return Resp::bad_request("meta must be a map of strings"),
    };
    let parent_root = parent.is_root();
    if no_parent && !parent_root && !orphan_path {
        return Resp::bad_request("root or sudo privileges required to create orphan token");
    }
    let policies = if requested.is_empty() {
        parent.policies.clone()
    } else {
        requested
    };
    if !parent_root {
        let allowed: Vec<&String> = parent.policies.iter().collect();
        if policies
            .iter()
            .any(|p| p != "default" && !allowed.contains(&p))
        {
            return Resp::bad_request("child policies must be subset of parent");
        }
    }
    let display = opt_str(body, "display_name").unwrap_or_else(|| "token".into());
    let display_name = if display == "token" || display.starts_with("token-") {
        display
    } else {
        format!("token-{display}")
    };
    let spec = TokenSpec {
        policies,
        no_default_policy,
        ttl,
        explicit_max_ttl,
        renewable,
        display_name,
        meta,
        path: if orphan_path {
            "auth/token/create-orphan".into()
        } else {
            "auth/token/create".into()
        },
        parent: (!no_parent).then(|| parent.id.clone()),
        num_uses,
    };
    let t = st.issue_token(&ctx.ns, spec);
    let token_policies = t.policies.clone();
    Resp::new(
        200,
        Some(envelope(None, Some(t.auth_json(&token_policies)), 0, false)),
    )
}
