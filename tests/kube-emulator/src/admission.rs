//! Calling admission webhooks the way kube-apiserver does: rule, namespace and
//! object selector matching, mutating webhooks in order with JSON patches, then
//! validating webhooks concurrently, with kube's error texts and failure policies.
//!
//! Not covered: `matchConditions` are CEL expressions and are not evaluated (a
//! webhook with match conditions is called as if they all held), and
//! `matchPolicy: Equivalent` behaves like `Exact` (no version conversion).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// The value of `AdmissionRequest.operation` and of rule `operations`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GroupVersionKind3 {
    pub group: String,
    pub version: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GroupVersionResource3 {
    pub group: String,
    pub version: String,
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The request being admitted. `object` is the new object (absent for DELETE),
/// `old_object` the stored one (UPDATE, DELETE), `options` the operation's
/// options object (`CreateOptions`, ...).
#[derive(Debug, Clone)]
pub struct AdmissionAttributes {
    pub operation: Operation,
    pub kind: GroupVersionKind3,
    pub resource: GroupVersionResource3,
    pub sub_resource: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    pub dry_run: bool,
    pub user: UserInfo,
    pub options: Option<Value>,
}

/// What the admission chain needs from the rest of the server.
pub trait AdmissionEnv: Send + Sync {
    /// Address behind `<name>.<namespace>.svc:<port>`, if the service exists.
    fn resolve_service(&self, namespace: &str, name: &str, port: u16) -> Option<SocketAddr>;
    /// Labels of a namespace, if it exists.
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>>;
    /// The client certificate to present to webhooks, if any.
    fn client_identity(&self) -> Option<&crate::ClientIdentity> {
        None
    }
    /// Takes the record of one webhook call, for a harness timing the webhooks.
    fn record_call(&self, _call: WebhookCall) {}
}

/// One call of an admission webhook as the API server saw it: from sending the AdmissionReview
/// to having its answer (or giving up on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCall {
    /// The webhook's `name` in its configuration.
    pub webhook: String,
    pub mutating: bool,
    pub operation: Operation,
    /// Plural resource of the object under admission.
    pub resource: String,
    pub sent: Instant,
    pub duration: Duration,
    /// An HTTP 2xx answer arrived in time (whether it then admitted the object or not).
    pub answered: bool,
}

/// The admitted request: the object after mutation and the webhooks' warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub object: Option<Value>,
    pub warnings: Vec<String>,
}

