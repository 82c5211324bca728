//! Label and field selectors, parsed as kube-apiserver parses them.

use crate::status::ApiError;
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

static LABEL_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    )
    .expect("static regex")
});
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$").expect("static regex")
});
static SET_TERM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\S+)\s+(in|notin)\s*\((.*)\)$").expect("static regex"));

fn valid_label_key(k: &str) -> bool {
    LABEL_KEY.is_match(k)
}

fn valid_label_value(v: &str) -> bool {
    v.is_empty() || LABEL_VALUE.is_match(v)
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = vec![];
        let s = s.trim();
        if s.is_empty() {
            return Ok(LabelSelector { reqs });
        }
        let bad =
            |why: String| ApiError::bad_request(format!("unable to parse requirement: {why}"));
        for term in split_top_level(s) {
            let t = term.trim();
            if t.is_empty() {
                return Err(bad("found '', expected: identifier".into()));
            }
            let req = if let Some(k) = t.strip_prefix('!') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::DoesNotExist,
                    values: vec![],
                }
            } else if let Some((k, v)) = t.split_once("!=") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotEq,
                    values: vec![v.trim().into()],
                }
            } else if let Some((k, v)) = t.split_once("==") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq,
                    values: vec![v.trim().into()],
                }
            } else if let Some((k, v)) = t.split_once('=') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq,
                    values: vec![v.trim().into()],
                }
            } else if let Some(caps) = SET_TERM.captures(t) {
                let values: Vec<String> =
                    caps[3].split(',').map(|v| v.trim().to_string()).collect();
                Requirement {
                    key: caps[1].into(),
                    op: if &caps[2] == "in" { Op::In } else { Op::NotIn },
                    values,
                }
            } else if !t.contains(' ') {
                Requirement {
                    key: t.into(),
                    op: Op::Exists,
                    values: vec![],
                }
            } else {
                return Err(bad(format!(
                    "found '{t}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            };
            if !valid_label_key(&req.key) {
                return Err(bad(format!(
                    "invalid label key \"{}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    req.key
                )));
            }
            for v in &req.values {
                if !valid_label_value(v) {
                    return Err(bad(format!(
                        "invalid label value: \"{v}\": at key: \"{}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                        req.key
                    )));
                }
            }
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.reqs.iter().all(|r| {
            let v = labels.get(&r.key).and_then(|v| v.as_str());
            match r.op {
                Op::Eq => v == Some(r.values[0].as_str()),
                Op::NotEq => v != Some(r.values[0].as_str()),
                Op::In => v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Op::NotIn => !v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }
}

/// A parsed field selector over the fields the resource supports.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

/// Fields usable in field selectors for a resource, beyond metadata.name/namespace.
fn extra_fields(group: &str, plural: &str) -> &'static [&'static str] {
    match (group, plural) {
        ("", "secrets") => &["type"],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "events") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "namespaces") => &["status.phase"],
        ("", "serviceaccounts") => &[],
        _ => &[],
    }
}

impl FieldSelector {
    pub fn parse(s: &str, group: &str, plural: &str) -> Result<Self, ApiError> {
        let mut reqs = vec![];
        if s.trim().is_empty() {
            return Ok(FieldSelector { reqs });
        }
        let extra = extra_fields(group, plural);
        for term in s.split(',') {
            let t = term.trim();
            let (k, eq, v) = if let Some((k, v)) = t.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = t.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = t.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{t}'"
                )));
            };
            let k = k.trim();
            if k != "metadata.name" && k != "metadata.namespace" && !extra.contains(&k) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {k}"
                )));
            }
            reqs.push((k.to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector { reqs })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(k, eq, v)| {
            let actual = if k == "source" {
                obj["source"]["component"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            } else {
                let mut cur = obj;
                for part in k.split('.') {
                    cur = &cur[part];
                }
                match cur {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                }
            };
            (actual == *v) == *eq
        })
    }
}

/// Evaluate the simple JSONPath forms used by additionalPrinterColumns:
/// `.a.b`, `.a[0].b`, `.a[?(@.k=="v")].b`.
pub fn jsonpath<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = obj;
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            cur = cur.get(name)?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, v) = f.split_once("==")?;
                let v = v.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|item| item.get(k.trim()).and_then(|x| x.as_str()) == Some(v))?;
            } else {
                let idx: usize = inner.parse().ok()?;
                cur = cur.as_array()?.get(idx)?;
            }
        } else {
            return None;
        }
    }
    Some(cur)
}
