//! AdmissionReview in, AdmissionReview out: parsing, dispatch by kind, and the mapping of
//! rules and live findings to allowed / denied / warnings.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use kube::core::DynamicObject;
use kube::core::TypeMeta;
use kube::core::admission::{AdmissionResponse, Operation};
use serde::Deserialize;
use serde_json::Value;

use super::live::Findings;
use super::{AdmissionState, Callers, Kind, MAX_BODY, defaults, rules};
use crate::api::{
    ClusterSecretStore, ClusterSecretStoreSpec, ExternalSecret, ExternalSecretSpec, SecretStore,
    SecretStoreSpec,
};
use crate::cli::LiveMode;
use crate::metrics::Metrics;
use prometheus::{Histogram, IntCounter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

pub(crate) async fn mutate(State(state): State<AdmissionState>, body: Body) -> Response {
    respond(&state, Endpoint::Mutate, body).await
}

pub(crate) async fn validate(State(state): State<AdmissionState>, body: Body) -> Response {
    respond(&state, Endpoint::Validate, body).await
}

/// A request answered without an AdmissionReview: status, reason, and the metrics' result.
struct Refused(StatusCode, String, &'static str);

/// An answer on its way through the decision. Boxed from the start: `AdmissionResponse` is 448
/// bytes, and moved by value from the request through the rules, the live checks and the
/// review's future, it was copied over a dozen times per review (a twentieth of its time).
pub type Answer = Box<AdmissionResponse>;

/// kube-core's `AdmissionResponse::deny` on a boxed answer (a new box: denials are not the
/// path worth saving an allocation on).
fn deny(resp: Answer, reason: impl ToString) -> Answer {
    Box::new(resp.deny(reason))
}

async fn respond(state: &AdmissionState, endpoint: Endpoint, body: Body) -> Response {
    let start = Instant::now();
    let mut work = std::pin::pin!(async {
        // Never closed, so never an error; held until the answer is ready.
        let _slot = state.slots.acquire().await;
        let body = read_body(body).await?;
        match decide(state, endpoint, &body) {
            Err(reason) => Err(Refused(StatusCode::BAD_REQUEST, reason, "invalid")),
            Ok(step) => Ok(finish(state, step).await),
        }
    });
    // Most reviews are decided at the first poll (the body has arrived with the headers, the
    // live checks are cached). Only one that has to wait gets a time limit: making one takes
    // the runtime's handle, a reference count that every request on every worker would touch.
    let outcome = match futures::poll!(work.as_mut()) {
        std::task::Poll::Ready(outcome) => outcome,
        std::task::Poll::Pending => tokio::time::timeout_at((start + state.timeout).into(), work)
            .await
            .unwrap_or_else(|_| {
                Err(Refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the review was not read and decided within {:?}",
                        state.timeout
                    ),
                    "timeout",
                ))
            }),
    };
    let (status, kind, result, body) = match outcome {
        Ok((kind, resp)) => {
            let result = match (resp.allowed, resp.patch.is_some()) {
                (false, _) => "denied",
                (true, true) => "patched",
                (true, false) => "allowed",
            };
            match review_json(&resp) {
                Ok(json) => (StatusCode::OK, kind, result, json),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    kind,
                    "error",
                    format!("encoding the AdmissionReview: {e}").into_bytes(),
                ),
            }
        }
        Err(Refused(status, reason, result)) => (status, "", result, reason.into_bytes()),
    };
    state.series.count(&state.metrics, endpoint, kind, result);
    state
        .series
        .duration(&state.metrics, endpoint)
        .observe(start.elapsed().as_secs_f64());
    let content_type = if status == StatusCode::OK {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The admission metrics' series, each resolved from its labels once: `with_label_values`
/// hashes the labels and takes the vector's lock on every call, on every review.
#[derive(Default)]
pub(crate) struct Series {
    requests: [[[OnceLock<IntCounter>; RESULTS.len()]; KINDS.len()]; 2],
    durations: [OnceLock<Histogram>; 2],
}

/// The `kind` and `result` label values a review is counted under.
const KINDS: [&str; 4] = ["", "ExternalSecret", "SecretStore", "ClusterSecretStore"];
const RESULTS: [&str; 6] = [
    "allowed", "patched", "denied", "invalid", "timeout", "error",
];

impl Series {
    fn count(&self, m: &Metrics, endpoint: Endpoint, kind: &str, result: &str) {
        let labels = [endpoint.as_str(), kind, result];
        match (
            KINDS.iter().position(|k| *k == kind),
            RESULTS.iter().position(|r| *r == result),
        ) {
            (Some(k), Some(r)) => self.requests[endpoint as usize][k][r]
                .get_or_init(|| m.admission_requests.with_label_values(&labels))
                .inc(),
            _ => m.admission_requests.with_label_values(&labels).inc(),
        }
    }

    fn duration(&self, m: &Metrics, endpoint: Endpoint) -> &Histogram {
        self.durations[endpoint as usize]
            .get_or_init(|| m.admission_duration.with_label_values(&[endpoint.as_str()]))
    }
}

/// The whole body, at most [`MAX_BODY`]: a declared length beyond it is refused before reading.
async fn read_body(body: Body) -> Result<Bytes, Refused> {
    let too_large = || {
        Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "an AdmissionReview is at most {} MiB (the API server's own limit)",
                MAX_BODY >> 20
            ),
            "invalid",
        )
    };
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            cause = c.source();
        }
        Refused(
            StatusCode::BAD_REQUEST,
            format!("reading the request body: {e}"),
            "invalid",
        )
    })
}

