//! The object under review, typed: what the rules and the live checks judge. It is read from
//! the review's text straight into the API types, keeping of the metadata only what the
//! decision uses; no JSON tree is built, whatever the body holds.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

use super::defaults::Slot;
use super::live::Findings;
use super::{Callers, Kind, rules};
use crate::api::generators::{ClusterGenerator, Password, SSHKey, UUIDSpec, VaultDynamicSecret};
use crate::api::{
    ClusterExternalSecret, ClusterExternalSecretSpec, ClusterPushSecret, ClusterPushSecretSpec,
    ClusterSecretStore, ClusterSecretStoreSpec, ExternalSecret, ExternalSecretSpec, PushSecret,
    PushSecretSpec, SecretStore, SecretStoreSpec,
};

/// An ExternalSecret as the validating hot path reads it: the spec, and of the metadata only the
/// name and namespace (the rules judge the spec; the live checks need the namespace). The API
/// server has validated the metadata already, and what it sends there (`managedFields`, the
/// last-applied annotation: together often larger than the spec) is skipped unread. Anything
/// this does not read takes the general path, whose answer is the same.
///
/// Boxed as soon as it is read: the request holding it, and the decision holding what it
/// became, are then moved around as a pointer rather than as the kilobyte of the spec (copying
/// it from place to place cost as much as the rules).
pub(crate) struct EsObject(pub(crate) Box<ExternalSecret>);

impl<'de> Deserialize<'de> for EsObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};

        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Metadata,
            Spec,
            #[serde(other)]
            Other,
        }

        // Read straight into the box, as a derived struct would read it (a duplicate field is
        // an error, `spec` is required, `metadata` is not): a derived one is built on the
        // stack and moved, with the spec inside it, several times before it reaches its box.
        struct Parts;
        impl<'de> Visitor<'de> for Parts {
            type Value = EsObject;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an ExternalSecret")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EsObject, A::Error> {
                let mut es = Box::<ExternalSecret>::default();
                let (mut metadata, mut spec) = (false, false);
                while let Some(field) = map.next_key()? {
                    match field {
                        Field::Metadata if metadata => {
                            return Err(Error::duplicate_field("metadata"));
                        }
                        Field::Metadata => {
                            metadata = true;
                            let NameIn { name, namespace } = map.next_value()?;
                            es.metadata.name = name;
                            es.metadata.namespace = namespace;
                        }
                        Field::Spec if spec => return Err(Error::duplicate_field("spec")),
                        Field::Spec => {
                            spec = true;
                            es.spec = map.next_value()?;
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if !spec {
                    return Err(Error::missing_field("spec"));
                }
                Ok(EsObject(es))
            }
        }
        d.deserialize_struct("ExternalSecret", &["metadata", "spec"], Parts)
    }
}

#[derive(Deserialize, Default)]
struct NameIn {
    name: Option<String>,
    namespace: Option<String>,
}

/// A typed object; a store comes with the names of the providers under its `spec.provider`
/// (the typed spec keeps only vault's, and the rules refuse the others by name).
///
/// Boxed: the store kinds are kilobytes each, and a `Typed` is moved through the decision.
pub(crate) enum Typed {
    ExternalSecret(Box<ExternalSecret>),
    SecretStore(Box<SecretStore>, Vec<String>),
    ClusterSecretStore(Box<ClusterSecretStore>, Vec<String>),
    PushSecret(Box<PushSecret>),
    ClusterPushSecret(Box<ClusterPushSecret>),
    ClusterExternalSecret(Box<ClusterExternalSecret>),
    Password(Box<Password>),
    Uuid,
    SshKey(Box<SSHKey>),
    VaultDynamicSecret(Box<VaultDynamicSecret>),
    ClusterGenerator(Box<ClusterGenerator>),
}

