//! The generators an ExternalSecret names: found in the caches (or asked for), run on a full
//! sync, and the ExternalSecrets a generator's change concerns.

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};

use super::error::SyncError;
use crate::api::generators::{ClusterGenerator, Password, SSHKey, UUID, VaultDynamicSecret};
use crate::api::{ExternalSecret, GeneratorKind, GeneratorRef};
use crate::generators::{
    self, GeneratorRefKey, Lease, Resolved, Source, generator_refs, kind_name,
};
use crate::reconcile::Shared;
use crate::vault::GeneratedEntries;

/// The controller's caches of every generator kind.
#[derive(Clone)]
pub(crate) struct GeneratorStores {
    pub passwords: Store<Password>,
    pub uuids: Store<UUID>,
    pub sshkeys: Store<SSHKey>,
    pub vault: Store<VaultDynamicSecret>,
    pub cluster: Store<ClusterGenerator>,
}

fn resolved<K: Resource>(k: &K, kind: &str, source: Source) -> Resolved {
    let m = k.meta();
    Resolved {
        kind: kind.to_string(),
        namespace: m.namespace.clone(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        generation: m.generation.unwrap_or(0),
        source,
    }
}

/// A generator object from the cache; `Err` for a ClusterGenerator whose spec is unusable.
fn from_cache(
    g: &GeneratorStores,
    kind: GeneratorKind,
    ns: &str,
    name: &str,
) -> Option<Result<Resolved, String>> {
    fn at<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> ObjectRef<K> {
        ObjectRef::new(name).within(ns)
    }
    Some(Ok(match kind {
        GeneratorKind::Password => {
            let p = g.passwords.get(&at(ns, name))?;
            resolved(p.as_ref(), "Password", Source::Password(p.spec.clone()))
        }
        GeneratorKind::Uuid => resolved(g.uuids.get(&at(ns, name))?.as_ref(), "UUID", Source::Uuid),
        GeneratorKind::SshKey => {
            let k = g.sshkeys.get(&at(ns, name))?;
            resolved(k.as_ref(), "SSHKey", Source::SshKey(k.spec.clone()))
        }
        GeneratorKind::VaultDynamicSecret => {
            let v = g.vault.get(&at(ns, name))?;
            let spec = Box::new(v.spec.clone());
            resolved(v.as_ref(), "VaultDynamicSecret", Source::VaultDynamic(spec))
        }
        GeneratorKind::ClusterGenerator => {
            let c = g.cluster.get(&ObjectRef::new(name))?;
            return Some(
                Source::from_cluster(&c.spec, "spec")
                    .map(|s| resolved(c.as_ref(), "ClusterGenerator", s)),
            );
        }
        _ => return None,
    }))
}

/// Asks the API server, for a generator the cache does not show (yet).
async fn from_api(
    k: &kube::Client,
    kind: GeneratorKind,
    ns: &str,
    name: &str,
) -> Result<Option<Result<Resolved, String>>, kube::Error> {
    Ok(match kind {
        GeneratorKind::Password => Api::<Password>::namespaced(k.clone(), ns)
            .get_opt(name)
            .await?
            .map(|p| Ok(resolved(&p, "Password", Source::Password(p.spec.clone())))),
        GeneratorKind::Uuid => Api::<UUID>::namespaced(k.clone(), ns)
            .get_opt(name)
            .await?
            .map(|u| Ok(resolved(&u, "UUID", Source::Uuid))),
        GeneratorKind::SshKey => Api::<SSHKey>::namespaced(k.clone(), ns)
            .get_opt(name)
            .await?
            .map(|s| Ok(resolved(&s, "SSHKey", Source::SshKey(s.spec.clone())))),
        GeneratorKind::VaultDynamicSecret => Api::<VaultDynamicSecret>::namespaced(k.clone(), ns)
            .get_opt(name)
            .await?
            .map(|v| {
                let spec = Box::new(v.spec.clone());
                Ok(resolved(
                    &v,
                    "VaultDynamicSecret",
                    Source::VaultDynamic(spec),
                ))
            }),
        GeneratorKind::ClusterGenerator => Api::<ClusterGenerator>::all(k.clone())
            .get_opt(name)
            .await?
            .map(|c| {
                Source::from_cluster(&c.spec, "spec").map(|s| resolved(&c, "ClusterGenerator", s))
            }),
        _ => None,
    })
}

fn shown(kind: GeneratorKind, ns: &str, name: &str) -> String {
    match kind {
        GeneratorKind::ClusterGenerator => format!("ClusterGenerator {name}"),
        k => format!("{} {ns}/{name}", kind_name(k)),
    }
}

/// Every generator the ExternalSecret names, by `dataFrom` index.
pub(super) async fn resolve_all(
    es: &ExternalSecret,
    sh: &Shared,
) -> Result<Vec<(usize, Resolved)>, SyncError> {
    let ns = es.namespace().unwrap_or_default();
    let mut out = Vec::new();
    for (i, r) in generator_refs(&es.spec) {
        out.push((i, resolve(sh, &ns, i, r).await?));
    }
    Ok(out)
}

async fn resolve(sh: &Shared, ns: &str, i: usize, r: &GeneratorRef) -> Result<Resolved, SyncError> {
    let at = format!("spec.dataFrom[{i}].sourceRef.generatorRef");
    let g = lookup(&sh.kube, Some(&sh.generators), ns, r)
        .await
        .map_err(|e| match e {
            LookupError::Refused(message) => SyncError::GeneratorRef {
                at: at.clone(),
                message,
            },
            LookupError::Kube { what, source } => SyncError::kube(what, source),
        })?;
    if let Source::VaultDynamic(spec) = &g.source
        && !super::class_matches(spec.controller.as_deref(), &sh.cfg.controller_class)
    {
        return Err(SyncError::GeneratorRef {
            at,
            message: format!(
                "{} belongs to controller class {:?}",
                g.display(),
                spec.controller.as_deref().unwrap_or_default()
            ),
        });
    }
    Ok(g)
}

/// Why a generator reference found nothing to run.
#[derive(Debug)]
pub(crate) enum LookupError {
    /// The reference names nothing usable; the message says why.
    Refused(String),
    /// The API server could not be asked.
    Kube { what: String, source: kube::Error },
}

/// The generator a reference names from namespace `ns`: from the caches when given and they
/// show it, else from the API server (the PushSecret controller keeps no generator caches).
pub(crate) async fn lookup(
    kube: &kube::Client,
    cache: Option<&GeneratorStores>,
    ns: &str,
    r: &GeneratorRef,
) -> Result<Resolved, LookupError> {
    if r.api_version != crate::api::generators::API_VERSION {
        return Err(LookupError::Refused(format!(
            "apiVersion {:?}: vaultgate serves {}",
            r.api_version,
            crate::api::generators::API_VERSION
        )));
    }
    let name = r.name.as_str();
    if !is_served(r.kind) {
        return Err(LookupError::Refused(format!(
            "generator kind {} is not served by vaultgate (Password, UUID, SSHKey, \
             VaultDynamicSecret and ClusterGenerator are)",
            kind_name(r.kind)
        )));
    }
    let found = match cache.and_then(|c| from_cache(c, r.kind, ns, name)) {
        Some(f) => Some(f),
        None => from_api(kube, r.kind, ns, name)
            .await
            .map_err(|source| LookupError::Kube {
                what: format!("could not read {}", shown(r.kind, ns, name)),
                source,
            })?,
    };
    found
        .ok_or_else(|| LookupError::Refused(format!("{} not found", shown(r.kind, ns, name))))?
        .map_err(|e| LookupError::Refused(format!("{}: {e}", shown(r.kind, ns, name))))
}

fn is_served(kind: GeneratorKind) -> bool {
    matches!(
        kind,
        GeneratorKind::Password
            | GeneratorKind::Uuid
            | GeneratorKind::SshKey
            | GeneratorKind::VaultDynamicSecret
            | GeneratorKind::ClusterGenerator
    )
}

/// Which generator objects (and specs) a sync used: a change re-syncs, as a store's does.
pub(super) fn versions(gens: &[(usize, Resolved)]) -> String {
    gens.iter()
        .map(|(i, g)| format!("{i}:{}/{}", g.uid, g.generation))
        .collect::<Vec<_>>()
        .join(",")
}

/// The generators' versions as the caches know them, without asking the API server: part
/// of what a failed sync waits for a change of before it tries again early.
pub(super) fn cached_versions(es: &ExternalSecret, sh: &Shared) -> String {
    let ns = es.namespace().unwrap_or_default();
    generator_refs(&es.spec)
        .into_iter()
        .filter_map(
            |(i, r)| match from_cache(&sh.generators, r.kind, &ns, &r.name) {
                Some(Ok(g)) => Some((i, g)),
                _ => None,
            },
        )
        .map(|(i, g)| format!("{i}:{}/{}", g.uid, g.generation))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs every generator once: the keys each made, by `dataFrom` index, and the leases.
pub(super) async fn run_all(
    sh: &Shared,
    ns: &str,
    gens: &[(usize, Resolved)],
) -> Result<(GeneratedEntries, Vec<(GeneratorRefKey, Lease)>), SyncError> {
    let mut entries = GeneratedEntries::new();
    let mut leases = Vec::new();
    for (i, g) in gens {
        let made = generators::generate(g, &sh.vault, ns)
            .await
            .map_err(|source| SyncError::Generator {
                generator: g.display(),
                at: format!("spec.dataFrom[{i}]"),
                source: Box::new(source),
            })?;
        if let Some(lease) = made.lease {
            leases.push((
                GeneratorRefKey {
                    index: *i,
                    kind: g.kind.clone(),
                    name: g.name.clone(),
                },
                lease,
            ));
        }
        entries.insert(*i, made.data);
    }
    Ok((entries, leases))
}

/// The watch streams of every generator kind, for the ExternalSecret controller.
pub(crate) struct GeneratorStreams {
    pub passwords: WatchStream<Password>,
    pub uuids: WatchStream<UUID>,
    pub sshkeys: WatchStream<SSHKey>,
    pub vault: WatchStream<VaultDynamicSecret>,
    pub cluster: WatchStream<ClusterGenerator>,
}

pub(crate) type WatchStream<K> =
    futures::stream::BoxStream<'static, Result<K, kube::runtime::watcher::Error>>;

/// The ExternalSecrets whose `dataFrom` names a generator (`namespace` `None`: a
/// ClusterGenerator, named from any namespace).
pub(crate) fn users_of_generator(
    es: &Store<ExternalSecret>,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<ExternalSecret>> {
    es.state()
        .iter()
        .filter(|e| namespace.is_none() || e.namespace().as_deref() == namespace)
        .filter(|e| {
            generator_refs(&e.spec)
                .iter()
                .any(|(_, r)| r.name == name && kind_name(r.kind) == kind)
        })
        .map(|e| ObjectRef::from_obj(e.as_ref()))
        .collect()
}
