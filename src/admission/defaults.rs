//! The mutating webhook's defaults, as pure functions over what an object holds.
//!
//! They read the object through small views that record only whether each field they fill is
//! there: the typed objects carry serde defaults, so "absent" cannot be told from "set to the
//! default" in them, and the views build nothing else (a review's body is read into them
//! without a JSON tree). Only absent (or null) fields are set; parents are created when missing.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::Kind;

/// ESO's default refresh interval, in Go's `Duration.String` form.
pub const REFRESH_INTERVAL: &str = "1h0m0s";

/// Each Vault auth method with its mount path field and default mount path.
pub const AUTH_MOUNT_DEFAULTS: [(&str, &str, &str); 6] = [
    ("appRole", "path", "approle"),
    ("kubernetes", "mountPath", "kubernetes"),
    ("ldap", "path", "ldap"),
    ("userPass", "path", "userpass"),
    ("jwt", "path", "jwt"),
    ("cert", "path", "cert"),
];

/// Sets the defaults of `kind` on `obj` in place; returns whether anything changed.
pub fn apply(kind: Kind, obj: &mut Value) -> bool {
    match patch(kind, obj) {
        None => false,
        // The patch was computed against this very object: every path exists or is an add
        // at a member of an existing object, so it always applies.
        Some(p) => json_patch::patch(obj, &p).is_ok(),
    }
}

/// The defaults as a JSON patch against `obj`; `None` when the object is already complete (or
/// not an object), so that the response carries no patch at all.
pub fn patch(kind: Kind, obj: &Value) -> Option<Patch> {
    View::read(kind, obj).ok()?.patch()
}

/// What the defaults read of an object of one kind.
pub enum View {
    ExternalSecret(EsView),
    ClusterExternalSecret(CesView),
    Store(StoreView),
    /// The push kinds and the generators: their defaults are the CRD schema's.
    NoDefaults,
}

impl View {
    /// Reads the view of `kind` from an object (JSON text or a JSON value).
    pub fn read<'de, D: serde::Deserializer<'de>>(kind: Kind, d: D) -> Result<View, D::Error> {
        Ok(match kind {
            Kind::ExternalSecret => View::ExternalSecret(EsView::deserialize(d)?),
            Kind::ClusterExternalSecret => View::ClusterExternalSecret(CesView::deserialize(d)?),
            Kind::SecretStore | Kind::ClusterSecretStore => View::Store(StoreView::deserialize(d)?),
            Kind::PushSecret
            | Kind::ClusterPushSecret
            | Kind::Password
            | Kind::Uuid
            | Kind::SshKey
            | Kind::VaultDynamicSecret
            | Kind::ClusterGenerator => {
                serde::de::IgnoredAny::deserialize(d)?;
                View::NoDefaults
            }
        })
    }

    /// The defaults as a JSON patch; `None` when there are none to add.
    pub fn patch(&self) -> Option<Patch> {
        let mut ops = Vec::new();
        match self {
            View::ExternalSecret(es) => external_secret(es, &mut ops),
            View::ClusterExternalSecret(ces) => cluster_external_secret(ces, &mut ops),
            View::Store(s) => store(s, &mut ops),
            View::NoDefaults => {}
        }
        (!ops.is_empty()).then_some(Patch(ops))
    }
}