/// An object as first read: the metadata the decision uses, and the spec's text.
#[derive(Deserialize)]
struct ObjectIn<'a> {
    #[serde(default)]
    metadata: Option<MetaIn>,
    #[serde(default, borrow)]
    spec: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MetaIn {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct ProvidersIn {
    #[serde(default)]
    provider: Slot<BTreeMap<String, IgnoredAny>>,
}

impl Typed {
    /// Reads an object from its JSON text (the namespace falls back to the request's).
    pub(crate) fn from_json(
        kind: Kind,
        text: &str,
        namespace: Option<&str>,
    ) -> Result<Typed, String> {
        let object: ObjectIn = serde_json::from_str(text)
            .map_err(|e| format!("metadata: {}", without_position(&e)))?;
        let m = object.metadata.unwrap_or_default();
        let metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: m.name,
            namespace: match kind {
                Kind::ClusterSecretStore
                | Kind::ClusterPushSecret
                | Kind::ClusterExternalSecret
                | Kind::ClusterGenerator => m.namespace,
                _ => m.namespace.or_else(|| namespace.map(str::to_owned)),
            },
            uid: m.uid,
            resource_version: m.resource_version,
            ..Default::default()
        };
        let spec = object
            .spec
            .ok_or_else(|| "spec: required".to_string())?
            .get();
        let bad = |e: serde_json::Error| format!("spec: {}", without_position(&e));
        Ok(match kind {
            Kind::ExternalSecret => Typed::ExternalSecret(Box::new(ExternalSecret {
                spec: serde_json::from_str::<ExternalSecretSpec>(spec).map_err(bad)?,
                metadata,
                status: None,
            })),
            Kind::ClusterExternalSecret => {
                Typed::ClusterExternalSecret(Box::new(ClusterExternalSecret {
                    spec: serde_json::from_str::<ClusterExternalSecretSpec>(spec).map_err(bad)?,
                    metadata,
                    status: None,
                }))
            }
            Kind::SecretStore => Typed::SecretStore(
                Box::new(SecretStore {
                    spec: serde_json::from_str::<SecretStoreSpec>(spec).map_err(bad)?,
                    metadata,
                    status: None,
                }),
                providers(spec),
            ),
            Kind::ClusterSecretStore => Typed::ClusterSecretStore(
                Box::new(ClusterSecretStore {
                    spec: serde_json::from_str::<ClusterSecretStoreSpec>(spec).map_err(bad)?,
                    metadata,
                    status: None,
                }),
                providers(spec),
            ),
            Kind::PushSecret => Typed::PushSecret(Box::new(PushSecret {
                spec: serde_json::from_str::<PushSecretSpec>(spec).map_err(bad)?,
                metadata,
                status: None,
            })),
            Kind::ClusterPushSecret => Typed::ClusterPushSecret(Box::new(ClusterPushSecret {
                spec: serde_json::from_str::<ClusterPushSecretSpec>(spec).map_err(bad)?,
                metadata,
                status: None,
            })),
            Kind::Password => Typed::Password(Box::new(Password {
                spec: serde_json::from_str(spec).map_err(bad)?,
                metadata,
            })),
            Kind::Uuid => {
                serde_json::from_str::<UUIDSpec>(spec).map_err(bad)?;
                Typed::Uuid
            }
            Kind::SshKey => Typed::SshKey(Box::new(SSHKey {
                spec: serde_json::from_str(spec).map_err(bad)?,
                metadata,
            })),
            Kind::VaultDynamicSecret => Typed::VaultDynamicSecret(Box::new(VaultDynamicSecret {
                spec: serde_json::from_str(spec).map_err(bad)?,
                metadata,
            })),
            Kind::ClusterGenerator => Typed::ClusterGenerator(Box::new(ClusterGenerator {
                spec: serde_json::from_str(spec).map_err(bad)?,
                metadata,
            })),
        })
    }

    /// Reads a manifest given as JSON.
    pub(crate) fn from_value(kind: Kind, obj: &Value) -> Result<Typed, String> {
        Typed::from_json(kind, &obj.to_string(), None)
    }

    /// The static rules.
    pub(crate) fn rules(&self) -> Vec<rules::Problem> {
        match self {
            Typed::ExternalSecret(es) => rules::external_secret(es),
            Typed::ClusterExternalSecret(ces) => rules::cluster_external_secret(ces),
            Typed::SecretStore(s, providers) => rules::secret_store(s, providers),
            Typed::ClusterSecretStore(s, providers) => rules::cluster_secret_store(s, providers),
            Typed::PushSecret(ps) => rules::push_secret(ps),
            Typed::ClusterPushSecret(c) => rules::cluster_push_secret(c),
            Typed::Password(pw) => rules::password(pw),
            Typed::Uuid => Vec::new(),
            Typed::SshKey(k) => rules::ssh_key(k),
            Typed::VaultDynamicSecret(v) => rules::vault_dynamic_secret(v),
            Typed::ClusterGenerator(cg) => rules::cluster_generator(cg),
        }
    }

    /// What an admitted object should be told (admission warnings), apart from the rules.
    pub(crate) fn notes(&self) -> Vec<rules::Problem> {
        match self {
            Typed::ExternalSecret(_)
            | Typed::ClusterExternalSecret(_)
            | Typed::PushSecret(_)
            | Typed::ClusterPushSecret(_)
            | Typed::Password(_)
            | Typed::Uuid
            | Typed::SshKey(_)
            | Typed::VaultDynamicSecret(_)
            | Typed::ClusterGenerator(_) => Vec::new(),
            Typed::SecretStore(s, _) => rules::store_notes(&s.spec),
            Typed::ClusterSecretStore(s, _) => rules::store_notes(&s.spec.store),
        }
    }

    /// The live checks. A store under review is logged in with only for an authenticated
    /// caller: from anyone else, its body would choose the server and the credential.
    pub(crate) async fn live(
        &self,
        checker: &super::LiveChecker,
        callers: Callers,
        dry_run: bool,
    ) -> Findings {
        let store = match self {
            Typed::ExternalSecret(es) => return checker.external_secret(es, dry_run).await,
            Typed::ClusterExternalSecret(ces) => {
                return Box::pin(checker.cluster_external_secret(ces, dry_run)).await;
            }
            Typed::SecretStore(s, _) => crate::vault::StoreHandle::from_secret_store(s),
            Typed::ClusterSecretStore(s, _) => crate::vault::StoreHandle::from_cluster_store(s),
            Typed::PushSecret(ps) => return checker.push_secret(ps, dry_run).await,
            Typed::ClusterPushSecret(c) => {
                return Box::pin(checker.cluster_push_secret(c, dry_run)).await;
            }
            Typed::VaultDynamicSecret(v) => {
                return Box::pin(checker.vault_dynamic_secret(v, callers, dry_run)).await;
            }
            Typed::Password(_) | Typed::Uuid | Typed::SshKey(_) | Typed::ClusterGenerator(_) => {
                return Findings::default();
            }
        };
        match callers {
            Callers::Authenticated => checker.store(store, dry_run).await,
            Callers::Anyone => super::live::login_checked_once_stored(&store),
        }
    }
}

