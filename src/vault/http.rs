//! One Vault HTTP transport per store: TLS, headers, timeouts, retries and metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use zeroize::Zeroizing;

use super::VaultError;
use super::paths::encode_path;
use crate::api::RetrySettings;
use crate::metrics::Metrics;

/// Per-request timeout: a hung Vault must not hold a reconcile or an admission review.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A `Retry-After` longer than this is not waited for here: the caller requeues instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Retries of 429, 5xx and connection errors. Defaults (no `retrySettings`): 3 retries,
/// starting at 500 ms and doubling, at most 8 s apart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    pub initial: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    pub fn from_settings(s: Option<&RetrySettings>) -> Result<Self, VaultError> {
        let mut p = RetryPolicy::default();
        if let Some(s) = s {
            if let Some(n) = s.max_retries {
                p.max_retries = n.clamp(0, 10) as u32;
            }
            if let Some(i) = s.retry_interval.as_deref().filter(|i| !i.is_empty()) {
                p.initial = crate::api::duration::parse(i).map_err(|e| {
                    VaultError::config(format!("spec.retrySettings.retryInterval: {e}"))
                })?;
            }
        }
        Ok(p)
    }

    /// Exponential backoff before retry number `attempt` (0-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(16));
        self.initial.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Certificates for TLS, decoded from the store's references.
#[derive(Default)]
pub(crate) struct TlsMaterial {
    /// PEM bundle to trust instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate chain followed by its private key, for client authentication.
    pub identity_pem: Option<Zeroizing<Vec<u8>>>,
}

pub(crate) struct Transport {
    client: reqwest::Client,
    base: String,
    headers: HeaderMap,
    namespace: Option<String>,
    retry: RetryPolicy,
    metrics: Metrics,
}

/// A Vault answer that is not a transport failure.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
}

pub(crate) struct Req<'a> {
    /// Name for metrics (`read`, `login`, …).
    pub call: &'a str,
    pub method: Method,
    /// Vault path after `/v1/`, not yet URL-encoded.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub token: Option<&'a str>,
    /// Overrides the store's namespace (login and token calls).
    pub namespace: Option<Option<&'a str>>,
    pub body: Option<&'a Value>,
}

