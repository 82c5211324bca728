//! The verbs on resources: get, list, watch, create, update, patch, apply,
//! delete, deletecollection, plus TokenRequest and TokenReview.

use crate::admission::{
    self, AdmissionAttributes, AdmissionEnv, GroupVersionKind3, GroupVersionResource3, Operation,
    UserInfo,
};
use crate::auth::{User, new_uid, sa_user};
use crate::objects::{comparable, name_error, now_ts, prepare, spec_part, tracks_generation};
use crate::output::{Format, negotiate, render_list, render_one};
use crate::registry::{Registry, ResourceDef, def_from_crd};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{Shared, Target, bytes_response, error_response, json_response};
use crate::ssa::{self, Scope, Shape};
use crate::status::{ApiError, ApiResult};
use crate::store::{CommitError, Snapshot, key as store_key, rv_of};
use crate::{patch, schema, watch};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use axum::response::Response;
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const MUTATING_ID: &str = "admissionregistration.k8s.io/mutatingwebhookconfigurations";
const VALIDATING_ID: &str = "admissionregistration.k8s.io/validatingwebhookconfigurations";
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Request context of one write or read.
struct Cx {
    shared: Arc<Shared>,
    def: Arc<ResourceDef>,
    version: String,
    ns: Option<String>,
    name: String,
    sub: String,
    user: User,
    query: HashMap<String, String>,
    dry_run: bool,
    manager: String,
    warnings: Vec<String>,
    format: Format,
}

enum Outcome {
    Done(u16, Value),
    /// The object changed underneath an unconditional write; recompute.
    Retry,
}

impl Cx {
    fn key(&self) -> String {
        store_key(self.ns.as_deref(), &self.name)
    }

    fn api_version(&self) -> String {
        self.def.api_version(&self.version)
    }

    fn shape(&self) -> Shape<'_> {
        Shape {
            schema: if self.def.custom {
                self.def.schemas.get(&self.version)
            } else {
                None
            },
        }
    }

    fn respond(&self, code: u16, obj: &Value) -> Response {
        let mut r = match self.format {
            Format::Json => json_response(
                code,
                &crate::output::at_version(&self.def, &self.version, obj),
            ),
            fmt => json_response(code, &render_one(&self.def, &self.version, obj, fmt)),
        };
        for w in &self.warnings {
            let text = format!("299 - {:?}", w);
            if let Ok(v) = http::HeaderValue::from_str(&text) {
                r.headers_mut().append("warning", v);
            }
        }
        r
    }
}

fn parse_query(q: &str) -> HashMap<String, String> {
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn parse_body(body: &[u8], content_type: &str) -> ApiResult<Value> {
    let ct = content_type.split(';').next().unwrap_or_default().trim();
    if ct == "application/vnd.kubernetes.protobuf" {
        return crate::protobuf::to_json(body).map_err(|e| {
            ApiError::unsupported_media(
                &format!("{ct}: {e}"),
                &["application/json", "application/yaml"],
            )
        });
    }
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(ApiError::unsupported_media(
            ct,
            &["application/json", "application/yaml"],
        ));
    }
    let v: Value = if ct.contains("yaml") {
        serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: json: cannot unmarshal into Go value of type struct",
        ));
    }
    Ok(v)
}

/// DeleteOptions from a delete body; protobuf-encoded options are not decoded.
fn delete_options(body: &[u8], content_type: &str) -> ApiResult<Value> {
    if content_type.contains("protobuf") {
        return Ok(json!({}));
    }
    parse_body(body, content_type)
}

fn default_manager(headers: &HeaderMap) -> String {
    let ua = header(headers, "user-agent");
    let m = ua.split('/').next().unwrap_or_default().trim();
    if m.is_empty() {
        "unknown".into()
    } else {
        m.chars().take(128).collect()
    }
}

pub async fn handle(
    shared: Arc<Shared>,
    reg: Arc<Registry>,
    t: Target,
    verb: String,
    user: User,
    req: Request<Body>,
) -> Response {
    match handle_inner(shared, reg, t, verb, user, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn handle_inner(
    shared: Arc<Shared>,
    reg: Arc<Registry>,
    t: Target,
    verb: String,
    user: User,
    req: Request<Body>,
) -> ApiResult<Response> {
    let def = reg
        .lookup(&t.group, &t.version, &t.resource)
        .ok_or_else(ApiError::path_not_found)?;
    let (parts, body) = req.into_parts();
    let query = parse_query(parts.uri.query().unwrap_or_default());
    let headers = parts.headers;
    let method = parts.method;
    if def.namespaced && t.namespace.is_none() && !matches!(verb.as_str(), "list" | "watch") {
        return Err(ApiError::path_not_found());
    }
    if !t.subresource.is_empty() {
        let ok = (t.subresource == "status" && def.status_subresource)
            || (t.subresource == "token"
                && def.plural == "serviceaccounts"
                && def.group.is_empty());
        if !ok {
            return Err(ApiError::path_not_found());
        }
    }
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    let dry_run = match query.get("dryRun").map(|s| s.as_str()) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "CreateOptions",
                "",
                format!(
                    "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: \"{other}\": supported values: \"All\""
                ),
                vec![
                    json!({"reason": "FieldValueNotSupported", "message": format!("Unsupported value: \"{other}\": supported values: \"All\""), "field": "dryRun"}),
                ],
            ));
        }
    };
    let mut cx = Cx {
        shared: shared.clone(),
        def: def.clone(),
        version: t.version.clone(),
        ns: if def.namespaced {
            t.namespace.clone()
        } else {
            None
        },
        name: t.name.clone(),
        sub: t.subresource.clone(),
        user,
        manager: query
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| default_manager(&headers)),
        query,
        dry_run,
        warnings: vec![],
        format: negotiate(header(&headers, "accept"), None),
    };
    cx.format = negotiate(
        header(&headers, "accept"),
        cx.query.get("includeObject").map(|s| s.as_str()),
    );
    if def.virtual_create_only {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(method.as_str()));
        }
        return match def.plural.as_str() {
            "tokenreviews" => token_review(&cx, &body, header(&headers, "content-type")),
            "selfsubjectreviews" => Ok(json_response(
                201,
                &json!({
                    "kind": "SelfSubjectReview",
                    "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"creationTimestamp": now_ts()},
                    "status": {"userInfo": {
                        "username": cx.user.username,
                        "uid": cx.user.uid,
                        "groups": cx.user.groups,
                    }},
                }),
            )),
            _ => {
                // Every authenticated user may do anything: RBAC is not modelled.
                let req = parse_body(&body, header(&headers, "content-type"))?;
                Ok(json_response(
                    201,
                    &json!({
                        "kind": "SelfSubjectAccessReview",
                        "apiVersion": "authorization.k8s.io/v1",
                        "metadata": {"creationTimestamp": null},
                        "spec": req["spec"],
                        "status": {"allowed": true, "reason": "authorization is not enforced by this server"},
                    }),
                ))
            }
        };
    }
    if cx.sub == "token" {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(method.as_str()));
        }
        return token_request(&cx, &body, header(&headers, "content-type"));
    }
    let ct = header(&headers, "content-type").to_string();
    match verb.as_str() {
        "get" => {
            let obj = shared
                .store
                .get(&def.id(), &cx.key())
                .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &cx.name))?;
            Ok(cx.respond(200, &obj))
        }
        "list" => list(&cx),
        "watch" => watch_req(&cx),
        "create" => {
            if !cx.name.is_empty() {
                return Err(ApiError::method_not_allowed("POST"));
            }
            let obj = parse_body(&body, &ct)?;
            let (code, out) = create(&mut cx, obj, false).await?;
            Ok(cx.respond(code, &out))
        }
        "update" => {
            let obj = parse_body(&body, &ct)?;
            let (code, out) = update(&mut cx, obj).await?;
            Ok(cx.respond(code, &out))
        }
        "patch" => {
            let (code, out) = patch_req(&mut cx, &body, &ct).await?;
            Ok(cx.respond(code, &out))
        }
        "delete" => {
            let opts = if body.is_empty() {
                json!({})
            } else {
                delete_options(&body, header(&headers, "content-type"))?
            };
            let (code, out) = delete(&mut cx, &opts).await?;
            if code == 200 && out["kind"] == json!("Status") {
                return Ok(json_response(200, &out));
            }
            Ok(cx.respond(code, &out))
        }
        "deletecollection" => {
            let opts = if body.is_empty() {
                json!({})
            } else {
                delete_options(&body, header(&headers, "content-type"))?
            };
            delete_collection(&mut cx, &opts).await
        }
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

