//! Structural-schema handling of CRD objects, in the order kube-apiserver applies
//! it to a request body: prune unknown fields, apply defaults, validate.
//!
//! Error texts follow apimachinery's `field.Error` rendering and the messages of
//! kube-openapi's validators, so clients see what a real server would say.
//!
//! `x-kubernetes-validations` (CEL rules) are not evaluated: there is no CEL
//! interpreter here, so such rules are accepted without being checked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, RwLock};

use base64::Engine as _;
use regex::Regex;
use serde_json::{Map, Value};

/// One validation failure, shaped like apimachinery's `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field as kube prints it (`spec.data[0].secretKey`, `spec.map[key]`).
    pub field: String,
    pub kind: FieldErrorKind,
    /// The error body: what kube prints after `"<field>: "`.
    pub message: String,
}

/// The `field.ErrorType` values the schema handling produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    Required,
    NotSupported,
    Invalid,
    TypeInvalid,
    TooLong,
    TooMany,
    Forbidden,
    /// Duplicate entries of `x-kubernetes-list-type: set|map` lists.
    Duplicate,
}

impl FieldErrorKind {
    /// `field.ErrorType.String()`.
    fn text(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Invalid | FieldErrorKind::TypeInvalid => "Invalid value",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::Duplicate => "Duplicate value",
        }
    }
}

impl FieldError {
    /// Builds an error the way `field.Error.ErrorBody` renders it: the type text,
    /// then the bad value (unless the type never shows one), then the detail.
    fn new(field: &str, kind: FieldErrorKind, bad: Option<&Value>, detail: &str) -> FieldError {
        let mut message = kind.text().to_string();
        let shows_value = !matches!(
            kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        );
        if let (true, Some(v)) = (shows_value, bad) {
            message.push_str(": ");
            message.push_str(&go_error_value(v));
        }
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        FieldError {
            field: if field.is_empty() {
                // A nil field.Path prints as "<nil>".
                "<nil>".to_string()
            } else {
                field.to_string()
            },
            kind,
            message,
        }
    }

