//! What to write to (or delete from) Vault for one pushed entry, given what Vault holds: ESO's
//! `providers/v1/vault/client_push.go` as plain decisions, KV v1 and v2.
//!
//! A secret vaultgate (or ESO) writes carries `custom_metadata` `managed-by: external-secrets`
//! (v2: on the metadata endpoint, written first; v1: inline in the data); an existing secret
//! without it is never overwritten or deleted.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::api::VaultKvVersion;

pub const MANAGED_BY_KEY: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "external-secrets";
/// Where KV v1 keeps the marker, inside the secret's data.
pub const CUSTOM_METADATA_KEY: &str = "custom_metadata";

/// What Vault holds at the target path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Remote {
    /// The secret exists (v2: it has metadata, even if its current version is deleted).
    pub exists: bool,
    /// The data of the current version, when it has any (v1: including `custom_metadata`).
    pub data: Option<Map<String, Value>>,
    /// v2 `custom_metadata`.
    pub custom_metadata: BTreeMap<String, String>,
    /// v2 current version (0 for a secret with metadata and no version).
    pub version: u64,
}

/// `metadata` of a `data[]` entry for Vault: ESO's `PushSecretMetadata` envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushMetadata {
    pub custom_metadata: BTreeMap<String, String>,
    /// `Replace` drops remote custom metadata that is not asked for; `Merge` (default) keeps it.
    pub replace: bool,
}

/// One entry to push.
#[derive(Debug, Clone, Copy)]
pub struct PushInput<'a> {
    pub version: VaultKvVersion,
    /// The value: the key's bytes, or the whole Secret as a JSON object.
    pub value: &'a [u8],
    /// Without a property the value must be a JSON object and becomes the whole secret.
    pub property: Option<&'a str>,
    /// The store's `checkAndSet.required`.
    pub cas_required: bool,
    /// `updatePolicy: IfNotExists`.
    pub if_not_exists: bool,
    pub metadata: Option<&'a PushMetadata>,
}

/// What to do for one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum PushPlan {
    /// Vault already holds it.
    UpToDate,
    /// `IfNotExists` and the target exists.
    LeaveExisting,
    /// Writes, in this order: v2 metadata, then the data (with `options.cas` when set).
    Write {
        metadata: Option<BTreeMap<String, String>>,
        data: Option<Map<String, Value>>,
        cas: Option<u64>,
    },
}

/// Why an entry cannot be pushed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushRefusal {
    #[error(
        "secret not managed by external-secrets: it exists without custom_metadata {MANAGED_BY_KEY}={MANAGED_BY_VALUE}"
    )]
    NotManaged,
    #[error("{0}")]
    Invalid(String),
}

fn managed(meta: &BTreeMap<String, String>) -> bool {
    meta.get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// v1 keeps the marker inside the data.
fn v1_managed(data: &Map<String, Value>) -> bool {
    data.get(CUSTOM_METADATA_KEY)
        .and_then(|m| m.get(MANAGED_BY_KEY))
        .and_then(Value::as_str)
        == Some(MANAGED_BY_VALUE)
}

fn marker() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_KEY.to_string(), MANAGED_BY_VALUE.to_string())])
}