// ---------------------------------------------------------------- reads

/// Selectors apply to the object as served at the requested version.
fn selected(
    def: &ResourceDef,
    version: &str,
    o: &Value,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> bool {
    let v = crate::output::at_version(def, version, o);
    labels.matches(&v) && fields.matches(&v)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    start: String,
    snap: u64,
    off: usize,
}

fn list(cx: &Cx) -> ApiResult<Response> {
    let def = &cx.def;
    let labels = LabelSelector::parse(
        cx.query
            .get("labelSelector")
            .map(|s| s.as_str())
            .unwrap_or_default(),
    )?;
    let fields = FieldSelector::parse(
        cx.query
            .get("fieldSelector")
            .map(|s| s.as_str())
            .unwrap_or_default(),
        &def.group,
        &def.plural,
    )?;
    let limit: usize = cx
        .query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let cont = cx.query.get("continue").filter(|c| !c.is_empty());
    let rv_param = cx.query.get("resourceVersion").filter(|s| !s.is_empty());
    let rv_match = cx
        .query
        .get("resourceVersionMatch")
        .map(|s| s.as_str())
        .unwrap_or_default();
    if cont.is_some() && rv_param.is_some_and(|r| r != "0") {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    let (rv, items, start_off) = if let Some(c) = cont {
        let tok: ContinueToken = base64::engine::general_purpose::STANDARD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
        match cx.shared.store.snapshot(tok.snap) {
            Some(s) => (s.rv, s.items.clone(), tok.off),
            None => {
                if tok.rv < cx.shared.store.compacted_rv() {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ));
                }
                let (rv, all) = cx.shared.store.list(&def.id(), cx.ns.as_deref());
                let items: Vec<Arc<Value>> = all
                    .into_iter()
                    .filter(|o| {
                        store_key(
                            o["metadata"]["namespace"].as_str(),
                            o["metadata"]["name"].as_str().unwrap_or_default(),
                        ) > tok.start
                    })
                    .filter(|o| selected(&cx.def, &cx.version, o, &labels, &fields))
                    .collect();
                (rv, items, 0)
            }
        }
    } else {
        let (cur, all) = cx.shared.store.list(&def.id(), cx.ns.as_deref());
        if let Some(r) = rv_param {
            let want: u64 = r
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r}")))?;
            if want > cur {
                return Err(ApiError::new(504, "Timeout", format!("Too large resource version: {want}, current: {cur}"))
                    .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1})));
            }
            if rv_match == "Exact" && want != cur {
                if want < cx.shared.store.compacted_rv() {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {want} ({})",
                        cx.shared.store.compacted_rv() + 1
                    )));
                }
                return Err(ApiError::gone(format!(
                    "resource version {want} is not the latest; exact reads of earlier versions are not retained"
                )));
            }
        }
        let items: Vec<Arc<Value>> = all
            .into_iter()
            .filter(|o| selected(&cx.def, &cx.version, o, &labels, &fields))
            .collect();
        (cur, items, 0)
    };
    let (page, cont_out, remaining) = if limit > 0 && items.len() > start_off + limit {
        let end = start_off + limit;
        let page: Vec<Arc<Value>> = items[start_off..end].to_vec();
        let last = &page[page.len() - 1];
        let start = store_key(
            last["metadata"]["namespace"].as_str(),
            last["metadata"]["name"].as_str().unwrap_or_default(),
        );
        let remaining = items.len() - end;
        let snap = if start_off == 0 && cont.is_none() {
            cx.shared.store.save_snapshot(Snapshot { rv, items })
        } else {
            cont.and_then(|c| {
                base64::engine::general_purpose::STANDARD
                    .decode(c)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ContinueToken>(&b).ok())
            })
            .map(|t| t.snap)
            .unwrap_or(0)
        };
        let tok = ContinueToken {
            rv,
            start,
            snap,
            off: end,
        };
        let enc = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&tok).unwrap_or_default());
        (page, Some(enc), Some(remaining))
    } else {
        (items[start_off.min(items.len())..].to_vec(), None, None)
    };
    Ok(bytes_response(
        200,
        render_list(def, &cx.version, &page, rv, cont_out, remaining, cx.format),
    ))
}