    /// The `reason` kube puts in `status.details.causes[].reason`.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
        }
    }

    /// The text after `"<field>: "` in kube messages (also the cause's `message`).
    pub fn detail(&self) -> String {
        self.message.clone()
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Applies a CRD version's openAPIV3Schema to a whole object in kube-apiserver's
/// order: prune unknown fields, default, validate. `apiVersion`, `kind` and
/// `metadata` are kept as they are (metadata is not pruned by the CRD schema);
/// `metadata.name` must be a DNS subdomain (or `generateName` be set).
///
/// Validation runs in the order of the custom-resource strategy: object meta,
/// embedded resources, list-type invariants, then the OpenAPI schema.
pub fn default_prune_validate(schema: &Value, obj: &mut Value) -> Result<(), Vec<FieldError>> {
    prune(schema, obj, true);
    default(schema, obj);

    let mut errs = Vec::new();
    validate_object_meta(obj, &mut errs);
    let mut embedded = Vec::new();
    let mut lists = Vec::new();
    let mut schema_errs = Vec::new();
    let mut v = Validator {
        embedded: &mut embedded,
        lists: &mut lists,
        schema: &mut schema_errs,
    };
    v.validate_value(schema, obj, "");
    errs.extend(embedded);
    errs.extend(lists);
    errs.extend(schema_errs);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// `<Kind>.<group> "<name>" is invalid: [<field>: <detail>, ...]` as kube-apiserver
/// formats it (`errors.NewInvalid`): one error bare, several in brackets,
/// repeated messages dropped as `utilerrors.Aggregate` does.
pub fn invalid_message(kind: &str, group: &str, name: &str, errs: &[FieldError]) -> String {
    let mut seen = std::collections::HashSet::new();
    let parts: Vec<String> = errs
        .iter()
        .map(|e| e.to_string())
        .filter(|s| seen.insert(s.clone()))
        .collect();
    let body = if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    };
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    format!("{qualified} {} is invalid: {body}", go_quote(name))
}

// ---------------------------------------------------------------------------
// Schema accessors

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn props(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

/// `additionalProperties` as a schema (`true` counts as "anything goes").
enum Additional<'a> {
    None,
    Any,
    Schema(&'a Value),
}

fn additional(s: &Value) -> Additional<'_> {
    match s.get("additionalProperties") {
        Some(Value::Bool(true)) => Additional::Any,
        Some(v @ Value::Object(_)) => Additional::Schema(v),
        _ => Additional::None,
    }
}

fn type_of_schema(s: &Value) -> Option<&str> {
    s.get("type").and_then(Value::as_str)
}

// ---------------------------------------------------------------------------
// Pruning

fn prune(s: &Value, v: &mut Value, root: bool) {
    if flag(s, "x-kubernetes-int-or-string") {
        return;
    }
    match v {
        Value::Object(m) => {
            let keep_meta = root || flag(s, "x-kubernetes-embedded-resource");
            let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
            let properties = props(s);
            let add = additional(s);
            m.retain(|k, _| {
                (keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                    || properties.is_some_and(|p| p.contains_key(k))
                    || !matches!(add, Additional::None)
                    || preserve
            });
            for (k, child) in m.iter_mut() {
                if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(ps) = properties.and_then(|p| p.get(k)) {
                    prune(ps, child, false);
                } else if let Additional::Schema(ps) = add {
                    prune(ps, child, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items").filter(|i| i.is_object()) {
                for item in items {
                    prune(is, item, false);
                }
            }
        }
        _ => {}
    }
}

/// Paths of the fields that pruning would drop from `obj` (`spec.bogus`,
/// `spec.data[0].extra`), sorted: what kube-apiserver reports as
/// `unknown field "<path>"` under `fieldValidation=Warn` (a warning each) or
/// `Strict` (a BadRequest). Call it before [`default_prune_validate`].
pub fn unknown_fields(schema: &Value, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_unknown(schema, obj, true, "", &mut out);
    out.sort();
    out
}

/// The read-only twin of [`prune`], recording instead of removing.
fn collect_unknown(s: &Value, v: &Value, root: bool, path: &str, out: &mut Vec<String>) {
    if flag(s, "x-kubernetes-int-or-string") {
        return;
    }
    match v {
        Value::Object(m) => {
            let keep_meta = root || flag(s, "x-kubernetes-embedded-resource");
            let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
            let properties = props(s);
            let add = additional(s);
            for (k, x) in m {
                if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(ps) = properties.and_then(|p| p.get(k)) {
                    collect_unknown(ps, x, false, &child(path, k), out);
                } else if let Additional::Schema(ps) = add {
                    collect_unknown(ps, x, false, &child(path, k), out);
                } else if matches!(add, Additional::None) && !preserve {
                    out.push(child(path, k));
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items").filter(|i| i.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    collect_unknown(is, item, false, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Defaulting

fn is_non_nullable_null(v: &Value, s: &Value) -> bool {
    v.is_null() && !flag(s, "nullable")
}

fn default(s: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(properties) = props(s) {
                for (k, ps) in properties {
                    let Some(d) = ps.get("default") else { continue };
                    match m.get(k) {
                        None => {
                            m.insert(k.clone(), d.clone());
                        }
                        Some(x) if is_non_nullable_null(x, ps) => {
                            m.insert(k.clone(), d.clone());
                        }
                        _ => {}
                    }
                }
                // Nulls of non-nullable fields without a default are dropped
                // rather than rejected, as the apiserver does before validation.
                m.retain(|k, x| {
                    properties.get(k).is_none_or(|ps| {
                        !is_non_nullable_null(x, ps) || ps.get("default").is_some()
                    })
                });
            }
            let add = additional(s);
            if let Additional::Schema(ps) = add {
                if let Some(d) = ps.get("default") {
                    for (k, x) in m.iter_mut() {
                        if props(s).is_none_or(|p| !p.contains_key(k))
                            && is_non_nullable_null(x, ps)
                        {
                            *x = d.clone();
                        }
                    }
                }
                if ps.get("default").is_none() {
                    let properties = props(s);
                    m.retain(|k, x| {
                        properties.is_some_and(|p| p.contains_key(k))
                            || !is_non_nullable_null(x, ps)
                    });
                }
            }
            for (k, x) in m.iter_mut() {
                if let Some(ps) = props(s).and_then(|p| p.get(k)) {
                    default(ps, x);
                } else if let Additional::Schema(ps) = add {
                    default(ps, x);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items").filter(|i| i.is_object()) {
                for item in items.iter_mut() {
                    if let Some(d) = is.get("default")
                        && is_non_nullable_null(item, is)
                    {
                        *item = d.clone();
                    }
                    default(is, item);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Validation

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// JSON type name of a value as kube-openapi infers it from decoded data.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match (want, v) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_)) => true,
        // A float with no fraction (`3.0`) passes as an integer, as in kube-openapi.
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

struct Validator<'e> {
    embedded: &'e mut Vec<FieldError>,
    lists: &'e mut Vec<FieldError>,
    schema: &'e mut Vec<FieldError>,
}

impl Validator<'_> {
    /// Validates without recording anything, for `anyOf`/`oneOf`/`not` branches.
    fn branch_errors(s: &Value, v: &Value, path: &str) -> Vec<FieldError> {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let mut sub = Validator {
            embedded: &mut a,
            lists: &mut b,
            schema: &mut c,
        };
        sub.validate_value(s, v, path);
        c
    }

    fn err(&mut self, path: &str, kind: FieldErrorKind, bad: Option<&Value>, detail: &str) {
        self.schema.push(FieldError::new(path, kind, bad, detail));
    }

    /// Walks the schema and the object together.
    fn validate_value(&mut self, s: &Value, v: &Value, path: &str) {
        if v.is_null() {
            if flag(s, "nullable") {
                return;
            }
            if let Some(t) = type_of_schema(s) {
                self.err(
                    path,
                    FieldErrorKind::TypeInvalid,
                    Some(&Value::String("null".into())),
                    &format!("{path} in body must be of type {t}: \"null\""),
                );
                return;
            }
        }

        // Type; kind-specific checks only make sense for a value of the right type.
        let mut type_ok = true;
        if let Some(t) = type_of_schema(s) {
            if !type_matches(t, v) {
                type_ok = false;
                let actual = json_type(v);
                self.err(
                    path,
                    FieldErrorKind::TypeInvalid,
                    Some(&Value::String(actual.into())),
                    &format!("{path} in body must be of type {t}: {}", go_quote(actual)),
                );
            }
        } else if flag(s, "x-kubernetes-int-or-string")
            // The usual `anyOf: [{type: integer}, {type: string}]` reports it instead.
            && s.get("anyOf").is_none()
            && !matches!(json_type(v), "integer" | "string")
            && !v.is_null()
        {
            type_ok = false;
            let actual = json_type(v);
            self.err(
                path,
                FieldErrorKind::TypeInvalid,
                Some(&Value::String(actual.into())),
                &format!(
                    "{path} in body must be of type integer,string: {}",
                    go_quote(actual)
                ),
            );
        }

        self.composites(s, v, path);

        if type_ok {
            match v {
                Value::String(st) => {
                    self.string_checks(s, st, v, path);
                    self.format_check(s, st, v, path);
                }
                Value::Number(_) => self.number_checks(s, v, path),
                Value::Array(items) => self.array_checks(s, items, path),
                _ => {}
            }
        }

        if let Some(Value::Array(allowed)) = s.get("enum")
            && !allowed.iter().any(|a| json_eq(a, v))
        {
            let values: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(x) => go_quote(x),
                    other => go_quote(&other.to_string()),
                })
                .collect();
            let detail = if values.is_empty() {
                String::new()
            } else {
                format!("supported values: {}", values.join(", "))
            };
            self.err(path, FieldErrorKind::NotSupported, Some(v), &detail);
        }

        if type_ok && let Value::Object(m) = v {
            self.object_checks(s, m, path);
        }
    }

    fn composites(&mut self, s: &Value, v: &Value, path: &str) {
        let quoted = go_quote(path);
        if let Some(Value::Array(all)) = s.get("allOf") {
            let mut failed = false;
            for sub in all {
                let e = Self::branch_errors(sub, v, path);
                failed |= !e.is_empty();
                self.schema.extend(e);
            }
            if failed {
                self.err(
                    "",
                    FieldErrorKind::Invalid,
                    Some(&Value::String(String::new())),
                    &format!("{quoted} must validate all the schemas (allOf)"),
                );
            }
        }
        if let Some(Value::Array(any)) = s.get("anyOf") {
            let results: Vec<Vec<FieldError>> = any
                .iter()
                .map(|sub| Self::branch_errors(sub, v, path))
                .collect();
            if !results.iter().any(Vec::is_empty) {
                self.err(
                    "",
                    FieldErrorKind::Invalid,
                    Some(&Value::String(String::new())),
                    &format!("{quoted} must validate at least one schema (anyOf)"),
                );
                if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                    self.schema.extend(best);
                }
            }
        }
        if let Some(Value::Array(one)) = s.get("oneOf") {
            let results: Vec<Vec<FieldError>> = one
                .iter()
                .map(|sub| Self::branch_errors(sub, v, path))
                .collect();
            let valid = results.iter().filter(|r| r.is_empty()).count();
            if valid != 1 {
                let extra = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                self.err(
                    "",
                    FieldErrorKind::Invalid,
                    Some(&Value::String(String::new())),
                    &format!("{quoted} must validate one and only one schema (oneOf). {extra}"),
                );
                if valid == 0
                    && let Some(best) = results.into_iter().min_by_key(Vec::len)
                {
                    self.schema.extend(best);
                }
            }
        }
        if let Some(not) = s.get("not").filter(|n| n.is_object())
            && Self::branch_errors(not, v, path).is_empty()
        {
            self.err(
                "",
                FieldErrorKind::Invalid,
                Some(&Value::String(String::new())),
                &format!("{quoted} must not validate the schema (not)"),
            );
        }
    }

    fn string_checks(&mut self, s: &Value, st: &str, v: &Value, path: &str) {
        let chars = st.chars().count() as u64;
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && chars > max
        {
            let unit = if max == 1 { "byte" } else { "bytes" };
            self.err(
                path,
                FieldErrorKind::TooLong,
                Some(v),
                &format!("may not be more than {max} {unit}"),
            );
        }
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && chars < min
        {
            self.err(
                path,
                FieldErrorKind::Invalid,
                Some(v),
                &format!("{path} in body should be at least {min} chars long"),
            );
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            match pattern_regex(p) {
                Some(re) if re.is_match(st) => {}
                Some(_) => self.err(
                    path,
                    FieldErrorKind::Invalid,
                    Some(v),
                    &format!("{path} in body should match '{p}'"),
                ),
                None => self.err(
                    path,
                    FieldErrorKind::Invalid,
                    Some(v),
                    &format!("{path} in body has an invalid pattern '{p}'"),
                ),
            }
        }
    }

    fn format_check(&mut self, s: &Value, st: &str, v: &Value, path: &str) {
        let Some(format) = s.get("format").and_then(Value::as_str) else {
            return;
        };
        if !format_ok(format, st) {
            self.err(
                path,
                FieldErrorKind::TypeInvalid,
                Some(v),
                &format!("{path} in body must be of type {format}: {}", go_quote(st)),
            );
        }
    }

    fn number_checks(&mut self, s: &Value, v: &Value, path: &str) {
        let Some(x) = v.as_f64() else { return };
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            let exclusive = flag(s, "exclusiveMaximum");
            if (exclusive && x >= max) || (!exclusive && x > max) {
                let rel = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                self.err(
                    path,
                    FieldErrorKind::Invalid,
                    Some(v),
                    &format!("{path} in body should be {rel} {}", go_float(max)),
                );
            }
        }
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            let exclusive = flag(s, "exclusiveMinimum");
            if (exclusive && x <= min) || (!exclusive && x < min) {
                let rel = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                self.err(
                    path,
                    FieldErrorKind::Invalid,
                    Some(v),
                    &format!("{path} in body should be {rel} {}", go_float(min)),
                );
            }
        }
        if let Some(m) = s.get("multipleOf").and_then(Value::as_f64)
            && m > 0.0
            && ((x / m) - (x / m).round()).abs() > 1e-9
        {
            self.err(
                path,
                FieldErrorKind::Invalid,
                Some(v),
                &format!("{path} in body should be a multiple of {}", go_float(m)),
            );
        }
    }

    fn array_checks(&mut self, s: &Value, items: &[Value], path: &str) {
        let n = items.len() as u64;
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
            && n > max
        {
            let unit = if max == 1 { "item" } else { "items" };
            self.err(
                path,
                FieldErrorKind::TooMany,
                Some(&Value::from(n)),
                &format!("must have at most {max} {unit}"),
            );
        }
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && n < min
        {
            self.err(
                path,
                FieldErrorKind::Invalid,
                Some(&Value::from(n)),
                &format!("{path} in body should have at least {min} items"),
            );
        }
        self.list_type(s, items, path);
        if let Some(is) = s.get("items").filter(|i| i.is_object()) {
            for (i, item) in items.iter().enumerate() {
                self.validate_value(is, item, &format!("{path}[{i}]"));
            }
        }
    }

    /// `x-kubernetes-list-type` invariants: no duplicate set entries or map keys.
    fn list_type(&mut self, s: &Value, items: &[Value], path: &str) {
        match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].iter().any(|prev| json_eq(prev, item)) {
                        self.lists.push(FieldError::new(
                            &format!("{path}[{i}]"),
                            FieldErrorKind::Duplicate,
                            Some(item),
                            "",
                        ));
                    }
                }
            }
            Some("map") => {
                let keys: Vec<&str> = s
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let key_of = |item: &Value| -> Value {
                    let mut m = Map::new();
                    for k in &keys {
                        if let Some(x) = item.get(*k) {
                            m.insert((*k).to_string(), x.clone());
                        } else if let Some(d) = s
                            .get("items")
                            .and_then(props)
                            .and_then(|p| p.get(*k))
                            .and_then(|p| p.get("default"))
                        {
                            m.insert((*k).to_string(), d.clone());
                        }
                    }
                    Value::Object(m)
                };
                let all: Vec<Value> = items.iter().map(key_of).collect();
                for (i, k) in all.iter().enumerate() {
                    if items[i].is_object() && all[..i].iter().any(|p| json_eq(p, k)) {
                        self.lists.push(FieldError::new(
                            &format!("{path}[{i}]"),
                            FieldErrorKind::Duplicate,
                            Some(k),
                            "",
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    fn object_checks(&mut self, s: &Value, m: &Map<String, Value>, path: &str) {
        let n = m.len() as u64;
        if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
            && n > max
        {
            self.err(
                path,
                FieldErrorKind::TooMany,
                Some(&Value::from(n)),
                &format!("must have at most {max} items"),
            );
        }
        if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
            && n < min
        {
            self.err(
                path,
                FieldErrorKind::Invalid,
                Some(&Value::from(n)),
                &format!("{path} in body should have at least {min} properties"),
            );
        }
        if let Some(Value::Array(req)) = s.get("required") {
            for r in req.iter().filter_map(Value::as_str) {
                if !m.contains_key(r) {
                    self.err(&child(path, r), FieldErrorKind::Required, None, "");
                }
            }
        }
        if flag(s, "x-kubernetes-embedded-resource") {
            self.embedded_checks(m, path);
        }
        let properties = props(s);
        let add = additional(s);
        for (k, x) in m {
            if let Some(ps) = properties.and_then(|p| p.get(k)) {
                self.validate_value(ps, x, &child(path, k));
            } else if let Additional::Schema(ps) = add {
                self.validate_value(ps, x, &format!("{path}[{k}]"));
            }
        }
    }

    /// What the apiserver requires of an `x-kubernetes-embedded-resource` object.
    fn embedded_checks(&mut self, m: &Map<String, Value>, path: &str) {
        for key in ["apiVersion", "kind"] {
            let p = child(path, key);
            match m.get(key) {
                None => self.embedded.push(FieldError::new(
                    &p,
                    FieldErrorKind::Required,
                    None,
                    "must not be empty",
                )),
                Some(Value::String(x)) if x.is_empty() => self.embedded.push(FieldError::new(
                    &p,
                    FieldErrorKind::Invalid,
                    Some(&Value::String(String::new())),
                    "must not be empty",
                )),
                Some(Value::String(_)) => {}
                Some(other) => self.embedded.push(FieldError::new(
                    &p,
                    FieldErrorKind::Invalid,
                    Some(other),
                    "must be a string",
                )),
            }
        }
    }
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// `metadata.name` rules of `ValidateObjectMeta` with `NameIsDNSSubdomain`.
fn validate_object_meta(obj: &Value, errs: &mut Vec<FieldError>) {
    let meta = obj.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let generate = meta
        .and_then(|m| m.get("generateName"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match name {
        None | Some("") if generate.is_empty() => errs.push(FieldError::new(
            "metadata.name",
            FieldErrorKind::Required,
            None,
            "name or generateName is required",
        )),
        None | Some("") => {}
        Some(n) => {
            for msg in dns1123_subdomain_errors(n) {
                errs.push(FieldError::new(
                    "metadata.name",
                    FieldErrorKind::Invalid,
                    Some(&Value::String(n.to_string())),
                    &msg,
                ));
            }
        }
    }
}

fn dns1123_subdomain_errors(n: &str) -> Vec<String> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
            .expect("static regex")
    });
    let mut out = Vec::new();
    if n.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if !RE.is_match(n) {
        out.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    out
}

/// Compiled `pattern` regexes, shared by every schema: the same few patterns are
/// matched against thousands of objects.
fn pattern_regex(p: &str) -> Option<Arc<Regex>> {
    static CACHE: LazyLock<RwLock<HashMap<String, Option<Arc<Regex>>>>> =
        LazyLock::new(|| RwLock::new(HashMap::new()));
    if let Some(r) = CACHE.read().unwrap_or_else(|e| e.into_inner()).get(p) {
        return r.clone();
    }
    let compiled = Regex::new(p).ok().map(Arc::new);
    CACHE
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(p.to_string(), compiled.clone());
    compiled
}

fn format_ok(format: &str, s: &str) -> bool {
    static UUID: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
            .expect("static regex")
    });
    static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,62})?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,62})?)*\.?$")
            .expect("static regex")
    });
    match format {
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "uuid" => UUID.is_match(s),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::IpAddr>().is_ok_and(|a| {
                bits.parse::<u8>()
                    .is_ok_and(|b| b <= if a.is_ipv4() { 32 } else { 128 })
            })
        }),
        "hostname" => s.len() <= 255 && HOSTNAME.is_match(s),
        // Other formats (int32, int64, double, password, ...) carry no string rule.
        _ => true,
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// Go value rendering, so bad values print as kube prints them.

/// Go's `%q` of a string.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` of a float64.
fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let exp = f.abs().log10().floor() as i32;
    if !(-4..21).contains(&exp) {
        let s = format!("{f:e}");
        // Rust prints `1e21` and `1e-5`, Go `1e+21` and `1e-05`.
        match s
            .split_once('e')
            .and_then(|(m, e)| Some((m, e.parse::<i32>().ok()?)))
        {
            Some((m, e)) => {
                let sign = if e < 0 { '-' } else { '+' };
                format!("{m}e{sign}{:02}", e.abs())
            }
            None => s,
        }
    } else {
        format!("{f}")
    }
}

/// How `field.Error.ErrorBody` prints a bad value: simple types with `%v`,
/// strings with `%q`, null as `"null"`, maps and slices with `%#v`.
fn go_error_value(v: &Value) -> String {
    match v {
        Value::Null => go_quote("null"),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        other => go_sharp(other),
    }
}

fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        // Beyond int64 the decoder yields a float64.
        go_float(u as f64)
    } else {
        go_float(n.as_f64().unwrap_or(0.0))
    }
}

/// Go's `%#v` of decoded JSON (`map[string]interface {}{"a":1}`).
fn go_sharp(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::Array(items) => format!(
            "[]interface {{}}{{{}}}",
            items.iter().map(go_sharp).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            format!(
                "map[string]interface {{}}{{{}}}",
                sorted
                    .iter()
                    .map(|(k, v)| format!("{}:{}", go_quote(k), go_sharp(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_float_matches_go_formatting() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
    }

    #[test]
    fn go_sharp_renders_maps_sorted() {
        assert_eq!(
            go_sharp(&json!({"b": 1, "a": "x"})),
            r#"map[string]interface {}{"a":"x", "b":1}"#
        );
    }
}