fn malformed(e: serde_json::Error) -> String {
    format!("malformed AdmissionReview: {e}")
}

/// An AdmissionReview as read: kube-core's `AdmissionReview` flattens its `TypeMeta`, which makes
/// serde buffer the whole body into an intermediate tree before reading it (twice the work and
/// an allocation per string, a third of the webhook's parse time); the same fields, named here.
/// Its strings borrow from the body where they have no escapes: only the three echoed in the
/// answer (`apiVersion`, `kind`, `uid`) are ever copied out.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a, K> {
    #[serde(borrow)]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    // A path rather than plain `default`, which would demand `K: Default`.
    #[serde(default = "Option::default", borrow)]
    request: Option<Request<'a, K>>,
}

/// The part of an `AdmissionRequest` vaultgate decides on. kube-core's type also reads
/// `userInfo`, `resource`, `requestKind`, `requestResource` and `options` (the last into a
/// generic JSON tree): about a sixth of the webhook's work per request, for fields nothing here
/// looks at. Unknown fields are skipped without being stored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a, K> {
    /// The review's own `apiVersion` and `kind`, echoed in the answer.
    #[serde(skip)]
    review_api_version: Cow<'a, str>,
    #[serde(skip)]
    review_kind: Cow<'a, str>,
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: Gvk<'a>,
    #[serde(default, borrow)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    operation: Operation,
    object: Option<K>,
    old_object: Option<K>,
    #[serde(default)]
    dry_run: bool,
}

/// A request's `kind`: kube-core's `GroupVersionKind`, borrowed (all three are required).
#[derive(Deserialize)]
struct Gvk<'a> {
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

impl<K> Request<'_, K> {
    /// An answer allowing this request, to be refined (what kube-core's `From<&AdmissionRequest>`
    /// gives: the review's type, the request's uid, allowed, an empty status). Built from an
    /// empty answer made once, taking the type and uid from the request: kube-core's only
    /// public constructor (`invalid`) allocates seven strings that an allowed answer discards.
    fn allow(&mut self) -> Answer {
        static EMPTY: OnceLock<AdmissionResponse> = OnceLock::new();
        let mut resp = Box::new(
            EMPTY
                .get_or_init(|| {
                    let mut r = AdmissionResponse::invalid("");
                    r.types = TypeMeta::default();
                    r.allowed = true;
                    r.result = Default::default();
                    r
                })
                .clone(),
        );
        resp.types = TypeMeta {
            api_version: std::mem::take(&mut self.review_api_version).into_owned(),
            kind: std::mem::take(&mut self.review_kind).into_owned(),
        };
        resp.uid = std::mem::take(&mut self.uid).into_owned();
        resp
    }

    /// Creating or updating the object itself: what the rules judge. Deletes, connects and
    /// subresource writes (status) never depend on the spec's validity.
    fn writes_object(&self) -> bool {
        matches!(self.operation, Operation::Create | Operation::Update)
            && self.sub_resource.is_none()
    }
}