/// A refusal, as the `Status` kube-apiserver would answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl Rejection {
    fn internal(message: impl std::fmt::Display) -> Rejection {
        Rejection {
            code: 500,
            reason: "InternalError".into(),
            message: format!("Internal error occurred: {message}"),
        }
    }

    fn bad_request(message: impl Into<String>) -> Rejection {
        Rejection {
            code: 400,
            reason: "BadRequest".into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for Rejection {}

/// Runs the mutating webhooks, then the validating ones, over `attrs`.
pub async fn admit(
    mutating: &[MutatingWebhookConfiguration],
    validating: &[ValidatingWebhookConfiguration],
    mut attrs: AdmissionAttributes,
    env: &dyn AdmissionEnv,
) -> Result<Admitted, Rejection> {
    let mut warnings = Vec::new();

    let mut mutating: Vec<&MutatingWebhookConfiguration> = mutating.iter().collect();
    mutating.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let hooks: Vec<Hook<'_>> = mutating
        .iter()
        .flat_map(|c| c.webhooks.iter().flatten())
        .map(|w| Hook {
            name: &w.name,
            client: &w.client_config,
            rules: w.rules.as_deref().unwrap_or(&[]),
            namespace_selector: w.namespace_selector.as_ref(),
            object_selector: w.object_selector.as_ref(),
            ignore_failures: w.failure_policy.as_deref() == Some("Ignore"),
            side_effects: &w.side_effects,
            timeout: timeout_of(w.timeout_seconds),
            review_versions: &w.admission_review_versions,
            mutating: true,
            reinvoke: w.reinvocation_policy.as_deref() == Some("IfNeeded"),
        })
        .collect();
    run_mutating(&hooks, &mut attrs, env, &mut warnings).await?;

    let mut validating: Vec<&ValidatingWebhookConfiguration> = validating.iter().collect();
    validating.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let hooks: Vec<Hook<'_>> = validating
        .iter()
        .flat_map(|c| c.webhooks.iter().flatten())
        .map(|w| Hook {
            name: &w.name,
            client: &w.client_config,
            rules: w.rules.as_deref().unwrap_or(&[]),
            namespace_selector: w.namespace_selector.as_ref(),
            object_selector: w.object_selector.as_ref(),
            ignore_failures: w.failure_policy.as_deref() == Some("Ignore"),
            side_effects: &w.side_effects,
            timeout: timeout_of(w.timeout_seconds),
            review_versions: &w.admission_review_versions,
            mutating: false,
            reinvoke: false,
        })
        .collect();
    run_validating(&hooks, &attrs, env, &mut warnings).await?;

    Ok(Admitted {
        object: attrs.object,
        warnings,
    })
}

/// `timeoutSeconds`, defaulted to 10 and bounded to the API's 1..=30.
fn timeout_of(t: Option<i32>) -> Duration {
    Duration::from_secs(t.unwrap_or(10).clamp(1, 30) as u64)
}

/// The fields shared by mutating and validating webhooks.
struct Hook<'a> {
    name: &'a str,
    client: &'a WebhookClientConfig,
    rules: &'a [RuleWithOperations],
    namespace_selector: Option<&'a LabelSelector>,
    object_selector: Option<&'a LabelSelector>,
    ignore_failures: bool,
    side_effects: &'a str,
    timeout: Duration,
    review_versions: &'a [String],
    mutating: bool,
    reinvoke: bool,
}

/// Why a webhook did not admit the request.
enum HookError {
    /// The call itself failed (subject to `failurePolicy`); holds the reason
    /// printed after `failed calling webhook "<name>": `.
    Call(String),
    /// A final answer (denial, bad patch, dry-run refusal, missing namespace).
    Reject(Rejection),
}

async fn run_mutating(
    hooks: &[Hook<'_>],
    attrs: &mut AdmissionAttributes,
    env: &dyn AdmissionEnv,
    warnings: &mut Vec<String>,
) -> Result<(), Rejection> {
    // Index of the last webhook that changed the object, and which ran before it.
    let mut last_change: Option<usize> = None;
    let mut ran = vec![false; hooks.len()];
    for (i, hook) in hooks.iter().enumerate() {
        if !matches(hook, attrs, env)? {
            continue;
        }
        ran[i] = true;
        if call_and_apply(hook, attrs, env, warnings).await? {
            last_change = Some(i);
        }
    }
    // `reinvocationPolicy: IfNeeded`: once more, for webhooks that ran before a
    // later webhook changed the object.
    if let Some(changed_at) = last_change {
        for (i, hook) in hooks.iter().enumerate().take(changed_at) {
            if hook.reinvoke && ran[i] && matches(hook, attrs, env)? {
                call_and_apply(hook, attrs, env, warnings).await?;
            }
        }
    }
    Ok(())
}

/// Calls one mutating webhook and applies its patch; true if the object changed.
async fn call_and_apply(
    hook: &Hook<'_>,
    attrs: &mut AdmissionAttributes,
    env: &dyn AdmissionEnv,
    warnings: &mut Vec<String>,
) -> Result<bool, Rejection> {
    match call_hook(hook, attrs, env).await {
        Ok(resp) => {
            warnings.extend(resp.warnings.iter().cloned());
            if let Some(denied) = resp.denial(hook.name) {
                return Err(denied);
            }
            let Some(patch) = resp.patch else {
                return Ok(false);
            };
            let patch: json_patch::Patch =
                serde_json::from_slice(&patch).map_err(Rejection::internal)?;
            if patch.0.is_empty() {
                return Ok(false);
            }
            let Some(obj) = attrs.object.as_mut() else {
                return Err(Rejection::internal(format!(
                    "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
                    hook.name
                )));
            };
            let mut patched = obj.clone();
            json_patch::patch(&mut patched, &patch).map_err(Rejection::internal)?;
            let changed = patched != *obj;
            *obj = patched;
            Ok(changed)
        }
        Err(e) => failure(hook, e).map(|()| false),
    }
}

/// Applies `failurePolicy` to a failed call: `Ignore` skips the webhook.
fn failure(hook: &Hook<'_>, e: HookError) -> Result<(), Rejection> {
    match e {
        HookError::Call(_) if hook.ignore_failures => Ok(()),
        HookError::Call(reason) => Err(Rejection::internal(format!(
            "failed calling webhook {:?}: {reason}",
            hook.name
        ))),
        HookError::Reject(r) => Err(r),
    }
}

async fn run_validating(
    hooks: &[Hook<'_>],
    attrs: &AdmissionAttributes,
    env: &dyn AdmissionEnv,
    warnings: &mut Vec<String>,
) -> Result<(), Rejection> {
    let mut relevant = Vec::new();
    for hook in hooks {
        if matches(hook, attrs, env)? {
            relevant.push(hook);
        }
    }
    let results =
        futures::future::join_all(relevant.iter().map(|h| call_hook(h, attrs, env))).await;
    let mut first_err = None;
    for (hook, result) in relevant.iter().zip(results) {
        let outcome = match result {
            Ok(resp) => {
                warnings.extend(resp.warnings.iter().cloned());
                match resp.denial(hook.name) {
                    Some(d) => Err(d),
                    None => Ok(()),
                }
            }
            Err(e) => failure(hook, e),
        };
        if let Err(e) = outcome {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Matching

/// Whether the webhook applies to the request: rules, then the namespace and
/// object selectors. A missing namespace is a 404, as in kube-apiserver.
fn matches(
    hook: &Hook<'_>,
    attrs: &AdmissionAttributes,
    env: &dyn AdmissionEnv,
) -> Result<bool, Rejection> {
    if !hook.rules.iter().any(|r| rule_matches(r, attrs)) {
        return Ok(false);
    }
    if !namespace_selector_matches(hook.namespace_selector, attrs, env)? {
        return Ok(false);
    }
    Ok(object_selector_matches(hook.object_selector, attrs))
}

fn is_namespace_resource(attrs: &AdmissionAttributes) -> bool {
    attrs.resource.group.is_empty() && attrs.resource.resource == "namespaces"
}

fn exact_or_wildcard(items: Option<&Vec<String>>, requested: &str) -> bool {
    items
        .into_iter()
        .flatten()
        .any(|i| i == "*" || i == requested)
}

/// `RuleWithOperations` matching of the webhook rule matcher.
pub fn rule_matches(rule: &RuleWithOperations, attrs: &AdmissionAttributes) -> bool {
    let namespaced = attrs.namespace.as_deref().is_some_and(|n| !n.is_empty());
    let scope = match rule.scope.as_deref() {
        None | Some("*") => true,
        // Namespace objects are cluster-scoped even though they carry a namespace.
        Some("Namespaced") => !is_namespace_resource(attrs) && namespaced,
        Some("Cluster") => is_namespace_resource(attrs) || !namespaced,
        Some(_) => false,
    };
    let operation = rule
        .operations
        .iter()
        .flatten()
        .any(|op| op == "*" || op == attrs.operation.as_str());
    let sub = attrs.sub_resource.as_deref().unwrap_or("");
    let resource = rule.resources.iter().flatten().any(|r| {
        let (res, rsub) = r.split_once('/').unwrap_or((r.as_str(), ""));
        (res == "*" || res == attrs.resource.resource) && (rsub == "*" || rsub == sub)
    });
    scope
        && operation
        && exact_or_wildcard(rule.api_groups.as_ref(), &attrs.resource.group)
        && exact_or_wildcard(rule.api_versions.as_ref(), &attrs.resource.version)
        && resource
}

fn labels_of(obj: Option<&Value>) -> Option<BTreeMap<String, String>> {
    let obj = obj?;
    Some(
        obj.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

fn selector_is_empty(sel: Option<&LabelSelector>) -> bool {
    sel.is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    })
}

/// `metav1.LabelSelector` semantics: every matchLabels entry and every
/// expression must hold.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_exprs = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    by_labels && by_exprs
}

fn namespace_selector_matches(
    sel: Option<&LabelSelector>,
    attrs: &AdmissionAttributes,
    env: &dyn AdmissionEnv,
) -> Result<bool, Rejection> {
    let ns = attrs.namespace.as_deref().unwrap_or("");
    // Cluster-scoped objects other than namespaces are never exempted.
    if ns.is_empty() && !is_namespace_resource(attrs) {
        return Ok(true);
    }
    let Some(sel) = sel.filter(|s| !selector_is_empty(Some(s))) else {
        return Ok(true);
    };
    let labels = if is_namespace_resource(attrs) {
        // A namespace is matched by its own labels.
        let obj = if attrs.operation == Operation::Delete {
            attrs.old_object.as_ref()
        } else {
            attrs.object.as_ref()
        };
        labels_of(obj).unwrap_or_default()
    } else {
        env.namespace_labels(ns).ok_or_else(|| Rejection {
            code: 404,
            reason: "NotFound".into(),
            message: format!("namespaces {ns:?} not found"),
        })?
    };
    Ok(selector_matches(sel, &labels))
}

fn object_selector_matches(sel: Option<&LabelSelector>, attrs: &AdmissionAttributes) -> bool {
    let Some(sel) = sel.filter(|s| !selector_is_empty(Some(s))) else {
        return true;
    };
    [attrs.object.as_ref(), attrs.old_object.as_ref()]
        .into_iter()
        .filter_map(labels_of)
        .any(|l| selector_matches(sel, &l))
}

// ---------------------------------------------------------------------------
// Calling

/// The verified `response` of an AdmissionReview.
struct HookResponse {
    allowed: bool,
    status: Option<Value>,
    patch: Option<Vec<u8>>,
    patch_type: String,
    warnings: Vec<String>,
}

impl HookResponse {
    /// kube's `ToStatusErr`: the rejection for `allowed: false`.
    fn denial(&self, webhook: &str) -> Option<Rejection> {
        if self.allowed {
            return None;
        }
        let status = self.status.as_ref();
        let field = |k: &str| {
            status
                .and_then(|s| s.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let code = status
            .and_then(|s| s.get("code"))
            .and_then(Value::as_u64)
            // kube never lets a rejection carry a non-error code.
            .filter(|c| *c >= 400 && *c <= u16::MAX as u64)
            .unwrap_or(403) as u16;
        let (message, reason) = (field("message"), field("reason"));
        let denied_by = format!("admission webhook {webhook:?} denied the request");
        let message = if !message.is_empty() {
            format!("{denied_by}: {message}")
        } else if !reason.is_empty() {
            format!("{denied_by}: {reason}")
        } else {
            format!("{denied_by} without explanation")
        };
        Some(Rejection {
            code,
            reason,
            message,
        })
    }
}

async fn call_hook(
    hook: &Hook<'_>,
    attrs: &AdmissionAttributes,
    env: &dyn AdmissionEnv,
) -> Result<HookResponse, HookError> {
    if attrs.dry_run {
        match hook.side_effects {
            "None" | "NoneOnDryRun" => {}
            "" => {
                return Err(if hook.ignore_failures {
                    HookError::Call("Webhook SideEffects is nil".into())
                } else {
                    HookError::Reject(Rejection::bad_request("Webhook SideEffects is nil"))
                });
            }
            _ => {
                return Err(HookError::Reject(Rejection::bad_request(format!(
                    "admission webhook {:?} does not support dry run",
                    hook.name
                ))));
            }
        }
    }
    if !hook.review_versions.iter().any(|v| v == "v1") {
        return Err(HookError::Call(
            "could not create admission objects: webhook does not accept known AdmissionReview versions"
                .into(),
        ));
    }

    let uid = new_uid();
    let review = review_request(&uid, attrs);
    let target = target_of(hook, env).map_err(HookError::Call)?;
    let timeout = hook.timeout.as_secs();
    let shown_url = format!("{}?timeout={timeout}s", target.shown_url);
    let url = format!("{}?timeout={timeout}s", target.url);
    let fail =
        |e: String| HookError::Call(format!("failed to call webhook: Post {shown_url:?}: {e}"));

    let client = client_for(hook.client, &target, env.client_identity())
        .map_err(|e| HookError::Call(format!("could not get REST client: {e}")))?;
    if target.pinned && target.addr.is_none() {
        return Err(fail(format!(
            "service {:?} not found",
            hook.client.service.as_ref().map_or("", |s| s.name.as_str())
        )));
    }

    let call = async {
        let resp = client
            .post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, */*")
            .body(serde_json::to_vec(&review).unwrap_or_default())
            .send()
            .await
            .map_err(|e| fail(describe_reqwest_error(&e)))?;
        let code = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| fail(describe_reqwest_error(&e)))?;
        Ok::<_, HookError>((code, body))
    };
    let sent = Instant::now();
    let result = tokio::time::timeout(hook.timeout, call).await;
    env.record_call(WebhookCall {
        webhook: hook.name.to_string(),
        mutating: hook.mutating,
        operation: attrs.operation,
        resource: attrs.resource.resource.clone(),
        sent,
        duration: sent.elapsed(),
        answered: matches!(&result, Ok(Ok((code, _))) if code.is_success()),
    });
    let (code, body) = result.map_err(|_| fail("context deadline exceeded".into()))??;

    if !code.is_success() {
        return Err(HookError::Call(format!(
            "failed to call webhook: {}",
            unexpected_status(code.as_u16(), &body)
        )));
    }
    let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
        HookError::Call(format!(
            "failed to call webhook: couldn't get version/kind; json parse error: {e}"
        ))
    })?;
    let resp = verify_response(&uid, hook.mutating, &parsed)
        .map_err(|e| HookError::Call(format!("received invalid webhook response: {e}")))?;
    if resp.patch.is_some() && resp.patch_type != "JSONPatch" {
        return Err(HookError::Call(format!(
            "unsupported patch type {:?}",
            resp.patch_type
        )));
    }
    Ok(resp)
}

/// `VerifyAdmissionResponse` of kube-apiserver.
fn verify_response(uid: &str, mutating: bool, review: &Value) -> Result<HookResponse, String> {
    let Some(r) = review.get("response").filter(|r| !r.is_null()) else {
        return Err("webhook response was absent".into());
    };
    let got_uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
    if got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}{version}, Kind={kind}",
            if group.is_empty() {
                String::new()
            } else {
                format!("{group}/")
            }
        ));
    }
    let patch_b64 = r.get("patch").and_then(Value::as_str).unwrap_or("");
    let patch_type = r.get("patchType").and_then(Value::as_str).unwrap_or("");
    if mutating && !patch_b64.is_empty() && patch_type.is_empty() {
        return Err("webhook returned response.patch but not response.patchType".into());
    }
    if mutating && patch_b64.is_empty() && !patch_type.is_empty() {
        return Err("webhook returned response.patchType but not response.patch".into());
    }
    if !mutating && !patch_b64.is_empty() {
        return Err("validating webhook may not return response.patch".into());
    }
    if !mutating && !patch_type.is_empty() {
        return Err("validating webhook may not return response.patchType".into());
    }
    let patch = if patch_b64.is_empty() {
        None
    } else {
        Some(
            base64::engine::general_purpose::STANDARD
                .decode(patch_b64)
                .map_err(|e| format!("illegal base64 data in response.patch: {e}"))?,
        )
    };
    Ok(HookResponse {
        allowed: r.get("allowed").and_then(Value::as_bool).unwrap_or(false),
        status: r.get("status").cloned(),
        patch,
        patch_type: patch_type.to_string(),
        warnings: r
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// What the rest client reports for a non-2xx answer without a Status body.
fn unexpected_status(code: u16, body: &[u8]) -> String {
    if let Ok(status) = serde_json::from_slice::<Value>(body)
        && status.get("kind").and_then(Value::as_str) == Some("Status")
        && let Some(m) = status.get("message").and_then(Value::as_str)
    {
        return m.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match code {
        400 => "the server rejected our request for an unknown reason".into(),
        401 => "Unauthorized".into(),
        403 => "Forbidden".into(),
        404 => "the server could not find the requested resource".into(),
        500..=599 if !text.is_empty() => {
            format!("an error on the server ({text:?}) has prevented the request from succeeding")
        }
        _ => format!(
            "the server responded with the status code {code} but did not return more information"
        ),
    }
}

/// Go-like descriptions of transport failures.
fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return describe_tls_error(tls);
        }
        // io::Error hides its payload from `source()`: unwrap nested ones by hand.
        let mut io = s.downcast_ref::<std::io::Error>();
        while let Some(err) = io {
            if err.kind() == std::io::ErrorKind::ConnectionRefused {
                return "connect: connection refused".into();
            }
            let inner = err.get_ref();
            if let Some(tls) = inner.and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return describe_tls_error(tls);
            }
            io = inner.and_then(|i| i.downcast_ref::<std::io::Error>());
        }
        source = s.source();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn describe_tls_error(e: &rustls::Error) -> String {
    use rustls::CertificateError;
    match e {
        // An issuer with the right name but the wrong key fails the signature
        // check; Go reports both as an unknown authority.
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => {
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                .into()
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => {
            // Presented names come as `DnsName("a.b")` / `IpAddress(1.2.3.4)`.
            let names: Vec<&str> = presented
                .iter()
                .map(|p| {
                    p.split_once('(')
                        .map_or(p.as_str(), |(_, rest)| rest.trim_end_matches(')'))
                        .trim_matches('"')
                })
                .collect();
            format!(
                "tls: failed to verify certificate: x509: certificate is valid for {}, not {}",
                names.join(", "),
                expected.to_str()
            )
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            "tls: failed to verify certificate: x509: certificate is not valid for the requested name"
                .into()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
            .into(),
        other => format!("tls: {other}"),
    }
}

/// The AdmissionReview v1 request body.
fn review_request(uid: &str, attrs: &AdmissionAttributes) -> Value {
    let kind = json!({
        "group": attrs.kind.group,
        "version": attrs.kind.version,
        "kind": attrs.kind.kind,
    });
    let resource = json!({
        "group": attrs.resource.group,
        "version": attrs.resource.version,
        "resource": attrs.resource.resource,
    });
    let mut user = serde_json::Map::new();
    if !attrs.user.username.is_empty() {
        user.insert("username".into(), json!(attrs.user.username));
    }
    if !attrs.user.uid.is_empty() {
        user.insert("uid".into(), json!(attrs.user.uid));
    }
    if !attrs.user.groups.is_empty() {
        user.insert("groups".into(), json!(attrs.user.groups));
    }
    let mut req = serde_json::Map::new();
    req.insert("uid".into(), json!(uid));
    req.insert("kind".into(), kind.clone());
    req.insert("resource".into(), resource.clone());
    if let Some(sub) = attrs.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        req.insert("subResource".into(), json!(sub));
    }
    req.insert("requestKind".into(), kind);
    req.insert("requestResource".into(), resource);
    if let Some(sub) = attrs.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        req.insert("requestSubResource".into(), json!(sub));
    }
    if !attrs.name.is_empty() {
        req.insert("name".into(), json!(attrs.name));
    }
    if let Some(ns) = attrs.namespace.as_deref().filter(|n| !n.is_empty()) {
        req.insert("namespace".into(), json!(ns));
    }
    req.insert("operation".into(), json!(attrs.operation.as_str()));
    req.insert("userInfo".into(), Value::Object(user));
    req.insert("object".into(), attrs.object.clone().unwrap_or(Value::Null));
    req.insert(
        "oldObject".into(),
        attrs.old_object.clone().unwrap_or(Value::Null),
    );
    req.insert("dryRun".into(), json!(attrs.dry_run));
    req.insert(
        "options".into(),
        attrs.options.clone().unwrap_or(Value::Null),
    );
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": Value::Object(req),
    })
}

/// A random RFC 4122 version 4 UUID for `request.uid`.
fn new_uid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let word = |salt: u64| {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.finish()
    };
    let hi = word(1);
    let lo = word(2);
    let b: u128 = ((hi as u128) << 64) | lo as u128;
    let b = (b & !(0xf << 76)) | (0x4 << 76); // version 4
    let b = (b & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    let s = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

/// Where a webhook is reached.
struct Target {
    /// URL actually requested (with the resolved port for services).
    url: String,
    /// URL as kube-apiserver would print it in errors.
    shown_url: String,
    /// Server identity: the TLS server name for services, `host:port` for URLs.
    host: String,
    /// Address a service resolved to; `None` for URLs or unknown services.
    addr: Option<SocketAddr>,
    /// Whether the target is a service, reached at `addr` instead of by DNS.
    pinned: bool,
}

fn target_of(hook: &Hook<'_>, env: &dyn AdmissionEnv) -> Result<Target, String> {
    if let Some(svc) = &hook.client.service {
        let port = svc.port.unwrap_or(443).clamp(0, u16::MAX as i32) as u16;
        let host = format!("{}.{}.svc", svc.name, svc.namespace);
        let path = svc.path.as_deref().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let addr = env.resolve_service(&svc.namespace, &svc.name, port);
        let real_port = addr.map_or(port, |a| a.port());
        return Ok(Target {
            url: format!("https://{host}:{real_port}{path}"),
            shown_url: format!("https://{host}:{port}{path}"),
            host,
            addr,
            pinned: true,
        });
    }
    let Some(url) = hook.client.url.as_deref() else {
        return Err("could not get REST client: neither service nor url is set".into());
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("could not get REST client: {e}"))?;
    // Keyed by host and port: a client per server keeps its connection pool.
    let host = format!(
        "{}:{}",
        parsed.host_str().unwrap_or(""),
        parsed.port_or_known_default().unwrap_or(443)
    );
    Ok(Target {
        url: url.to_string(),
        shown_url: url.to_string(),
        host,
        addr: None,
        pinned: false,
    })
}

type ClientKey = (
    Vec<u8>,
    String,
    Option<SocketAddr>,
    Option<crate::ClientIdentity>,
);

/// One client per CA bundle, server (and pinned address) and client identity, so that bursts
/// of admissions reuse pooled connections instead of paying a handshake each.
fn client_for(
    cfg: &WebhookClientConfig,
    target: &Target,
    identity: Option<&crate::ClientIdentity>,
) -> Result<reqwest::Client, String> {
    static CLIENTS: LazyLock<Mutex<HashMap<ClientKey, reqwest::Client>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let ca = cfg
        .ca_bundle
        .as_ref()
        .map(|b| b.0.clone())
        .unwrap_or_default();
    let key: ClientKey = (
        ca,
        target.host.clone(),
        if target.pinned { target.addr } else { None },
        identity.cloned(),
    );
    if let Some(c) = CLIENTS.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let client = build_client(&key.0, target, identity)?;
    CLIENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, client.clone());
    Ok(client)
}

fn build_client(
    ca_pem: &[u8],
    target: &Target,
    identity: Option<&crate::ClientIdentity>,
) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("unable to load root certificates: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unable to load root certificates: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut tls = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let certs = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("unable to load client certificate: {e}"))?;
            let key = match PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()) {
                Ok(key) => key,
                Err(pem::Error::NoItemsFound) => {
                    return Err("unable to load client key: none in the PEM".into());
                }
                Err(e) => return Err(format!("unable to load client key: {e}")),
            };
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("unable to load client certificate: {e}"))?
        }
    };
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64);
    if let (true, Some(addr)) = (target.pinned, target.addr) {
        builder = builder.resolve(&target.host, addr);
    }
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_v4_and_distinct() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
