//! Everything one ExternalSecret asks for, computed as ESO does: `dataFrom` entries first (in
//! order), then `data` entries, which win on equal keys.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::client::StoreClient;
use super::values;
use super::{VaultError, paths};
use crate::api::entry_stores::Entry;
use crate::api::{
    DecodingStrategy, ExternalSecretDataRemoteRef, ExternalSecretFind, ExternalSecretSpec,
    MetadataPolicy, NullBytePolicy, VaultKvVersion,
};

/// Reads of `find` matches in flight at once.
const FIND_CONCURRENCY: usize = 8;

/// The Secret data computed for one ExternalSecret. No `Debug`: it holds secret values.
pub struct Fetched {
    pub data: BTreeMap<String, Vec<u8>>,
    /// Remote keys that do not exist and were skipped (deletionPolicy Delete/Merge).
    pub missing: Vec<String>,
    /// The `dataFrom` entries that gave no key, e.g. `spec.dataFrom[0].find (path "app")`.
    pub empty: Vec<String>,
    /// The leases of what generators made in this sync (filled in by the caller that ran
    /// them).
    pub leases: Vec<(crate::generators::GeneratorRefKey, crate::generators::Lease)>,
}

/// A failure with the spec entry it came from.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct FetchError {
    /// e.g. `spec.data[2] (key "app/db", property "password")`.
    pub context: String,
    #[source]
    pub source: VaultError,
}

fn ref_context(field: &str, r: &ExternalSecretDataRemoteRef) -> String {
    let mut s = format!("{field} (key {:?}", r.key);
    if let Some(p) = r.property.as_deref().filter(|p| !p.is_empty()) {
        s.push_str(&format!(", property {p:?}"));
    }
    if let Some(v) = r.version.as_deref().filter(|v| !v.is_empty()) {
        s.push_str(&format!(", version {v:?}"));
    }
    s.push(')');
    s
}

/// `skip_missing`: deletionPolicy Delete/Merge: a missing secret is skipped and listed in
/// `missing`; otherwise it is a `NotFound` error.
pub async fn fetch_external_secret(
    client: &StoreClient,
    spec: &ExternalSecretSpec,
    skip_missing: bool,
) -> Result<Fetched, FetchError> {
    let clients = EntryClients {
        default: Some(client),
        ..EntryClients::default()
    };
    fetch_with_generated(&clients, spec, skip_missing, &BTreeMap::new()).await
}

/// The client each entry reads with: its own store's (`sourceRef.storeRef`), else the
/// ExternalSecret's `secretStoreRef`'s; `default` is `None` when no entry reads that one.
#[derive(Default)]
pub struct EntryClients<'a> {
    pub default: Option<&'a StoreClient>,
    pub own: BTreeMap<Entry, &'a StoreClient>,
}

impl<'a> EntryClients<'a> {
    fn for_entry(&self, entry: Entry, has_own: bool) -> Option<&'a StoreClient> {
        if has_own {
            self.own.get(&entry).copied()
        } else {
            self.default
        }
    }
}

/// What a generator made for `spec.dataFrom[i]`, by `i`.
pub type GeneratedEntries = BTreeMap<usize, BTreeMap<String, Vec<u8>>>;