impl Transport {
    pub fn new(
        server: &str,
        namespace: Option<String>,
        extra_headers: Option<&BTreeMap<String, String>>,
        inconsistent_forward: bool,
        tls: TlsMaterial,
        retry: RetryPolicy,
        metrics: Metrics,
    ) -> Result<Self, VaultError> {
        let url = reqwest::Url::parse(server).map_err(|e| {
            VaultError::config(format!("spec.provider.vault.server {server:?}: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(VaultError::config(format!(
                "spec.provider.vault.server {server:?}: use an http:// or https:// URL"
            )));
        }
        let mut headers = HeaderMap::new();
        // Vault refuses requests without it when configured against browser-based SSRF.
        headers.insert("x-vault-request", HeaderValue::from_static("true"));
        if inconsistent_forward {
            headers.insert(
                "x-vault-inconsistent",
                HeaderValue::from_static("forward-active-node"),
            );
        }
        for (k, v) in extra_headers.into_iter().flatten() {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                VaultError::config(format!(
                    "spec.provider.vault.headers: {k:?} is not a valid header name"
                ))
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                VaultError::config(format!(
                    "spec.provider.vault.headers[{k:?}]: the value is not a valid header value"
                ))
            })?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // Never carry the token to another host; Vault standbys forward requests.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &tls.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| VaultError::config(format!("the CA bundle is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(VaultError::config(
                    "the CA bundle contains no PEM certificate",
                ));
            }
            builder = builder.tls_certs_only(certs);
        }
        if let Some(id) = &tls.identity_pem {
            let identity = reqwest::Identity::from_pem(id).map_err(|e| {
                VaultError::config(format!(
                    "the client certificate or key is not valid PEM: {e}"
                ))
            })?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| VaultError::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Transport {
            client,
            base: server.trim_end_matches('/').to_string(),
            headers,
            namespace: namespace.filter(|n| !n.is_empty()),
            retry,
            metrics,
        })
    }

    /// Sends one request, retrying 429 (after `Retry-After`), 5xx other than 501 and
    /// connection errors. Any other status is returned for the caller to interpret.
    pub async fn send(&self, req: &Req<'_>) -> Result<Reply, VaultError> {
        let mut url = format!("{}/v1/{}", self.base, encode_path(req.path));
        if let Some(q) = req.query {
            url.push('?');
            url.push_str(q);
        }
        let namespace = match req.namespace {
            Some(ns) => ns.filter(|n| !n.is_empty()),
            None => self.namespace.as_deref(),
        };
        let mut attempt = 0u32;
        loop {
            let mut rb = self
                .client
                .request(req.method.clone(), &url)
                .headers(self.headers.clone());
            if let Some(ns) = namespace {
                rb = rb.header("x-vault-namespace", ns);
            }
            if let Some(t) = req.token {
                let mut v = HeaderValue::from_str(t).map_err(|_| VaultError::Auth {
                    method: "token".into(),
                    message: "the Vault token contains characters not allowed in a header".into(),
                })?;
                v.set_sensitive(true);
                rb = rb.header("x-vault-token", v);
            }
            if let Some(b) = req.body {
                rb = rb.json(b);
            }
            let can_retry = attempt < self.retry.max_retries;
            let result = rb.send().await;
            let resp = match result {
                Ok(r) => r,
                Err(e) => {
                    self.metrics.vault_call(req.call, 0);
                    let chain = error_chain(&e);
                    // A certificate Vault's server does not pass will not pass on retry.
                    if chain.to_ascii_lowercase().contains("certificate") {
                        return Err(VaultError::config(format!(
                            "TLS with {} failed: {chain}: check caBundle / caProvider (and the \
                             client certificate)",
                            self.base
                        )));
                    }
                    let what = if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "could not connect"
                    } else {
                        "failed"
                    };
                    if can_retry {
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(VaultError::Unavailable {
                        message: format!(
                            "{} {} {what} after {} attempt(s): {chain}",
                            req.method,
                            req.path,
                            attempt + 1,
                        ),
                    });
                }
            };
            let status = resp.status();
            self.metrics.vault_call(req.call, status.as_u16());
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    if can_retry {
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(VaultError::Unavailable {
                        message: format!(
                            "{} {}: reading the response failed: {}",
                            req.method,
                            req.path,
                            error_chain(&e)
                        ),
                    });
                }
            };
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(_) if !status.is_success() => Value::Null,
                    Err(e) => {
                        return Err(VaultError::invalid(format!(
                            "{} {}: Vault answered HTTP {} with a body that is not JSON: {e}",
                            req.method,
                            req.path,
                            status.as_u16()
                        )));
                    }
                }
            };
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = retry_after
                    .unwrap_or_else(|| self.retry.backoff(attempt))
                    .max(self.retry.backoff(attempt));
                if can_retry && wait <= MAX_RETRY_AFTER {
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                return Err(VaultError::RateLimited { retry_after });
            }
            if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
                if can_retry {
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                let hint = if status == StatusCode::SERVICE_UNAVAILABLE {
                    " (Vault sealed, in standby without forwarding, or overloaded)"
                } else {
                    ""
                };
                return Err(VaultError::Unavailable {
                    message: format!(
                        "{} {}: HTTP {}{hint} after {} attempt(s){}",
                        req.method,
                        req.path,
                        status.as_u16(),
                        attempt + 1,
                        vault_errors_suffix(&body)
                    ),
                });
            }
            return Ok(Reply {
                status: status.as_u16(),
                body,
            });
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Vault's `errors` array as `: a; b`, or nothing. Vault's error texts do not echo request
/// bodies, so they are safe to show.
pub(crate) fn vault_errors_suffix(body: &Value) -> String {
    let errs: Vec<&str> = body
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if errs.is_empty() {
        String::new()
    } else {
        format!(": {}", errs.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_policy_from_settings() {
        assert_eq!(
            RetryPolicy::from_settings(None).unwrap(),
            RetryPolicy::default()
        );
        let p = RetryPolicy::from_settings(Some(&RetrySettings {
            max_retries: Some(5),
            retry_interval: Some("2s".into()),
        }))
        .unwrap();
        assert_eq!(p.max_retries, 5);
        assert_eq!(p.initial, Duration::from_secs(2));
        let neg = RetryPolicy::from_settings(Some(&RetrySettings {
            max_retries: Some(-1),
            retry_interval: None,
        }))
        .unwrap();
        assert_eq!(neg.max_retries, 0);
        assert!(
            RetryPolicy::from_settings(Some(&RetrySettings {
                max_retries: None,
                retry_interval: Some("soon".into()),
            }))
            .is_err()
        );
        let d = RetryPolicy::default();
        let waits: Vec<u64> = (0..6).map(|a| d.backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000]);
    }

    #[test]
    fn vault_error_texts() {
        assert_eq!(
            vault_errors_suffix(&json!({"errors": ["permission denied", "x"]})),
            ": permission denied; x"
        );
        assert_eq!(vault_errors_suffix(&json!({"errors": []})), "");
        assert_eq!(vault_errors_suffix(&Value::Null), "");
    }
}
