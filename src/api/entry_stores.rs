//! The stores an ExternalSecret's entries name for themselves (`sourceRef.storeRef`), as ESO's
//! client manager reads them: a `dataFrom` entry with a `generatorRef` runs the generator, so
//! its `storeRef` (refused at admission) is not a store read.

use super::{ExternalSecretSpec, SecretStoreRef};

/// Which entry of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    Data(usize),
    DataFrom(usize),
}

impl Entry {
    /// `spec.data[0]` / `spec.dataFrom[1]`.
    pub fn field(self) -> String {
        match self {
            Entry::Data(i) => format!("spec.data[{i}]"),
            Entry::DataFrom(i) => format!("spec.dataFrom[{i}]"),
        }
    }

    /// The path of the entry's own store reference, for messages.
    pub fn store_field(self) -> String {
        format!("{}.sourceRef.storeRef", self.field())
    }
}

/// Every entry that reads its own store, in spec order (`dataFrom` first, as a sync reads).
pub fn entry_store_refs(spec: &ExternalSecretSpec) -> Vec<(Entry, &SecretStoreRef)> {
    let from = spec
        .data_from
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, df)| {
            let s = df.source_ref.as_ref()?;
            if s.generator_ref.is_some() {
                return None;
            }
            s.store_ref.as_ref().map(|r| (Entry::DataFrom(i), r))
        });
    let data = spec.data.iter().flatten().enumerate().filter_map(|(i, d)| {
        d.source_ref
            .as_ref()
            .and_then(|s| s.store_ref.as_ref())
            .map(|r| (Entry::Data(i), r))
    });
    from.chain(data).collect()
}

/// Whether the entry reads a store other than `spec.secretStoreRef` (its own, or a generator).
pub fn data_from_has_own_source(df: &super::ExternalSecretDataFromRemoteRef) -> bool {
    df.source_ref
        .as_ref()
        .is_some_and(|s| s.generator_ref.is_some() || s.store_ref.is_some())
}

/// Whether a `data` entry names its own store.
pub fn data_has_own_store(d: &super::ExternalSecretData) -> bool {
    d.source_ref.as_ref().is_some_and(|s| s.store_ref.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entry_stores_in_read_order_skipping_generators() {
        let spec: ExternalSecretSpec = serde_json::from_value(json!({
            "data": [
                {"secretKey": "a", "remoteRef": {"key": "a"}},
                {"secretKey": "b", "remoteRef": {"key": "b"},
                 "sourceRef": {"storeRef": {"name": "other"}}}],
            "dataFrom": [
                {"extract": {"key": "c"}, "sourceRef": {"storeRef": {"name": "css", "kind": "ClusterSecretStore"}}},
                {"sourceRef": {"generatorRef": {"apiVersion": "generators.external-secrets.io/v1alpha1",
                                                 "kind": "Password", "name": "pw"},
                               "storeRef": {"name": "ignored"}}},
                {"extract": {"key": "d"}}]
        }))
        .unwrap();
        let got: Vec<(Entry, Option<&str>)> = entry_store_refs(&spec)
            .into_iter()
            .map(|(e, r)| (e, r.name.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Entry::DataFrom(0), Some("css")),
                (Entry::Data(1), Some("other"))
            ]
        );
        assert_eq!(
            Entry::Data(1).store_field(),
            "spec.data[1].sourceRef.storeRef"
        );
    }
}