/// A field the defaults look into: missing or null, an object (read as `T`), or anything else
/// (which the schema refuses and the defaults leave alone).
#[derive(Default)]
pub enum Slot<T> {
    #[default]
    Absent,
    Object(T),
    Other,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Slot<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Slot<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Slot<T>, E> {
                Ok(Slot::Absent)
            }
            fn visit_none<E>(self) -> Result<Slot<T>, E> {
                Ok(Slot::Absent)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Slot<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Slot::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Slot<T>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Slot::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Slot<T>, E> {
                Ok(Slot::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Slot<T>, E> {
                Ok(Slot::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Slot<T>, E> {
                Ok(Slot::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Slot<T>, E> {
                Ok(Slot::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Slot<T>, E> {
                Ok(Slot::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Present and not null.
type Set = Option<IgnoredAny>;

#[derive(Deserialize, Default)]
pub struct EsView {
    #[serde(default)]
    metadata: Slot<NameView>,
    #[serde(default)]
    spec: Slot<EsSpecView>,
}

/// A ClusterExternalSecret: its `externalSecretSpec` gets an ExternalSecret's defaults, the
/// target named after the ExternalSecrets it makes.
#[derive(Deserialize, Default)]
pub struct CesView {
    #[serde(default)]
    metadata: Slot<NameView>,
    #[serde(default)]
    spec: Slot<CesSpecView>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CesSpecView {
    #[serde(default)]
    external_secret_name: Option<String>,
    #[serde(default)]
    external_secret_spec: Slot<EsSpecView>,
}

#[derive(Deserialize, Default)]
struct NameView {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EsSpecView {
    #[serde(default)]
    refresh_interval: Set,
    #[serde(default)]
    refresh_policy: Set,
    #[serde(default)]
    secret_store_ref: Slot<StoreRefView>,
    #[serde(default)]
    target: Slot<TargetView>,
}

#[derive(Deserialize, Default)]
struct StoreRefView {
    #[serde(default)]
    kind: Set,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TargetView {
    #[serde(default)]
    name: Set,
    #[serde(default)]
    creation_policy: Set,
    #[serde(default)]
    deletion_policy: Set,
}

#[derive(Deserialize, Default)]
pub struct StoreView {
    #[serde(default)]
    spec: Slot<StoreSpecView>,
}

#[derive(Deserialize, Default)]
struct StoreSpecView {
    #[serde(default)]
    provider: Slot<ProviderView>,
}

#[derive(Deserialize, Default)]
struct ProviderView {
    #[serde(default)]
    vault: Slot<VaultView>,
}

#[derive(Deserialize, Default)]
struct VaultView {
    #[serde(default)]
    version: Set,
    #[serde(default)]
    auth: Slot<AuthView>,
}

/// Each auth method of [`AUTH_MOUNT_DEFAULTS`], with whether its mount path is set.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthView {
    #[serde(default)]
    app_role: Slot<PathView>,
    #[serde(default)]
    kubernetes: Slot<MountPathView>,
    #[serde(default)]
    ldap: Slot<PathView>,
    #[serde(default)]
    user_pass: Slot<PathView>,
    #[serde(default)]
    jwt: Slot<PathView>,
    #[serde(default)]
    cert: Slot<PathView>,
}

#[derive(Deserialize, Default)]
struct PathView {
    #[serde(default)]
    path: Set,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MountPathView {
    #[serde(default)]
    mount_path: Set,
}

fn add(ops: &mut Vec<PatchOperation>, path: &[&str], value: Value) {
    ops.push(PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        value,
    }));
}

/// A field to default: its name, its default, and whether a view has it set.
type FieldDefault<T> = (&'static str, Value, fn(&T) -> bool);

/// Adds each `(field, default)` whose field is absent from the object at `path`, or the whole
/// object with all of them when the object itself is absent.
fn fill<T>(
    ops: &mut Vec<PatchOperation>,
    slot: &Slot<T>,
    path: &[&str],
    fields: &[FieldDefault<T>],
) {
    match slot {
        Slot::Absent => {
            let obj: Map<String, Value> = fields
                .iter()
                .map(|(k, v, _)| (k.to_string(), v.clone()))
                .collect();
            add(ops, path, Value::Object(obj));
        }
        Slot::Other => {}
        Slot::Object(o) => {
            for (k, v, present) in fields {
                if !present(o) {
                    let mut p = path.to_vec();
                    p.push(k);
                    add(ops, &p, v.clone());
                }
            }
        }
    }
}

fn external_secret(es: &EsView, ops: &mut Vec<PatchOperation>) {
    let name = match &es.metadata {
        Slot::Object(m) => m.name.as_deref().filter(|n| !n.is_empty()),
        _ => None,
    };
    es_spec(name, &es.spec, &["spec"], ops);
}

fn cluster_external_secret(ces: &CesView, ops: &mut Vec<PatchOperation>) {
    // Without a spec the schema refuses the object (externalSecretSpec is required).
    let Slot::Object(spec) = &ces.spec else {
        return;
    };
    let name = spec
        .external_secret_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(match &ces.metadata {
            Slot::Object(m) => m.name.as_deref().filter(|n| !n.is_empty()),
            _ => None,
        });
    es_spec(
        name,
        &spec.external_secret_spec,
        &["spec", "externalSecretSpec"],
        ops,
    );
}

/// An ExternalSecret spec's defaults, for the spec at `base`.
fn es_spec(
    name: Option<&str>,
    slot: &Slot<EsSpecView>,
    base: &[&str],
    ops: &mut Vec<PatchOperation>,
) {
    let at = |field: &'static str| -> Vec<&str> {
        let mut p = base.to_vec();
        p.push(field);
        p
    };
    let mut target: Vec<FieldDefault<TargetView>> = Vec::with_capacity(3);
    if let Some(n) = name {
        target.push(("name", Value::from(n), |t| t.name.is_some()));
    }
    target.push(("creationPolicy", Value::from("Owner"), |t| {
        t.creation_policy.is_some()
    }));
    target.push(("deletionPolicy", Value::from("Retain"), |t| {
        t.deletion_policy.is_some()
    }));
    let spec = match slot {
        Slot::Absent => {
            let spec = serde_json::json!({
                "refreshInterval": REFRESH_INTERVAL,
                "refreshPolicy": "Periodic",
                "secretStoreRef": {"kind": "SecretStore"},
                "target": target.into_iter().map(|(k, v, _)| (k.to_string(), v)).collect::<Map<_, _>>(),
            });
            add(ops, base, spec);
            return;
        }
        Slot::Other => return,
        Slot::Object(spec) => spec,
    };
    if spec.refresh_interval.is_none() {
        add(ops, &at("refreshInterval"), Value::from(REFRESH_INTERVAL));
    }
    if spec.refresh_policy.is_none() {
        add(ops, &at("refreshPolicy"), Value::from("Periodic"));
    }
    fill(
        ops,
        &spec.secret_store_ref,
        &at("secretStoreRef"),
        &[("kind", Value::from("SecretStore"), |r| r.kind.is_some())],
    );
    fill(ops, &spec.target, &at("target"), &target);
}

fn store(s: &StoreView, ops: &mut Vec<PatchOperation>) {
    // Without a Vault provider there is nothing to default: the rules refuse the store.
    let Slot::Object(spec) = &s.spec else { return };
    let Slot::Object(provider) = &spec.provider else {
        return;
    };
    let Slot::Object(vault) = &provider.vault else {
        return;
    };
    if vault.version.is_none() {
        add(
            ops,
            &["spec", "provider", "vault", "version"],
            Value::from("v2"),
        );
    }
    let Slot::Object(auth) = &vault.auth else {
        return;
    };
    let mount_set = [
        path_set(&auth.app_role),
        match &auth.kubernetes {
            Slot::Object(k) => Some(k.mount_path.is_some()),
            _ => None,
        },
        path_set(&auth.ldap),
        path_set(&auth.user_pass),
        path_set(&auth.jwt),
        path_set(&auth.cert),
    ];
    for ((method, field, default), set) in AUTH_MOUNT_DEFAULTS.into_iter().zip(mount_set) {
        if set == Some(false) {
            add(
                ops,
                &["spec", "provider", "vault", "auth", method, field],
                Value::from(default),
            );
        }
    }
}

/// For a method given as an object, whether its `path` is set.
fn path_set(method: &Slot<PathView>) -> Option<bool> {
    match method {
        Slot::Object(m) => Some(m.path.is_some()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

    fn es(version: &str, spec: Value) -> Value {
        json!({
            "apiVersion": format!("external-secrets.io/{version}"),
            "kind": "ExternalSecret",
            "metadata": {"name": "app", "namespace": "team-a"},
            "spec": spec,
        })
    }

    fn store(version: &str, kind: &str, vault: Value) -> Value {
        json!({
            "apiVersion": format!("external-secrets.io/{version}"),
            "kind": kind,
            "metadata": {"name": "vault"},
            "spec": {"provider": {"vault": vault}},
        })
    }

    /// The object after applying the returned patch (unchanged when there is none).
    fn patched(kind: Kind, obj: &Value) -> Value {
        let mut out = obj.clone();
        if let Some(p) = patch(kind, obj) {
            assert!(!p.0.is_empty());
            json_patch::patch(&mut out, &p).expect("the patch applies");
        }
        out
    }

    #[test]
    fn external_secret_defaults() {
        let full_spec = json!({
            "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
            "refreshInterval": "1h0m0s",
            "refreshPolicy": "Periodic",
            "target": {"name": "app", "creationPolicy": "Owner", "deletionPolicy": "Retain"},
            "data": [{"secretKey": "a", "remoteRef": {"key": "x"}}],
        });
        // (case, spec given, spec expected)
        let cases = [
            (
                "everything absent",
                json!({"secretStoreRef": {"name": "vault"}, "data": []}),
                json!({
                    "secretStoreRef": {"name": "vault", "kind": "SecretStore"},
                    "refreshInterval": "1h0m0s",
                    "refreshPolicy": "Periodic",
                    "target": {"name": "app", "creationPolicy": "Owner", "deletionPolicy": "Retain"},
                    "data": [],
                }),
            ),
            (
                "set values are kept",
                json!({
                    "secretStoreRef": {"name": "css", "kind": "ClusterSecretStore"},
                    "refreshInterval": "0",
                    "refreshPolicy": "CreatedOnce",
                    "target": {"name": "other", "creationPolicy": "Merge", "deletionPolicy": "Delete"},
                }),
                json!({
                    "secretStoreRef": {"name": "css", "kind": "ClusterSecretStore"},
                    "refreshInterval": "0",
                    "refreshPolicy": "CreatedOnce",
                    "target": {"name": "other", "creationPolicy": "Merge", "deletionPolicy": "Delete"},
                }),
            ),
            (
                "partial target",
                json!({"secretStoreRef": {"name": "v", "kind": "SecretStore"}, "refreshInterval": "5m",
                       "refreshPolicy": "OnChange", "target": {"creationPolicy": "Orphan"}}),
                json!({"secretStoreRef": {"name": "v", "kind": "SecretStore"}, "refreshInterval": "5m",
                       "refreshPolicy": "OnChange",
                       "target": {"name": "app", "creationPolicy": "Orphan", "deletionPolicy": "Retain"}}),
            ),
            (
                "nulls count as absent",
                json!({"secretStoreRef": null, "refreshInterval": null, "target": {"name": null}}),
                json!({"secretStoreRef": {"kind": "SecretStore"}, "refreshInterval": "1h0m0s",
                       "refreshPolicy": "Periodic",
                       "target": {"name": "app", "creationPolicy": "Owner", "deletionPolicy": "Retain"}}),
            ),
            ("complete", full_spec.clone(), full_spec.clone()),
        ];
        for v in VERSIONS {
            for (name, given, want) in &cases {
                let obj = es(v, given.clone());
                let out = patched(Kind::ExternalSecret, &obj);
                assert_eq!(out["spec"], *want, "{v} {name}");
                assert_eq!(out["metadata"], obj["metadata"], "{v} {name}");
            }
            // A complete object gets no patch at all (not an empty one).
            assert!(patch(Kind::ExternalSecret, &es(v, full_spec.clone())).is_none());
            // No spec at all: created with its defaults.
            let mut bare = es(v, Value::Null);
            bare.as_object_mut().unwrap().remove("spec");
            let out = patched(Kind::ExternalSecret, &bare);
            assert_eq!(out["spec"]["refreshInterval"], "1h0m0s", "{v}");
            assert_eq!(out["spec"]["target"]["name"], "app", "{v}");
        }
    }

    #[test]
    fn external_secret_without_a_name_gets_no_target_name() {
        let mut obj = es("v1", json!({"secretStoreRef": {"name": "v"}}));
        obj["metadata"] = json!({"generateName": "app-"});
        let out = patched(Kind::ExternalSecret, &obj);
        assert!(out["spec"]["target"].get("name").is_none(), "{out}");
        assert_eq!(out["spec"]["target"]["creationPolicy"], "Owner");
    }

    #[test]
    fn store_defaults() {
        let server = json!("https://vault:8200");
        for v in VERSIONS {
            for kind in [Kind::SecretStore, Kind::ClusterSecretStore] {
                for (method, field, default) in AUTH_MOUNT_DEFAULTS {
                    let obj = store(
                        v,
                        kind.as_str(),
                        json!({"server": server, "auth": {method: {"role": "r"}}}),
                    );
                    let out = patched(kind, &obj);
                    let vault = &out["spec"]["provider"]["vault"];
                    assert_eq!(vault["version"], "v2", "{v} {kind:?} {method}");
                    assert_eq!(
                        vault["auth"][method][field], default,
                        "{v} {kind:?} {method}"
                    );
                    assert_eq!(vault["auth"][method]["role"], "r");
                    // Applying the defaults again changes nothing.
                    assert!(patch(kind, &out).is_none(), "{v} {kind:?} {method}");
                }
                // Set values are kept; a complete store gets no patch.
                let obj = store(
                    v,
                    kind.as_str(),
                    json!({"server": server, "version": "v1",
                           "auth": {"kubernetes": {"mountPath": "k8s-prod", "role": "r"}}}),
                );
                assert!(patch(kind, &obj).is_none(), "{v} {kind:?}");
                // Token auth has no mount: only the version.
                let obj = store(
                    v,
                    kind.as_str(),
                    json!({"server": server, "auth": {"tokenSecretRef": {"name": "t", "key": "k"}}}),
                );
                let p = patch(kind, &obj).expect("version default");
                assert_eq!(
                    serde_json::to_value(&p).unwrap(),
                    json!([{"op": "add", "path": "/spec/provider/vault/version", "value": "v2"}])
                );
                // Without a Vault provider there is nothing to default.
                let mut other = store(v, kind.as_str(), Value::Null);
                other["spec"]["provider"] = json!({"aws": {}});
                assert!(patch(kind, &other).is_none());
            }
        }
    }
}
