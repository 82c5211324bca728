//! Live checks of a VaultDynamicSecret: with authenticated callers only (the spec names a
//! server and credentials, as a store's does), its identity logs in and `sys/capabilities-self`
//! says whether it may make its call on its path. Nothing is generated.

use super::{Findings, LiveChecker};
use crate::admission::Callers;
use crate::api::generators::VaultDynamicSecret;
use crate::generators::{Resolved, Source, vault_dynamic};

impl LiveChecker {
    pub async fn vault_dynamic_secret(
        &self,
        v: &VaultDynamicSecret,
        callers: Callers,
        dry_run: bool,
    ) -> Findings {
        let mut f = Findings::default();
        let ns = v.metadata.namespace.clone().unwrap_or_default();
        let name = v.metadata.name.clone().unwrap_or_default();
        let shown = format!("VaultDynamicSecret {ns}/{name}");
        if callers == Callers::Anyone {
            // A review's body is a claim: its server and credentials are not used.
            f.notes.push(format!(
                "the Vault login of {shown} and its path are checked when an ExternalSecret \
                 uses it (its Ready condition and events say how it went)"
            ));
            return f;
        }
        if dry_run {
            f.notes.push(format!(
                "dry run: the Vault login of {shown} was not checked (it would log in to Vault)"
            ));
            return f;
        }
        let Ok(call) = vault_dynamic::call(&v.spec, "spec") else {
            return f; // the static rules said why
        };
        let spec_hash = {
            use std::hash::{Hash, Hasher};
            let mut h = super::key_hasher();
            serde_json::to_vec(&v.spec).unwrap_or_default().hash(&mut h);
            h.finish()
        };
        // Keyed by the spec under review: the stored object's login may be of an older one.
        let g = Resolved {
            kind: "VaultDynamicSecret".into(),
            namespace: Some(ns.clone()),
            name,
            uid: format!("admission-{spec_hash:016x}"),
            generation: 0,
            source: Source::VaultDynamic(Box::new(v.spec.clone())),
        };
        let handle = g.vault_handle(&v.spec, &ns);
        let path = v.spec.path.trim_matches('/').to_string();
        let budget = self.budget;
        let checked = tokio::time::timeout(budget, async {
            let client = self.vault.client(&handle, &ns).await?;
            client.capabilities(std::slice::from_ref(&path)).await
        })
        .await;
        let need = call.capability();
        match checked {
            Err(_) => f.problems.push(format!(
                "Vault did not answer within {budget:?}: {shown} was not checked"
            )),
            Ok(Err(e)) => f.problems.push(format!("{shown}: {e}")),
            Ok(Ok(caps)) => {
                let have = caps.get(&path).cloned().unwrap_or_default();
                let allowed = have
                    .iter()
                    .any(|c| c == "root" || c == need || (need == "update" && c == "create"));
                if !allowed {
                    f.problems.push(format!(
                        "spec.path: the Vault identity of {shown} may not {need} {path:?} \
                         (sys/capabilities-self: {})",
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    ));
                }
            }
        }
        f
    }
}

impl LiveChecker {
    /// The generators an ExternalSecret names that do not exist (as a missing store is
    /// reported), read from the API server in its namespace (a ClusterGenerator cluster-wide).
    pub(super) async fn generators_named(
        &self,
        es: &crate::api::ExternalSecret,
        deadline: std::time::Instant,
    ) -> Vec<String> {
        use crate::api::GeneratorKind as K;
        use crate::api::generators::{ClusterGenerator, Password, SSHKey, UUID};
        use kube::Api;
        let ns = es.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = Vec::new();
        for (i, r) in crate::generators::generator_refs(&es.spec) {
            let kube = self.kube.clone();
            let name = r.name.as_str();
            let read = async {
                match r.kind {
                    K::Password => Api::<Password>::namespaced(kube, ns)
                        .get_metadata_opt(name)
                        .await
                        .map(|o| o.is_some()),
                    K::Uuid => Api::<UUID>::namespaced(kube, ns)
                        .get_metadata_opt(name)
                        .await
                        .map(|o| o.is_some()),
                    K::SshKey => Api::<SSHKey>::namespaced(kube, ns)
                        .get_metadata_opt(name)
                        .await
                        .map(|o| o.is_some()),
                    K::VaultDynamicSecret => Api::<VaultDynamicSecret>::namespaced(kube, ns)
                        .get_metadata_opt(name)
                        .await
                        .map(|o| o.is_some()),
                    K::ClusterGenerator => Api::<ClusterGenerator>::all(kube)
                        .get_metadata_opt(name)
                        .await
                        .map(|o| o.is_some()),
                    // Refused by the static rules.
                    _ => Ok(true),
                }
            };
            let at = format!("spec.dataFrom[{i}].sourceRef.generatorRef");
            let shown = match r.kind {
                K::ClusterGenerator => format!("ClusterGenerator {name}"),
                k => format!("{} {ns}/{name}", crate::generators::kind_name(k)),
            };
            match tokio::time::timeout_at(deadline.into(), read).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => out.push(format!("{at}: {shown} does not exist (yet)")),
                Ok(Err(e)) => out.push(format!("{at}: reading {shown} from the API server: {e}")),
                Err(_) => out.push(format!(
                    "{at}: {shown} could not be read from the API server within the live budget"
                )),
            }
        }
        out
    }
}
