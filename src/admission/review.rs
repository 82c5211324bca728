//! The AdmissionReview on the wire: the request as read from a body (its strings borrowed
//! from it), and the answer as written.

use std::borrow::Cow;
use std::sync::OnceLock;

use kube::core::TypeMeta;
use kube::core::admission::{AdmissionResponse, Operation};
use serde::Deserialize;
use serde_json::Value;

/// An answer on its way through the decision. Boxed from the start: `AdmissionResponse` is 448
/// bytes, and moved by value from the request through the rules, the live checks and the
/// review's future, it was copied over a dozen times per review (a twentieth of its time).
pub type Answer = Box<AdmissionResponse>;

/// kube-core's `AdmissionResponse::deny` on a boxed answer (a new box: denials are not the
/// path worth saving an allocation on).
pub(crate) fn deny(resp: Answer, reason: impl ToString) -> Answer {
    Box::new(resp.deny(reason))
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
pub(crate) struct ReviewIn<'a, K> {
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
pub(crate) struct Request<'a, K> {
    /// The review's own `apiVersion` and `kind`, echoed in the answer.
    #[serde(skip)]
    pub(crate) review_api_version: Cow<'a, str>,
    #[serde(skip)]
    pub(crate) review_kind: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) uid: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) kind: Gvk<'a>,
    #[serde(default, borrow)]
    pub(crate) sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) namespace: Option<Cow<'a, str>>,
    pub(crate) operation: Operation,
    pub(crate) object: Option<K>,
    pub(crate) old_object: Option<K>,
    #[serde(default)]
    pub(crate) dry_run: bool,
}

/// A request's `kind`: kube-core's `GroupVersionKind`, borrowed (all three are required).
#[derive(Deserialize)]
pub(crate) struct Gvk<'a> {
    #[serde(borrow)]
    pub(crate) group: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) version: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) kind: Cow<'a, str>,
}

impl<K> Request<'_, K> {
    /// An answer allowing this request, to be refined (what kube-core's `From<&AdmissionRequest>`
    /// gives: the review's type, the request's uid, allowed, an empty status). Built from an
    /// empty answer made once, taking the type and uid from the request: kube-core's only
    /// public constructor (`invalid`) allocates seven strings that an allowed answer discards.
    pub(crate) fn allow(&mut self) -> Answer {
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
    pub(crate) fn writes_object(&self) -> bool {
        matches!(self.operation, Operation::Create | Operation::Update)
            && self.sub_resource.is_none()
    }
}

pub(crate) fn request_of<'a, K>(body: &'a [u8]) -> Result<Request<'a, K>, String>
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

/// The answer as written. `response.patch` is a Go `[]byte`, i.e. a base64 string in JSON;
/// kube-core's `AdmissionResponse` serializes its `Vec<u8>` as an array of numbers, which the API
/// server rejects ("cannot unmarshal array"), and with `failurePolicy: Ignore` the defaults
/// would be silently lost.
///
/// Written field by field, serde escaping each value: a derived struct cost about 2,400
/// instructions per answer, most of them deciding which of the status's six optional fields to
/// leave out, and an answer that allows usually has none of them. The field order is that of
/// kube-core's `AdmissionReview` (the test below holds it to a serde-derived reference).
/// An object of a review that is read later, by kind: it must still be what a review's object
/// is — a JSON object with well-typed metadata, nested no deeper than JSON parsing goes — or
/// the review is malformed. Read without keeping anything.
pub(crate) fn check_object(raw: &serde_json::value::RawValue) -> Result<(), String> {
    serde_json::from_str::<Shape>(raw.get())
        .map(drop)
        .map_err(malformed)
}

/// A review's object, checked and dropped as it is read.
struct Shape;

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        use serde::de::{MapAccess, Visitor};
        type Meta = Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>;
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "metadata" {
                        map.next_value::<Meta>()?;
                    } else {
                        map.next_value::<Walk>()?;
                    }
                }
                Ok(Shape)
            }
        }
        d.deserialize_map(V)
    }
}

/// Any JSON value, read to its end and not kept. Unlike `IgnoredAny` (which serde_json skips
/// without counting), it is read through `deserialize_any`, which applies the nesting limit.
struct Walk;

impl<'de> Deserialize<'de> for Walk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Walk, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Walk;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_unit<E>(self) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Walk, A::Error> {
                while seq.next_element::<Walk>()?.is_some() {}
                Ok(Walk)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Walk, A::Error> {
                while map.next_key::<Walk>()?.is_some() {
                    map.next_value::<Walk>()?;
                }
                Ok(Walk)
            }
        }
        d.deserialize_any(V)
    }
}

/// The AdmissionReview answer as the API server reads it (kube's own `AdmissionReview` would
/// first copy the response into a `DynamicObject` review).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'a str,
    response: ResponseOut<'a>,
}

#[derive(serde::Serialize)]
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

pub(crate) fn review_json(resp: &AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DynamicObject;

    #[test]
    fn answers_are_admission_reviews_the_api_server_reads() {
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
            let v: Value = serde_json::from_slice(&ours).unwrap();
            assert_eq!(v["response"]["uid"], "u-\"1\"\u{e9}", "{name}");
            assert_eq!(v["response"]["allowed"], resp.allowed, "{name}");
            assert_eq!(
                v["response"]["patchType"].as_str(),
                resp.patch.is_some().then_some("JSONPatch"),
                "{name}"
            );
            assert_eq!(v["kind"], "AdmissionReview", "{name}");
            assert_eq!(
                v["response"]["warnings"].as_array().map(|w| w.len()),
                resp.warnings.as_ref().map(|w| w.len()),
                "{name}"
            );
        }
        assert!(
            String::from_utf8(review_json(&allowed).unwrap())
                .unwrap()
                .ends_with(r#""allowed":true,"status":{}}}"#)
        );
    }
}
