//! The CustomResourceDefinitions vaultgate serves, generated from the API types.
//!
//! Each kind is served as `v1` (stored) and `v1beta1` with the same schema and conversion
//! strategy None, so manifests written for ESO's v1beta1 and for current ESO v1 both apply.
//! PushSecret and ClusterPushSecret are served as `v1alpha1` only, as ESO 2.9 serves them, and
//! so are the generators (`generators.external-secrets.io`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::generators::{ClusterGenerator, Password, SSHKey, UUID, VaultDynamicSecret};
use crate::api::{
    ClusterExternalSecret, ClusterPushSecret, ClusterSecretStore, ExternalSecret, PushSecret,
    SecretStore,
};

/// The CRDs, in the order of their file names in `deploy/crds/`.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        with_v1beta1(ClusterExternalSecret::crd()),
        with_object_meta(ClusterPushSecret::crd()),
        with_v1beta1(ClusterSecretStore::crd()),
        with_v1beta1(ExternalSecret::crd()),
        with_object_meta(PushSecret::crd()),
        with_v1beta1(SecretStore::crd()),
        with_object_meta(ClusterGenerator::crd()),
        with_object_meta(Password::crd()),
        with_object_meta(SSHKey::crd()),
        with_object_meta(UUID::crd()),
        with_object_meta(VaultDynamicSecret::crd()),
    ]
}

/// File name of a CRD in `deploy/crds/` (as ESO names them: `<group>_<plural>.yaml`).
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// Renders one CRD as a YAML document, starting with `---`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> anyhow::Result<String> {
    Ok(format!("---\n{}", serde_yaml_ng::to_string(crd)?))
}

