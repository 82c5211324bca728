//! What a PushSecret pushes, and when: plain decisions for the PushSecret controller (ESO's
//! `pkg/controllers/pushsecret`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{
    PushSecretConversionStrategy, PushSecretData, PushSecretStoreKind, SyncedPushSecrets,
};

/// ESO's condition reasons and messages.
pub const REASON_SYNCED: &str = "Synced";
pub const REASON_ERRORED: &str = "Errored";
pub const MSG_SYNCED: &str = "PushSecret synced successfully";
pub const MSG_SYNCED_IF_NOT_EXISTS: &str =
    "PushSecret synced successfully. Existing secrets in providers unchanged.";
pub const MSG_NO_SOURCE: &str = "could not get source secret";

/// The key of a store in `status.syncedPushSecrets`: `SecretStore/name`.
pub fn store_key(kind: PushSecretStoreKind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}

/// The store of a `status.syncedPushSecrets` key.
pub fn parse_store_key(key: &str) -> Option<(PushSecretStoreKind, &str)> {
    let (kind, name) = key.split_once('/')?;
    let kind = match kind {
        "SecretStore" => PushSecretStoreKind::SecretStore,
        "ClusterSecretStore" => PushSecretStoreKind::ClusterSecretStore,
        _ => return None,
    };
    (!name.is_empty()).then_some((kind, name))
}

/// ESO's `ReverseUnicode`: `_UXXXX_` in a key name turns back into the character.
pub fn reverse_unicode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    while let Some(i) = rest.find("_U") {
        out.push_str(&rest[..i]);
        let cand = &rest[i..];
        let decoded = cand
            .get(2..6)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .filter(|_| cand.as_bytes().get(6) == Some(&b'_'))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &cand[7..];
            }
            None => {
                out.push_str("_U");
                rest = &cand[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The bytes one `data[]` entry pushes: the key's value, or (without `secretKey`) the whole
/// Secret as a JSON object of strings. Errors name the key, never a value.
pub fn entry_value(
    source: &BTreeMap<String, Vec<u8>>,
    entry: &PushSecretData,
) -> Result<Vec<u8>, String> {
    let reverse = entry.conversion_strategy == Some(PushSecretConversionStrategy::ReverseUnicode);
    let converted: BTreeMap<String, &Vec<u8>> = source
        .iter()
        .map(|(k, v)| {
            (
                if reverse {
                    reverse_unicode(k)
                } else {
                    k.clone()
                },
                v,
            )
        })
        .collect();
    match entry.match_.secret_key.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => converted
            .get(k)
            .map(|v| (*v).clone())
            .ok_or_else(|| format!("secret key {k:?} not found in the source Secret")),
        None => {
            let mut obj = serde_json::Map::new();
            for (k, v) in converted {
                let text = String::from_utf8(v.clone()).map_err(|_| {
                    format!(
                        "the value of key {k:?} is not UTF-8 text: pushing the whole Secret \
                         needs text values (push the key with a property instead)"
                    )
                })?;
                obj.insert(k, serde_json::Value::String(text));
            }
            Ok(serde_json::to_vec(&obj).expect("a map of strings"))
        }
    }
}

/// When the next push is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Now,
    At(Timestamp),
    /// `refreshInterval: 0` and pushed once: only a change brings another push.
    Never,
}

/// ESO's `shouldRefresh`: a changed spec (or labels/annotations), no push yet, or the interval
/// passed.
pub fn due(
    synced_version: Option<&str>,
    current_version: &str,
    refresh_time: Option<Timestamp>,
    interval: Duration,
) -> Due {
    if synced_version != Some(current_version) {
        return Due::Now;
    }
    if interval.is_zero() {
        return Due::Never;
    }
    let Some(last) = refresh_time else {
        return Due::Now;
    };
    match jiff_add(last, interval) {
        Some(t) => Due::At(t),
        None => Due::Never,
    }
}

fn jiff_add(t: Timestamp, d: Duration) -> Option<Timestamp> {
    let span = k8s_openapi::jiff::SignedDuration::try_from(d).ok()?;
    t.checked_add(span).ok()
}