/// An ExternalSecret as the validating hot path reads it: the spec, and of the metadata only the
/// name and namespace (the rules judge the spec; the live checks need the namespace). The API
/// server has validated the metadata already, and what it sends there (`managedFields`, the
/// last-applied annotation: together often larger than the spec) is skipped unread. Anything
/// this does not read takes the general path, whose answer is the same.
///
/// Boxed as soon as it is read: the request holding it, and the decision holding what it
/// became, are then moved around as a pointer rather than as the kilobyte of the spec (copying
/// it from place to place cost as much as the rules).
struct EsObject(Box<ExternalSecret>);

impl<'de> Deserialize<'de> for EsObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};

        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Metadata,
            Spec,
            #[serde(other)]
            Other,
        }

        // Read straight into the box, as a derived struct would read it (a duplicate field is
        // an error, `spec` is required, `metadata` is not): a derived one is built on the
        // stack and moved, with the spec inside it, several times before it reaches its box.
        struct Parts;
        impl<'de> Visitor<'de> for Parts {
            type Value = EsObject;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an ExternalSecret")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EsObject, A::Error> {
                let mut es = Box::<ExternalSecret>::default();
                let (mut metadata, mut spec) = (false, false);
                while let Some(field) = map.next_key()? {
                    match field {
                        Field::Metadata if metadata => {
                            return Err(Error::duplicate_field("metadata"));
                        }
                        Field::Metadata => {
                            metadata = true;
                            let NameIn { name, namespace } = map.next_value()?;
                            es.metadata.name = name;
                            es.metadata.namespace = namespace;
                        }
                        Field::Spec if spec => return Err(Error::duplicate_field("spec")),
                        Field::Spec => {
                            spec = true;
                            es.spec = map.next_value()?;
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if !spec {
                    return Err(Error::missing_field("spec"));
                }
                Ok(EsObject(es))
            }
        }
        d.deserialize_struct("ExternalSecret", &["metadata", "spec"], Parts)
    }
}

#[derive(Deserialize, Default)]
struct NameIn {
    name: Option<String>,
    namespace: Option<String>,
}

fn request_of<'a, K>(body: &'a [u8]) -> Result<Request<'a, K>, String>
where
    K: Deserialize<'a>,
{
    // A derived struct reader also takes a JSON array as the fields in order; an
    // AdmissionReview is an object, and anything else is refused as what it is.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde_json::Map<String, Value>>(body) {
                Err(e) => malformed(e),
                Ok(_) => "malformed AdmissionReview: not a JSON object".to_string(),
            },
        );
    }
    // UTF-8 checked once for the body, not again for each string as `from_slice` does (a tenth
    // of the webhook's work per request); a body that is not UTF-8 gets serde's own message.
    let review: ReviewIn<K> = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
    .map_err(malformed)?;
    let mut req = review
        .request
        .ok_or_else(|| "malformed AdmissionReview: it carries no request".to_string())?;
    req.review_api_version = review.api_version;
    req.review_kind = review.kind;
    Ok(req)
}

