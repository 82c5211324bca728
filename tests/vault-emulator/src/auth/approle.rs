//! The AppRole auth method.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::{LoginOk, TokenParams, list_keys, split_named};
use crate::server::Op;
use crate::util::{Resp, now_rfc3339, opt_bool, opt_str, opt_u64, parse_duration, rfc3339, uuid};

#[derive(Clone)]
struct SecretId {
    accessor: String,
    created: String,
    expires: Option<SystemTime>,
    ttl: u64,
    uses_left: Option<u64>,
    num_uses: u64,
    metadata: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Role {
    role_id: String,
    bind_secret_id: bool,
    secret_id_ttl: u64,
    secret_id_num_uses: u64,
    token: TokenParams,
    secret_ids: HashMap<String, SecretId>,
}

#[derive(Default)]
pub(crate) struct AppRole {
    roles: BTreeMap<String, Role>,
}

fn secret_id_json(s: &SecretId) -> Value {
    json!({
        "cidr_list": [],
        "creation_time": s.created,
        "expiration_time": s.expires.map(|e| rfc3339(e.into())).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        "last_updated_time": s.created,
        "metadata": s.metadata,
        "secret_id_accessor": s.accessor,
        "secret_id_num_uses": s.num_uses,
        "secret_id_ttl": s.ttl,
        "token_bound_cidrs": [],
    })
}

impl AppRole {
    pub fn read(&self, op: Op, rest: &str) -> Option<Resp> {
        if rest == "role" {
            return Some(match op {
                Op::List => list_keys(self.roles.keys()),
                _ => Resp::unsupported_op(),
            });
        }
        let (name, tail) = split_named(rest, "role")?;
        let name = name.to_lowercase();
        let Some(role) = self.roles.get(&name) else {
            return Some(if tail.is_empty() {
                Resp::not_found()
            } else {
                Resp::bad_request(format!("role \"{name}\" does not exist"))
            });
        };
        Some(match (tail, op) {
            ("", Op::Read) => {
                let mut m = Map::new();
                m.insert("bind_secret_id".into(), json!(role.bind_secret_id));
                m.insert("secret_id_bound_cidrs".into(), Value::Null);
                m.insert("secret_id_num_uses".into(), json!(role.secret_id_num_uses));
                m.insert("secret_id_ttl".into(), json!(role.secret_id_ttl));
                m.insert("local_secret_ids".into(), json!(false));
                role.token.write_json(&mut m);
                Resp::data(Value::Object(m))
            }
            ("role-id", Op::Read) => Resp::data(json!({ "role_id": role.role_id })),
            ("secret-id", Op::List) => {
                let keys: Vec<String> = role
                    .secret_ids
                    .values()
                    .map(|s| s.accessor.clone())
                    .collect();
                if keys.is_empty() {
                    Resp::not_found()
                } else {
                    Resp::data(json!({ "keys": keys }))
                }
            }
            _ => return None,
        })
    }