/// Decides what to write for one entry.
pub fn plan_push(input: PushInput<'_>, remote: &Remote) -> Result<PushPlan, PushRefusal> {
    let v2 = input.version == VaultKvVersion::V2;
    let mut existing = remote.data.clone();
    if remote.exists {
        let ours = if v2 {
            managed(&remote.custom_metadata)
        } else {
            existing.as_ref().is_some_and(v1_managed)
        };
        if !ours {
            return Err(PushRefusal::NotManaged);
        }
    }
    if !v2 && let Some(d) = &mut existing {
        d.remove(CUSTOM_METADATA_KEY);
    }
    if input.if_not_exists {
        let present = match (input.property, &existing) {
            (Some(p), Some(d)) => d.contains_key(p),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if present {
            return Ok(PushPlan::LeaveExisting);
        }
    }
    let (mut data, data_changed) = merge_data(existing.as_ref(), input.value, input.property)?;
    let metadata = if v2 {
        let want = desired_metadata(remote, input.metadata);
        (!remote.exists || want != remote.custom_metadata).then_some(want)
    } else {
        None
    };
    if !data_changed && metadata.is_none() {
        return Ok(PushPlan::UpToDate);
    }
    if !v2 {
        data.insert(
            CUSTOM_METADATA_KEY.into(),
            serde_json::to_value(marker()).expect("a map of strings"),
        );
    }
    // Metadata changes alone leave the data (and its version) as they are.
    if !data_changed {
        return Ok(PushPlan::Write {
            metadata,
            data: None,
            cas: None,
        });
    }
    let cas = (v2 && input.cas_required).then_some(if remote.exists { remote.version } else { 0 });
    Ok(PushPlan::Write {
        metadata,
        data: Some(data),
        cas,
    })
}

impl PushPlan {
    /// Whether the plan writes the data (not only metadata).
    pub fn writes_data(&self) -> bool {
        matches!(self, PushPlan::Write { data: Some(_), .. })
    }
}

/// The secret to write and whether it differs from what Vault holds.
fn merge_data(
    existing: Option<&Map<String, Value>>,
    value: &[u8],
    property: Option<&str>,
) -> Result<(Map<String, Value>, bool), PushRefusal> {
    match property {
        None => {
            let incoming: Map<String, Value> = serde_json::from_slice(value).map_err(|_| {
                PushRefusal::Invalid(
                    "the value is not a JSON object: without remoteRef.property the pushed value \
                     must be a JSON object (push the whole Secret, or set a property)"
                        .into(),
                )
            })?;
            let changed = existing != Some(&incoming);
            Ok((incoming, changed))
        }
        Some(p) => {
            let text = std::str::from_utf8(value).map_err(|_| {
                PushRefusal::Invalid(format!(
                    "the value for property {p:?} is not UTF-8 text: Vault stores JSON strings"
                ))
            })?;
            let mut out = existing.cloned().unwrap_or_default();
            let changed = out.get(p).and_then(Value::as_str) != Some(text);
            out.insert(p.to_string(), Value::String(text.to_string()));
            Ok((out, changed))
        }
    }
}

/// ESO's custom metadata: the marker, the asked-for keys, and (Merge) what Vault has besides.
fn desired_metadata(remote: &Remote, asked: Option<&PushMetadata>) -> BTreeMap<String, String> {
    let mut want = BTreeMap::new();
    if remote.exists && !asked.is_some_and(|m| m.replace) {
        want.extend(remote.custom_metadata.clone());
    }
    if let Some(m) = asked {
        want.extend(m.custom_metadata.clone());
    }
    // The marker is reserved: nobody overrides it.
    want.extend(marker());
    want
}

/// Reads `data[].metadata` for Vault: `{apiVersion: kubernetes.external-secrets.io/v1alpha1,
/// kind: PushSecretMetadata, spec: {customMetadata, mergePolicy}}`. Errors name the field.
pub fn parse_push_metadata(v: Option<&Value>) -> Result<Option<PushMetadata>, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(obj) = v.as_object() else {
        return Err("must be an object (a PushSecretMetadata)".into());
    };
    if let Some(a) = obj.get("apiVersion")
        && a.as_str() != Some("kubernetes.external-secrets.io/v1alpha1")
    {
        return Err("apiVersion must be kubernetes.external-secrets.io/v1alpha1".into());
    }
    if let Some(k) = obj.get("kind")
        && k.as_str() != Some("PushSecretMetadata")
    {
        return Err("kind must be PushSecretMetadata".into());
    }
    let mut out = PushMetadata::default();
    let Some(spec) = obj.get("spec").filter(|s| !s.is_null()) else {
        return Ok(Some(out));
    };
    let Some(spec) = spec.as_object() else {
        return Err("spec must be an object".into());
    };
    for (k, val) in spec {
        match k.as_str() {
            "customMetadata" => {
                let Some(m) = val.as_object() else {
                    return Err("spec.customMetadata must be a map of strings".into());
                };
                for (mk, mv) in m {
                    let Some(s) = mv.as_str() else {
                        return Err(format!("spec.customMetadata.{mk} must be a string"));
                    };
                    out.custom_metadata.insert(mk.clone(), s.to_string());
                }
            }
            "mergePolicy" => match val.as_str() {
                Some("Merge") | Some("") => out.replace = false,
                Some("Replace") => out.replace = true,
                _ => {
                    return Err(
                        "spec.mergePolicy: unsupported merge policy, must be one of: Merge, Replace"
                            .into(),
                    );
                }
            },
            other => return Err(format!("spec.{other} is not a field of PushSecretMetadata")),
        }
    }
    Ok(Some(out))
}