/// What `vaultgate crds` prints: every CRD, concatenated in file-name order, so that the output
/// equals `cat deploy/crds/*.yaml`.
pub fn render_all() -> anyhow::Result<String> {
    let mut out = String::new();
    for crd in all() {
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}

/// Adds a `v1beta1` version identical to `v1` but not stored, and the standard properties.
fn with_v1beta1(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut crd = with_object_meta(crd);
    let mut beta = crd.spec.versions[0].clone();
    beta.name = "v1beta1".into();
    beta.storage = false;
    beta.served = true;
    crd.spec.versions.push(beta);
    crd.spec.conversion = Some(
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceConversion {
            strategy: "None".into(),
            webhook: None,
        },
    );
    crd
}

/// Adds the standard `apiVersion`/`kind`/`metadata` properties, as ESO's CRDs declare them.
fn with_object_meta(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
    if let Some(schema) = crd.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
    {
        let props = schema.properties.get_or_insert_with(Default::default);
        let string = |description: &str| JSONSchemaProps {
            type_: Some("string".into()),
            description: Some(description.into()),
            ..Default::default()
        };
        props.entry("apiVersion".into()).or_insert_with(|| {
            string("APIVersion defines the versioned schema of this representation of an object.")
        });
        props.entry("kind".into()).or_insert_with(|| {
            string("Kind is a string value representing the REST resource this object represents.")
        });
        props
            .entry("metadata".into())
            .or_insert_with(|| JSONSchemaProps {
                type_: Some("object".into()),
                ..Default::default()
            });
    }
    crd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_serves_v1_stored_and_v1beta1() {
        for crd in all()
            .into_iter()
            .filter(|c| !c.spec.names.kind.contains("Push") && c.spec.group == crate::api::GROUP)
        {
            let versions: Vec<_> = crd
                .spec
                .versions
                .iter()
                .map(|v| (v.name.as_str(), v.served, v.storage))
                .collect();
            assert_eq!(
                versions,
                vec![("v1", true, true), ("v1beta1", true, false)],
                "{}",
                crd.spec.names.kind
            );
            assert_eq!(crd.spec.versions[0].schema, crd.spec.versions[1].schema);
            assert_eq!(crd.spec.conversion.as_ref().unwrap().strategy, "None");
            assert!(
                crd.spec.versions[0]
                    .subresources
                    .as_ref()
                    .unwrap()
                    .status
                    .is_some()
            );
            assert_eq!(
                crd.spec.names.categories.as_ref().unwrap()[0],
                "external-secrets"
            );
        }
    }

    #[test]
    fn generators_serve_v1alpha1_only_in_their_group() {
        let generators: Vec<_> = all()
            .into_iter()
            .filter(|c| c.spec.group == crate::api::generators::GROUP)
            .collect();
        assert_eq!(generators.len(), 5);
        for crd in generators {
            let versions: Vec<_> = crd
                .spec
                .versions
                .iter()
                .map(|v| (v.name.as_str(), v.served, v.storage))
                .collect();
            assert_eq!(
                versions,
                vec![("v1alpha1", true, true)],
                "{}",
                crd.spec.names.kind
            );
            let cluster = crd.spec.names.kind == "ClusterGenerator";
            assert_eq!(
                crd.spec.scope,
                if cluster { "Cluster" } else { "Namespaced" }
            );
        }
    }

    #[test]
    fn names_and_columns_are_esos() {
        let crds = all();
        let short: Vec<_> = crds
            .iter()
            .map(|c| c.spec.names.short_names.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            short,
            vec![
                vec!["ces".to_string()],
                vec![],
                vec!["css".to_string()],
                vec!["es".to_string()],
                vec!["ps".to_string()],
                vec!["ss".to_string()],
                // The generators have none, as in ESO.
                vec![],
                vec![],
                vec![],
                vec![],
                vec![]
            ]
        );
        // ESO 2.9's additionalPrinterColumns (name, type, JSON path), on every served version.
        let ready = r#".status.conditions[?(@.type=="Ready")].status"#;
        let reason = r#".status.conditions[?(@.type=="Ready")].reason"#;
        let store: &[(&str, &str, &str)] = &[
            ("AGE", "date", ".metadata.creationTimestamp"),
            ("Status", "string", reason),
            ("Capabilities", "string", ".status.capabilities"),
            ("Ready", "string", ready),
        ];
        let external_secret: &[(&str, &str, &str)] = &[
            ("StoreType", "string", ".spec.secretStoreRef.kind"),
            ("Store", "string", ".spec.secretStoreRef.name"),
            ("Refresh Interval", "string", ".spec.refreshInterval"),
            ("Status", "string", reason),
            ("Ready", "string", ready),
            ("Last Sync", "date", ".status.refreshTime"),
        ];
        let cluster_external_secret: &[(&str, &str, &str)] = &[
            (
                "Store",
                "string",
                ".spec.externalSecretSpec.secretStoreRef.name",
            ),
            ("Refresh Interval", "string", ".spec.refreshTime"),
            ("Ready", "string", ready),
        ];
        let push_secret: &[(&str, &str, &str)] = &[
            ("AGE", "date", ".metadata.creationTimestamp"),
            ("Status", "string", reason),
            ("Last Sync", "date", ".status.refreshTime"),
        ];
        let cluster_push_secret = &push_secret[..2];
        for (i, want) in [
            (0, cluster_external_secret),
            (1, cluster_push_secret),
            (2, store),
            (3, external_secret),
            (4, push_secret),
            (5, store),
        ] {
            for v in &crds[i].spec.versions {
                let got: Vec<(&str, &str, &str)> = v
                    .additional_printer_columns
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
                    .collect();
                assert_eq!(got, want, "{} {}", crds[i].spec.names.kind, v.name);
            }
        }
        let scopes: Vec<_> = crds[..6].iter().map(|c| c.spec.scope.as_str()).collect();
        assert_eq!(
            scopes,
            [
                "Cluster",
                "Cluster",
                "Cluster",
                "Namespaced",
                "Namespaced",
                "Namespaced"
            ]
        );
    }

    #[test]
    fn push_kinds_serve_v1alpha1_only() {
        for crd in all()
            .into_iter()
            .filter(|c| c.spec.names.kind.contains("Push"))
        {
            let versions: Vec<_> = crd
                .spec
                .versions
                .iter()
                .map(|v| (v.name.as_str(), v.served, v.storage))
                .collect();
            assert_eq!(versions, vec![("v1alpha1", true, true)]);
            assert!(crd.spec.conversion.is_none());
            assert!(
                crd.spec.versions[0]
                    .subresources
                    .as_ref()
                    .unwrap()
                    .status
                    .is_some()
            );
        }
    }
}