    pub fn write(&mut self, op: Op, rest: &str, body: &Value) -> Option<Resp> {
        let (name, tail) = split_named(rest, "role")?;
        let name = name.to_lowercase();
        if tail.is_empty() {
            return Some(match op {
                Op::Write => {
                    let role = self.roles.entry(name.clone()).or_insert_with(|| Role {
                        role_id: uuid(),
                        bind_secret_id: true,
                        ..Default::default()
                    });
                    let mut next = role.clone();
                    let r = (|| -> Result<(), String> {
                        if let Some(b) = opt_bool(body, "bind_secret_id")? {
                            next.bind_secret_id = b;
                        }
                        if let Some(v) = body.get("secret_id_ttl") {
                            next.secret_id_ttl = parse_duration(v)?;
                        }
                        if let Some(n) = opt_u64(body, "secret_id_num_uses")? {
                            next.secret_id_num_uses = n;
                        }
                        if let Some(id) = opt_str(body, "role_id") {
                            next.role_id = id;
                        }
                        next.token.update(body)
                    })();
                    match r {
                        Ok(()) => {
                            *role = next;
                            Resp::no_content()
                        }
                        Err(e) => Resp::bad_request(e),
                    }
                }
                Op::Delete => {
                    self.roles.remove(&name);
                    Resp::no_content()
                }
                _ => Resp::unsupported_op(),
            });
        }
        let Some(role) = self.roles.get_mut(&name) else {
            return Some(Resp::bad_request(format!("role \"{name}\" does not exist")));
        };
        Some(match (tail, op) {
            ("role-id", Op::Write) => match opt_str(body, "role_id") {
                Some(id) if !id.is_empty() => {
                    role.role_id = id;
                    Resp::no_content()
                }
                _ => Resp::bad_request("missing role_id"),
            },
            ("secret-id" | "custom-secret-id", Op::Write) => {
                let custom = tail == "custom-secret-id";
                let id = if custom {
                    match opt_str(body, "secret_id") {
                        Some(s) if !s.is_empty() => s,
                        _ => return Some(Resp::bad_request("missing secret_id")),
                    }
                } else {
                    uuid()
                };
                let metadata: BTreeMap<String, String> = match body.get("metadata") {
                    None | Some(Value::Null) => BTreeMap::new(),
                    Some(Value::String(s)) if s.is_empty() => BTreeMap::new(),
                    Some(Value::String(s)) => match serde_json::from_str(s) {
                        Ok(m) => m,
                        Err(e) => {
                            return Some(Resp::bad_request(format!(
                                "failed to parse metadata: {e}"
                            )));
                        }
                    },
                    Some(Value::Object(m)) => m
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect(),
                    Some(_) => return Some(Resp::bad_request("failed to parse metadata")),
                };
                let ttl = match body.get("ttl").map(parse_duration) {
                    None => role.secret_id_ttl,
                    Some(Ok(t)) => t,
                    Some(Err(e)) => return Some(Resp::bad_request(e)),
                };
                let num_uses = match opt_u64(body, "num_uses") {
                    Ok(n) => n.unwrap_or(role.secret_id_num_uses),
                    Err(e) => return Some(Resp::bad_request(e)),
                };
                let accessor = uuid();
                role.secret_ids.insert(
                    id.clone(),
                    SecretId {
                        accessor: accessor.clone(),
                        created: now_rfc3339(),
                        expires: (ttl > 0).then(|| SystemTime::now() + Duration::from_secs(ttl)),
                        ttl,
                        uses_left: (num_uses > 0).then_some(num_uses),
                        num_uses,
                        metadata,
                    },
                );
                Resp::data(json!({
                    "secret_id": id,
                    "secret_id_accessor": accessor,
                    "secret_id_ttl": ttl,
                    "secret_id_num_uses": num_uses,
                }))
            }
            ("secret-id/lookup", Op::Write) => {
                let id = opt_str(body, "secret_id").unwrap_or_default();
                match role.secret_ids.get(&id) {
                    Some(s) => Resp::data(secret_id_json(s)),
                    None => Resp::no_content(),
                }
            }
            ("secret-id/destroy", Op::Write | Op::Delete) => {
                let id = opt_str(body, "secret_id").unwrap_or_default();
                role.secret_ids.remove(&id);
                Resp::no_content()
            }
            ("secret-id-accessor/lookup", Op::Write) => {
                let acc = opt_str(body, "secret_id_accessor").unwrap_or_default();
                match role.secret_ids.values().find(|s| s.accessor == acc) {
                    Some(s) => Resp::data(secret_id_json(s)),
                    None => Resp::not_found(),
                }
            }
            ("secret-id-accessor/destroy", Op::Write | Op::Delete) => {
                let acc = opt_str(body, "secret_id_accessor").unwrap_or_default();
                role.secret_ids.retain(|_, s| s.accessor != acc);
                Resp::no_content()
            }
            _ => return None,
        })
    }

    pub fn login(&mut self, body: &Value) -> Result<LoginOk, Resp> {
        let role_id = opt_str(body, "role_id").unwrap_or_default();
        if role_id.is_empty() {
            return Err(Resp::bad_request("missing role_id"));
        }
        let Some((name, role)) = self.roles.iter_mut().find(|(_, r)| r.role_id == role_id) else {
            return Err(Resp::bad_request("invalid role or secret ID"));
        };
        if role.bind_secret_id {
            let secret_id = opt_str(body, "secret_id").unwrap_or_default();
            if secret_id.is_empty() {
                return Err(Resp::bad_request("missing secret_id"));
            }
            let Some(s) = role.secret_ids.get_mut(&secret_id) else {
                return Err(Resp::bad_request("invalid role or secret ID"));
            };
            if s.expires.is_some_and(|e| e <= SystemTime::now()) {
                role.secret_ids.remove(&secret_id);
                return Err(Resp::bad_request("invalid role or secret ID"));
            }
            if let Some(left) = s.uses_left.as_mut() {
                *left -= 1;
                if *left == 0 {
                    role.secret_ids.remove(&secret_id);
                }
            }
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("role_name".to_string(), name.clone());
        Ok(LoginOk {
            params: role.token.clone(),
            metadata,
            display_name: "approle".into(),
        })
    }
}