fn watch_req(cx: &Cx) -> ApiResult<Response> {
    let def = &cx.def;
    let labels = LabelSelector::parse(
        cx.query
            .get("labelSelector")
            .map(|s| s.as_str())
            .unwrap_or_default(),
    )?;
    let fields = FieldSelector::parse(
        cx.query
            .get("fieldSelector")
            .map(|s| s.as_str())
            .unwrap_or_default(),
        &def.group,
        &def.plural,
    )?;
    let from = match cx.query.get("resourceVersion").map(|s| s.as_str()) {
        None | Some("") | Some("0") => None,
        Some(r) => Some(
            r.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r}")))?,
        ),
    };
    let truthy = |k: &str| cx.query.get(k).is_some_and(|v| v == "true" || v == "1");
    let send_initial = truthy("sendInitialEvents");
    if send_initial
        && cx.query.get("resourceVersionMatch").map(|s| s.as_str()) != Some("NotOlderThan")
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan".into(),
            vec![],
        ));
    }
    let timeout = cx
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    Ok(watch::start(
        cx.shared.clone(),
        def.clone(),
        cx.version.clone(),
        cx.ns.clone(),
        watch::WatchParams {
            from,
            send_initial_events: send_initial,
            bookmarks: truthy("allowWatchBookmarks"),
            timeout: Duration::from_secs(timeout),
            labels,
            fields,
            format: cx.format,
        },
    ))
}

// ---------------------------------------------------------------- writes

fn check_type(cx: &Cx, obj: &Value) -> ApiResult<()> {
    let want_av = cx.api_version();
    if let Some(av) = obj["apiVersion"].as_str()
        && av != want_av
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        )));
    }
    if let Some(k) = obj["kind"].as_str()
        && k != cx.def.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            cx.def.kind
        )));
    }
    Ok(())
}

fn set_type(cx: &Cx, obj: &mut Value) {
    obj["apiVersion"] = json!(cx.api_version());
    obj["kind"] = json!(cx.def.kind);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
}

fn check_namespace(cx: &Cx, obj: &mut Value) -> ApiResult<()> {
    match &cx.ns {
        Some(ns) => match obj["metadata"]["namespace"].as_str() {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => obj["metadata"]["namespace"] = json!(ns),
        },
        None => {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
        }
    }
    Ok(())
}

fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("system randomness");
    let suffix: String = b
        .iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect();
    let max = 63 - 5;
    let p: String = prefix.chars().take(max).collect();
    format!("{p}{suffix}")
}

/// Fields present in `before` but pruned from `after` (`spec.x`, `spec.list[0].y`).
fn pruned_fields(before: &Value, after: &Value, path: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, bv) in b {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match a.get(k) {
                    None => out.push(p),
                    Some(av) => pruned_fields(bv, av, &p, out),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) if a.len() == b.len() => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                pruned_fields(bv, av, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn run_schema(cx: &mut Cx, obj: &mut Value) -> ApiResult<()> {
    if !cx.def.custom {
        return Ok(());
    }
    let Some(s) = cx.def.schemas.get(&cx.version) else {
        return Ok(());
    };
    let before = obj.clone();
    let result = schema::default_prune_validate(s, obj);
    // fieldValidation: unknown fields are refused (Strict), reported (Warn, the default) or dropped.
    let mode = cx
        .query
        .get("fieldValidation")
        .map(|s| s.as_str())
        .unwrap_or("Warn");
    if mode != "Ignore" {
        let mut unknown = vec![];
        pruned_fields(&before, obj, "", &mut unknown);
        let texts: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        if !texts.is_empty() {
            if mode == "Strict" {
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                    texts.join(", "),
                    kind = cx.def.kind,
                    v = cx.version,
                )));
            }
            cx.warnings.extend(texts);
        }
    }
    if let Err(errs) = result {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let causes = errs
            .iter()
            .map(|e| json!({"reason": e.reason(), "message": e.detail(), "field": e.field}))
            .collect();
        return Err(ApiError::invalid(
            &cx.def.group,
            &cx.def.kind,
            &name,
            schema::invalid_message(&cx.def.kind, &cx.def.group, &name, &errs),
            causes,
        ));
    }
    Ok(())
}

struct Env(Arc<Shared>);

impl AdmissionEnv for Env {
    fn client_identity(&self) -> Option<&crate::ClientIdentity> {
        self.0.webhook_client_identity.as_ref()
    }

    fn record_call(&self, call: admission::WebhookCall) {
        self.0
            .webhook_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }

    fn resolve_service(&self, namespace: &str, name: &str, port: u16) -> Option<SocketAddr> {
        self.0
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_string(), name.to_string(), port))
            .copied()
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let ns = self.0.store.get("/namespaces", namespace)?;
        Some(
            ns["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }
}

/// Call the admission webhooks; `Ok(None)` when none are configured.
async fn admit(
    cx: &mut Cx,
    op: Operation,
    object: Option<&Value>,
    old: Option<&Value>,
) -> ApiResult<Option<Value>> {
    if cx.def.group == "admissionregistration.k8s.io" || cx.def.virtual_create_only {
        return Ok(None);
    }
    let store = &cx.shared.store;
    if store.count(MUTATING_ID) == 0 && store.count(VALIDATING_ID) == 0 {
        return Ok(None);
    }
    let mutating: Vec<MutatingWebhookConfiguration> = store
        .list(MUTATING_ID, None)
        .1
        .iter()
        .filter_map(|o| serde_json::from_value((**o).clone()).ok())
        .collect();
    let validating: Vec<ValidatingWebhookConfiguration> = store
        .list(VALIDATING_ID, None)
        .1
        .iter()
        .filter_map(|o| serde_json::from_value((**o).clone()).ok())
        .collect();
    let at = |o: &Value| crate::output::at_version(&cx.def, &cx.version, o).into_owned();
    let options = match op {
        Operation::Create => {
            json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": cx.manager})
        }
        Operation::Update => {
            json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": cx.manager})
        }
        _ => json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}),
    };
    let attrs = AdmissionAttributes {
        operation: op,
        kind: GroupVersionKind3 {
            group: cx.def.group.clone(),
            version: cx.version.clone(),
            kind: cx.def.kind.clone(),
        },
        resource: GroupVersionResource3 {
            group: cx.def.group.clone(),
            version: cx.version.clone(),
            resource: cx.def.plural.clone(),
        },
        sub_resource: if cx.sub.is_empty() {
            None
        } else {
            Some(cx.sub.clone())
        },
        name: object
            .or(old)
            .and_then(|o| o["metadata"]["name"].as_str())
            .unwrap_or(&cx.name)
            .to_string(),
        namespace: cx.ns.clone(),
        object: object.map(at),
        old_object: old.map(at),
        dry_run: cx.dry_run,
        user: UserInfo {
            username: cx.user.username.clone(),
            uid: cx.user.uid.clone(),
            groups: cx.user.groups.clone(),
        },
        options: Some(options),
    };
    match admission::admit(&mutating, &validating, attrs, &Env(cx.shared.clone())).await {
        Ok(a) => {
            cx.warnings.extend(a.warnings);
            Ok(a.object)
        }
        Err(r) => {
            let mut e = ApiError::new(r.code, &r.reason, r.message);
            if r.code == 400 || r.code == 422 || r.code == 403 {
                e = e.with_details(json!({}));
            }
            Err(e)
        }
    }
}