/// What to do to remove one pushed entry.
#[derive(Debug, Clone, PartialEq)]
pub enum DeletePlan {
    /// Missing, or not ours: left alone.
    Nothing,
    /// A property left and others remain: write the rest.
    Rewrite {
        data: Map<String, Value>,
        cas: Option<u64>,
    },
    /// Delete the data (v2: soft-delete of the current version), then (v2) the metadata.
    Delete,
}

/// Decides how to remove an entry that is no longer pushed (`deletionPolicy: Delete`).
pub fn plan_delete(
    version: VaultKvVersion,
    remote: &Remote,
    property: Option<&str>,
    cas_required: bool,
) -> DeletePlan {
    let v2 = version == VaultKvVersion::V2;
    if !remote.exists {
        return DeletePlan::Nothing;
    }
    let ours = if v2 {
        managed(&remote.custom_metadata)
    } else {
        remote.data.as_ref().is_some_and(v1_managed)
    };
    if !ours {
        return DeletePlan::Nothing;
    }
    if let Some(p) = property {
        let mut rest = remote.data.clone().unwrap_or_default();
        if !rest.contains_key(p) {
            return DeletePlan::Nothing;
        }
        rest.remove(p);
        let only_marker = !v2 && rest.len() == 1 && rest.contains_key(CUSTOM_METADATA_KEY);
        if !rest.is_empty() && !only_marker {
            return DeletePlan::Rewrite {
                data: rest,
                cas: (v2 && cas_required).then_some(remote.version),
            };
        }
    }
    DeletePlan::Delete
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn v2_remote(data: Option<Value>, meta: &[(&str, &str)], version: u64) -> Remote {
        Remote {
            exists: true,
            data: data.map(obj),
            custom_metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            version,
        }
    }

    fn input<'a>(
        version: VaultKvVersion,
        value: &'a [u8],
        property: Option<&'a str>,
    ) -> PushInput<'a> {
        PushInput {
            version,
            value,
            property,
            cas_required: false,
            if_not_exists: false,
            metadata: None,
        }
    }

    const OURS: &[(&str, &str)] = &[("managed-by", "external-secrets")];
    use VaultKvVersion::{V1, V2};

    #[test]
    fn v2_push_table() {
        let marker_only = Some(marker());
        let cases: Vec<(&str, PushInput, Remote, Result<PushPlan, PushRefusal>)> = vec![
            (
                "new secret, whole value: metadata first, then data",
                input(V2, br#"{"a":"1"}"#, None),
                Remote::default(),
                Ok(PushPlan::Write {
                    metadata: marker_only.clone(),
                    data: Some(obj(json!({"a": "1"}))),
                    cas: None,
                }),
            ),
            (
                "new secret, property",
                input(V2, b"s3cret", Some("password")),
                Remote::default(),
                Ok(PushPlan::Write {
                    metadata: marker_only.clone(),
                    data: Some(obj(json!({"password": "s3cret"}))),
                    cas: None,
                }),
            ),
            (
                "property merged into what Vault has",
                input(V2, b"new", Some("password")),
                v2_remote(Some(json!({"user": "u", "password": "old"})), OURS, 3),
                Ok(PushPlan::Write {
                    metadata: None,
                    data: Some(obj(json!({"user": "u", "password": "new"}))),
                    cas: None,
                }),
            ),
            (
                "same property value: nothing written",
                input(V2, b"same", Some("password")),
                v2_remote(Some(json!({"user": "u", "password": "same"})), OURS, 3),
                Ok(PushPlan::UpToDate),
            ),
            (
                "same whole value: nothing written",
                input(V2, br#"{"a":"1","b":"2"}"#, None),
                v2_remote(Some(json!({"b": "2", "a": "1"})), OURS, 1),
                Ok(PushPlan::UpToDate),
            ),
            (
                "whole value replaces the secret",
                input(V2, br#"{"a":"1"}"#, None),
                v2_remote(Some(json!({"a": "0", "extra": "x"})), OURS, 1),
                Ok(PushPlan::Write {
                    metadata: None,
                    data: Some(obj(json!({"a": "1"}))),
                    cas: None,
                }),
            ),
            (
                "an existing secret without the marker is refused",
                input(V2, b"x", Some("p")),
                v2_remote(Some(json!({"p": "y"})), &[("owner", "team")], 1),
                Err(PushRefusal::NotManaged),
            ),
            (
                "a deleted current version of someone else's secret is refused too",
                input(V2, b"x", Some("p")),
                v2_remote(None, &[], 2),
                Err(PushRefusal::NotManaged),
            ),
            (
                "our secret with its current version deleted is written again",
                input(V2, b"x", Some("p")),
                v2_remote(None, OURS, 2),
                Ok(PushPlan::Write {
                    metadata: None,
                    data: Some(obj(json!({"p": "x"}))),
                    cas: None,
                }),
            ),
            (
                "whole value that is not a JSON object",
                input(V2, b"plain", None),
                Remote::default(),
                Err(PushRefusal::Invalid(String::new())),
            ),
        ];
        for (name, inp, remote, want) in cases {
            let got = plan_push(inp, &remote);
            match (&got, &want) {
                (Err(PushRefusal::Invalid(_)), Err(PushRefusal::Invalid(_))) => {}
                _ => assert_eq!(got, want, "{name}"),
            }
        }
    }

    #[test]
    fn check_and_set_carries_the_current_version_or_zero() {
        let mut inp = input(V2, b"v", Some("p"));
        inp.cas_required = true;
        let new = plan_push(inp, &Remote::default()).unwrap();
        assert!(
            matches!(new, PushPlan::Write { cas: Some(0), .. }),
            "{new:?}"
        );
        let existing = plan_push(inp, &v2_remote(Some(json!({"p": "old"})), OURS, 7)).unwrap();
        assert!(
            matches!(existing, PushPlan::Write { cas: Some(7), .. }),
            "{existing:?}"
        );
        // Metadata written first and the data write failed: version 0.
        let meta_only = plan_push(inp, &v2_remote(None, OURS, 0)).unwrap();
        assert!(
            matches!(meta_only, PushPlan::Write { cas: Some(0), .. }),
            "{meta_only:?}"
        );
    }

    #[test]
    fn if_not_exists_leaves_existing_values_alone() {
        let mut inp = input(V2, b"v", Some("p"));
        inp.if_not_exists = true;
        let remote = v2_remote(Some(json!({"p": "old"})), OURS, 1);
        assert_eq!(plan_push(inp, &remote), Ok(PushPlan::LeaveExisting));
        // Another property of the same secret is still added.
        let remote = v2_remote(Some(json!({"q": "old"})), OURS, 1);
        assert!(plan_push(inp, &remote).unwrap().writes_data());
        assert!(plan_push(inp, &Remote::default()).unwrap().writes_data());
        // The marker check comes first: someone else's secret is an error, not "left alone".
        let theirs = v2_remote(Some(json!({"p": "old"})), &[], 1);
        assert_eq!(plan_push(inp, &theirs), Err(PushRefusal::NotManaged));
    }

    #[test]
    fn custom_metadata_merges_or_replaces_and_keeps_the_marker() {
        let asked = PushMetadata {
            custom_metadata: BTreeMap::from([
                ("team".to_string(), "a".to_string()),
                ("managed-by".to_string(), "someone".to_string()),
            ]),
            replace: false,
        };
        let mut inp = input(V2, b"v", Some("p"));
        inp.metadata = Some(&asked);
        let remote = v2_remote(
            Some(json!({"p": "v"})),
            &[("managed-by", "external-secrets"), ("keep", "me")],
            1,
        );
        let want: BTreeMap<String, String> = [
            ("keep", "me"),
            ("managed-by", "external-secrets"),
            ("team", "a"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // Data unchanged, metadata changed: a metadata-only write.
        let got = plan_push(inp, &remote).unwrap();
        assert_eq!(
            got,
            PushPlan::Write {
                metadata: Some(want),
                data: None,
                cas: None
            }
        );
        assert!(!got.writes_data());
        let replace = PushMetadata {
            replace: true,
            ..asked.clone()
        };
        inp.metadata = Some(&replace);
        let PushPlan::Write { metadata, .. } = plan_push(inp, &remote).unwrap() else {
            panic!()
        };
        assert_eq!(
            metadata.unwrap().keys().collect::<Vec<_>>(),
            ["managed-by", "team"]
        );
    }

    #[test]
    fn v1_keeps_the_marker_inline() {
        let got = plan_push(input(V1, b"v", Some("p")), &Remote::default()).unwrap();
        assert_eq!(
            got,
            PushPlan::Write {
                metadata: None,
                data: Some(obj(
                    json!({"p": "v", "custom_metadata": {"managed-by": "external-secrets"}})
                )),
                cas: None,
            }
        );
        let ours = Remote {
            exists: true,
            data: Some(obj(
                json!({"p": "v", "custom_metadata": {"managed-by": "external-secrets"}}),
            )),
            ..Default::default()
        };
        assert_eq!(
            plan_push(input(V1, b"v", Some("p")), &ours),
            Ok(PushPlan::UpToDate)
        );
        // A whole value compares without the marker.
        let whole = Remote {
            exists: true,
            data: Some(obj(
                json!({"a": "1", "custom_metadata": {"managed-by": "external-secrets"}}),
            )),
            ..Default::default()
        };
        assert_eq!(
            plan_push(input(V1, br#"{"a":"1"}"#, None), &whole),
            Ok(PushPlan::UpToDate)
        );
        let theirs = Remote {
            exists: true,
            data: Some(obj(json!({"p": "v"}))),
            ..Default::default()
        };
        assert_eq!(
            plan_push(input(V1, b"x", Some("p")), &theirs),
            Err(PushRefusal::NotManaged)
        );
        // v1 has no check-and-set.
        let mut inp = input(V1, b"v", Some("p"));
        inp.cas_required = true;
        assert!(matches!(
            plan_push(inp, &Remote::default()),
            Ok(PushPlan::Write { cas: None, .. })
        ));
    }

    #[test]
    fn delete_table() {
        let ours_v1 = |d: Value| Remote {
            exists: true,
            data: Some(obj(d)),
            ..Default::default()
        };
        let cases: Vec<(&str, VaultKvVersion, Remote, Option<&str>, DeletePlan)> = vec![
            ("missing", V2, Remote::default(), None, DeletePlan::Nothing),
            (
                "not ours",
                V2,
                v2_remote(Some(json!({"a": "1"})), &[], 1),
                None,
                DeletePlan::Nothing,
            ),
            (
                "whole secret",
                V2,
                v2_remote(Some(json!({"a": "1"})), OURS, 1),
                None,
                DeletePlan::Delete,
            ),
            (
                "property with others left: rewrite the rest",
                V2,
                v2_remote(Some(json!({"a": "1", "b": "2"})), OURS, 4),
                Some("a"),
                DeletePlan::Rewrite {
                    data: obj(json!({"b": "2"})),
                    cas: Some(4),
                },
            ),
            (
                "last property: delete",
                V2,
                v2_remote(Some(json!({"a": "1"})), OURS, 4),
                Some("a"),
                DeletePlan::Delete,
            ),
            (
                "property already gone",
                V2,
                v2_remote(Some(json!({"b": "2"})), OURS, 4),
                Some("a"),
                DeletePlan::Nothing,
            ),
            (
                "v1 last property next to the marker: delete",
                V1,
                ours_v1(json!({"a": "1", "custom_metadata": {"managed-by": "external-secrets"}})),
                Some("a"),
                DeletePlan::Delete,
            ),
            (
                "v1 property with others: rewrite keeps the marker",
                V1,
                ours_v1(
                    json!({"a": "1", "b": "2", "custom_metadata": {"managed-by": "external-secrets"}}),
                ),
                Some("a"),
                DeletePlan::Rewrite {
                    data: obj(
                        json!({"b": "2", "custom_metadata": {"managed-by": "external-secrets"}}),
                    ),
                    cas: None,
                },
            ),
            (
                "v1 not ours",
                V1,
                ours_v1(json!({"a": "1"})),
                None,
                DeletePlan::Nothing,
            ),
        ];
        for (name, version, remote, property, want) in cases {
            assert_eq!(
                plan_delete(version, &remote, property, true),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn push_metadata_is_read_from_esos_envelope() {
        let v = json!({
            "apiVersion": "kubernetes.external-secrets.io/v1alpha1",
            "kind": "PushSecretMetadata",
            "spec": {"customMetadata": {"team": "a"}, "mergePolicy": "Replace"}
        });
        let m = parse_push_metadata(Some(&v)).unwrap().unwrap();
        assert!(m.replace);
        assert_eq!(m.custom_metadata["team"], "a");
        assert_eq!(parse_push_metadata(None), Ok(None));
        for (bad, field) in [
            (json!({"kind": "Other"}), "kind"),
            (
                json!({"spec": {"mergePolicy": "Sometimes"}}),
                "spec.mergePolicy",
            ),
            (
                json!({"spec": {"customMetadata": {"n": 1}}}),
                "spec.customMetadata.n",
            ),
            (json!({"spec": {"typo": 1}}), "spec.typo"),
            (json!("text"), "object"),
        ] {
            let e = parse_push_metadata(Some(&bad)).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }
}
