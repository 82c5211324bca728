//! The rules for a ClusterExternalSecret: every ExternalSecret rule on `externalSecretSpec`
//! (named with the full field path), then its namespace selectors and `refreshTime`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::{ClusterExternalSecret, ExternalSecret};

use super::names::{NAME, QUALIFIED, is_name, is_qualified_name};
use super::{Problem, external_secret};

/// Where the ExternalSecret spec sits in a ClusterExternalSecret.
pub const ES_SPEC: &str = "spec.externalSecretSpec";

/// The ExternalSecret a ClusterExternalSecret makes (namespace left empty: it varies).
pub fn external_secret_of(ces: &ClusterExternalSecret) -> ExternalSecret {
    let mut es = ExternalSecret::new(
        &ces.external_secret_name(),
        ces.spec.external_secret_spec.clone(),
    );
    if let Some(m) = &ces.spec.external_secret_metadata {
        es.metadata.labels = m.labels.clone();
        es.metadata.annotations = m.annotations.clone();
    }
    es
}

/// An ExternalSecret problem's field, as a field of the ClusterExternalSecret.
fn nested(field: &str) -> String {
    match field.strip_prefix("spec") {
        Some(rest) => format!("{ES_SPEC}{rest}"),
        None => format!("{ES_SPEC}.{field}"),
    }
}

pub fn cluster_external_secret(ces: &ClusterExternalSecret) -> Vec<Problem> {
    let mut p: Vec<Problem> = external_secret(&external_secret_of(ces))
        .into_iter()
        .map(|pr| Problem::new(nested(&pr.field), pr.message))
        .collect();
    if let Some(sel) = &ces.spec.namespace_selector {
        selector(&mut p, "spec.namespaceSelector", sel);
    }
    for (i, sel) in ces.spec.namespace_selectors.iter().flatten().enumerate() {
        selector(&mut p, &format!("spec.namespaceSelectors[{i}]"), sel);
    }
    if let Some(m) = &ces.spec.external_secret_metadata {
        for (what, map) in [("labels", &m.labels), ("annotations", &m.annotations)] {
            for k in map.iter().flat_map(|m| m.keys()) {
                if !is_qualified_name(k) {
                    p.push(Problem::new(
                        format!("spec.externalSecretMetadata.{what}"),
                        format!("key {k:?} is not {QUALIFIED}"),
                    ));
                }
            }
        }
        for (k, v) in m.labels.iter().flatten() {
            if !v.is_empty() && !is_name(v) {
                p.push(Problem::new(
                    format!("spec.externalSecretMetadata.labels.{k}"),
                    format!("value {v:?} is not empty or {NAME}"),
                ));
            }
        }
    }
    if let Some(t) = &ces.spec.refresh_time
        && let Err(e) = crate::api::duration::parse(t)
    {
        p.push(Problem::new("spec.refreshTime", format!("{t:?}: {e}")));
    }
    p
}

/// A label selector as the API server's `LabelSelectorAsSelector` accepts it: known operators,
/// values only with In/NotIn (and then at least one), valid keys and values.
fn selector(p: &mut Vec<Problem>, at: &str, sel: &LabelSelector) {
    for (k, v) in sel.match_labels.iter().flatten() {
        if !is_qualified_name(k) {
            p.push(Problem::new(
                format!("{at}.matchLabels"),
                format!("key {k:?} is not {QUALIFIED}"),
            ));
        }
        if !v.is_empty() && !is_name(v) {
            p.push(Problem::new(
                format!("{at}.matchLabels.{k}"),
                format!("value {v:?} is not empty or {NAME}"),
            ));
        }
    }
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let field = format!("{at}.matchExpressions[{i}]");
        if !is_qualified_name(&e.key) {
            p.push(Problem::new(
                format!("{field}.key"),
                format!("{:?} is not {QUALIFIED}", e.key),
            ));
        }
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => p.push(Problem::new(
                format!("{field}.values"),
                format!("operator {} needs at least one value", e.operator),
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => p.push(Problem::new(
                format!("{field}.values"),
                format!("operator {} takes no values", e.operator),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => p.push(Problem::new(
                format!("{field}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
            )),
        }
        for v in values {
            if !v.is_empty() && !is_name(v) {
                p.push(Problem::new(
                    format!("{field}.values"),
                    format!("{v:?} is not empty or {NAME}"),
                ));
            }
        }
    }
}

#[cfg(test)]
#[path = "cluster_external_secret_tests.rs"]
mod tests;