/// [`fetch_external_secret`] with the output of the `dataFrom` entries that name a generator
/// (made beforehand), merged in their place in the order; each entry reads through its own
/// client in `clients`.
pub async fn fetch_with_generated(
    clients: &EntryClients<'_>,
    spec: &ExternalSecretSpec,
    skip_missing: bool,
    generated: &GeneratedEntries,
) -> Result<Fetched, FetchError> {
    let mut out = Fetched {
        data: BTreeMap::new(),
        missing: Vec::new(),
        empty: Vec::new(),
        leases: Vec::new(),
    };
    let no_store = |context: String| FetchError {
        context,
        source: VaultError::config("this entry reads a store, but the ExternalSecret names none"),
    };
    for (i, df) in spec.data_from.iter().flatten().enumerate() {
        let field = format!("spec.dataFrom[{i}]");
        let fail = |context: String| move |source: VaultError| FetchError { context, source };
        let own_store = match &df.source_ref {
            // As ESO: an entry with a generator runs it, whatever else its sourceRef says.
            Some(sr) if sr.generator_ref.is_some() => {
                let map = generated.get(&i).cloned().unwrap_or_default();
                generated_entry(&mut out, &field, df, map)?;
                continue;
            }
            Some(sr) => sr.store_ref.is_some(),
            None => false,
        };
        let Some(client) = clients.for_entry(Entry::DataFrom(i), own_store) else {
            return Err(no_store(field));
        };
        let (map, conversion, decoding, null_policy, context) = match (&df.extract, &df.find) {
            (Some(r), None) => {
                let context = ref_context(&format!("{field}.extract"), r);
                let Some(value) = read_or_missing(client, r, skip_missing)
                    .await
                    .map_err(fail(context.clone()))?
                else {
                    missing_or_error(&mut out, client, r, skip_missing)
                        .map_err(fail(context.clone()))?;
                    continue;
                };
                let map = values::extract(&value, r.property.as_deref().unwrap_or(""))
                    .map_err(|e| fail(context.clone())(VaultError::invalid(e)))?;
                (
                    map,
                    r.conversion_strategy,
                    r.decoding_strategy,
                    r.null_byte_policy,
                    context,
                )
            }
            (None, Some(f)) => {
                let context = format!("{field}.find (path {:?})", f.path.as_deref().unwrap_or(""));
                let map = match find(client, f).await {
                    Ok(map) => map,
                    Err(e) if skip_missing && e.is_missing() => {
                        let folder = f.path.as_deref().unwrap_or("").trim_matches('/');
                        out.missing.push(format!("{folder}/"));
                        continue;
                    }
                    Err(e) => return Err(fail(context)(e)),
                };
                (
                    map,
                    f.conversion_strategy,
                    f.decoding_strategy,
                    f.null_byte_policy,
                    context,
                )
            }
            _ => {
                return Err(FetchError {
                    context: field,
                    source: VaultError::invalid("set exactly one of extract and find"),
                });
            }
        };
        if map.is_empty() {
            out.empty.push(context.clone());
        }
        let rewrites = df.rewrite.as_deref().unwrap_or_default();
        let map = if rewrites.is_empty() {
            let conv = conversion.unwrap_or_default();
            map.into_iter()
                .map(|(k, v)| (values::convert_key(conv, &k), v))
                .collect()
        } else {
            values::rewrite_keys(map, rewrites)
                .map_err(|e| fail(format!("{field}.rewrite"))(VaultError::invalid(e)))?
        };
        for (k, v) in map {
            if !values::is_valid_secret_key(&k) {
                return Err(FetchError {
                    context: context.clone(),
                    source: VaultError::invalid(format!(
                        "key {k:?} is not a valid Secret key (allowed: letters, digits, '-', \
                         '.', '_'): add a rewrite or use conversionStrategy"
                    )),
                });
            }
            let v = finish_value(&v, decoding.unwrap_or_default(), null_policy)
                .map_err(|e| fail(format!("{context} key {k:?}"))(e))?;
            out.data.insert(k, v);
        }
    }
    for (i, d) in spec.data.iter().flatten().enumerate() {
        let r = &d.remote_ref;
        let context = ref_context(&format!("spec.data[{i}]"), r);
        let fail = |source: VaultError| FetchError {
            context: context.clone(),
            source,
        };
        let own_store = crate::api::entry_stores::data_has_own_store(d);
        let Some(client) = clients.for_entry(Entry::Data(i), own_store) else {
            return Err(no_store(context));
        };
        let Some(value) = read_or_missing(client, r, skip_missing)
            .await
            .map_err(fail)?
        else {
            missing_or_error(&mut out, client, r, skip_missing).map_err(fail)?;
            continue;
        };
        let bytes = values::select_property(&value, r.property.as_deref().unwrap_or(""))
            .map_err(|e| fail(VaultError::invalid(e)))?;
        let bytes = finish_value(
            &bytes,
            r.decoding_strategy.unwrap_or_default(),
            r.null_byte_policy,
        )
        .map_err(fail)?;
        out.data.insert(d.secret_key.clone(), bytes);
    }
    Ok(out)
}

/// A generator's keys, rewritten as ESO does (rewrite only: no conversion, no decoding), then
/// checked to be valid Secret keys.
fn generated_entry(
    out: &mut Fetched,
    field: &str,
    df: &crate::api::ExternalSecretDataFromRemoteRef,
    map: BTreeMap<String, Vec<u8>>,
) -> Result<(), FetchError> {
    let context = format!("{field}.sourceRef.generatorRef");
    if map.is_empty() {
        out.empty.push(context.clone());
    }
    let map =
        values::rewrite_keys(map, df.rewrite.as_deref().unwrap_or_default()).map_err(|e| {
            FetchError {
                context: format!("{field}.rewrite"),
                source: VaultError::invalid(e),
            }
        })?;
    for (k, v) in map {
        if !values::is_valid_secret_key(&k) {
            return Err(FetchError {
                context,
                source: VaultError::invalid(format!(
                    "key {k:?} is not a valid Secret key (allowed: letters, digits, '-', '.', \
                     '_'): add a rewrite"
                )),
            });
        }
        out.data.insert(k, v);
    }
    Ok(())
}

