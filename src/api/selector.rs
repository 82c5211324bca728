//! Which namespaces may use a ClusterSecretStore: its `conditions`, as ESO evaluates them.
//! Shared by admission (refuse at apply time) and the reconciler (refuse at sync time).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::store::ClusterSecretStoreCondition;

/// Whether a label selector matches a label set (Kubernetes semantics; an empty selector matches
/// everything). An unknown operator is an error rather than a silent match.
pub fn selector_matches(
    sel: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    if let Some(ml) = &sel.match_labels {
        for (k, v) in ml {
            if labels.get(k) != Some(v) {
                return Ok(false);
            }
        }
    }
    for expr in sel.match_expressions.iter().flatten() {
        let values = expr.values.as_deref().unwrap_or_default();
        let have = labels.get(&expr.key);
        let ok = match expr.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            other => return Err(format!("unknown label selector operator {other:?}")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether an ExternalSecret in `namespace` (with the namespace's `labels`) may use a
/// ClusterSecretStore with these conditions. No conditions: every namespace. Conditions are
/// OR'ed; inside one condition, ESO also ORs the selector, the names and the regexes.
pub fn namespace_allowed(
    conditions: Option<&[ClusterSecretStoreCondition]>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let Some(conditions) = conditions.filter(|c| !c.is_empty()) else {
        return Ok(true);
    };
    for cond in conditions {
        if let Some(sel) = &cond.namespace_selector
            && selector_matches(sel, labels)?
        {
            return Ok(true);
        }
        if cond.namespaces.iter().flatten().any(|n| n.0 == namespace) {
            return Ok(true);
        }
        for re in cond.namespace_regexes.iter().flatten() {
            let re = crate::goregex::new(re)
                .map_err(|e| format!("namespaceRegexes {re:?}: {}", crate::goregex::message(&e)))?;
            if re.is_match(namespace) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// ESO's message when a namespace is not allowed.
pub fn denied_message(store: &str, namespace: &str) -> String {
    format!(
        "using cluster store {store:?} is not allowed from namespace {namespace:?}: denied by spec.condition"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::store::NamespaceName;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(ml: &[(&str, &str)], exprs: &[(&str, &str, &[&str])]) -> LabelSelector {
        LabelSelector {
            match_labels: if ml.is_empty() {
                None
            } else {
                Some(labels(ml))
            },
            match_expressions: if exprs.is_empty() {
                None
            } else {
                Some(
                    exprs
                        .iter()
                        .map(|(k, op, vs)| LabelSelectorRequirement {
                            key: k.to_string(),
                            operator: op.to_string(),
                            values: Some(vs.iter().map(|s| s.to_string()).collect()),
                        })
                        .collect(),
                )
            },
        }
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("team", "a"), ("env", "prod")]);
        let cases = [
            (sel(&[], &[]), true),
            (sel(&[("team", "a")], &[]), true),
            (sel(&[("team", "b")], &[]), false),
            (sel(&[], &[("env", "In", &["prod", "stage"])]), true),
            (sel(&[], &[("env", "NotIn", &["prod"])]), false),
            (sel(&[], &[("missing", "NotIn", &["x"])]), true),
            (sel(&[], &[("team", "Exists", &[])]), true),
            (sel(&[], &[("team", "DoesNotExist", &[])]), false),
            (sel(&[("team", "a")], &[("env", "In", &["dev"])]), false),
        ];
        for (i, (s, want)) in cases.iter().enumerate() {
            assert_eq!(selector_matches(s, &l).unwrap(), *want, "case {i}");
        }
        assert!(selector_matches(&sel(&[], &[("a", "Near", &[])]), &l).is_err());
    }

    #[test]
    fn conditions_are_ored() {
        let conds = vec![
            ClusterSecretStoreCondition {
                namespaces: Some(vec![NamespaceName("team-a".into())]),
                ..Default::default()
            },
            ClusterSecretStoreCondition {
                namespace_regexes: Some(vec!["^team-b-.*$".into()]),
                ..Default::default()
            },
            ClusterSecretStoreCondition {
                namespace_selector: Some(sel(&[("vault", "yes")], &[])),
                ..Default::default()
            },
        ];
        let none = BTreeMap::new();
        assert!(namespace_allowed(Some(&conds), "team-a", &none).unwrap());
        assert!(namespace_allowed(Some(&conds), "team-b-1", &none).unwrap());
        assert!(namespace_allowed(Some(&conds), "other", &labels(&[("vault", "yes")])).unwrap());
        assert!(!namespace_allowed(Some(&conds), "other", &none).unwrap());
        assert!(!namespace_allowed(Some(&conds), "team-b", &none).unwrap());
        assert!(namespace_allowed(None, "anything", &none).unwrap());
        assert!(namespace_allowed(Some(&[]), "anything", &none).unwrap());
        let bad = vec![ClusterSecretStoreCondition {
            namespace_regexes: Some(vec!["(".into()]),
            ..Default::default()
        }];
        assert!(namespace_allowed(Some(&bad), "x", &none).is_err());
        assert_eq!(
            denied_message("vault-backend", "default"),
            "using cluster store \"vault-backend\" is not allowed from namespace \"default\": denied by spec.condition"
        );
    }
}
