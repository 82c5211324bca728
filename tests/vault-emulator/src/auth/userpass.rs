//! The userpass auth method, and the LDAP auth method with the emulator
//! standing in for the directory.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{LoginOk, TokenParams, list_keys, split_named};
use crate::server::Op;
use crate::util::{Resp, opt_str, string_list};

fn hash(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

#[derive(Clone, Default)]
struct User {
    password_hash: [u8; 32],
    token: TokenParams,
}

#[derive(Default)]
pub(crate) struct Userpass {
    users: BTreeMap<String, User>,
}

impl Userpass {
    pub fn read(&self, op: Op, rest: &str) -> Option<Resp> {
        if rest == "users" {
            return Some(match op {
                Op::List => list_keys(self.users.keys()),
                _ => Resp::unsupported_op(),
            });
        }
        let (name, tail) = split_named(rest, "users")?;
        if !tail.is_empty() {
            return None;
        }
        let name = name.to_lowercase();
        Some(match (self.users.get(&name), op) {
            (Some(u), Op::Read) => {
                let mut m = Map::new();
                u.token.write_json(&mut m);
                Resp::data(Value::Object(m))
            }
            (None, Op::Read) => Resp::not_found(),
            _ => Resp::unsupported_op(),
        })
    }

    pub fn write(&mut self, op: Op, rest: &str, body: &Value) -> Option<Resp> {
        let (name, tail) = split_named(rest, "users")?;
        let name = name.to_lowercase();
        Some(match (tail, op) {
            ("", Op::Write) => {
                let existing = self.users.get(&name).cloned();
                let password = opt_str(body, "password");
                let mut user = match (existing, password.as_deref()) {
                    (None, None | Some("")) => return Some(Resp::bad_request("missing password")),
                    (Some(u), _) => u,
                    (None, Some(_)) => User::default(),
                };
                if let Some(p) = password.filter(|p| !p.is_empty()) {
                    user.password_hash = hash(&p);
                }
                if let Err(e) = user.token.update(body) {
                    return Some(Resp::bad_request(e));
                }
                self.users.insert(name, user);
                Resp::no_content()
            }
            ("", Op::Delete) => {
                self.users.remove(&name);
                Resp::no_content()
            }
            ("password", Op::Write) => {
                let Some(u) = self.users.get_mut(&name) else {
                    return Some(Resp::bad_request("username does not exist"));
                };
                match opt_str(body, "password") {
                    Some(p) if !p.is_empty() => {
                        u.password_hash = hash(&p);
                        Resp::no_content()
                    }
                    _ => Resp::bad_request("missing password"),
                }
            }
            ("policies", Op::Write) => {
                let Some(u) = self.users.get_mut(&name) else {
                    return Some(Resp::bad_request("username does not exist"));
                };
                match u.token.update(body) {
                    Ok(()) => Resp::no_content(),
                    Err(e) => Resp::bad_request(e),
                }
            }
            ("" | "password" | "policies", _) => Resp::unsupported_op(),
            _ => return None,
        })
    }

    pub fn login(&self, rest: &str, body: &Value) -> Result<LoginOk, Resp> {
        let username = rest
            .trim_start_matches("login")
            .trim_matches('/')
            .to_lowercase();
        if username.is_empty() {
            return Err(Resp::bad_request("missing username"));
        }
        let password = opt_str(body, "password").unwrap_or_default();
        if password.is_empty() {
            return Err(Resp::bad_request("missing password"));
        }
        match self.users.get(&username) {
            Some(u) if u.password_hash == hash(&password) => {
                let mut metadata = BTreeMap::new();
                metadata.insert("username".to_string(), username.clone());
                Ok(LoginOk {
                    params: u.token.clone(),
                    metadata,
                    display_name: format!("userpass-{username}"),
                })
            }
            _ => Err(Resp::bad_request("invalid username or password")),
        }
    }
}

#[derive(Clone, Default)]
struct LdapUser {
    policies: Vec<String>,
    groups: Vec<String>,
}

/// LDAP auth: the `users/` and `groups/` endpoints map names to policies as
/// in Vault, while the directory itself (who exists, with which password)
/// is set up by the test through [`Ldap::set_password`].
#[derive(Default)]
pub(crate) struct Ldap {
    config: Map<String, Value>,
    token: TokenParams,
    users: BTreeMap<String, LdapUser>,
    groups: BTreeMap<String, Vec<String>>,
    directory: HashMap<String, ([u8; 32], Vec<String>)>,
}

impl Ldap {
    /// Adds or updates a directory entry with its password and the
    /// directory groups it belongs to.
    pub fn set_password(&mut self, username: &str, password: &str, groups: &[String]) {
        self.directory
            .insert(username.to_lowercase(), (hash(password), groups.to_vec()));
    }

    pub fn read(&self, op: Op, rest: &str) -> Option<Resp> {
        match (rest, op) {
            ("config", Op::Read) => {
                let mut m = self.config.clone();
                m.remove("bindpass");
                self.token.write_json(&mut m);
                return Some(Resp::data(Value::Object(m)));
            }
            ("users", Op::List) => return Some(list_keys(self.users.keys())),
            ("groups", Op::List) => return Some(list_keys(self.groups.keys())),
            _ => {}
        }
        if let Some((name, "")) = split_named(rest, "users") {
            return Some(match self.users.get(&name.to_lowercase()) {
                Some(u) => {
                    Resp::data(json!({ "policies": u.policies, "groups": u.groups.join(",") }))
                }
                None => Resp::not_found(),
            });
        }
        if let Some((name, "")) = split_named(rest, "groups") {
            return Some(match self.groups.get(&name.to_lowercase()) {
                Some(p) => Resp::data(json!({ "policies": p })),
                None => Resp::not_found(),
            });
        }
        None
    }

    pub fn write(&mut self, op: Op, rest: &str, body: &Value) -> Option<Resp> {
        if rest == "config" {
            return Some(match op {
                Op::Write => {
                    if let Err(e) = self.token.update(body) {
                        return Some(Resp::bad_request(e));
                    }
                    if let Value::Object(m) = body {
                        for (k, v) in m {
                            if !k.starts_with("token_") && k != "policies" {
                                self.config.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    Resp::no_content()
                }
                _ => Resp::unsupported_op(),
            });
        }
        if let Some((name, "")) = split_named(rest, "users") {
            let name = name.to_lowercase();
            return Some(match op {
                Op::Write => {
                    let policies = match string_list(body.get("policies")) {
                        Ok(p) => p,
                        Err(e) => return Some(Resp::bad_request(e)),
                    };
                    let groups = match string_list(body.get("groups")) {
                        Ok(g) => g,
                        Err(e) => return Some(Resp::bad_request(e)),
                    };
                    self.users.insert(name, LdapUser { policies, groups });
                    Resp::no_content()
                }
                Op::Delete => {
                    self.users.remove(&name);
                    Resp::no_content()
                }
                _ => Resp::unsupported_op(),
            });
        }
        if let Some((name, "")) = split_named(rest, "groups") {
            let name = name.to_lowercase();
            return Some(match op {
                Op::Write => match string_list(body.get("policies")) {
                    Ok(p) => {
                        self.groups.insert(name, p);
                        Resp::no_content()
                    }
                    Err(e) => Resp::bad_request(e),
                },
                Op::Delete => {
                    self.groups.remove(&name);
                    Resp::no_content()
                }
                _ => Resp::unsupported_op(),
            });
        }
        None
    }

    pub fn login(&self, rest: &str, body: &Value) -> Result<LoginOk, Resp> {
        let username = rest
            .trim_start_matches("login")
            .trim_matches('/')
            .to_lowercase();
        if username.is_empty() {
            return Err(Resp::bad_request("missing username"));
        }
        let password = opt_str(body, "password").unwrap_or_default();
        if password.is_empty() {
            return Err(Resp::bad_request("password cannot be empty"));
        }
        let Some((stored, dir_groups)) = self.directory.get(&username) else {
            return Err(Resp::bad_request(
                "ldap operation failed: failed to bind as user",
            ));
        };
        if *stored != hash(&password) {
            return Err(Resp::bad_request(
                "ldap operation failed: failed to bind as user",
            ));
        }
        let mut params = self.token.clone();
        let user = self.users.get(&username).cloned().unwrap_or_default();
        params.policies.extend(user.policies.iter().cloned());
        let mut groups: Vec<String> = dir_groups.clone();
        groups.extend(user.groups.iter().cloned());
        for g in &groups {
            if let Some(p) = self.groups.get(&g.to_lowercase()) {
                params.policies.extend(p.iter().cloned());
            }
        }
        params.policies.sort();
        params.policies.dedup();
        let mut metadata = BTreeMap::new();
        metadata.insert("username".to_string(), username.clone());
        Ok(LoginOk {
            params,
            metadata,
            display_name: format!("ldap-{username}"),
        })
    }
}