/// Everything after the verb-specific part: defaults, validation, generation,
/// ownership, admission, storage.
async fn commit(
    cx: &mut Cx,
    mut obj: Value,
    old: Option<&Arc<Value>>,
    managed_done: bool,
    client_rv: bool,
) -> ApiResult<Outcome> {
    // Compare and patch in the shape of the request (Events are stored as core/v1).
    let old_view: Option<Arc<Value>> = old.map(|o| {
        if cx.def.is_events_v1() {
            Arc::new(crate::output::at_version(&cx.def, &cx.version, o).into_owned())
        } else {
            o.clone()
        }
    });
    let old = old_view.as_ref();
    let def = cx.def.clone();
    let now = now_ts();
    match old {
        None => {
            let md = obj["metadata"]
                .as_object_mut()
                .expect("metadata is an object");
            md.insert("uid".into(), json!(new_uid()));
            md.insert("creationTimestamp".into(), json!(now));
            md.remove("deletionTimestamp");
            md.remove("deletionGracePeriodSeconds");
            if tracks_generation(&def) {
                md.insert("generation".into(), json!(1));
            } else {
                md.remove("generation");
            }
            if def.status_subresource
                && def.custom
                && let Some(m) = obj.as_object_mut()
            {
                m.remove("status");
            }
        }
        Some(old) => {
            let om = &old["metadata"];
            let md = obj["metadata"]
                .as_object_mut()
                .expect("metadata is an object");
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match om.get(k) {
                    Some(v) => md.insert(k.into(), v.clone()),
                    None => md.remove(k),
                };
            }
            if def.status_subresource {
                if cx.sub == "status" {
                    // Only status moves through the status subresource.
                    let status = obj.get("status").cloned();
                    let mut keep = (**old).clone();
                    keep["apiVersion"] = obj["apiVersion"].clone();
                    if let Some(mf) = obj["metadata"].get("managedFields") {
                        keep["metadata"]["managedFields"] = mf.clone();
                    }
                    match status {
                        Some(s) => keep["status"] = s,
                        None => {
                            if let Some(m) = keep.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                    obj = keep;
                } else {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(m) = obj.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(old) = old
        && old["metadata"]["deletionTimestamp"].is_string()
    {
        let had: Vec<&Value> = old["metadata"]["finalizers"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let added: Vec<String> = obj["metadata"]["finalizers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|f| !had.contains(f))
                    .map(|f| format!("{f}"))
                    .collect()
            })
            .unwrap_or_default();
        if !added.is_empty() {
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            return Err(ApiError::invalid_field(
                &def.group,
                &def.kind,
                &name,
                "metadata.finalizers",
                "FieldValueForbidden",
                &format!(
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    added.join(", ")
                ),
            ));
        }
    }
    if let Some(d) = name_error(&def, obj["metadata"]["name"].as_str().unwrap_or_default()) {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Err(ApiError::invalid_field(
            &def.group,
            &def.kind,
            &name,
            "metadata.name",
            "FieldValueInvalid",
            &d,
        ));
    }
    prepare(&def, &mut obj, old.map(|o| &**o))?;
    run_schema(cx, &mut obj)?;
    if let Some(old) = old
        && tracks_generation(&def)
        && spec_part(&def, &obj) != spec_part(&def, old)
    {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
        obj["metadata"]["generation"] = json!(g + 1);
    }
    if !managed_done {
        let base = match obj["metadata"].get("managedFields") {
            Some(Value::Array(_)) => ssa::read_entries(&obj),
            _ => old.map(|o| ssa::read_entries(o)).unwrap_or_default(),
        };
        let av = cx.api_version();
        let sub = if cx.sub == "status" { "status" } else { "" };
        let shape = cx.shape();
        let manager = cx.manager.clone();
        ssa::record_update(
            old.map(|o| &**o),
            &mut obj,
            base,
            &manager,
            &av,
            sub,
            shape,
            &now,
        );
    }
    if let Some(old) = old {
        let mut o = (**old).clone();
        o["apiVersion"] = obj["apiVersion"].clone();
        if comparable(&o) == comparable(&obj) {
            return Ok(Outcome::Done(200, (**old).clone()));
        }
    }
    let op = if old.is_some() {
        Operation::Update
    } else {
        Operation::Create
    };
    if let Some(mutated) = admit(cx, op, Some(&obj), old.map(|o| &**o)).await? {
        obj = mutated;
        check_namespace(cx, &mut obj)?;
        run_schema(cx, &mut obj)?;
    }
    if cx.dry_run {
        return Ok(Outcome::Done(if old.is_some() { 200 } else { 201 }, obj));
    }
    if def.is_events_v1() {
        obj = crate::output::events_to_core(&obj);
    } else {
        obj["apiVersion"] = json!(def.api_version(&def.storage_version));
    }
    let key = cx.key();
    let id = def.id();
    let store = &cx.shared.store;
    if let Some(old) = old
        && old["metadata"]["deletionTimestamp"].is_string()
        && obj["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
    {
        // The last finalizer is gone: the pending deletion completes.
        return match store.delete(&id, &key, rv_of(old)) {
            Ok(gone) => {
                after_delete(&cx.shared, &def, &gone, "Background");
                Ok(Outcome::Done(200, (*gone).clone()))
            }
            Err(CommitError::Changed) if client_rv => {
                Err(ApiError::stale(&def.group, &def.plural, &cx.name))
            }
            Err(_) => Ok(Outcome::Retry),
        };
    }
    let expect = old.map(|o| rv_of(o));
    match store.put(&id, &key, obj, expect) {
        Ok(stored) => {
            after_write(&cx.shared, &def, &stored);
            Ok(Outcome::Done(
                if old.is_some() { 200 } else { 201 },
                (*stored).clone(),
            ))
        }
        Err(CommitError::AlreadyExists) => {
            Err(ApiError::already_exists(&def.group, &def.plural, &cx.name))
        }
        Err(CommitError::Changed) if client_rv => {
            Err(ApiError::stale(&def.group, &def.plural, &cx.name))
        }
        Err(CommitError::NotFound) if client_rv => {
            Err(ApiError::not_found(&def.group, &def.plural, &cx.name))
        }
        Err(_) => Ok(Outcome::Retry),
    }
}

/// Side effects of a stored write: CRDs become served.
fn after_write(shared: &Arc<Shared>, def: &ResourceDef, stored: &Value) {
    if def.group == "apiextensions.k8s.io"
        && def.plural == "customresourcedefinitions"
        && let Ok(d) = def_from_crd(stored)
    {
        shared.update_registry(|r| r.insert(d));
    }
}

fn require_namespace(cx: &Cx) -> ApiResult<()> {
    if let Some(ns) = &cx.ns {
        match cx.shared.store.get("/namespaces", ns) {
            None => return Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if n["metadata"]["deletionTimestamp"].is_string() => {
                return Err(ApiError::forbidden(
                    &cx.def.group,
                    &cx.def.plural,
                    cx.name.as_str(),
                    &format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

async fn create(cx: &mut Cx, mut obj: Value, managed_done: bool) -> ApiResult<(u16, Value)> {
    check_type(cx, &obj)?;
    set_type(cx, &mut obj);
    check_namespace(cx, &mut obj)?;
    if obj["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name = match obj["metadata"]["name"].as_str().filter(|s| !s.is_empty()) {
        Some(n) => n.to_string(),
        None => match obj["metadata"]["generateName"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            Some(p) => generate_name(p),
            None => {
                return Err(ApiError::invalid_field(
                    &cx.def.group,
                    &cx.def.kind,
                    "",
                    "metadata.name",
                    "FieldValueRequired",
                    "Required value: name or generateName is required",
                ));
            }
        },
    };
    obj["metadata"]["name"] = json!(name);
    cx.name = name.clone();
    require_namespace(cx)?;
    match commit(cx, obj, None, managed_done, true).await? {
        Outcome::Done(code, v) => Ok((code, v)),
        Outcome::Retry => Err(ApiError::already_exists(
            &cx.def.group,
            &cx.def.plural,
            &name,
        )),
    }
}

async fn update(cx: &mut Cx, mut obj: Value) -> ApiResult<(u16, Value)> {
    check_type(cx, &obj)?;
    set_type(cx, &mut obj);
    check_namespace(cx, &mut obj)?;
    let body_name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if body_name != cx.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            cx.name
        )));
    }
    let rv_str = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let client_rv: Option<u64> =
        if rv_str.is_empty() {
            None
        } else {
            Some(rv_str.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {rv_str}"))
            })?)
        };
    if client_rv.is_none() && cx.def.custom {
        return Err(ApiError::invalid_field(
            &cx.def.group,
            &cx.def.kind,
            &cx.name,
            "metadata.resourceVersion",
            "FieldValueInvalid",
            "Invalid value: 0x0: must be specified for an update",
        ));
    }
    for _ in 0..16 {
        let old = cx
            .shared
            .store
            .get(&cx.def.id(), &cx.key())
            .ok_or_else(|| ApiError::not_found(&cx.def.group, &cx.def.plural, &cx.name))?;
        if let Some(rv) = client_rv
            && rv != rv_of(&old)
        {
            return Err(ApiError::stale(&cx.def.group, &cx.def.plural, &cx.name));
        }
        match commit(cx, obj.clone(), Some(&old), false, client_rv.is_some()).await? {
            Outcome::Done(c, v) => return Ok((c, v)),
            Outcome::Retry => continue,
        }
    }
    Err(ApiError::stale(&cx.def.group, &cx.def.plural, &cx.name))
}

const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

async fn patch_req(cx: &mut Cx, body: &[u8], content_type: &str) -> ApiResult<(u16, Value)> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let accepted: Vec<&str> = if cx.def.custom {
        PATCH_TYPES
            .iter()
            .copied()
            .filter(|t| !t.contains("strategic"))
            .collect()
    } else {
        PATCH_TYPES.to_vec()
    };
    if !accepted.contains(&ct.as_str()) {
        return Err(ApiError::unsupported_media(&ct, &accepted));
    }
    let apply = ct == "application/apply-patch+yaml";
    let force_param = cx.query.get("force").cloned();
    if apply && cx.query.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
            vec![json!({"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"})],
        ));
    }
    if !apply && force_param.is_some() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch".into(),
            vec![json!({"reason": "FieldValueForbidden", "message": "Forbidden: may not be specified for non-apply patch", "field": "force"})],
        ));
    }
    let force = force_param.as_deref() == Some("true");
    let cfg = if apply {
        let v = parse_body(body, "application/yaml")?;
        if v["kind"].as_str().unwrap_or_default().is_empty()
            || v["apiVersion"].as_str().unwrap_or_default().is_empty()
        {
            return Err(ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{}'",
                String::from_utf8_lossy(body)
            )));
        }
        check_type(cx, &v)?;
        if v["metadata"]["name"].as_str().is_some_and(|n| n != cx.name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                v["metadata"]["name"].as_str().unwrap_or_default(),
                cx.name
            )));
        }
        if let Some(ns) = v["metadata"]["namespace"].as_str()
            && cx.ns.as_deref().is_some_and(|n| n != ns)
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        Some(v)
    } else {
        None
    };
    let scope = if cx.sub == "status" {
        Scope::StatusOnly
    } else if cx.def.status_subresource {
        Scope::MainOnly
    } else {
        Scope::All
    };
    let now = now_ts();
    for _ in 0..16 {
        let old = cx.shared.store.get(&cx.def.id(), &cx.key());
        let Some(old) = old else {
            let Some(cfg) = &cfg else {
                return Err(ApiError::not_found(&cx.def.group, &cx.def.plural, &cx.name));
            };
            if cx.sub == "status" {
                return Err(ApiError::not_found(&cx.def.group, &cx.def.plural, &cx.name));
            }
            let mut base = json!({"apiVersion": cx.api_version(), "kind": cx.def.kind, "metadata": {"name": cx.name}});
            if let Some(ns) = &cx.ns {
                base["metadata"]["namespace"] = json!(ns);
            }
            let av = cx.api_version();
            let merged = ssa::apply(
                &base,
                cfg,
                &cx.manager,
                force,
                &av,
                "",
                scope,
                cx.shape(),
                &now,
            )
            .map_err(|c| conflict_error(cx, &c))?;
            match create(cx, merged, true).await {
                // Created concurrently by someone else: apply to that object instead.
                Err(e) if e.reason == "AlreadyExists" => continue,
                other => return other,
            }
        };
        let current = crate::output::at_version(&cx.def, &cx.version, &old).into_owned();
        let (mut new, managed_done) = match ct.as_str() {
            "application/json-patch+json" => (patch::json_patch(&current, body)?, false),
            "application/merge-patch+json" => (patch::merge_patch(&current, body)?, false),
            "application/strategic-merge-patch+json" => {
                (patch::strategic_merge_patch(&current, body)?, false)
            }
            _ => {
                let cfg = cfg.as_ref().expect("apply has a body");
                let av = cx.api_version();
                let sub = if cx.sub == "status" { "status" } else { "" };
                let merged = ssa::apply(
                    &current,
                    cfg,
                    &cx.manager,
                    force,
                    &av,
                    sub,
                    scope,
                    cx.shape(),
                    &now,
                )
                .map_err(|c| conflict_error(cx, &c))?;
                (merged, true)
            }
        };
        if new["metadata"]["name"].as_str() != Some(cx.name.as_str()) {
            return Err(ApiError::invalid_field(
                &cx.def.group,
                &cx.def.kind,
                &cx.name,
                "metadata.name",
                "FieldValueInvalid",
                &format!(
                    "Invalid value: {}: field is immutable",
                    new["metadata"]["name"]
                ),
            ));
        }
        check_type(cx, &new)?;
        set_type(cx, &mut new);
        check_namespace(cx, &mut new)?;
        let patched_rv = new["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let client_rv = !patched_rv.is_empty()
            && patched_rv
                != current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default();
        if client_rv {
            return Err(ApiError::stale(&cx.def.group, &cx.def.plural, &cx.name));
        }
        // A resourceVersion written by the patch itself acts as a precondition.
        let has_precondition = !patched_rv.is_empty() && !apply && patch_sets_rv(body, &ct);
        match commit(cx, new, Some(&old), managed_done, has_precondition).await? {
            Outcome::Done(c, v) => return Ok((c, v)),
            Outcome::Retry => continue,
        }
    }
    Err(ApiError::stale(&cx.def.group, &cx.def.plural, &cx.name))
}