/// Decides one AdmissionReview body. `Err` is a malformed body (HTTP 400, with the reason);
/// otherwise the kind (for metrics, empty when unknown) and the response.
pub async fn review(
    state: &AdmissionState,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<(&'static str, Answer), String> {
    Ok(finish(state, decide(state, endpoint, body)?).await)
}

/// Runs the live checks a decision still needs, if any.
async fn finish(state: &AdmissionState, step: Step<'_>) -> (&'static str, Answer) {
    match step {
        Step::Done(kind, resp) => (kind, resp),
        Step::Live {
            checker,
            kind,
            typed,
            dry_run,
            resp,
        } => {
            // Boxed: the live checks' future is kilobytes, and inline it would make every
            // review's future that large, copied whole each time it is moved or boxed.
            let findings = Box::pin(typed.live(checker, state.callers, dry_run)).await;
            (kind.as_str(), apply_findings(resp, state.mode, findings))
        }
    }
}

/// What the synchronous part of a review decided: the answer, or an object that passed the
/// rules and still has to be checked live. Only this small value crosses the await: the parsed
/// request (kilobytes) is gone by then, and a future that held it would be copied whole
/// wherever it is moved or boxed.
enum Step<'a> {
    Done(&'static str, Answer),
    Live {
        checker: &'a super::LiveChecker,
        kind: Kind,
        typed: Typed,
        dry_run: bool,
        resp: Answer,
    },
}

/// Everything of a review but the live checks: parsing, defaults, the static rules.
fn decide<'a>(
    state: &'a AdmissionState,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Step<'a>, String> {
    // The hot path: ExternalSecrets are validated from a direct typed parse, tried first since
    // reading the kind beforehand would cost another pass over the body. Anything else (another
    // kind, or a spec that does not fit the type) takes the general path below, which denies a
    // bad spec with the reason.
    if endpoint == Endpoint::Validate
        && let Ok(mut req) = request_of::<EsObject>(body)
        && Kind::from_gvk(&req.kind.group, &req.kind.version, &req.kind.kind)
            == Some(Kind::ExternalSecret)
    {
        let resp = req.allow();
        let object = req.object.take();
        let unchanged = matches!((&req.old_object, &object), (Some(old), Some(new)) if old.0.spec == new.0.spec);
        let typed = object.map(|EsObject(mut es)| {
            if es.metadata.namespace.is_none() {
                es.metadata.namespace = req.namespace.take().map(Cow::into_owned);
            }
            Ok(Typed::ExternalSecret(es))
        });
        return Ok(judge(
            state,
            Kind::ExternalSecret,
            &req,
            typed,
            unchanged,
            resp,
        ));
    }
    let mut req: Request<DynamicObject> = request_of(body)?;
    let resp = req.allow();
    let gvk = &req.kind;
    let Some(kind) = Kind::from_gvk(&gvk.group, &gvk.version, &gvk.kind) else {
        let mut resp = resp;
        resp.warnings = Some(vec![format!(
            "vaultgate does not check {}/{} {}",
            gvk.group, gvk.version, gvk.kind
        )]);
        return Ok(Step::Done("", resp));
    };
    Ok(match endpoint {
        Endpoint::Mutate => Step::Done(kind.as_str(), mutate_request(kind, &req, resp)),
        Endpoint::Validate => {
            let object = req.object.take();
            let unchanged = matches!((&req.old_object, &object), (Some(old), Some(new)) if old.data.get("spec") == new.data.get("spec"));
            let typed = object.map(|o| Typed::from_dynamic(kind, o, req.namespace.as_deref()));
            judge(state, kind, &req, typed, unchanged, resp)
        }
    })
}

fn mutate_request(kind: Kind, req: &Request<'_, DynamicObject>, mut resp: Answer) -> Answer {
    if !req.writes_object() {
        return resp;
    }
    let Some(obj) = &req.object else {
        return resp;
    };
    match defaults::patch_parts(kind, obj.metadata.name.as_deref(), &obj.data) {
        None => resp,
        Some(patch) => match (*resp).clone().with_patch(patch) {
            Ok(patched) => {
                *resp = patched;
                resp
            }
            Err(e) => deny(resp, format!("encoding the defaults: {e}")),
        },
    }
}

/// A typed object with the raw data the typed form loses.
///
/// Boxed: the store kinds are kilobytes each, and a `Typed` is moved through the decision.
pub(crate) enum Typed {
    ExternalSecret(Box<ExternalSecret>),
    SecretStore(Box<SecretStore>, Value),
    ClusterSecretStore(Box<ClusterSecretStore>, Value),
}

impl Typed {
    /// Reads the object of a request (the namespace falls back to the request's).
    pub(crate) fn from_dynamic(
        kind: Kind,
        mut obj: DynamicObject,
        namespace: Option<&str>,
    ) -> Result<Typed, String> {
        if obj.metadata.namespace.is_none() && kind != Kind::ClusterSecretStore {
            obj.metadata.namespace = namespace.map(str::to_owned);
        }
        let spec = match obj.data.get("spec") {
            None | Some(Value::Null) => return Err("spec: required".into()),
            Some(s) => s,
        };
        let bad = |e: serde_json::Error| format!("spec: {e}");
        Ok(match kind {
            Kind::ExternalSecret => Typed::ExternalSecret(Box::new(ExternalSecret {
                spec: ExternalSecretSpec::deserialize(spec).map_err(bad)?,
                metadata: obj.metadata,
                status: None,
            })),
            Kind::SecretStore => {
                let spec = SecretStoreSpec::deserialize(spec).map_err(bad)?;
                Typed::SecretStore(
                    Box::new(SecretStore {
                        metadata: obj.metadata,
                        spec,
                        status: None,
                    }),
                    obj.data,
                )
            }
            Kind::ClusterSecretStore => {
                let spec = ClusterSecretStoreSpec::deserialize(spec).map_err(bad)?;
                Typed::ClusterSecretStore(
                    Box::new(ClusterSecretStore {
                        metadata: obj.metadata,
                        spec,
                        status: None,
                    }),
                    obj.data,
                )
            }
        })
    }

    /// Reads a manifest given as JSON.
    pub(crate) fn from_value(kind: Kind, obj: &Value) -> Result<Typed, String> {
        let obj = DynamicObject::deserialize(obj).map_err(|e| format!("metadata: {e}"))?;
        Typed::from_dynamic(kind, obj, None)
    }

    /// The static rules.
    pub(crate) fn rules(&self) -> Vec<rules::Problem> {
        match self {
            Typed::ExternalSecret(es) => rules::external_secret(es),
            Typed::SecretStore(s, raw) => rules::secret_store(s, Some(raw)),
            Typed::ClusterSecretStore(s, raw) => rules::cluster_secret_store(s, Some(raw)),
        }
    }

    /// The live checks. A store under review is logged in with only for an authenticated
    /// caller: from anyone else, its body would choose the server and the credential.
    pub(crate) async fn live(
        &self,
        checker: &super::LiveChecker,
        callers: Callers,
        dry_run: bool,
    ) -> Findings {
        let store = match self {
            Typed::ExternalSecret(es) => return checker.external_secret(es, dry_run).await,
            Typed::SecretStore(s, _) => crate::vault::StoreHandle::from_secret_store(s),
            Typed::ClusterSecretStore(s, _) => crate::vault::StoreHandle::from_cluster_store(s),
        };
        match callers {
            Callers::Authenticated => checker.store(store, dry_run).await,
            Callers::Anyone => super::live::login_checked_once_stored(&store),
        }
    }
}

/// The verdict without the live checks, or the object to check live.
fn judge<'a, K>(
    state: &'a AdmissionState,
    kind: Kind,
    req: &Request<'_, K>,
    typed: Option<Result<Typed, String>>,
    spec_unchanged: bool,
    resp: Answer,
) -> Step<'a> {
    let done = |resp| Step::Done(kind.as_str(), resp);
    if !req.writes_object() {
        return done(resp);
    }
    // An update that leaves the spec alone (metadata, finalizers, status through the main
    // resource) is not judged again: removing a finalizer must never be blocked.
    if req.operation == Operation::Update && spec_unchanged {
        return done(resp);
    }
    let typed = match typed {
        None => return done(deny(resp, "the request carries no object")),
        Some(Err(e)) => return done(deny(resp, e)),
        Some(Ok(t)) => t,
    };
    let problems = typed.rules();
    if !problems.is_empty() {
        return done(deny(resp, rules::join(&problems)));
    }
    match &state.live {
        None => done(resp),
        Some(checker) => Step::Live {
            checker,
            kind,
            typed,
            dry_run: req.dry_run,
            resp,
        },
    }
}