/// Entries pushed before (`old`) that the new push no longer makes (`new`): what
/// `deletionPolicy: Delete` removes, by store key and status key.
pub fn removed(
    old: &SyncedPushSecrets,
    new: &SyncedPushSecrets,
) -> Vec<(String, String, PushSecretData)> {
    let mut out = vec![];
    for (store, entries) in old {
        for (key, data) in entries {
            let still = new.get(store).is_some_and(|n| n.contains_key(key));
            if !still {
                out.push((store.clone(), key.clone(), data.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PushSecretMatch, PushSecretRemoteRef};

    fn entry(key: Option<&str>, conv: PushSecretConversionStrategy) -> PushSecretData {
        PushSecretData {
            match_: PushSecretMatch {
                secret_key: key.map(String::from),
                remote_ref: PushSecretRemoteRef {
                    remote_key: "app".into(),
                    property: None,
                },
            },
            metadata: None,
            conversion_strategy: Some(conv),
        }
    }

    #[test]
    fn entry_values() {
        let src: BTreeMap<String, Vec<u8>> = [
            ("user".to_string(), b"u".to_vec()),
            ("a_U0024_b".to_string(), b"x".to_vec()),
        ]
        .into();
        use PushSecretConversionStrategy::{None as Plain, ReverseUnicode};
        assert_eq!(
            entry_value(&src, &entry(Some("user"), Plain)).unwrap(),
            b"u"
        );
        let whole = entry_value(&src, &entry(None, Plain)).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&whole).unwrap(),
            serde_json::json!({"user": "u", "a_U0024_b": "x"})
        );
        assert_eq!(
            entry_value(&src, &entry(Some("a$b"), ReverseUnicode)).unwrap(),
            b"x"
        );
        let e = entry_value(&src, &entry(Some("nope"), Plain)).unwrap_err();
        assert!(e.contains("\"nope\""), "{e}");
        let bin: BTreeMap<String, Vec<u8>> = [("k".to_string(), vec![0xff])].into();
        let e = entry_value(&bin, &entry(None, Plain)).unwrap_err();
        assert!(e.contains("\"k\"") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn reverse_unicode_decodes_escapes_only() {
        assert_eq!(reverse_unicode("a_U002E_b"), "a.b");
        assert_eq!(reverse_unicode("_U0040_x_U005F_"), "@x_");
        assert_eq!(reverse_unicode("a_Uzz_b_U12"), "a_Uzz_b_U12");
        assert_eq!(reverse_unicode("plain"), "plain");
    }

    #[test]
    fn due_follows_esos_should_refresh() {
        let t0: Timestamp = "2026-12-07T00:00:00Z".parse().unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(due(None, "1-a", None, hour), Due::Now);
        assert_eq!(due(Some("1-a"), "2-a", Some(t0), hour), Due::Now);
        assert_eq!(
            due(Some("1-a"), "1-a", Some(t0), hour),
            Due::At("2026-12-07T01:00:00Z".parse().unwrap())
        );
        assert_eq!(
            due(Some("1-a"), "1-a", Some(t0), Duration::ZERO),
            Due::Never
        );
        assert_eq!(due(Some("1-a"), "1-a", None, hour), Due::Now);
    }

    #[test]
    fn removed_entries_are_those_no_longer_pushed() {
        let e = entry(Some("k"), PushSecretConversionStrategy::None);
        let old: SyncedPushSecrets = [
            (
                "SecretStore/a".to_string(),
                [("x".to_string(), e.clone()), ("y".to_string(), e.clone())].into(),
            ),
            (
                "SecretStore/b".to_string(),
                [("z".to_string(), e.clone())].into(),
            ),
        ]
        .into();
        let new: SyncedPushSecrets = [(
            "SecretStore/a".to_string(),
            [("x".to_string(), e.clone())].into(),
        )]
        .into();
        let got: Vec<_> = removed(&old, &new)
            .into_iter()
            .map(|(s, k, _)| format!("{s} {k}"))
            .collect();
        assert_eq!(got, ["SecretStore/a y", "SecretStore/b z"]);
    }

    #[test]
    fn store_keys_round_trip() {
        let k = store_key(PushSecretStoreKind::ClusterSecretStore, "vault");
        assert_eq!(k, "ClusterSecretStore/vault");
        assert_eq!(
            parse_store_key(&k),
            Some((PushSecretStoreKind::ClusterSecretStore, "vault"))
        );
        assert_eq!(parse_store_key("Other/x"), None);
        assert_eq!(parse_store_key("SecretStore/"), None);
    }
}
