//! Pruning, defaulting and validation of custom resources against structural schemas.

use kube_emulator::schema::{
    FieldErrorKind, default_prune_validate, invalid_message, unknown_fields,
};
use serde_json::{Value, json};

fn root(spec: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        }
    })
}

fn obj(spec: Value) -> Value {
    json!({
        "apiVersion": "example.io/v1",
        "kind": "Thing",
        "metadata": {"name": "thing-1", "labels": {"a": "b"}, "annotations": {"x": "y"}},
        "spec": spec,
    })
}

/// Runs the whole pipeline and renders each error as `<field>: <detail>`.
fn errors(spec_schema: Value, spec: Value) -> Vec<String> {
    let mut o = obj(spec);
    match default_prune_validate(&root(spec_schema), &mut o) {
        Ok(()) => vec![],
        Err(errs) => errs
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail()))
            .collect(),
    }
}

#[test]
fn validation_table() {
    let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        (
            "valid object passes",
            json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            json!({"a": "x"}),
            vec![],
        ),
        (
            "string given for integer",
            json!({"type": "object", "properties": {"x": {"type": "integer"}}}),
            json!({"x": "string"}),
            vec![
                r#"spec.x: Invalid value: "string": spec.x in body must be of type integer: "string""#,
            ],
        ),
        (
            "float given for integer",
            json!({"type": "object", "properties": {"x": {"type": "integer"}}}),
            json!({"x": 1.5}),
            vec![
                r#"spec.x: Invalid value: "number": spec.x in body must be of type integer: "number""#,
            ],
        ),
        (
            "integer accepted for number",
            json!({"type": "object", "properties": {"x": {"type": "number"}}}),
            json!({"x": 3}),
            vec![],
        ),
        (
            "object given for string",
            json!({"type": "object", "properties": {"x": {"type": "string"}}}),
            json!({"x": {}}),
            vec![
                r#"spec.x: Invalid value: "object": spec.x in body must be of type string: "object""#,
            ],
        ),
        (
            "boolean given for array",
            json!({"type": "object", "properties": {"x": {"type": "array", "items": {"type": "string"}}}}),
            json!({"x": true}),
            vec![
                r#"spec.x: Invalid value: "boolean": spec.x in body must be of type array: "boolean""#,
            ],
        ),
        (
            "missing required fields",
            json!({"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}),
            json!({"b": "x"}),
            vec!["spec.a: Required value"],
        ),
        (
            "enum mismatch",
            json!({"type": "object", "properties": {"m": {"type": "string", "enum": ["a", "b"]}}}),
            json!({"m": "x"}),
            vec![r#"spec.m: Unsupported value: "x": supported values: "a", "b""#],
        ),
        (
            "pattern mismatch",
            json!({"type": "object", "properties": {"y": {"type": "string", "pattern": "^re$"}}}),
            json!({"y": "x"}),
            vec![r#"spec.y: Invalid value: "x": spec.y in body should match '^re$'"#],
        ),
        (
            "pattern in array items uses the index path",
            json!({"type": "object", "properties": {"data": {"type": "array", "items": {
                "type": "object", "properties": {"secretKey": {"type": "string", "pattern": "^[a-z]+$"}}}}}}),
            json!({"data": [{"secretKey": "ok"}, {"secretKey": "NO"}]}),
            vec![
                r#"spec.data[1].secretKey: Invalid value: "NO": spec.data[1].secretKey in body should match '^[a-z]+$'"#,
            ],
        ),
        (
            "additionalProperties values use the key path",
            json!({"type": "object", "properties": {"map": {"type": "object", "additionalProperties": {"type": "string"}}}}),
            json!({"map": {"key": 5}}),
            vec![
                r#"spec.map[key]: Invalid value: "integer": spec.map[key] in body must be of type string: "integer""#,
            ],
        ),
        (
            "maxLength",
            json!({"type": "object", "properties": {"s": {"type": "string", "maxLength": 3}}}),
            json!({"s": "abcd"}),
            vec!["spec.s: Too long: may not be more than 3 bytes"],
        ),
        (
            "minLength",
            json!({"type": "object", "properties": {"s": {"type": "string", "minLength": 3}}}),
            json!({"s": "ab"}),
            vec![r#"spec.s: Invalid value: "ab": spec.s in body should be at least 3 chars long"#],
        ),
        (
            "maximum and minimum",
            json!({"type": "object", "properties": {
                "hi": {"type": "integer", "maximum": 10},
                "lo": {"type": "number", "minimum": 1.5, "exclusiveMinimum": true}}}),
            json!({"hi": 11, "lo": 1.5}),
            vec![
                "spec.hi: Invalid value: 11: spec.hi in body should be less than or equal to 10",
                "spec.lo: Invalid value: 1.5: spec.lo in body should be greater than 1.5",
            ],
        ),
        (
            "maxItems and minItems",
            json!({"type": "object", "properties": {
                "a": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
                "b": {"type": "array", "minItems": 2, "items": {"type": "string"}}}}),
            json!({"a": ["x", "y"], "b": ["x"]}),
            vec![
                "spec.a: Too many: 2: must have at most 1 item",
                "spec.b: Invalid value: 1: spec.b in body should have at least 2 items",
            ],
        ),
        (
            "maxProperties",
            json!({"type": "object", "properties": {"m": {"type": "object", "maxProperties": 1,
                "additionalProperties": {"type": "string"}}}}),
            json!({"m": {"a": "1", "b": "2"}}),
            vec!["spec.m: Too many: 2: must have at most 1 items"],
        ),
        (
            "null for a non-nullable field without default is dropped",
            json!({"type": "object", "properties": {"n": {"type": "string"}}}),
            json!({"n": null}),
            vec![],
        ),
        (
            "null array item for a non-nullable item schema",
            json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}}),
            json!({"a": [null]}),
            vec![
                r#"spec.a[0]: Invalid value: "null": spec.a[0] in body must be of type string: "null""#,
            ],
        ),
        (
            "nullable accepts null",
            json!({"type": "object", "properties": {"n": {"type": "string", "nullable": true}}}),
            json!({"n": null}),
            vec![],
        ),
        (
            "date-time format",
            json!({"type": "object", "properties": {"t": {"type": "string", "format": "date-time"}}}),
            json!({"t": "yesterday"}),
            vec![
                r#"spec.t: Invalid value: "yesterday": spec.t in body must be of type date-time: "yesterday""#,
            ],
        ),
        (
            "byte format",
            json!({"type": "object", "properties": {"b": {"type": "string", "format": "byte"}}}),
            json!({"b": "not base64!"}),
            vec![
                r#"spec.b: Invalid value: "not base64!": spec.b in body must be of type byte: "not base64!""#,
            ],
        ),
        (
            "int32 format accepts integers",
            json!({"type": "object", "properties": {"i": {"type": "integer", "format": "int32"}}}),
            json!({"i": 7}),
            vec![],
        ),
        (
            "int-or-string",
            json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true}}}),
            json!({"p": true}),
            vec![
                r#"spec.p: Invalid value: "boolean": spec.p in body must be of type integer,string: "boolean""#,
            ],
        ),
        (
            "int-or-string with the generated anyOf",
            json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true,
                "anyOf": [{"type": "integer"}, {"type": "string"}]}}}),
            json!({"p": true}),
            vec![
                r#"<nil>: Invalid value: "": "spec.p" must validate at least one schema (anyOf)"#,
                r#"spec.p: Invalid value: "boolean": spec.p in body must be of type integer: "boolean""#,
            ],
        ),
        (
            "int-or-string accepts both",
            json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true}, "q": {"x-kubernetes-int-or-string": true}}}),
            json!({"p": 1, "q": "1"}),
            vec![],
        ),
        (
            "oneOf with no match",
            json!({"type": "object", "properties": {"o": {"type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}}}),
            json!({"o": {}}),
            vec![
                r#"<nil>: Invalid value: "": "spec.o" must validate one and only one schema (oneOf). Found none valid"#,
                "spec.o.a: Required value",
            ],
        ),
        (
            "oneOf with two matches",
            json!({"type": "object", "properties": {"o": {"type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}}}),
            json!({"o": {"a": "1", "b": "2"}}),
            vec![
                r#"<nil>: Invalid value: "": "spec.o" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
            ],
        ),
        (
            "anyOf satisfied",
            json!({"type": "object", "properties": {"o": {"type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}}}),
            json!({"o": {"b": "2"}}),
            vec![],
        ),
        (
            "not",
            json!({"type": "object", "properties": {"o": {"type": "object",
                "properties": {"a": {"type": "string"}}, "not": {"required": ["a"]}}}}),
            json!({"o": {"a": "1"}}),
            vec![r#"<nil>: Invalid value: "": "spec.o" must not validate the schema (not)"#],
        ),
        (
            "list-type set duplicates",
            json!({"type": "object", "properties": {"s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}),
            json!({"s": ["a", "b", "a"]}),
            vec![r#"spec.s[2]: Duplicate value: "a""#],
        ),
        (
            "list-type map duplicate keys",
            json!({"type": "object", "properties": {"l": {"type": "array",
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "string"}}}}}}),
            json!({"l": [{"name": "a", "v": "1"}, {"name": "a", "v": "2"}]}),
            vec![r#"spec.l[1]: Duplicate value: map[string]interface {}{"name":"a"}"#],
        ),
        (
            "embedded resource needs apiVersion and kind",
            json!({"type": "object", "properties": {"tpl": {"type": "object",
                "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}}),
            json!({"tpl": {"kind": ""}}),
            vec![
                "spec.tpl.apiVersion: Required value: must not be empty",
                r#"spec.tpl.kind: Invalid value: "": must not be empty"#,
            ],
        ),
    ];
    for (name, schema, spec, want) in cases {
        assert_eq!(errors(schema, spec), want, "case: {name}");
    }
}

#[test]
fn error_reasons_follow_kube() {
    let mut o = obj(json!({"x": "s"}));
    let schema = root(json!({"type": "object", "required": ["r"], "properties": {
        "x": {"type": "integer"}, "r": {"type": "string"}}}));
    let errs = default_prune_validate(&schema, &mut o).unwrap_err();
    let reasons: Vec<(&str, &str)> = errs
        .iter()
        .map(|e| (e.field.as_str(), e.reason()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("spec.r", "FieldValueRequired"),
            ("spec.x", "FieldValueTypeInvalid")
        ]
    );
    assert_eq!(errs[0].kind, FieldErrorKind::Required);
}

#[test]
fn metadata_name_must_be_dns_subdomain() {
    let schema = root(json!({"type": "object"}));
    let mut o = obj(json!({}));
    o["metadata"]["name"] = json!("Bad_Name");
    let errs = default_prune_validate(&schema, &mut o).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "metadata.name");
    assert!(
        errs[0].detail().starts_with(
            r#"Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of"#
        ),
        "{}",
        errs[0].detail()
    );

    let mut o = obj(json!({}));
    o["metadata"].as_object_mut().unwrap().remove("name");
    let errs = default_prune_validate(&schema, &mut o).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "metadata.name: Required value: name or generateName is required"
    );
}

#[test]
fn pruning_removes_unknown_fields_and_keeps_preserved_ones() {
    let schema = root(json!({"type": "object", "properties": {
        "known": {"type": "string"},
        "nested": {"type": "object", "properties": {"a": {"type": "string"}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "list": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
        "tpl": {"type": "object", "x-kubernetes-embedded-resource": true,
                "properties": {"spec": {"type": "object", "properties": {"s": {"type": "string"}}}}}
    }}));
    let mut o = obj(json!({
        "known": "k",
        "unknown": 1,
        "nested": {"a": "x", "b": "y"},
        "free": {"anything": {"deep": [1, 2]}},
        "list": [{"k": "1", "drop": true}],
        "tpl": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                "spec": {"s": "keep", "t": "drop"}, "extra": 1}
    }));
    o["status"] = json!({"not": "in schema"});
    default_prune_validate(&schema, &mut o).unwrap();
    assert_eq!(
        o,
        json!({
            "apiVersion": "example.io/v1",
            "kind": "Thing",
            "metadata": {"name": "thing-1", "labels": {"a": "b"}, "annotations": {"x": "y"}},
            "spec": {
                "known": "k",
                "nested": {"a": "x"},
                "free": {"anything": {"deep": [1, 2]}},
                "list": [{"k": "1"}],
                "tpl": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                        "spec": {"s": "keep"}}
            }
        })
    );
}

#[test]
fn defaults_are_applied_nested_and_in_arrays() {
    let schema = root(json!({"type": "object", "properties": {
        "mode": {"type": "string", "default": "auto"},
        "present": {"type": "string", "default": "unused"},
        "nested": {"type": "object", "default": {}, "properties": {
            "depth": {"type": "integer", "default": 3}}},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "policy": {"type": "string", "default": "None"},
            "name": {"type": "string"}}}},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "ttl": {"type": "integer", "default": 60}}}},
        "nullDefault": {"type": "string", "default": "d"},
        "nullable": {"type": "string", "nullable": true, "default": "d"}
    }}));
    let mut o = obj(json!({
        "present": "mine",
        "items": [{"name": "a"}, {"name": "b", "policy": "Merge"}],
        "map": {"k": {}},
        "nullDefault": null,
        "nullable": null
    }));
    default_prune_validate(&schema, &mut o).unwrap();
    assert_eq!(
        o["spec"],
        json!({
            "mode": "auto",
            "present": "mine",
            "nested": {"depth": 3},
            "items": [{"name": "a", "policy": "None"}, {"name": "b", "policy": "Merge"}],
            "map": {"k": {"ttl": 60}},
            "nullDefault": "d",
            "nullable": null
        })
    );
}

#[test]
fn defaults_happen_before_validation() {
    let schema = root(
        json!({"type": "object", "required": ["mode"], "properties": {
        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"}}}),
    );
    let mut o = obj(json!({}));
    default_prune_validate(&schema, &mut o).unwrap();
    assert_eq!(o["spec"]["mode"], "a");
}

#[test]
fn invalid_message_formats_like_the_apiserver() {
    let mut o = obj(json!({"x": "string", "y": "x"}));
    let schema = root(json!({"type": "object", "properties": {
        "x": {"type": "integer"}, "y": {"type": "string", "pattern": "^re$"}}}));
    let errs = default_prune_validate(&schema, &mut o).unwrap_err();
    assert_eq!(
        invalid_message("ExternalSecret", "external-secrets.io", "es", &errs),
        r#"ExternalSecret.external-secrets.io "es" is invalid: [spec.x: Invalid value: "string": spec.x in body must be of type integer: "string", spec.y: Invalid value: "x": spec.y in body should match '^re$']"#
    );
    assert_eq!(
        invalid_message("ExternalSecret", "external-secrets.io", "es", &errs[..1]),
        r#"ExternalSecret.external-secrets.io "es" is invalid: spec.x: Invalid value: "string": spec.x in body must be of type integer: "string""#
    );
}

#[test]
fn unknown_fields_lists_what_pruning_drops() {
    let schema = root(json!({"type": "object", "properties": {
        "known": {"type": "string"},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "list": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "v": {"type": "string"}}}}
    }}));
    let mut o = obj(json!({
        "known": "k",
        "zzz": 1,
        "free": {"anything": true},
        "list": [{"k": "1"}, {"k": "2", "extra": true}],
        "map": {"a": {"v": "x", "w": "y"}}
    }));
    o["status"] = json!({});
    assert_eq!(
        unknown_fields(&root(json!({"type": "object"})), &o),
        vec![
            "spec.free",
            "spec.known",
            "spec.list",
            "spec.map",
            "spec.zzz",
            "status"
        ]
    );
    assert_eq!(
        unknown_fields(&schema, &o),
        vec!["spec.list[1].extra", "spec.map.a.w", "spec.zzz", "status"]
    );
    default_prune_validate(&schema, &mut o).unwrap();
    assert!(unknown_fields(&schema, &o).is_empty());
}