/// Refusals always deny; problems deny in `enforce` and warn in `warn`; notes only warn.
pub(crate) fn apply_findings(mut resp: Answer, mode: LiveMode, findings: Findings) -> Answer {
    let mut warnings = findings.notes;
    if !findings.refusals.is_empty() {
        let mut all = findings.refusals;
        if mode == LiveMode::Enforce {
            all.extend(findings.problems);
        } else {
            warnings.extend(findings.problems);
        }
        resp = deny(resp, all.join("; "));
    } else if !findings.problems.is_empty() {
        match mode {
            LiveMode::Enforce => resp = deny(resp, findings.problems.join("; ")),
            _ => warnings.extend(findings.problems),
        }
    }
    if !warnings.is_empty() {
        resp.warnings = Some(warnings);
    }
    resp
}

/// The answer as written. `response.patch` is a Go `[]byte`, i.e. a base64 string in JSON;
/// kube-core's `AdmissionResponse` serializes its `Vec<u8>` as an array of numbers, which the API
/// server rejects ("cannot unmarshal array"), and with `failurePolicy: Ignore` the defaults
/// would be silently lost.
///
/// Written field by field, serde escaping each value: a derived struct cost about 2,400
/// instructions per answer, most of them deciding which of the status's six optional fields to
/// leave out, and an answer that allows usually has none of them. The field order is that of
/// kube-core's `AdmissionReview` (the test below holds it to a serde-derived reference).
fn review_json(resp: &AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine as _;
    // Room for an allowed answer (about 180 bytes) without growing the buffer on the way.
    let mut json = Vec::with_capacity(256);
    json.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut json, resp.types.api_version.as_str())?;
    json.extend_from_slice(b",\"kind\":");
    serde_json::to_writer(&mut json, resp.types.kind.as_str())?;
    json.extend_from_slice(b",\"response\":{\"uid\":");
    serde_json::to_writer(&mut json, resp.uid.as_str())?;
    json.extend_from_slice(if resp.allowed {
        b",\"allowed\":true,\"status\":"
    } else {
        b",\"allowed\":false,\"status\":"
    });
    if resp.result == kube::core::Status::default() {
        json.extend_from_slice(b"{}");
    } else {
        serde_json::to_writer(&mut json, &resp.result)?;
    }
    if let Some(patch) = &resp.patch {
        json.extend_from_slice(b",\"patch\":");
        serde_json::to_writer(
            &mut json,
            &base64::engine::general_purpose::STANDARD.encode(patch),
        )?;
        // `with_patch` is the only way to a patch, and it sets this type.
        json.extend_from_slice(b",\"patchType\":\"JSONPatch\"");
    }
    if !resp.audit_annotations.is_empty() {
        json.extend_from_slice(b",\"auditAnnotations\":");
        serde_json::to_writer(&mut json, &resp.audit_annotations)?;
    }
    if let Some(warnings) = &resp.warnings {
        json.extend_from_slice(b",\"warnings\":");
        serde_json::to_writer(&mut json, warnings)?;
    }
    json.extend_from_slice(b"}}");
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// The answer as a derived serializer writes it: the reference `review_json` must match
    /// byte for byte.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ReviewOut<'a> {
        api_version: &'a str,
        kind: &'a str,
        response: ResponseOut<'a>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ResponseOut<'a> {
        uid: &'a str,
        allowed: bool,
        status: &'a kube::core::Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
        audit_annotations: &'a std::collections::HashMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a Vec<String>>,
    }

    fn reference_json(resp: &AdmissionResponse) -> Vec<u8> {
        use base64::Engine as _;
        serde_json::to_vec(&ReviewOut {
            api_version: &resp.types.api_version,
            kind: &resp.types.kind,
            response: ResponseOut {
                uid: &resp.uid,
                allowed: resp.allowed,
                status: &resp.result,
                patch: resp
                    .patch
                    .as_ref()
                    .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
                patch_type: resp.patch.is_some().then_some("JSONPatch"),
                audit_annotations: &resp.audit_annotations,
                warnings: resp.warnings.as_ref(),
            },
        })
        .unwrap()
    }

    #[test]
    fn answers_are_written_as_a_derived_serializer_would() {
        let mut req: Request<'_, DynamicObject> = request_of(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-\"1\"\u00e9","kind":{"group":"external-secrets.io","version":"v1","kind":"ExternalSecret"},"operation":"CREATE","object":null,"oldObject":null}}"#,
        )
        .unwrap();
        let allowed = *req.allow();
        let mut warned = allowed.clone();
        warned.warnings = Some(vec!["a \"quoted\" warning".into(), "second\nline".into()]);
        let denied = allowed
            .clone()
            .deny("spec.data[0].remoteRef.key: \"\" is empty; <b>");
        let patched = allowed
            .clone()
            .with_patch(json_patch::Patch(vec![json_patch::PatchOperation::Add(
                json_patch::AddOperation {
                    path: json_patch::jsonptr::PointerBuf::parse("/spec/refreshInterval").unwrap(),
                    value: serde_json::json!("1h0m0s"),
                },
            )]))
            .unwrap();
        let mut audited = denied.clone();
        audited
            .audit_annotations
            .insert("vaultgate/reason".into(), "a \"b\"".into());
        audited.warnings = Some(vec![]);
        let mut coded = allowed.clone();
        coded.result.code = 200;
        for (name, resp) in [
            ("allowed", &allowed),
            ("warned", &warned),
            ("denied", &denied),
            ("patched", &patched),
            ("audited", &audited),
            ("coded", &coded),
        ] {
            let ours = review_json(resp).unwrap();
            assert_eq!(
                String::from_utf8(ours.clone()).unwrap(),
                String::from_utf8(reference_json(resp)).unwrap(),
                "{name}"
            );
            // And it is JSON, with the uid's escapes undone.
            let v: Value = serde_json::from_slice(&ours).unwrap();
            assert_eq!(v["response"]["uid"], "u-\"1\"\u{e9}", "{name}");
        }
        assert!(
            String::from_utf8(review_json(&allowed).unwrap())
                .unwrap()
                .ends_with(r#""allowed":true,"status":{}}}"#)
        );
    }

    #[test]
    fn the_hot_path_reads_an_external_secret_as_the_general_path_does() {
        let spec = serde_json::json!({
            "refreshInterval": "15m",
            "secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"},
            "target": {"name": "app", "template": {"data": {"k": "{{ .password }}"}}},
            "data": [{"secretKey": "password", "remoteRef": {"key": "app", "property": "p"}}],
            "dataFrom": [{"extract": {"key": "shared"}}]
        });
        for object in [
            serde_json::json!({
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": "a", "namespace": "n", "labels": {"x": "y"}},
                "spec": spec, "status": {"refreshTime": null}
            }),
            serde_json::json!({"spec": spec}),
            serde_json::json!({"spec": {}, "metadata": {"name": "b"}, "extra": [1, {"a": null}]}),
        ] {
            let hot: EsObject = serde_json::from_value(object.clone()).unwrap();
            let Ok(Typed::ExternalSecret(general)) =
                Typed::from_value(Kind::ExternalSecret, &object)
            else {
                panic!("{object}");
            };
            assert_eq!(hot.0.spec, general.spec, "{object}");
            // Of the metadata, the hot path keeps what the decision reads.
            let m = |o: &ExternalSecret| (o.metadata.name.clone(), o.metadata.namespace.clone());
            assert_eq!(m(&hot.0), m(&general), "{object}");
        }
        // What a derived reader refuses, this one refuses: the general path then answers.
        for bad in [
            r#"{"metadata": {"name": "a"}}"#,
            r#"{"spec": {}, "spec": {}}"#,
            r#"{"metadata": {}, "spec": {}, "metadata": {}}"#,
            r#"{"spec": null}"#,
            r#"{"metadata": null, "spec": {}}"#,
            r#"{"spec": {"data": "x"}}"#,
            r#"[{}, {}]"#,
            r#""spec""#,
        ] {
            assert!(serde_json::from_str::<EsObject>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn series_count_where_the_labels_say() {
        let m = Metrics::new();
        let s = Series::default();
        let cases = [
            (Endpoint::Validate, "ExternalSecret", "denied", 3),
            (Endpoint::Mutate, "SecretStore", "patched", 2),
            (Endpoint::Validate, "", "invalid", 1),
            // Not in the table: counted all the same.
            (Endpoint::Validate, "Other", "allowed", 2),
        ];
        for (endpoint, kind, result, n) in cases {
            for _ in 0..n {
                s.count(&m, endpoint, kind, result);
            }
        }
        for (endpoint, kind, result, n) in cases {
            let got = m
                .admission_requests
                .with_label_values(&[endpoint.as_str(), kind, result])
                .get();
            assert_eq!(got, n, "{endpoint:?} {kind:?} {result:?}");
        }
        s.duration(&m, Endpoint::Mutate).observe(0.25);
        let h = m.admission_duration.with_label_values(&["mutate"]);
        assert_eq!(h.get_sample_count(), 1);
        assert_eq!(
            m.admission_duration
                .with_label_values(&["validate"])
                .get_sample_count(),
            0
        );
    }
}
