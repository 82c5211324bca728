//! The rules for a PushSecret and a ClusterPushSecret (whose `spec.pushSecretSpec` is a
//! PushSecret spec). Problems name the field path; a secret value never appears.

use std::collections::HashSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::{
    ClusterPushSecret, ExternalSecretSpec, ExternalSecretTarget, PushSecret, PushSecretSpec,
    duration,
};
use crate::vault::paths::{self, quoted};
use crate::vault::push_plan::parse_push_metadata;

use super::names::{NAME, is_name};
use super::templates::{template_keys, templates_fit};
use super::{NOT_SUPPORTED, Problem};

pub fn push_secret(ps: &PushSecret) -> Vec<Problem> {
    let mut p = Vec::new();
    spec_rules(&ps.spec, "spec", &mut p);
    p
}

pub fn cluster_push_secret(cps: &ClusterPushSecret) -> Vec<Problem> {
    let mut p = Vec::new();
    let s = &cps.spec;
    spec_rules(&s.push_secret_spec, "spec.pushSecretSpec", &mut p);
    if let Some(t) = s.refresh_time.as_deref()
        && let Err(e) = duration::parse(t)
    {
        p.push(Problem::new("spec.refreshTime", e.to_string()));
    }
    if let Some(n) = s.push_secret_name.as_deref()
        && !is_dns_subdomain(n)
    {
        p.push(Problem::new(
            "spec.pushSecretName",
            format!("{} is not a valid object name", quoted(n)),
        ));
    }
    for (i, sel) in s.namespace_selectors.iter().flatten().enumerate() {
        selector_rules(sel, &format!("spec.namespaceSelectors[{i}]"), &mut p);
    }
    if s.namespace_selectors.as_ref().is_none_or(|v| v.is_empty()) {
        p.push(Problem::new(
            "spec.namespaceSelectors",
            "no namespace selector: the ClusterPushSecret would create no PushSecret",
        ));
    }
    p
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn selector_rules(sel: &LabelSelector, at: &str, p: &mut Vec<Problem>) {
    for (k, v) in sel.match_labels.iter().flatten() {
        if !v.is_empty() && !is_name(v) {
            p.push(Problem::new(
                format!("{at}.matchLabels[{k}]"),
                format!("{} is not a valid label value ({NAME})", quoted(v)),
            ));
        }
    }
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let f = format!("{at}.matchExpressions[{i}]");
        let n = e.values.as_ref().map_or(0, Vec::len);
        match e.operator.as_str() {
            "In" | "NotIn" if n == 0 => p.push(Problem::new(
                format!("{f}.values"),
                format!("operator {} needs values", e.operator),
            )),
            "Exists" | "DoesNotExist" if n > 0 => p.push(Problem::new(
                format!("{f}.values"),
                format!("operator {} takes no values", e.operator),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => p.push(Problem::new(
                format!("{f}.operator"),
                format!(
                    "{} is not a label selector operator (In, NotIn, Exists, DoesNotExist)",
                    quoted(other)
                ),
            )),
        }
    }
}

fn spec_rules(spec: &PushSecretSpec, at: &str, p: &mut Vec<Problem>) {
    if let Some(r) = spec.refresh_interval.as_deref()
        && let Err(e) = duration::parse(r)
    {
        p.push(Problem::new(format!("{at}.refreshInterval"), e.to_string()));
    }

    if spec.secret_store_refs.is_empty() {
        p.push(Problem::new(
            format!("{at}.secretStoreRefs"),
            "at least one store to push to is needed",
        ));
    }
    for (i, r) in spec.secret_store_refs.iter().enumerate() {
        let f = format!("{at}.secretStoreRefs[{i}]");
        let name = r.name.as_deref().filter(|n| !n.is_empty());
        match (name, &r.label_selector) {
            (None, None) => p.push(Problem::new(&f, "needs a name or a labelSelector")),
            (Some(_), Some(_)) => p.push(Problem::new(
                &f,
                "name and labelSelector are both set: give one",
            )),
            (None, Some(sel)) => selector_rules(sel, &format!("{f}.labelSelector"), p),
            (Some(_), None) => {}
        }
    }

    let sel = &spec.selector;
    match (&sel.secret, &sel.generator_ref) {
        (None, None) => p.push(Problem::new(
            format!("{at}.selector"),
            "needs secret (the Secret to push)",
        )),
        (Some(_), Some(_)) => p.push(Problem::new(
            format!("{at}.selector"),
            "secret and generatorRef are both set: give one",
        )),
        (None, Some(g)) => {
            let f = format!("{at}.selector.generatorRef");
            super::external_secret::generator_ref(p, &f, g);
            // ESO mints new credentials on each push and never revokes the superseded
            // lease: refused rather than left to pile up live credentials in Vault.
            if g.kind == crate::api::GeneratorKind::VaultDynamicSecret {
                p.push(Problem::new(
                    format!("{f}.kind"),
                    "a VaultDynamicSecret cannot be pushed: each push would mint new leased \
                     credentials and none would be revoked (use an ExternalSecret, which tracks \
                     its leases)",
                ));
            }
        }
        (Some(s), None) => {
            let f = format!("{at}.selector.secret");
            match (s.name.as_deref().filter(|n| !n.is_empty()), &s.selector) {
                (None, None) => p.push(Problem::new(&f, "needs a name or a selector")),
                (Some(_), Some(_)) => {
                    p.push(Problem::new(&f, "name and selector are both set: give one"))
                }
                (None, Some(ls)) => selector_rules(ls, &format!("{f}.selector"), p),
                (Some(_), None) => {}
            }
        }
    }

    if spec.data_to.as_ref().is_some_and(|d| !d.is_empty()) {
        p.push(Problem::new(
            format!("{at}.dataTo"),
            format!("{NOT_SUPPORTED}: list the keys in data"),
        ));
    }
    let data = spec.data.as_deref().unwrap_or_default();
    if data.is_empty() {
        p.push(Problem::new(format!("{at}.data"), "nothing to push"));
    }
    let mut targets = HashSet::new();
    for (i, d) in data.iter().enumerate() {
        let f = format!("{at}.data[{i}]");
        let r = &d.match_.remote_ref;
        if let Err(e) = paths::check_key(&r.remote_key) {
            p.push(Problem::new(format!("{f}.match.remoteRef.remoteKey"), e));
        }
        if r.property.as_deref() == Some("") {
            p.push(Problem::new(
                format!("{f}.match.remoteRef.property"),
                "is empty: leave it out to push the whole value",
            ));
        }
        if let Some(k) = d.match_.secret_key.as_deref()
            && !k.is_empty()
            && !crate::vault::values::is_valid_secret_key(k)
        {
            p.push(Problem::new(
                format!("{f}.match.secretKey"),
                format!("{} is not a valid Secret key", quoted(k)),
            ));
        }
        if let Err(e) = parse_push_metadata(d.metadata.as_ref()) {
            p.push(Problem::new(format!("{f}.metadata"), e));
        }
        // Two entries on one target overwrite each other on every push.
        if !targets.insert(r.status_key()) {
            p.push(Problem::new(
                format!("{f}.match.remoteRef"),
                format!(
                    "{} is already pushed by another entry of data",
                    quoted(&r.status_key())
                ),
            ));
        }
    }

    if let Some(t) = &spec.template {
        // The ExternalSecret template rules, on the same template type; paths renamed.
        let shim = ExternalSecretSpec {
            target: Some(ExternalSecretTarget {
                template: Some(Box::new(t.clone())),
                ..Default::default()
            }),
            ..Default::default()
        };
        let rename =
            |field: String| field.replacen("spec.target.template", &format!("{at}.template"), 1);
        let mut found = vec![];
        let fits = match templates_fit(&shim) {
            Ok(()) => true,
            Err(e) => {
                found.push(e);
                false
            }
        };
        template_keys(&mut found, t);
        if fits {
            for (field, message) in crate::template::check_templates(&shim) {
                found.push(Problem::new(field, message));
            }
        }
        p.extend(
            found
                .into_iter()
                .filter(|x| x.field.starts_with("spec.target.template"))
                .map(|x| Problem::new(rename(x.field), x.message)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ps(spec: serde_json::Value) -> PushSecret {
        PushSecret::new("ps", serde_json::from_value(spec).unwrap())
    }

    fn good() -> serde_json::Value {
        json!({
            "secretStoreRefs": [{"name": "vault", "kind": "SecretStore"}],
            "selector": {"secret": {"name": "src"}},
            "data": [{"match": {"secretKey": "k", "remoteRef": {"remoteKey": "app/k", "property": "p"}}}]
        })
    }

    fn fields(p: &[Problem]) -> Vec<String> {
        p.iter().map(|x| x.field.clone()).collect()
    }

    #[test]
    fn a_good_push_secret_passes() {
        assert_eq!(push_secret(&ps(good())), vec![]);
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (json!({"refreshInterval": "soon"}), "spec.refreshInterval"),
            (json!({"secretStoreRefs": []}), "spec.secretStoreRefs"),
            (
                json!({"secretStoreRefs": [{"kind": "SecretStore"}]}),
                "spec.secretStoreRefs[0]",
            ),
            (
                json!({"secretStoreRefs": [{"name": "a", "labelSelector": {"matchLabels": {"x": "y"}}}]}),
                "spec.secretStoreRefs[0]",
            ),
            (
                json!({"secretStoreRefs": [{"labelSelector": {"matchExpressions": [{"key": "x", "operator": "Near"}]}}]}),
                "spec.secretStoreRefs[0].labelSelector.matchExpressions[0].operator",
            ),
            (json!({"selector": {}}), "spec.selector"),
            (
                json!({"selector": {"generatorRef": {"kind": "VaultDynamicSecret", "name": "db"}}}),
                "spec.selector.generatorRef.kind",
            ),
            (
                json!({"selector": {"generatorRef": {"kind": "ECRAuthorizationToken", "name": "e"}}}),
                "spec.selector.generatorRef.kind",
            ),
            (
                json!({"selector": {"generatorRef": {"apiVersion": "generators.external-secrets.io/v9", "kind": "Password", "name": "p"}}}),
                "spec.selector.generatorRef.apiVersion",
            ),
            (json!({"selector": {"secret": {}}}), "spec.selector.secret"),
            (json!({"data": []}), "spec.data"),
            (
                json!({"dataTo": [{"storeRef": {"name": "vault"}}]}),
                "spec.dataTo",
            ),
            (
                json!({"data": [{"match": {"remoteRef": {"remoteKey": "../etc"}}}]}),
                "spec.data[0].match.remoteRef.remoteKey",
            ),
            (
                json!({"data": [{"match": {"remoteRef": {"remoteKey": "a", "property": ""}}}]}),
                "spec.data[0].match.remoteRef.property",
            ),
            (
                json!({"data": [{"match": {"secretKey": "bad key", "remoteRef": {"remoteKey": "a"}}}]}),
                "spec.data[0].match.secretKey",
            ),
            (
                json!({"data": [{"match": {"remoteRef": {"remoteKey": "a"}}, "metadata": {"kind": "Other"}}]}),
                "spec.data[0].metadata",
            ),
            (
                json!({"data": [
                    {"match": {"secretKey": "a", "remoteRef": {"remoteKey": "x", "property": "p"}}},
                    {"match": {"secretKey": "b", "remoteRef": {"remoteKey": "x", "property": "p"}}}
                ]}),
                "spec.data[1].match.remoteRef",
            ),
            (
                json!({"template": {"data": {"k": "{{ .a | nosuchfunc }}"}}}),
                "spec.template.data[k]",
            ),
        ];
        for (patch, field) in cases {
            let mut spec = good();
            for (k, v) in patch.as_object().unwrap() {
                spec[k] = v.clone();
            }
            let got = push_secret(&ps(spec));
            assert!(fields(&got).iter().any(|f| f == field), "{field}: {got:?}");
        }
    }

    #[test]
    fn a_served_generator_is_a_source() {
        for kind in ["Password", "UUID", "SSHKey", "ClusterGenerator"] {
            let mut spec = good();
            spec["selector"] = json!({"generatorRef": {"kind": kind, "name": "g"}});
            assert_eq!(push_secret(&ps(spec)), vec![], "{kind}");
        }
    }

    #[test]
    fn cluster_push_secret_rules_prefix_the_inner_spec() {
        let cps = |spec: serde_json::Value| -> ClusterPushSecret {
            ClusterPushSecret::new("c", serde_json::from_value(spec).unwrap())
        };
        let ok = cps(json!({
            "pushSecretSpec": good(),
            "namespaceSelectors": [{"matchLabels": {"team": "a"}}],
            "refreshTime": "1m"
        }));
        assert_eq!(cluster_push_secret(&ok), vec![]);
        let mut inner = good();
        inner["secretStoreRefs"] = json!([]);
        let bad = cps(json!({
            "pushSecretSpec": inner,
            "pushSecretName": "Not_A_Name",
            "refreshTime": "often"
        }));
        let got = fields(&cluster_push_secret(&bad));
        for f in [
            "spec.pushSecretSpec.secretStoreRefs",
            "spec.pushSecretName",
            "spec.refreshTime",
            "spec.namespaceSelectors",
        ] {
            assert!(got.iter().any(|g| g == f), "{f}: {got:?}");
        }
    }
}
