//! One Vault HTTP transport per store: TLS, headers, timeouts, retries and metrics.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use zeroize::Zeroizing;

use super::VaultError;
use super::answers;
use super::paths::encode_path;
use crate::api::RetrySettings;
use crate::metrics::Metrics;

/// Per-request timeout, from connecting until the last byte of the body: a hung or trickling
/// Vault must not hold a reconcile or an admission review.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A `Retry-After` longer than this is not waited for here: the caller requeues instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// A `Retry-After` is believed up to this long; the caller adds it to an `Instant`, which must
/// not overflow whatever a server sends.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);
/// The largest response body read. Vault's own `max_request_size` defaults to 32 MiB, so no
/// secret written to it is larger; a bigger answer is not a usable Vault answer, and reading it
/// whole would let one response exhaust the process's memory. No compression is negotiated,
/// so this bounds what is held, not just what is received.
pub(crate) const MAX_RESPONSE_BYTES: usize = 32 << 20;
/// Bodies larger than this are parsed on a blocking thread, so that one big answer does not
/// stall the async workers.
const PARSE_INLINE_MAX: usize = 1 << 20;

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
    /// `Null` when empty, or when an error status came with a body that is not JSON.
    pub body: Value,
    /// Why the body of an error status is not JSON (a 2xx body that is not JSON is an error).
    pub not_json: Option<String>,
}

impl Reply {
    /// Whether this is Vault saying "nothing here": a 404 with Vault's JSON error body. A 404
    /// web page comes from something else (a proxy, a wrong `server`) and proves nothing.
    pub fn is_vault_not_found(&self) -> bool {
        self.status == 404 && self.body.is_object()
    }

    /// What Vault said besides the status: its `errors`, or why the body is not JSON.
    pub fn detail(&self) -> String {
        match &self.not_json {
            Some(why) => format!(", and {why}"),
            None => answers::errors_suffix(&self.body),
        }
    }
}

/// How reading a body failed.
enum ReadError {
    TooLarge {
        declared: Option<u64>,
    },
    Failed {
        error: reqwest::Error,
        received: usize,
    },
}

/// Whether a body is over [`MAX_RESPONSE_BYTES`]: by its declared length before reading, or
/// by what was received so far.
fn too_large(declared: Option<u64>, received: usize) -> bool {
    declared.is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) || received > MAX_RESPONSE_BYTES
}

/// Reads a body chunk by chunk, refusing it as soon as it is known to exceed
/// [`MAX_RESPONSE_BYTES`] (before reading anything when `Content-Length` says so).
async fn read_body(resp: &mut reqwest::Response) -> Result<Vec<u8>, ReadError> {
    let declared = resp.content_length();
    if too_large(declared, 0) {
        return Err(ReadError::TooLarge { declared });
    }
    // A declared length may be a lie; the limit is checked on what arrives either way.
    let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if too_large(None, buf.len() + chunk.len()) {
                    return Err(ReadError::TooLarge { declared: None });
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf),
            Err(error) => {
                return Err(ReadError::Failed {
                    error,
                    received: buf.len(),
                });
            }
        }
    }
}

/// A `Retry-After` in seconds (an HTTP date is ignored), at most [`RETRY_AFTER_CAP`].
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(RETRY_AFTER_CAP))
}

