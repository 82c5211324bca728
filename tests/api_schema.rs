//! The generated CRDs: equal to deploy/crds/, a superset of ESO's schema, and accepting the
//! seed's and the examples' manifests in both served versions.

use std::path::{Path, PathBuf};

use kube::api::DynamicObject;
use serde_json::{Value, json};
use vaultgate::api::{
    ClusterExternalSecret, ClusterPushSecret, ClusterSecretStore, ExternalSecret, PushSecret,
    SecretStore,
};

use vaultgate::api::generators as gens;

const GENERATORS: &str = "generators.external-secrets.io/";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn deploy_crds_are_the_generated_ones() {
    let dir = root().join("deploy/crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let on_disk: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let generated = vaultgate::crd::render_all().unwrap();
    assert!(
        on_disk == generated,
        "deploy/crds/ differs from `vaultgate crds`: run `make crds` and commit the result"
    );
    let names: Vec<String> = vaultgate::crd::all()
        .iter()
        .map(vaultgate::crd::file_name)
        .collect();
    let on_disk_names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, on_disk_names);
}

/// The openAPIV3Schema of v1 of a kind.
fn our_schema(kind: &str) -> Value {
    let crd = vaultgate::crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// Every field path with its type: `spec.provider.vault.auth.appRole.path: string`.
fn paths(schema: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    let ty = if schema.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        "int-or-string".to_string()
    } else {
        schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("any")
            .to_string()
    };
    out.push((prefix.to_string(), ty));
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            paths(v, &format!("{prefix}.{k}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        paths(items, &format!("{prefix}[]"), out);
    }
    if let Some(ap) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        paths(ap, &format!("{prefix}{{}}"), out);
    }
}

#[test]
fn every_eso_field_exists_with_the_same_type() {
    // The last number: at least that many paths, so that a truncated file is noticed.
    for (file, kind, at_least) in [
        ("externalsecret-v1.json", "ExternalSecret", 40),
        ("clusterexternalsecret-v1.json", "ClusterExternalSecret", 40),
        ("secretstore-vault-v1.json", "SecretStore", 40),
        ("clustersecretstore-vault-v1.json", "ClusterSecretStore", 40),
        ("pushsecret-v1alpha1.json", "PushSecret", 40),
        ("clusterpushsecret-v1alpha1.json", "ClusterPushSecret", 40),
        ("password-v1alpha1.json", "Password", 12),
        ("uuid-v1alpha1.json", "UUID", 4),
        ("sshkey-v1alpha1.json", "SSHKey", 7),
        ("vaultdynamicsecret-v1alpha1.json", "VaultDynamicSecret", 40),
        ("clustergenerator-v1alpha1.json", "ClusterGenerator", 40),
    ] {
        let eso: Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("tests/data/eso-schema").join(file)).unwrap(),
        )
        .unwrap();
        let mut want = vec![];
        paths(&eso, "", &mut want);
        let mut have = vec![];
        paths(&our_schema(kind), "", &mut have);
        let have: std::collections::BTreeMap<_, _> = have.into_iter().collect();
        let mut missing = vec![];
        for (path, ty) in &want {
            match have.get(path) {
                None => missing.push(format!("{path} ({ty}) is missing")),
                Some(t) if t != ty && ty != "any" && !path.ends_with(".metadata") => {
                    missing.push(format!("{path}: ESO has {ty}, we have {t}"))
                }
                _ => {}
            }
        }
        assert!(missing.is_empty(), "{kind}:\n{}", missing.join("\n"));
        assert!(
            want.len() >= at_least,
            "{kind}: suspiciously few ESO paths ({})",
            want.len()
        );
    }
}

/// OpenAPI v3 (as Kubernetes uses it) into JSON Schema, strict about unknown fields: the API
/// server would silently prune a misspelt field, so a test must not.
fn to_json_schema(s: &Value) -> Value {
    let Some(obj) = s.as_object() else {
        return s.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "properties" => {
                let props = v
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(pk, pv)| (pk.clone(), to_json_schema(pv)))
                    .collect();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" if v.is_object() => {
                out.insert(k.clone(), to_json_schema(v));
            }
            "allOf" | "anyOf" | "oneOf" => {
                out.insert(
                    k.clone(),
                    Value::Array(v.as_array().unwrap().iter().map(to_json_schema).collect()),
                );
            }
            "nullable" | "x-kubernetes-int-or-string" | "x-kubernetes-preserve-unknown-fields" => {}
            k2 if k2.starts_with("x-kubernetes-") => {}
            "description" | "default" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if obj.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        out.remove("type");
        out.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if obj.get("nullable") == Some(&json!(true))
        && let Some(t) = out.get("type").cloned()
    {
        out.insert("type".into(), json!([t, "null"]));
        if let Some(e) = out.get_mut("enum").and_then(Value::as_array_mut) {
            e.push(Value::Null);
        }
    }
    if obj.contains_key("properties")
        && obj.get("x-kubernetes-preserve-unknown-fields") != Some(&json!(true))
    {
        out.insert("additionalProperties".into(), json!(false));
    }
    Value::Object(out)
}