/// The JSON a remote ref reads: the secret's data, or with `metadataPolicy: Fetch` its
/// metadata. `None` when it does not exist.
async fn read_ref(
    client: &StoreClient,
    r: &ExternalSecretDataRemoteRef,
) -> Result<Option<std::sync::Arc<Value>>, VaultError> {
    if r.metadata_policy == Some(MetadataPolicy::Fetch) {
        if client.kv_version() == VaultKvVersion::V1 {
            return Err(VaultError::Unsupported {
                what: "metadataPolicy Fetch on a KV v1 store (v1 keeps no metadata)".into(),
            });
        }
        return Ok(client
            .read_metadata(&r.key)
            .await?
            .map(|m| std::sync::Arc::new(values::metadata_value(&m))));
    }
    client.read_secret(&r.key, r.version.as_deref()).await
}

/// [`read_ref`], with a deleted version read as missing when missing secrets are skipped
/// (deletionPolicy Delete/Merge); otherwise its error says what happened to it.
async fn read_or_missing(
    client: &StoreClient,
    r: &ExternalSecretDataRemoteRef,
    skip_missing: bool,
) -> Result<Option<std::sync::Arc<Value>>, VaultError> {
    match read_ref(client, r).await {
        Err(e) if skip_missing && e.is_missing() => Ok(None),
        other => other,
    }
}

fn missing_or_error(
    out: &mut Fetched,
    client: &StoreClient,
    r: &ExternalSecretDataRemoteRef,
    skip_missing: bool,
) -> Result<(), VaultError> {
    if skip_missing {
        out.missing.push(r.key.clone());
        return Ok(());
    }
    let path = if r.metadata_policy == Some(MetadataPolicy::Fetch) {
        paths::metadata_path(client.mount(), &r.key)
    } else {
        paths::data_path(client.mount(), client.kv_version(), &r.key)
    };
    Err(VaultError::NotFound { path })
}

fn finish_value(
    v: &[u8],
    decoding: DecodingStrategy,
    null_policy: Option<NullBytePolicy>,
) -> Result<Vec<u8>, VaultError> {
    let v = crate::decoding::decode(decoding, v).map_err(VaultError::invalid)?;
    if null_policy == Some(NullBytePolicy::Fail) && v.contains(&0) {
        return Err(VaultError::invalid(
            "the value contains a NUL byte and nullBytePolicy is Fail",
        ));
    }
    Ok(v)
}

/// Why a `find` cannot work on a store of this KV version, if it cannot.
pub fn find_refusal(version: VaultKvVersion, f: &ExternalSecretFind) -> Option<&'static str> {
    (version == VaultKvVersion::V1 && f.tags.as_ref().is_some_and(|t| !t.is_empty())).then_some(
        "dataFrom.find by tags on a KV v1 store: tags are KV v2 custom metadata (find by name \
         works on v1)",
    )
}

/// `dataFrom.find`: matching secrets (by name regexp and tags) under the mount, each as its
/// whole JSON, keyed by the path relative to the mount.
async fn find(
    client: &StoreClient,
    f: &ExternalSecretFind,
) -> Result<BTreeMap<String, Vec<u8>>, VaultError> {
    // As ESO: a KV v1 mount is listed for find by name; only tags need v2's custom metadata.
    if let Some(why) = find_refusal(client.kv_version(), f) {
        return Err(VaultError::Unsupported { what: why.into() });
    }
    let re = match f.name.as_ref().and_then(|n| n.regexp.as_deref()) {
        Some(src) => Some(crate::goregex::new(src).map_err(|e| {
            VaultError::invalid(format!(
                "find.name.regexp {src:?} does not compile: {}",
                crate::goregex::message(&e)
            ))
        })?),
        None => None,
    };
    let tags = f.tags.clone().unwrap_or_default();
    let candidates: Vec<String> = client
        .list_recursive(f.path.as_deref().unwrap_or(""))
        .await?
        .into_iter()
        .filter(|p| values::name_matches(re.as_ref(), p))
        .collect();
    let found: Vec<Option<(String, Vec<u8>)>> = futures::stream::iter(candidates)
        .map(|rel| {
            let tags = &tags;
            async move {
                if !tags.is_empty() {
                    let md = client.read_listed_metadata(&rel).await?;
                    let custom = md.as_deref().and_then(|m| m.get("custom_metadata"));
                    if !values::tags_match(custom, tags) {
                        return Ok::<_, VaultError>(None);
                    }
                }
                // A listed secret whose latest version was deleted is not found, as in ESO.
                let value = match client.read_listed(&rel).await {
                    Err(VaultError::VersionDeleted { .. }) => None,
                    other => other?,
                };
                Ok(value.map(|v| (rel, values::compact_sorted(&v).into_bytes())))
            }
        })
        .buffered(FIND_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}
