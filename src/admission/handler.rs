//! AdmissionReview in, AdmissionReview out: parsing, dispatch by kind, and the mapping of
//! rules and live findings to allowed / denied / warnings.

use std::borrow::Cow;
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use kube::core::admission::Operation;
use serde_json::value::RawValue;

use super::budget::{self, TooManyValues};
use super::live::Findings;
use super::object::{EsObject, Typed};
use super::review::{Answer, Request, check_object, deny, request_of, review_json};
use super::{AdmissionState, Kind, LiveMode, MAX_BODY, defaults, rules};

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

async fn respond(state: &AdmissionState, endpoint: Endpoint, body: Body) -> Response {
    let start = Instant::now();
    let work = async {
        // Never closed, so never an error; held until the answer is ready.
        let _slot = state.slots.acquire().await;
        // What it declares, or the most it may be.
        let declared = body.size_hint().upper().unwrap_or(MAX_BODY as u64);
        let mut held = state.budget.body(declared as usize).await;
        let body = read_body(body).await?;
        state
            .budget
            .parse(&mut held, &body)
            .await
            .map_err(|TooManyValues(n)| {
                Refused(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the review holds {n} JSON values; vaultgate reads fewer than {}",
                        budget::MAX_VALUES
                    ),
                    "invalid",
                )
            })?;
        let step = decide(state, endpoint, &body);
        drop(body);
        match step {
            Err(reason) => Err(Refused(StatusCode::BAD_REQUEST, reason, "invalid")),
            Ok(step) => Ok(finish(state, step).await),
        }
    };
    let outcome = tokio::time::timeout_at((start + state.timeout).into(), work)
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
        });
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
    let m = &state.metrics;
    m.admission_requests
        .with_label_values(&[endpoint.as_str(), kind, result])
        .inc();
    m.admission_duration
        .with_label_values(&[endpoint.as_str()])
        .observe(start.elapsed().as_secs_f64());
    let content_type = if status == StatusCode::OK {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
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
    // Everything else: the objects are kept as their text until the kind is known, then read
    // into what the endpoint needs of them.
    let mut req: Request<&RawValue> = request_of(body)?;
    for object in [req.object, req.old_object].into_iter().flatten() {
        check_object(object)?;
    }
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
            let unchanged = match (req.old_object, object) {
                (Some(old), Some(new)) => same_spec(kind, old.get(), new.get()),
                _ => false,
            };
            let typed = object.map(|o| Typed::from_json(kind, o.get(), req.namespace.as_deref()));
            judge(state, kind, &req, typed, unchanged, resp)
        }
    })
}

/// Whether an update leaves the spec as it was: the same text (the API server writes both
/// objects alike), or failing that the same typed spec.
fn same_spec(kind: Kind, old: &str, new: &str) -> bool {
    if old == new {
        return true;
    }
    match (
        Typed::from_json(kind, old, None),
        Typed::from_json(kind, new, None),
    ) {
        (Ok(Typed::ExternalSecret(a)), Ok(Typed::ExternalSecret(b))) => a.spec == b.spec,
        (Ok(Typed::ClusterExternalSecret(a)), Ok(Typed::ClusterExternalSecret(b))) => {
            a.spec == b.spec
        }
        (Ok(Typed::SecretStore(a, pa)), Ok(Typed::SecretStore(b, pb))) => {
            a.spec == b.spec && pa == pb
        }
        (Ok(Typed::ClusterSecretStore(a, pa)), Ok(Typed::ClusterSecretStore(b, pb))) => {
            a.spec == b.spec && pa == pb
        }
        (Ok(Typed::PushSecret(a)), Ok(Typed::PushSecret(b))) => a.spec == b.spec,
        (Ok(Typed::ClusterPushSecret(a)), Ok(Typed::ClusterPushSecret(b))) => a.spec == b.spec,
        _ => false,
    }
}

fn mutate_request(kind: Kind, req: &Request<'_, &RawValue>, mut resp: Answer) -> Answer {
    if !req.writes_object() {
        return resp;
    }
    let Some(obj) = req.object else {
        return resp;
    };
    // An object the defaults cannot read (not an object, a field of the wrong type) gets no
    // defaults: the validating webhook refuses it with the reason.
    let view = defaults::View::read(kind, &mut serde_json::Deserializer::from_str(obj.get()));
    match view.ok().and_then(|v| v.patch()) {
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
    let mut resp = resp;
    let notes = typed.notes();
    if !notes.is_empty() {
        resp.warnings
            .get_or_insert_with(Vec::new)
            .extend(notes.iter().map(ToString::to_string));
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
        resp.warnings.get_or_insert_with(Vec::new).extend(warnings);
    }
    resp
}