fn validate_against_crd(doc: &Value, origin: &str) {
    let kind = doc["kind"].as_str().unwrap();
    let mut schema = to_json_schema(&our_schema(kind));
    // metadata is validated by the API server itself, not by the CRD schema.
    schema["properties"]["metadata"] = json!({"type": "object"});
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{origin}: {kind} does not validate:\n{}",
        errors.join("\n")
    );
}

/// Deserializes into the typed API (the way the reconciler reads objects of either version).
fn deserialize_typed(doc: &Value, origin: &str) {
    let kind = doc["kind"].as_str().unwrap();
    let dynamic: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    let data = serde_json::to_value(&dynamic).unwrap();
    let result = match kind {
        "ExternalSecret" => serde_json::from_value::<ExternalSecret>(data).map(|_| ()),
        "SecretStore" => serde_json::from_value::<SecretStore>(data).map(|_| ()),
        "ClusterSecretStore" => serde_json::from_value::<ClusterSecretStore>(data).map(|_| ()),
        "PushSecret" => serde_json::from_value::<PushSecret>(data).map(|_| ()),
        "ClusterPushSecret" => serde_json::from_value::<ClusterPushSecret>(data).map(|_| ()),
        "ClusterExternalSecret" => {
            serde_json::from_value::<ClusterExternalSecret>(data).map(|_| ())
        }
        "Password" => serde_json::from_value::<gens::Password>(data).map(|_| ()),
        "UUID" => serde_json::from_value::<gens::UUID>(data).map(|_| ()),
        "SSHKey" => serde_json::from_value::<gens::SSHKey>(data).map(|_| ()),
        "VaultDynamicSecret" => {
            serde_json::from_value::<gens::VaultDynamicSecret>(data).map(|_| ())
        }
        "ClusterGenerator" => serde_json::from_value::<gens::ClusterGenerator>(data).map(|_| ()),
        other => panic!("{origin}: unexpected kind {other}"),
    };
    result.unwrap_or_else(|e| panic!("{origin}: {kind} does not deserialize: {e}"));
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::with::singleton_map_recursive::deserialize::<Value, _>(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn eso_docs() -> Vec<(String, Value)> {
    let mut out = vec![];
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/data/seed"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    if let Ok(rd) = std::fs::read_dir(root().join("deploy/examples")) {
        files.extend(rd.map(|e| e.unwrap().path()));
    }
    files.sort();
    for f in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        for (i, doc) in yaml_docs(f).into_iter().enumerate() {
            if doc["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("external-secrets.io/") || v.starts_with(GENERATORS))
            {
                out.push((
                    format!("{}#{i}", f.strip_prefix(root()).unwrap().display()),
                    doc,
                ));
            }
        }
    }
    out
}

#[test]
fn seed_and_example_manifests_validate_in_both_versions() {
    let docs = eso_docs();
    let kinds: std::collections::BTreeSet<&str> = docs
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains("ExternalSecret") && kinds.contains("ClusterSecretStore"),
        "{kinds:?}"
    );
    for (origin, doc) in &docs {
        // The push kinds and the generators have one version (v1alpha1), as in ESO.
        if doc["kind"].as_str().unwrap().contains("Push")
            || doc["apiVersion"].as_str().unwrap().starts_with(GENERATORS)
        {
            validate_against_crd(doc, origin);
            deserialize_typed(doc, origin);
            continue;
        }
        for version in vaultgate::api::VERSIONS {
            let mut d = doc.clone();
            d["apiVersion"] = json!(format!("external-secrets.io/{version}"));
            let origin = format!("{origin} as {version}");
            validate_against_crd(&d, &origin);
            deserialize_typed(&d, &origin);
        }
    }
}

#[test]
fn schema_validation_catches_mistakes() {
    // The strict conversion must refuse what the API server would refuse or silently prune.
    let bad = [
        json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "x"},
               "spec": {"data": [{"secretKey": "bad key!", "remoteRef": {"key": "a"}}]}}),
        json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "x"},
               "spec": {"target": {"creationPolicy": "Sometimes"}}}),
        json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "x"},
               "spec": {"refreshIntervall": "1h"}}),
        json!({"apiVersion": "external-secrets.io/v1", "kind": "SecretStore", "metadata": {"name": "x"},
               "spec": {"provider": {"vault": {"path": "secret"}}}}),
    ];
    for doc in bad {
        let kind = doc["kind"].as_str().unwrap();
        let mut schema = to_json_schema(&our_schema(kind));
        schema["properties"]["metadata"] = json!({"type": "object"});
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(!validator.is_valid(&doc), "should be refused: {doc}");
    }
}