/// The keys under a store spec's `provider`.
fn providers(spec: &str) -> Vec<String> {
    match serde_json::from_str::<ProvidersIn>(spec) {
        Ok(ProvidersIn {
            provider: Slot::Object(p),
        }) => p.into_keys().collect(),
        _ => Vec::new(),
    }
}

/// A serde error without its " at line 1 column 42": positions in the review's text mean
/// nothing to the person reading the denial.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) if e.line() > 0 => text[..i].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hot_path_reads_an_external_secret_as_the_general_path_does() {
        let spec = serde_json::json!({
            "refreshInterval": "15m",
            "secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"},
            "target": {"name": "app", "template": {"data": {"k": "{{ .password }}"}}},
            "data": [{"secretKey": "password", "remoteRef": {"key": "app", "property": "p"}}],
            "dataFrom": [{"extract": {"key": "shared"}}]
        });
        for object in [
            serde_json::json!({
                "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": "a", "namespace": "n", "labels": {"x": "y"}},
                "spec": spec, "status": {"refreshTime": null}
            }),
            serde_json::json!({"spec": spec}),
            serde_json::json!({"spec": {}, "metadata": {"name": "b"}, "extra": [1, {"a": null}]}),
        ] {
            let hot: EsObject = serde_json::from_value(object.clone()).unwrap();
            let Ok(Typed::ExternalSecret(general)) =
                Typed::from_value(Kind::ExternalSecret, &object)
            else {
                panic!("{object}");
            };
            assert_eq!(hot.0.spec, general.spec, "{object}");
            // Of the metadata, the hot path keeps what the decision reads.
            let m = |o: &ExternalSecret| (o.metadata.name.clone(), o.metadata.namespace.clone());
            assert_eq!(m(&hot.0), m(&general), "{object}");
        }
        // What a derived reader refuses, this one refuses: the general path then answers.
        for bad in [
            r#"{"metadata": {"name": "a"}}"#,
            r#"{"spec": {}, "spec": {}}"#,
            r#"{"metadata": {}, "spec": {}, "metadata": {}}"#,
            r#"{"spec": null}"#,
            r#"{"metadata": null, "spec": {}}"#,
            r#"{"spec": {"data": "x"}}"#,
            r#"[{}, {}]"#,
            r#""spec""#,
        ] {
            assert!(serde_json::from_str::<EsObject>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_part_without_a_position() {
        let bad = serde_json::json!({"metadata": {"name": "a"}, "spec": {"data": "x"}});
        let Err(e) = Typed::from_value(Kind::ExternalSecret, &bad) else {
            panic!("refused")
        };
        assert_eq!(e, "spec: invalid type: string \"x\", expected a sequence");
        let Err(e) = Typed::from_value(Kind::SecretStore, &serde_json::json!({"metadata": {}}))
        else {
            panic!("refused")
        };
        assert_eq!(e, "spec: required");
        let Err(e) = Typed::from_value(
            Kind::SecretStore,
            &serde_json::json!({"metadata": {"name": 1}, "spec": {}}),
        ) else {
            panic!("refused")
        };
        assert!(e.starts_with("metadata: invalid type: integer `1`"), "{e}");
    }

    #[test]
    fn stores_name_every_provider() {
        let store = serde_json::json!({"spec": {"provider": {"gcpsm": {}, "aws": {"x": [1]}}}});
        let Ok(Typed::SecretStore(_, providers)) = Typed::from_value(Kind::SecretStore, &store)
        else {
            panic!("read")
        };
        assert_eq!(providers, ["aws", "gcpsm"]);
    }
}
