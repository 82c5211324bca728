//! The database secrets engine (dynamic roles only): connections at `config/:name`, roles at
//! `roles/:name` (`db_name`, `creation_statements`, `default_ttl`, `max_ttl`), and
//! `creds/:role`, which "creates a database user" (a fresh username and password) under a
//! new lease. No database is contacted: a connection always verifies.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::server::Op;
use crate::util::{Resp, opt_str, parse_duration, random_string, string_list};

#[derive(Debug, Clone, Default)]
pub(crate) struct DbConfig {
    pub plugin_name: String,
    pub allowed_roles: Vec<String>,
    /// The plugin's connection parameters, as written (the password is never read back).
    pub details: Map<String, Value>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct DbRole {
    pub db_name: String,
    pub creation_statements: Vec<String>,
    pub revocation_statements: Vec<String>,
    pub default_ttl: u64,
    pub max_ttl: u64,
}

#[derive(Default)]
pub(crate) struct DbStore {
    pub configs: BTreeMap<String, DbConfig>,
    pub roles: BTreeMap<String, DbRole>,
}

/// What a `creds/:role` read needs from the store to issue a lease.
pub(crate) struct Minted {
    pub data: Value,
    pub default_ttl: u64,
    pub max_ttl: u64,
}

const GENERIC_CONFIG_KEYS: &[&str] = &[
    "plugin_name",
    "plugin_version",
    "verify_connection",
    "allowed_roles",
    "root_rotation_statements",
    "password_policy",
];

impl DbStore {
    pub fn exists(&self, rest: &str) -> bool {
        match rest.split_once('/') {
            Some(("config", n)) => self.configs.contains_key(n),
            Some(("roles", n)) => self.roles.contains_key(n),
            _ => true,
        }
    }

    /// Whether a request creates credentials (a read that changes state).
    pub fn is_creds(rest: &str, op: Op) -> bool {
        op == Op::Read && rest.starts_with("creds/")
    }

    /// Everything except `creds/` reads.
    pub fn handle(&mut self, path: &str, rest: &str, op: Op, body: &Value) -> Resp {
        let (section, name) = rest.split_once('/').unwrap_or((rest, ""));
        match (section, op) {
            ("config" | "roles", Op::List) if name.is_empty() => {
                let keys: Vec<&String> = if section == "config" {
                    self.configs.keys().collect()
                } else {
                    self.roles.keys().collect()
                };
                if keys.is_empty() {
                    return Resp::not_found();
                }
                Resp::data(json!({ "keys": keys }))
            }
            (_, _) if name.is_empty() || name.contains('/') => Resp::no_route(path),
            ("config", Op::Write) => self.write_config(name, body),
            ("config", Op::Read) => match self.configs.get(name) {
                Some(c) => Resp::data(json!({
                    "plugin_name": c.plugin_name,
                    "plugin_version": "",
                    "allowed_roles": c.allowed_roles,
                    "connection_details": c.details,
                    "password_policy": "",
                    "root_credentials_rotate_statements": [],
                    "verify_connection": true,
                })),
                None => Resp::not_found(),
            },
            ("config", Op::Delete) => {
                self.configs.remove(name);
                Resp::no_content()
            }
            ("roles", Op::Write) => self.write_role(name, body),
            ("roles", Op::Read) => match self.roles.get(name) {
                Some(r) => Resp::data(json!({
                    "db_name": r.db_name,
                    "creation_statements": r.creation_statements,
                    "revocation_statements": r.revocation_statements,
                    "rollback_statements": [],
                    "renew_statements": [],
                    "default_ttl": r.default_ttl,
                    "max_ttl": r.max_ttl,
                    "credential_type": "password",
                })),
                None => Resp::not_found(),
            },
            ("roles", Op::Delete) => {
                self.roles.remove(name);
                Resp::no_content()
            }
            ("config" | "roles" | "creds", _) => Resp::unsupported_op(),
            _ => Resp::no_route(path),
        }
    }

    fn write_config(&mut self, name: &str, body: &Value) -> Resp {
        let Some(plugin_name) = opt_str(body, "plugin_name").filter(|p| !p.is_empty()) else {
            return Resp::bad_request("empty plugin name");
        };
        let allowed_roles = match allowed_roles(body.get("allowed_roles")) {
            Ok(r) => r,
            Err(e) => return Resp::bad_request(e),
        };
        let details = body
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !GENERIC_CONFIG_KEYS.contains(&k.as_str()) && *k != "password")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        self.configs.insert(
            name.to_string(),
            DbConfig {
                plugin_name,
                allowed_roles,
                details,
            },
        );
        Resp::no_content()
    }

    fn write_role(&mut self, name: &str, body: &Value) -> Resp {
        let existing = self.roles.get(name).cloned();
        let mut role = existing.clone().unwrap_or_default();
        if let Some(db) = opt_str(body, "db_name") {
            role.db_name = db;
        }
        if role.db_name.is_empty() {
            return Resp::bad_request("database name is required");
        }
        for (key, field) in [
            ("creation_statements", &mut role.creation_statements),
            ("revocation_statements", &mut role.revocation_statements),
        ] {
            if let Some(v) = body.get(key) {
                match statements(v) {
                    Ok(s) => *field = s,
                    Err(e) => return Resp::bad_request(e),
                }
            }
        }
        for (key, field) in [
            ("default_ttl", &mut role.default_ttl),
            ("max_ttl", &mut role.max_ttl),
        ] {
            if let Some(v) = body.get(key) {
                match parse_duration(v) {
                    Ok(s) => *field = s,
                    Err(e) => return Resp::bad_request(e),
                }
            }
        }
        if role.max_ttl > 0 && role.default_ttl > role.max_ttl {
            return Resp::bad_request("ttl cannot be greater than max_ttl");
        }
        self.roles.insert(name.to_string(), role);
        Resp::no_content()
    }

    /// A new user for `role`, or Vault's refusal.
    pub fn mint(&self, role_name: &str, display_name: &str) -> Result<Minted, Resp> {
        let Some(role) = self.roles.get(role_name) else {
            return Err(Resp::bad_request(format!("unknown role: {role_name}")));
        };
        let Some(config) = self.configs.get(&role.db_name) else {
            return Err(Resp::err(
                500,
                format!(
                    "1 error occurred:\n\t* could not find database config named \"{}\"\n\n",
                    role.db_name
                ),
            ));
        };
        let allowed = config
            .allowed_roles
            .iter()
            .any(|r| r == "*" || r == role_name || glob(r, role_name));
        if !allowed {
            return Err(Resp::bad_request(format!(
                "\"{role_name}\" is not an allowed role"
            )));
        }
        // The default username template: v-{display 8}-{role 8}-{random 20}-{unix time}.
        let username = format!(
            "v-{}-{}-{}-{}",
            truncate(display_name, 8),
            truncate(role_name, 8),
            random_string(20),
            crate::state::now_secs()
        );
        Ok(Minted {
            data: json!({ "username": username, "password": random_string(20) }),
            default_ttl: role.default_ttl,
            max_ttl: role.max_ttl,
        })
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
        None => pattern == name,
    }
}

/// `allowed_roles`: a list, or a comma-separated string.
fn allowed_roles(v: Option<&Value>) -> Result<Vec<String>, String> {
    match v {
        Some(Value::String(s)) => Ok(s
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect()),
        other => string_list(other),
    }
}

/// Statements: a list, or one string (Vault splits neither further).
fn statements(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        other => string_list(Some(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_role_patterns() {
        assert!(glob("svc-*", "svc-billing"));
        assert!(!glob("svc-*", "analytics"));
        assert!(glob("app", "app"));
    }
}
