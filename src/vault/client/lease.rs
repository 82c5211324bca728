//! Lease calls for dynamic secrets: `sys/leases/renew`, `revoke` and `lookup`, through the
//! store's logged-in client (its auth, TLS, namespace and retries). A lease that Vault no
//! longer knows (expired, revoked, not renewable) is an answer, not an error: the lease
//! lifecycle decides what to do about it.

use k8s_openapi::jiff::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

use super::StoreClient;
use crate::vault::VaultError;
use crate::vault::answers;
use crate::vault::http::{Reply, Req};

/// What a renew gave: Vault may give less than asked (the role's max TTL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewed {
    pub lease_id: String,
    pub duration_s: u64,
    pub renewable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenewOutcome {
    Renewed(Renewed),
    /// Vault refused because the lease cannot live longer: gone (expired, revoked) or not
    /// renewable. Its message says which.
    Ended(String),
}

/// `sys/leases/lookup`: a lease's times as Vault keeps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: String,
    pub issue_time: Option<Timestamp>,
    pub expire_time: Option<Timestamp>,
    pub last_renewal: Option<Timestamp>,
    pub ttl_s: u64,
    pub renewable: bool,
}

/// The messages Vault's expiration manager answers (HTTP 400) for a lease that cannot be
/// renewed.
const ENDED: &[&str] = &[
    "lease not found",
    "lease expired",
    "lease is not renewable",
    "lease not found or lease is not renewable",
    "invalid lease",
];

impl StoreClient {
    /// Asks for `increment_s` more seconds on a lease (0: the engine's default TTL).
    pub async fn renew_lease(
        &self,
        lease_id: &str,
        increment_s: u64,
    ) -> Result<RenewOutcome, VaultError> {
        let body = json!({ "lease_id": lease_id, "increment": increment_s });
        let reply = self.lease_call("renew", "sys/leases/renew", &body).await?;
        if let Some(why) = ended(&reply) {
            return Ok(RenewOutcome::Ended(why));
        }
        if !(200..300).contains(&reply.status) {
            return Err(self.status_error("renew", &Method::PUT, "sys/leases/renew", &reply));
        }
        parse_renewed(&reply.body)
            .map(RenewOutcome::Renewed)
            .map_err(|e| VaultError::bad_answer(format!("PUT sys/leases/renew: {e}")))
    }

    /// Revokes a lease now; one Vault no longer knows counts as revoked.
    pub async fn revoke_lease(&self, lease_id: &str) -> Result<(), VaultError> {
        let body = json!({ "lease_id": lease_id });
        let reply = self
            .lease_call("revoke", "sys/leases/revoke", &body)
            .await?;
        if (200..300).contains(&reply.status) || ended(&reply).is_some() {
            return Ok(());
        }
        Err(self.status_error("revoke", &Method::PUT, "sys/leases/revoke", &reply))
    }

    /// A lease's times, or `None` when Vault no longer knows it.
    pub async fn lookup_lease(&self, lease_id: &str) -> Result<Option<LeaseInfo>, VaultError> {
        let body = json!({ "lease_id": lease_id });
        let reply = self
            .lease_call("lookup", "sys/leases/lookup", &body)
            .await?;
        if ended(&reply).is_some() {
            return Ok(None);
        }
        if !(200..300).contains(&reply.status) {
            return Err(self.status_error("lookup", &Method::PUT, "sys/leases/lookup", &reply));
        }
        parse_lookup(&reply.body)
            .map(Some)
            .map_err(|e| VaultError::bad_answer(format!("PUT sys/leases/lookup: {e}")))
    }

    async fn lease_call(&self, call: &str, path: &str, body: &Value) -> Result<Reply, VaultError> {
        self.call(Req {
            call,
            method: Method::PUT,
            path,
            query: None,
            token: None,
            namespace: None,
            body: Some(body),
        })
        .await
    }
}

/// Vault's "this lease cannot be renewed or found" answer, with its message.
fn ended(reply: &Reply) -> Option<String> {
    if reply.status != 400 || reply.not_json.is_some() {
        return None;
    }
    let errors = reply.body.get("errors")?.as_array()?;
    errors
        .iter()
        .filter_map(Value::as_str)
        .find(|e| ENDED.iter().any(|m| e.trim() == *m))
        .map(str::to_string)
}

fn parse_renewed(body: &Value) -> Result<Renewed, String> {
    let lease_id = body
        .get("lease_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("the answer has no \"lease_id\"")?;
    let duration_s = body
        .get("lease_duration")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            format!(
                "\"lease_duration\" is {}, expected a number of seconds",
                answers::kind(body.get("lease_duration").unwrap_or(&Value::Null))
            )
        })?;
    Ok(Renewed {
        lease_id: lease_id.to_string(),
        duration_s,
        renewable: body
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

fn parse_lookup(body: &Value) -> Result<LeaseInfo, String> {
    let data = answers::data_object(body)?;
    let time = |k: &str| -> Result<Option<Timestamp>, String> {
        match data.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => s
                .parse::<Timestamp>()
                .map(Some)
                .map_err(|e| format!("\"data.{k}\" is not an RFC 3339 time: {e}")),
            Some(other) => Err(format!(
                "\"data.{k}\" is {}, expected a time",
                answers::kind(other)
            )),
        }
    };
    Ok(LeaseInfo {
        id: data
            .get("id")
            .and_then(Value::as_str)
            .ok_or("\"data.id\" is missing")?
            .to_string(),
        issue_time: time("issue_time")?,
        expire_time: time("expire_time")?,
        last_renewal: time("last_renewal")?,
        ttl_s: data.get("ttl").and_then(Value::as_u64).unwrap_or(0),
        renewable: data
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            not_json: None,
        }
    }

    #[test]
    fn ended_leases_are_told_from_other_refusals() {
        let cases = [
            (400, json!({"errors": ["lease not found"]}), true),
            (400, json!({"errors": ["lease expired"]}), true),
            (400, json!({"errors": ["lease is not renewable"]}), true),
            (400, json!({"errors": ["invalid lease"]}), true),
            (
                400,
                json!({"errors": ["lease_id must be specified"]}),
                false,
            ),
            (403, json!({"errors": ["permission denied"]}), false),
            (500, json!({"errors": ["lease not found"]}), false),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                ended(&reply(status, body.clone())).is_some(),
                want,
                "{body}"
            );
        }
    }

    #[test]
    fn renew_and_lookup_answers() {
        let r = parse_renewed(
            &json!({"lease_id": "db/creds/a/x", "lease_duration": 30, "renewable": true}),
        )
        .unwrap();
        assert_eq!(
            r,
            Renewed {
                lease_id: "db/creds/a/x".into(),
                duration_s: 30,
                renewable: true
            }
        );
        assert!(parse_renewed(&json!({"lease_id": "x", "lease_duration": "30"})).is_err());
        assert!(parse_renewed(&json!({"lease_duration": 30})).is_err());

        let info = parse_lookup(&json!({"data": {
            "id": "x", "issue_time": "2026-01-01T00:00:00Z", "expire_time": "2026-01-01T00:01:00.5Z",
            "last_renewal": null, "ttl": 59, "renewable": true
        }}))
        .unwrap();
        assert_eq!(info.ttl_s, 59);
        assert_eq!(info.last_renewal, None);
        assert_eq!(
            info.expire_time.unwrap().as_millisecond() - info.issue_time.unwrap().as_millisecond(),
            60_500
        );
        assert!(parse_lookup(&json!({"data": {"id": "x", "issue_time": 5}})).is_err());
    }
}