/// The body as JSON (see [`answers::decode`]), parsed off the async workers when large.
async fn decode_body(bytes: Vec<u8>, content_type: Option<String>) -> Result<Value, String> {
    if bytes.len() <= PARSE_INLINE_MAX {
        return answers::decode(&bytes, content_type.as_deref());
    }
    tokio::task::spawn_blocking(move || answers::decode(&bytes, content_type.as_deref()))
        .await
        .unwrap_or_else(|e| Err(format!("parsing the body failed: {e}")))
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

/// The HTTP client for a store's TLS material. Stores that trust the system's roots and present
/// no client certificate share one, made the first time: building one parses every certificate
/// in the system's store, which costs as much as many syncs.
pub(crate) fn client_for(
    tls: &TlsMaterial,
    system_roots: &OnceLock<reqwest::Client>,
) -> Result<reqwest::Client, VaultError> {
    if tls.ca_pem.is_some() || tls.identity_pem.is_some() {
        return http_client(tls);
    }
    if let Some(c) = system_roots.get() {
        return Ok(c.clone());
    }
    // Built outside the cell, so that a failure is not kept: two stores' first syncs at the
    // same moment may each build one, and the first stored is the one kept.
    let c = http_client(tls)?;
    Ok(system_roots.get_or_init(|| c).clone())
}

/// A new HTTP client: trusting the CA bundle instead of the system's roots, and presenting the
/// client certificate, when the TLS material has them.
fn http_client(tls: &TlsMaterial) -> Result<reqwest::Client, VaultError> {
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
    builder
        .build()
        .map_err(|e| VaultError::config(format!("cannot build the HTTP client: {e}")))
}

impl Transport {
    pub fn new(
        server: &str,
        namespace: Option<String>,
        extra_headers: Option<&BTreeMap<String, String>>,
        inconsistent_forward: bool,
        client: reqwest::Client,
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
            let mut resp = resp;
            let status = resp.status();
            self.metrics.vault_call(req.call, status.as_u16());
            let header = |name: reqwest::header::HeaderName| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let retry_after = header(reqwest::header::RETRY_AFTER)
                .as_deref()
                .and_then(parse_retry_after);
            let content_type = header(reqwest::header::CONTENT_TYPE);
            let bytes = match read_body(&mut resp).await {
                Ok(b) => b,
                // The same answer would come again: not retried.
                Err(ReadError::TooLarge { declared }) => {
                    return Err(VaultError::bad_answer(format!(
                        "{} {}: Vault's response is larger than {} MiB{}",
                        req.method,
                        req.path,
                        MAX_RESPONSE_BYTES >> 20,
                        declared
                            .map(|n| format!(" (Content-Length {n})"))
                            .unwrap_or_default()
                    )));
                }
                Err(ReadError::Failed { error, received }) => {
                    if can_retry {
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    let what = if error.is_timeout() {
                        format!(
                            "timed out reading the response ({} s per attempt)",
                            REQUEST_TIMEOUT.as_secs()
                        )
                    } else {
                        format!("the response broke off after {received} bytes")
                    };
                    return Err(VaultError::Unavailable {
                        message: format!(
                            "{} {}: HTTP {}, but {what} after {} attempt(s): {}",
                            req.method,
                            req.path,
                            status.as_u16(),
                            attempt + 1,
                            error_chain(&error)
                        ),
                    });
                }
            };
            let (body, not_json) = match decode_body(bytes, content_type).await {
                Ok(v) => (v, None),
                // The status says what happened; keep why the body is not JSON for messages.
                Err(why) if !status.is_success() => (Value::Null, Some(why)),
                Err(why) => {
                    return Err(VaultError::bad_answer(format!(
                        "{} {}: HTTP {}, but {why}",
                        req.method,
                        req.path,
                        status.as_u16()
                    )));
                }
            };
            let reply = Reply {
                status: status.as_u16(),
                body,
                not_json,
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
                        reply.detail()
                    ),
                });
            }
            return Ok(reply);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_stores_on_the_system_roots_share_a_client() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = crate::certs::generate(&["vault".into()], Duration::from_secs(3600))
            .unwrap()
            .ca_cert_pem;
        let system = TlsMaterial {
            ca_pem: None,
            identity_pem: None,
        };
        let own_ca = TlsMaterial {
            ca_pem: Some(ca.into_bytes()),
            identity_pem: None,
        };
        let cell = OnceLock::new();
        client_for(&own_ca, &cell).unwrap();
        assert!(cell.get().is_none(), "a store's own CA is never shared");
        client_for(&system, &cell).unwrap();
        assert!(cell.get().is_some(), "the system roots' client is kept");
        client_for(&system, &cell).unwrap();
        let bad = TlsMaterial {
            ca_pem: Some(b"not PEM".to_vec()),
            identity_pem: None,
        };
        let e = client_for(&bad, &cell).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

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
    fn body_limits() {
        let max = MAX_RESPONSE_BYTES;
        let cases = [
            (None, 0, false),
            (None, max, false),
            (None, max + 1, true),
            (Some(max as u64), 0, false),
            (Some(max as u64 + 1), 0, true),
            (Some(1 << 30), 0, true),
            // A declared length that is a lie does not let more through.
            (Some(10), max + 1, true),
        ];
        for (declared, received, want) in cases {
            assert_eq!(
                too_large(declared, received),
                want,
                "{declared:?} {received}"
            );
        }
    }

    #[test]
    fn retry_after_values() {
        let cases = [
            ("3", Some(3)),
            (" 10 ", Some(10)),
            ("0", Some(0)),
            ("18446744073709551615", Some(3600)),
            ("-1", None),
            ("1.5", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_retry_after(v), want.map(Duration::from_secs), "{v:?}");
        }
    }

    #[test]
    fn reply_details() {
        let r = |status, body: Value, not_json: Option<&str>| Reply {
            status,
            body,
            not_json: not_json.map(str::to_string),
        };
        assert!(r(404, json!({"errors": []}), None).is_vault_not_found());
        assert!(!r(404, Value::Null, Some("the body is not valid JSON")).is_vault_not_found());
        assert!(!r(404, Value::Null, None).is_vault_not_found());
        assert!(!r(200, json!({}), None).is_vault_not_found());
        assert_eq!(r(400, json!({"errors": ["bad"]}), None).detail(), ": bad");
        assert_eq!(
            r(502, Value::Null, Some("the body is not valid JSON")).detail(),
            ", and the body is not valid JSON"
        );
    }
}
