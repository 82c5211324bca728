//! A PushSecret's `selector.generatorRef`: the generator found as an ExternalSecret's is, and
//! run once per push.

use std::collections::BTreeMap;

use super::external_secret::{GeneratorLookupError, lookup_generator};
use super::push_desired::MSG_NO_SOURCE;
use crate::api::GeneratorRef;
use crate::generators::{self, Source};
use crate::vault::VaultClients;

/// A generator's output, made afresh on each push as ESO does (so each refresh rotates the
/// pushed value). A VaultDynamicSecret is refused: ESO never revokes the lease a push
/// supersedes, so each refresh would leave live credentials behind in Vault.
pub(crate) async fn generated(
    kube: &kube::Client,
    vault: &VaultClients,
    ns: &str,
    r: &GeneratorRef,
) -> Result<(String, BTreeMap<String, Vec<u8>>), String> {
    let at = "spec.selector.generatorRef";
    let g = lookup_generator(kube, None, ns, r)
        .await
        .map_err(|e| match e {
            GeneratorLookupError::Refused(m) => format!("{at}: {m}"),
            GeneratorLookupError::Kube { what, source } => {
                format!("{MSG_NO_SOURCE}: {what}: {source}")
            }
        })?;
    if matches!(g.source, Source::VaultDynamic(_)) {
        return Err(format!(
            "{at}: {} is a VaultDynamicSecret, which cannot be pushed: each push would mint \
             new leased credentials and none would be revoked",
            g.display()
        ));
    }
    let made = generators::generate(&g, vault, ns)
        .await
        .map_err(|e| format!("{at}: {} failed: {e}", g.display()))?;
    Ok((g.display(), made.data))
}
