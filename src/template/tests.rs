//! How `render_target`, `transform_key` and `check_templates` apply templates to the
//! Secret (ESO semantics); the template language itself is covered by the golden tests.

use super::*;
use crate::api::{
    ExternalSecretDataFromRemoteRef, ExternalSecretRewrite, ExternalSecretTarget,
    ExternalSecretTemplateMetadata, RewriteTransform, TemplateFrom, TemplateRef, TemplateRefItem,
};

fn fetched(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn strings(m: &BTreeMap<String, Vec<u8>>) -> BTreeMap<&str, &str> {
    m.iter()
        .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).unwrap()))
        .collect()
}

fn tpl_data(pairs: &[(&str, &str)]) -> ExternalSecretTemplate {
    ExternalSecretTemplate {
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

#[test]
fn replace_keeps_only_templated_keys() {
    let f = fetched(&[("user", "app"), ("password", "s3cret")]);
    let t = tpl_data(&[("dsn", "postgres://{{ .user }}:{{ .password }}@db:5432/app")]);
    let r = render_target(&t, &f, &TemplateSources::default()).unwrap();
    assert_eq!(
        strings(&r.data),
        BTreeMap::from([("dsn", "postgres://app:s3cret@db:5432/app")])
    );
}

#[test]
fn merge_puts_templated_keys_over_fetched_data() {
    let f = fetched(&[("user", "app"), ("password", "s3cret")]);
    let mut t = tpl_data(&[("user", "{{ .user | upper }}"), ("extra", "x")]);
    t.merge_policy = Some(TemplateMergePolicy::Merge);
    let r = render_target(&t, &f, &TemplateSources::default()).unwrap();
    assert_eq!(
        strings(&r.data),
        BTreeMap::from([("user", "APP"), ("password", "s3cret"), ("extra", "x")])
    );
}

#[test]
fn without_data_templates_the_fetched_data_is_kept() {
    let f = fetched(&[("a", "1")]);
    let t = ExternalSecretTemplate {
        type_: Some("kubernetes.io/tls".into()),
        metadata: Some(ExternalSecretTemplateMetadata {
            labels: Some([("team".to_string(), "{{ .a }}-x".to_string())].into()),
            annotations: Some([("note".to_string(), "plain".to_string())].into()),
            finalizers: None,
        }),
        ..Default::default()
    };
    let r = render_target(&t, &f, &TemplateSources::default()).unwrap();
    assert_eq!(strings(&r.data), BTreeMap::from([("a", "1")]));
    assert_eq!(r.labels["team"], "1-x");
    assert_eq!(r.annotations["note"], "plain");
    assert_eq!(r.type_.as_deref(), Some("kubernetes.io/tls"));
}

fn item(key: &str, scope: TemplateScope) -> TemplateRefItem {
    TemplateRefItem {
        key: key.into(),
        template_as: Some(scope),
    }
}

#[test]
fn template_from_config_map_secret_and_literal() {
    let f = fetched(&[("user", "app"), ("password", "pw")]);
    let mut sources = TemplateSources::default();
    sources.config_maps.insert(
        "tpl".into(),
        BTreeMap::from([
            ("app.conf".to_string(), "user={{ .user }}".to_string()),
            (
                "many".to_string(),
                "one: {{ .user }}\ntwo: \"{{ .password }}\"\n".to_string(),
            ),
        ]),
    );
    sources.secrets.insert(
        "stpl".into(),
        BTreeMap::from([("label".to_string(), b"{{ .user }}-label".to_vec())]),
    );
    let t = ExternalSecretTemplate {
        template_from: Some(vec![
            TemplateFrom {
                config_map: Some(TemplateRef {
                    name: "tpl".into(),
                    items: vec![
                        item("app.conf", TemplateScope::Values),
                        item("many", TemplateScope::KeysAndValues),
                    ],
                }),
                target: Some("Data".into()),
                ..Default::default()
            },
            TemplateFrom {
                secret: Some(TemplateRef {
                    name: "stpl".into(),
                    items: vec![item("label", TemplateScope::Values)],
                }),
                target: Some("Labels".into()),
                ..Default::default()
            },
            TemplateFrom {
                literal: Some("anno-{{ .user }}: yes-{{ .user }}".into()),
                target: Some("Annotations".into()),
                ..Default::default()
            },
        ]),
        // `data` wins over templateFrom for the same key.
        data: Some([("two".to_string(), "from data".to_string())].into()),
        ..Default::default()
    };
    let r = render_target(&t, &f, &sources).unwrap();
    assert_eq!(
        strings(&r.data),
        BTreeMap::from([
            ("app.conf", "user=app"),
            ("one", "app"),
            ("two", "from data"),
        ])
    );
    assert_eq!(
        r.labels,
        BTreeMap::from([("label".into(), "app-label".into())])
    );
    assert_eq!(
        r.annotations,
        BTreeMap::from([("anno-app".into(), "yes-app".into())])
    );
}

#[test]
fn missing_sources_are_named() {
    let t = ExternalSecretTemplate {
        template_from: Some(vec![TemplateFrom {
            config_map: Some(TemplateRef {
                name: "absent".into(),
                items: vec![item("k", TemplateScope::Values)],
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let err = render_target(&t, &BTreeMap::new(), &TemplateSources::default()).unwrap_err();
    assert_eq!(err.kind(), "source");
    assert_eq!(
        err.field(),
        "spec.target.template.templateFrom[0].configMap"
    );
    assert!(err.to_string().contains("\"absent\""), "{err}");

    let mut sources = TemplateSources::default();
    sources.config_maps.insert("absent".into(), BTreeMap::new());
    let err = render_target(&t, &BTreeMap::new(), &sources).unwrap_err();
    assert!(err.to_string().contains("has no key \"k\""), "{err}");
}

#[test]
fn keys_and_values_must_render_a_map() {
    let t = ExternalSecretTemplate {
        template_from: Some(vec![TemplateFrom {
            literal: Some("- a\n- b".into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let err = render_target(&t, &BTreeMap::new(), &TemplateSources::default()).unwrap_err();
    assert_eq!(err.kind(), "output");
    assert_eq!(err.field(), "spec.target.template.templateFrom[0].literal");
}

#[test]
fn errors_name_the_field_and_never_the_value() {
    let f = fetched(&[("password", "hunter2-very-secret")]);
    // The value reaches the error through a function that echoes its argument.
    let t = tpl_data(&[("x", "{{ fail (printf \"bad %s\" .password) }}")]);
    let err = render_target(&t, &f, &TemplateSources::default()).unwrap_err();
    assert_eq!(err.field(), "spec.target.template.data[x]");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().contains("<redacted>"), "{err}");

    let t = tpl_data(&[("x", "{{ .nope }}")]);
    let err = render_target(&t, &f, &TemplateSources::default()).unwrap_err();
    assert_eq!(err.kind(), "execute");
    assert!(err.to_string().contains("\"nope\""), "{err}");
}

#[test]
fn total_output_is_bounded() {
    // Each key alone fits; together they pass the 1 MiB a Secret can hold.
    let big = "{{ repeat 600000 \"x\" }}";
    let t = tpl_data(&[("a", big), ("b", big)]);
    let err = render_target(&t, &BTreeMap::new(), &TemplateSources::default()).unwrap_err();
    assert_eq!(err.kind(), "limit");
    assert_eq!(err.field(), "spec.target.template.data[b]");
}

#[test]
fn transform_key_sees_value() {
    assert_eq!(
        transform_key("{{ .value | upper }}", "db-pass").unwrap(),
        "DB-PASS"
    );
    assert_eq!(
        transform_key("app_{{ .value | replace \"-\" \"_\" }}", "a-b").unwrap(),
        "app_a_b"
    );
    // ESO runs transforms without missingkey=error.
    assert_eq!(transform_key("{{ .other }}", "k").unwrap(), "<no value>");
    let err = transform_key("{{ .value | nope }}", "k").unwrap_err();
    assert_eq!(err.kind(), "parse");
}

#[test]
fn check_templates_reports_paths_and_positions() {
    let spec = ExternalSecretSpec {
        target: Some(ExternalSecretTarget {
            template: Some(Box::new(ExternalSecretTemplate {
                data: Some(
                    [
                        ("ok".to_string(), "{{ .a }}".to_string()),
                        ("bad".to_string(), "line1\n  {{ .a | nosuch }}".to_string()),
                        ("unclosed".to_string(), "{{ if .a }}x".to_string()),
                    ]
                    .into(),
                ),
                metadata: Some(ExternalSecretTemplateMetadata {
                    labels: Some([("l".to_string(), "{{ env \"HOME\" }}".to_string())].into()),
                    ..Default::default()
                }),
                template_from: Some(vec![TemplateFrom {
                    literal: Some("{{ .a ".into()),
                    target: Some("Spec".into()),
                    values_decoding_strategy: Some(crate::api::DecodingStrategy::Base64),
                    ..Default::default()
                }]),
                ..Default::default()
            })),
            ..Default::default()
        }),
        data_from: Some(vec![ExternalSecretDataFromRemoteRef {
            rewrite: Some(vec![ExternalSecretRewrite {
                transform: Some(RewriteTransform {
                    template: "{{ .value | lower }}".into(),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let found = check_templates(&spec);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.target.template.data[bad]",
            "spec.target.template.data[unclosed]",
            "spec.target.template.metadata.labels[l]",
            "spec.target.template.templateFrom[0].literal",
            "spec.target.template.templateFrom[0].target",
        ]
    );
    assert_eq!(
        found[0].1,
        "template: bad:2:11: function \"nosuch\" not defined"
    );
    assert!(
        found[2].1.contains("function \"env\" not defined"),
        "{}",
        found[2].1
    );
    assert!(found[1].1.contains("unclosed:1:"), "{}", found[1].1);
}

#[test]
fn source_names_lists_what_to_fetch() {
    let r = |name: &str| TemplateRef {
        name: name.into(),
        items: vec![],
    };
    let t = ExternalSecretTemplate {
        template_from: Some(vec![
            TemplateFrom {
                config_map: Some(r("cm-a")),
                ..Default::default()
            },
            TemplateFrom {
                secret: Some(r("sec")),
                config_map: Some(r("cm-b")),
                ..Default::default()
            },
            TemplateFrom {
                literal: Some("a: b".into()),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let (cms, secrets) = source_names(&t);
    assert_eq!(cms.into_iter().collect::<Vec<_>>(), ["cm-a", "cm-b"]);
    assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["sec"]);
}
