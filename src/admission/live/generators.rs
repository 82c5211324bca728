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