fn patch_sets_rv(body: &[u8], ct: &str) -> bool {
    if ct == "application/json-patch+json" {
        return serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|ops| {
                ops.iter()
                    .any(|o| o["path"] == json!("/metadata/resourceVersion"))
            });
    }
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|v| v["metadata"]["resourceVersion"].is_string())
}

fn conflict_error(cx: &Cx, c: &[ssa::Conflict]) -> ApiError {
    let causes: Vec<Value> = c
        .iter()
        .map(|x| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", x.manager), "field": x.path}))
        .collect();
    let mut d = json!({"name": cx.name, "kind": cx.def.plural, "causes": causes});
    if !cx.def.group.is_empty() {
        d["group"] = json!(cx.def.group);
    }
    ApiError::new(409, "Conflict", ssa::conflict_message(c)).with_details(d)
}

// ---------------------------------------------------------------- deletes

fn success_status(def: &ResourceDef, obj: &Value) -> Value {
    let mut d = json!({
        "name": obj["metadata"]["name"],
        "kind": def.plural,
        "uid": obj["metadata"]["uid"],
    });
    if !def.group.is_empty() {
        d["group"] = json!(def.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}

async fn delete(cx: &mut Cx, opts: &Value) -> ApiResult<(u16, Value)> {
    let def = cx.def.clone();
    let policy = opts["propagationPolicy"]
        .as_str()
        .map(String::from)
        .or_else(|| cx.query.get("propagationPolicy").cloned())
        .or_else(|| match opts["orphanDependents"].as_bool() {
            Some(true) => Some("Orphan".into()),
            Some(false) => Some("Background".into()),
            None => None,
        })
        .unwrap_or_else(|| "Background".into());
    if !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground") {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{policy}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            ),
            vec![],
        ));
    }
    if def.group.is_empty()
        && def.plural == "namespaces"
        && matches!(cx.name.as_str(), "default" | "kube-system" | "kube-public")
    {
        return Err(ApiError::forbidden(
            "",
            "namespaces",
            &cx.name,
            "this namespace may not be deleted",
        ));
    }
    if opts["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "All"))
    {
        cx.dry_run = true;
    }
    for _ in 0..16 {
        let old = cx
            .shared
            .store
            .get(&def.id(), &cx.key())
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &cx.name))?;
        let pre = &opts["preconditions"];
        if let Some(uid) = pre["uid"].as_str()
            && Some(uid) != old["metadata"]["uid"].as_str()
        {
            return Err(ApiError::conflict(
                &def.group,
                &def.plural,
                &cx.name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    old["metadata"]["uid"].as_str().unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = pre["resourceVersion"].as_str()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(
                &def.group,
                &def.plural,
                &cx.name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    old["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                ),
            ));
        }
        admit(cx, Operation::Delete, None, Some(&old)).await?;
        if cx.dry_run {
            return Ok((200, (*old).clone()));
        }
        match delete_object(&cx.shared, &def, &cx.key(), &old, &policy) {
            Ok(v) => {
                if v["metadata"]["deletionTimestamp"].is_string()
                    && cx.shared.store.get(&def.id(), &cx.key()).is_some()
                {
                    return Ok((200, v));
                }
                if def.custom || def.plural == "customresourcedefinitions" {
                    return Ok((200, v));
                }
                return Ok((200, success_status(&def, &v)));
            }
            Err(CommitError::NotFound) => {
                return Err(ApiError::not_found(&def.group, &def.plural, &cx.name));
            }
            Err(_) => continue,
        }
    }
    Err(ApiError::stale(&def.group, &def.plural, &cx.name))
}

/// Delete (or start deleting) one stored object; `old` is its current state.
fn delete_object(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    key: &str,
    old: &Arc<Value>,
    policy: &str,
) -> Result<Value, CommitError> {
    let store = &shared.store;
    let uid = old["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let has_dependents = !store.dependents_of(&uid).is_empty();
    if policy == "Orphan" && has_dependents {
        orphan_dependents(shared, &uid);
    }
    let mut finalizers: Vec<Value> = old["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let foreground = policy == "Foreground" && has_dependents;
    if foreground && !finalizers.contains(&json!("foregroundDeletion")) {
        finalizers.push(json!("foregroundDeletion"));
    }
    let is_namespace = def.group.is_empty() && def.plural == "namespaces";
    if !finalizers.is_empty() || is_namespace {
        if old["metadata"]["deletionTimestamp"].is_string() && !foreground {
            return Ok((**old).clone());
        }
        let mut o = (**old).clone();
        o["metadata"]["deletionTimestamp"] = json!(now_ts());
        o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if !finalizers.is_empty() {
            o["metadata"]["finalizers"] = Value::Array(finalizers);
        }
        if is_namespace {
            o["status"]["phase"] = json!("Terminating");
        }
        let stored = store.put(&def.id(), key, o, Some(rv_of(old)))?;
        if foreground {
            spawn_foreground(shared.clone(), def.clone(), key.to_string(), uid);
        }
        if is_namespace {
            spawn_namespace_cleanup(
                shared.clone(),
                old["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        return Ok((*stored).clone());
    }
    let gone = store.delete(&def.id(), key, rv_of(old))?;
    after_delete(shared, def, &gone, policy);
    Ok((*gone).clone())
}

/// Garbage collection and CRD teardown after an object is really gone.
fn after_delete(shared: &Arc<Shared>, def: &ResourceDef, gone: &Value, policy: &str) {
    if def.group == "apiextensions.k8s.io"
        && def.plural == "customresourcedefinitions"
        && let Ok(d) = def_from_crd(gone)
    {
        let id = d.id();
        for k in shared.store.keys(&id) {
            let _ = shared.store.delete(&id, &k, 0);
        }
        shared.update_registry(|r| r.remove(&d.key()));
    }
    if policy == "Orphan" {
        return;
    }
    let uid = gone["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if shared.store.dependents_of(&uid).is_empty() {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move { collect_dependents(&shared, &uid) });
}

fn def_by_id(shared: &Shared, id: &str) -> Option<Arc<ResourceDef>> {
    shared.registry().by_id.get(id).cloned()
}

/// Dependents whose owners are all gone are deleted; dangling references to
/// deleted owners are dropped from the others.
fn collect_dependents(shared: &Arc<Shared>, owner_uid: &str) {
    for (id, key) in shared.store.dependents_of(owner_uid) {
        let Some(def) = def_by_id(shared, &id) else {
            continue;
        };
        for _ in 0..8 {
            let Some(dep) = shared.store.get(&id, &key) else {
                break;
            };
            let refs = dep["metadata"]["ownerReferences"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let alive: Vec<Value> = refs
                .iter()
                .filter(|r| {
                    r["uid"]
                        .as_str()
                        .is_some_and(|u| shared.store.uid_exists(u))
                })
                .cloned()
                .collect();
            let r = if alive.is_empty() {
                delete_object(shared, &def, &key, &dep, "Background").map(|_| ())
            } else if alive.len() != refs.len() {
                let mut o = (*dep).clone();
                o["metadata"]["ownerReferences"] = Value::Array(alive);
                shared
                    .store
                    .put(&id, &key, o, Some(rv_of(&dep)))
                    .map(|_| ())
            } else {
                Ok(())
            };
            if r != Err(CommitError::Changed) {
                break;
            }
        }
    }
}

fn orphan_dependents(shared: &Arc<Shared>, owner_uid: &str) {
    for (id, key) in shared.store.dependents_of(owner_uid) {
        for _ in 0..8 {
            let Some(dep) = shared.store.get(&id, &key) else {
                break;
            };
            let mut o = (*dep).clone();
            if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
                if refs.is_empty()
                    && let Some(md) = o["metadata"].as_object_mut()
                {
                    md.remove("ownerReferences");
                }
            }
            if shared.store.put(&id, &key, o, Some(rv_of(&dep))) != Err(CommitError::Changed) {
                break;
            }
        }
    }
}

/// Foreground deletion: dependents go first, then the owner's finalizer is removed.
fn spawn_foreground(shared: Arc<Shared>, def: ResourceDef, key: String, uid: String) {
    tokio::spawn(async move {
        for _ in 0..600 {
            for (id, dkey) in shared.store.dependents_of(&uid) {
                if let (Some(d), Some(dep)) =
                    (def_by_id(&shared, &id), shared.store.get(&id, &dkey))
                    && !dep["metadata"]["deletionTimestamp"].is_string()
                {
                    let _ = delete_object(&shared, &d, &dkey, &dep, "Foreground");
                }
            }
            if shared.store.dependents_of(&uid).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        remove_finalizer(&shared, &def, &key, "foregroundDeletion");
    });
}

fn remove_finalizer(shared: &Arc<Shared>, def: &ResourceDef, key: &str, finalizer: &str) {
    for _ in 0..8 {
        let Some(cur) = shared.store.get(&def.id(), key) else {
            return;
        };
        let mut o = (*cur).clone();
        if let Some(f) = o["metadata"]["finalizers"].as_array_mut() {
            f.retain(|x| x != finalizer);
        }
        let empty = o["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        let r = if empty && o["metadata"]["deletionTimestamp"].is_string() {
            shared
                .store
                .delete(&def.id(), key, rv_of(&cur))
                .map(|gone| after_delete(shared, def, &gone, "Background"))
        } else {
            shared
                .store
                .put(&def.id(), key, o, Some(rv_of(&cur)))
                .map(|_| ())
        };
        if r != Err(CommitError::Changed) {
            return;
        }
    }
}

/// The namespace controller: delete everything in the namespace, then the namespace.
fn spawn_namespace_cleanup(shared: Arc<Shared>, ns: String) {
    tokio::spawn(async move {
        loop {
            let reg = shared.registry();
            let mut left = 0;
            for def in reg.by_id.values().filter(|d| d.namespaced) {
                let (_, items) = shared.store.list(&def.id(), Some(&ns));
                for o in items {
                    left += 1;
                    if o["metadata"]["deletionTimestamp"].is_string() {
                        continue;
                    }
                    let key = store_key(
                        Some(&ns),
                        o["metadata"]["name"].as_str().unwrap_or_default(),
                    );
                    let _ = delete_object(&shared, def, &key, &o, "Background");
                }
            }
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(def) = def_by_id(&shared, "/namespaces") else {
            return;
        };
        if let Some(cur) = shared.store.get("/namespaces", &ns) {
            let _ = shared
                .store
                .delete("/namespaces", &ns, rv_of(&cur))
                .map(|gone| after_delete(&shared, &def, &gone, "Background"));
        }
    });
}

async fn delete_collection(cx: &mut Cx, opts: &Value) -> ApiResult<Response> {
    let labels = LabelSelector::parse(
        cx.query
            .get("labelSelector")
            .map(|s| s.as_str())
            .unwrap_or_default(),
    )?;
    let fields = FieldSelector::parse(
        cx.query
            .get("fieldSelector")
            .map(|s| s.as_str())
            .unwrap_or_default(),
        &cx.def.group,
        &cx.def.plural,
    )?;
    let (_, items) = cx.shared.store.list(&cx.def.id(), cx.ns.as_deref());
    let mut deleted = vec![];
    let chosen: Vec<Arc<Value>> = items
        .into_iter()
        .filter(|o| selected(&cx.def, &cx.version, o, &labels, &fields))
        .collect();
    for o in chosen {
        cx.name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match delete(cx, opts).await {
            Ok((_, v)) => deleted.push(Arc::new(if v["kind"] == json!("Status") {
                (*o).clone()
            } else {
                v
            })),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = cx.shared.store.current_rv();
    Ok(bytes_response(
        200,
        render_list(&cx.def, &cx.version, &deleted, rv, None, None, cx.format),
    ))
}

// ---------------------------------------------------------------- tokens

fn token_request(cx: &Cx, body: &[u8], content_type: &str) -> ApiResult<Response> {
    let req = if body.is_empty() {
        json!({})
    } else {
        parse_body(body, content_type)?
    };
    let sa = cx
        .shared
        .store
        .get("/serviceaccounts", &cx.key())
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", &cx.name))?;
    let exp_secs = req["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
    if exp_secs < 600 {
        return Err(ApiError::invalid_field(
            "authentication.k8s.io",
            "TokenRequest",
            &cx.name,
            "spec.expirationSeconds",
            "FieldValueInvalid",
            &format!("Invalid value: {exp_secs}: may not specify a duration less than 10 minutes"),
        ));
    }
    if exp_secs > 1 << 32 {
        return Err(ApiError::invalid_field(
            "authentication.k8s.io",
            "TokenRequest",
            &cx.name,
            "spec.expirationSeconds",
            "FieldValueTooLong",
            &format!(
                "Invalid value: {exp_secs}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let audiences: Vec<String> = req["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let audiences = if audiences.is_empty() {
        vec![cx.shared.signer.issuer.clone()]
    } else {
        audiences
    };
    let ns = cx.ns.clone().unwrap_or_default();
    let (token, exp) = cx.shared.signer.issue(
        &ns,
        &cx.name,
        sa["metadata"]["uid"].as_str().unwrap_or_default(),
        &audiences,
        exp_secs,
    );
    let exp_ts = chrono::DateTime::from_timestamp(exp, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut out = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": cx.name, "namespace": ns, "creationTimestamp": now_ts()},
        "spec": {"audiences": audiences, "expirationSeconds": exp_secs},
        "status": {"token": token, "expirationTimestamp": exp_ts},
    });
    if req["spec"]["boundObjectRef"].is_object() {
        out["spec"]["boundObjectRef"] = req["spec"]["boundObjectRef"].clone();
    }
    Ok(json_response(201, &out))
}

fn token_review(cx: &Cx, body: &[u8], content_type: &str) -> ApiResult<Response> {
    let req = parse_body(body, content_type)?;
    let token = req["spec"]["token"].as_str().unwrap_or_default();
    let wanted: Vec<String> = req["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let signer = &cx.shared.signer;
    let api_aud = vec![signer.issuer.clone()];
    let targets = if wanted.is_empty() {
        api_aud
    } else {
        wanted.clone()
    };
    let status = if token.is_empty() {
        json!({"authenticated": false, "user": {}, "error": "token is required"})
    } else if token == signer.admin_token {
        json!({
            "authenticated": true,
            "user": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
            "audiences": targets,
        })
    } else {
        match signer.verify(token) {
            Err(e) => {
                json!({"authenticated": false, "user": {}, "error": format!("[{e}, invalid bearer token]")})
            }
            Ok(c) => {
                let common: Vec<String> = targets
                    .iter()
                    .filter(|a| c.audiences.contains(a))
                    .cloned()
                    .collect();
                let sa = cx.shared.store.get(
                    "/serviceaccounts",
                    &store_key(Some(&c.namespace), &c.service_account),
                );
                if common.is_empty() {
                    json!({"authenticated": false, "user": {}, "error": format!(
                        "[invalid bearer token, token audiences {:?} is invalid for the target audiences {:?}]",
                        c.audiences, targets
                    )})
                } else if sa.as_ref().is_none_or(|s| {
                    !c.sa_uid.is_empty() && s["metadata"]["uid"].as_str() != Some(c.sa_uid.as_str())
                }) {
                    json!({"authenticated": false, "user": {}, "error": format!(
                        "[invalid bearer token, service account {}/{} has been deleted]",
                        c.namespace, c.service_account
                    )})
                } else {
                    let u = sa_user(&c);
                    json!({
                        "authenticated": true,
                        "user": {"username": u.username, "uid": u.uid, "groups": u.groups},
                        "audiences": common,
                    })
                }
            }
        }
    };
    let mut spec = json!({"token": token});
    if !wanted.is_empty() {
        spec["audiences"] = json!(wanted);
    }
    Ok(json_response(
        201,
        &json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": status,
        }),
    ))
}

// ---------------------------------------------------------------- convenience

/// Create `obj`, or replace the stored object of the same name (admin, no admission users).
pub async fn create_or_replace(shared: &Arc<Shared>, obj: Value) -> ApiResult<Value> {
    let av = obj["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let (group, version) = match av.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), av.clone()),
    };
    let reg = shared.registry();
    let def = reg
        .by_kind(&group, &kind)
        .filter(|d| d.serves(&version))
        .ok_or_else(|| ApiError::bad_request(format!("no resource serves {av} {kind}")))?;
    let ns = if def.namespaced {
        Some(
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
        )
    } else {
        None
    };
    let mut cx = Cx {
        shared: shared.clone(),
        def: def.clone(),
        version,
        ns,
        name: obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        sub: String::new(),
        user: User::admin(),
        query: HashMap::new(),
        dry_run: false,
        manager: "kube-emulator".into(),
        warnings: vec![],
        format: Format::Json,
    };
    match shared.store.get(&def.id(), &cx.key()) {
        None => create(&mut cx, obj, false).await.map(|(_, v)| v),
        Some(cur) => {
            let mut o = obj;
            o["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
            update(&mut cx, o).await.map(|(_, v)| v)
        }
    }
}
