//! The VaultDynamicSecret generator (ESO's `generators/v1/vault`), its pure half: which call a
//! spec makes, and what of Vault's answer becomes Secret keys (and the lease it carries).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Generated, Lease};
use crate::api::generators::{VaultDynamicSecretResultType, VaultDynamicSecretSpec};
use crate::vault::values::typed_bytes;

/// The one call a VaultDynamicSecret makes, as ESO's Vault client makes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// GET, with `getParameters` as the query.
    Read {
        query: Vec<(String, String)>,
    },
    /// LIST (GET with `list=true`).
    List,
    Delete,
    /// Any other method: a write (Vault treats POST and PUT alike) with `parameters`.
    Write {
        body: Map<String, Value>,
    },
}

impl Call {
    /// For messages and the capability it needs (`sys/capabilities-self`).
    pub fn capability(&self) -> &'static str {
        match self {
            Call::Read { .. } => "read",
            Call::List => "list",
            Call::Delete => "delete",
            Call::Write { .. } => "update",
        }
    }
}

/// The call of a spec, or why it cannot be made (naming its field under `at`).
pub fn call(spec: &VaultDynamicSecretSpec, at: &str) -> Result<Call, String> {
    let method = spec.method.as_deref().unwrap_or("");
    Ok(match method {
        "" | "GET" => Call::Read {
            query: spec
                .get_parameters
                .iter()
                .flatten()
                .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
                .collect(),
        },
        "LIST" => Call::List,
        "DELETE" => Call::Delete,
        _ => Call::Write {
            body: match &spec.parameters {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => {
                    return Err(format!(
                        "{at}.parameters: must be an object of the call's parameters"
                    ));
                }
            },
        },
    })
}

/// Vault's answer made into Secret keys. `None`: no content (HTTP 204, or a read or list
/// that found nothing), an error unless `allowEmptyResponse`.
pub fn outcome(spec: &VaultDynamicSecretSpec, answer: Option<&Value>) -> Result<Generated, String> {
    let Some(answer) = answer else {
        if spec.allow_empty_response {
            return Ok(Generated {
                data: BTreeMap::new(),
                lease: None,
            });
        }
        return Err(
            "empty response from Vault (set allowEmptyResponse if that is expected)".into(),
        );
    };
    let part = match spec.result_type.unwrap_or_default() {
        VaultDynamicSecretResultType::Data => answer.get("data"),
        VaultDynamicSecretResultType::Auth => answer.get("auth"),
        VaultDynamicSecretResultType::Raw => Some(answer),
    };
    let data = match part {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), typed_bytes(v))).collect(),
        Some(_) => return Err("Vault's answer is not an object where keys were expected".into()),
    };
    Ok(Generated {
        data,
        lease: lease(answer),
    })
}

/// The lease of an answer that has one (`lease_id` not empty).
pub fn lease(answer: &Value) -> Option<Lease> {
    let id = answer.get("lease_id")?.as_str().filter(|s| !s.is_empty())?;
    Some(Lease {
        id: id.to_string(),
        duration_s: answer
            .get("lease_duration")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        renewable: answer
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> VaultDynamicSecretSpec {
        let mut v = v;
        v["path"] = json!("database/creds/app");
        v["provider"] = json!({"server": "https://vault:8200"});
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn calls_follow_the_method() {
        for (v, want) in [
            (json!({}), Ok(Call::Read { query: vec![] })),
            (
                json!({"method": "GET", "getParameters": {"a": ["1", "2"], "b": ["3"]}}),
                Ok(Call::Read {
                    query: vec![
                        ("a".into(), "1".into()),
                        ("a".into(), "2".into()),
                        ("b".into(), "3".into()),
                    ],
                }),
            ),
            (json!({"method": "LIST"}), Ok(Call::List)),
            (json!({"method": "DELETE"}), Ok(Call::Delete)),
            (
                json!({"method": "POST", "parameters": {"ttl": "1h"}}),
                Ok(Call::Write {
                    body: json!({"ttl": "1h"}).as_object().unwrap().clone(),
                }),
            ),
            (
                json!({"method": "PUT"}),
                Ok(Call::Write { body: Map::new() }),
            ),
            (
                json!({"method": "POST", "parameters": [1]}),
                Err("spec.parameters: must be an object of the call's parameters".to_string()),
            ),
        ] {
            assert_eq!(call(&spec(v.clone()), "spec"), want, "{v}");
        }
    }

    #[test]
    fn result_types_pick_the_part_of_the_answer() {
        let answer = json!({
            "lease_id": "database/creds/app/abc", "lease_duration": 3600, "renewable": true,
            "data": {"username": "u", "password": "p", "n": 3},
            "auth": null,
        });
        let got = outcome(&spec(json!({})), Some(&answer)).unwrap();
        assert_eq!(
            got.data,
            BTreeMap::from([
                ("n".to_string(), b"3".to_vec()),
                ("password".to_string(), b"p".to_vec()),
                ("username".to_string(), b"u".to_vec()),
            ])
        );
        assert_eq!(
            got.lease,
            Some(Lease {
                id: "database/creds/app/abc".into(),
                duration_s: 3600,
                renewable: true
            })
        );
        let raw = outcome(&spec(json!({"resultType": "Raw"})), Some(&answer)).unwrap();
        assert_eq!(raw.data["lease_id"], b"database/creds/app/abc");
        assert_eq!(
            raw.data["data"],
            br#"{"n":3,"password":"p","username":"u"}"#
        );
        let auth = json!({"auth": {"client_token": "s.x", "policies": ["a"]}});
        let got = outcome(&spec(json!({"resultType": "Auth"})), Some(&auth)).unwrap();
        assert_eq!(got.data["client_token"], b"s.x");
        assert_eq!(got.data["policies"], br#"["a"]"#);
        assert_eq!(got.lease, None);
    }

    #[test]
    fn an_empty_answer_is_an_error_unless_allowed() {
        let err = outcome(&spec(json!({})), None).unwrap_err();
        assert!(err.contains("empty response"), "{err}");
        let ok = outcome(&spec(json!({"allowEmptyResponse": true})), None).unwrap();
        assert!(ok.data.is_empty() && ok.lease.is_none());
    }
}
