//! A VaultDynamicSecret's call: one request on the path it names, whatever the engine. The
//! answer is handed back whole; what becomes Secret keys is decided in
//! [`crate::generators::vault_dynamic`].

use reqwest::Method;
use serde_json::Value;

use super::StoreClient;
use crate::generators::vault_dynamic::Call;
use crate::vault::VaultError;
use crate::vault::http::Req;

impl StoreClient {
    /// Makes the call; `None` when Vault answered without content (HTTP 204), or a read or
    /// list found nothing (404), as ESO's client reports them.
    pub async fn generate(&self, path: &str, call: &Call) -> Result<Option<Value>, VaultError> {
        let path = path.trim_matches('/');
        if path.is_empty() || path.split('/').any(|s| s == ".." || s == ".") {
            return Err(VaultError::invalid(format!(
                "path {path:?}: give a Vault path such as database/creds/app"
            )));
        }
        let query = match call {
            Call::Read { query } if !query.is_empty() => Some(
                query
                    .iter()
                    .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                    .collect::<Vec<_>>()
                    .join("&"),
            ),
            Call::List => Some("list=true".to_string()),
            _ => None,
        };
        let body = match call {
            Call::Write { body } => Some(Value::Object(body.clone())),
            _ => None,
        };
        let method = match call {
            Call::Read { .. } | Call::List => Method::GET,
            Call::Delete => Method::DELETE,
            Call::Write { .. } => Method::PUT,
        };
        let reply = self
            .call(Req {
                call: "generate",
                method: method.clone(),
                path,
                query: query.as_deref(),
                token: None,
                namespace: None,
                body: body.as_ref(),
            })
            .await?;
        match reply.status {
            204 => Ok(None),
            200..=299 if reply.body.is_null() => Ok(None),
            200..=299 => Ok(Some(reply.body)),
            _ if reply.is_vault_not_found() && matches!(call, Call::Read { .. } | Call::List) => {
                Ok(None)
            }
            _ => Err(self.status_error(call.capability(), &method, path, &reply)),
        }
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters kept).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
