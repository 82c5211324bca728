//! Decoding of the Kubernetes protobuf envelope for the request bodies kubectl
//! sends with its typed clients (`kubectl create secret|configmap|namespace|
//! serviceaccount|token`). Responses are always JSON, which clients accept.

use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i)?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn next(&mut self) -> Option<Option<(u64, Field<'a>)>> {
        if self.i >= self.b.len() {
            return Some(None);
        }
        let key = self.varint()?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(self.varint()?),
            2 => {
                let len = self.varint()? as usize;
                let end = self.i.checked_add(len).filter(|e| *e <= self.b.len())?;
                let s = &self.b[self.i..end];
                self.i = end;
                Field::Bytes(s)
            }
            1 => {
                self.i += 8;
                Field::Varint(0)
            }
            5 => {
                self.i += 4;
                Field::Varint(0)
            }
            _ => return None,
        };
        Some(Some((num, f)))
    }
}

/// How a field is turned into JSON.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    StrList,
    MapStr,
    MapB64,
    Msg(&'static [(u64, &'static str, Kind)]),
    MsgList(&'static [(u64, &'static str, Kind)]),
    /// meta/v1 Time: seconds=1
    Time,
}

const OWNER_REF: &[(u64, &str, Kind)] = &[
    (1, "kind", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (5, "apiVersion", Kind::Str),
    (6, "controller", Kind::Bool),
    (7, "blockOwnerDeletion", Kind::Bool),
];

const OBJECT_META: &[(u64, &str, Kind)] = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (5, "uid", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (7, "generation", Kind::Int),
    (8, "creationTimestamp", Kind::Time),
    (11, "labels", Kind::MapStr),
    (12, "annotations", Kind::MapStr),
    (13, "ownerReferences", Kind::MsgList(OWNER_REF)),
    (14, "finalizers", Kind::StrList),
];

const OBJECT_REF: &[(u64, &str, Kind)] = &[
    (1, "kind", Kind::Str),
    (2, "namespace", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (5, "apiVersion", Kind::Str),
];

const LOCAL_REF: &[(u64, &str, Kind)] = &[(1, "name", Kind::Str)];

const SECRET: &[(u64, &str, Kind)] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::MapB64),
    (3, "type", Kind::Str),
    (4, "stringData", Kind::MapStr),
    (5, "immutable", Kind::Bool),
];

const CONFIG_MAP: &[(u64, &str, Kind)] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::MapStr),
    (3, "binaryData", Kind::MapB64),
    (4, "immutable", Kind::Bool),
];

const NAMESPACE: &[(u64, &str, Kind)] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(&[(1, "finalizers", Kind::StrList)])),
];

const SERVICE_ACCOUNT: &[(u64, &str, Kind)] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "secrets", Kind::MsgList(OBJECT_REF)),
    (3, "imagePullSecrets", Kind::MsgList(LOCAL_REF)),
    (4, "automountServiceAccountToken", Kind::Bool),
];

const TOKEN_REQUEST: &[(u64, &str, Kind)] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (
        2,
        "spec",
        Kind::Msg(&[
            (1, "audiences", Kind::StrList),
            (
                3,
                "boundObjectRef",
                Kind::Msg(&[
                    (1, "kind", Kind::Str),
                    (2, "apiVersion", Kind::Str),
                    (3, "name", Kind::Str),
                    (4, "uid", Kind::Str),
                ]),
            ),
            (4, "expirationSeconds", Kind::Int),
        ]),
    ),
];

fn text(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

fn map_entry(b: &[u8]) -> Option<(String, &[u8])> {
    let mut r = Reader { b, i: 0 };
    let (mut k, mut v) = (String::new(), &b[0..0]);
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(x)) => k = text(x)?,
            (2, Field::Bytes(x)) => v = x,
            _ => {}
        }
    }
    Some((k, v))
}

fn decode(b: &[u8], schema: &[(u64, &str, Kind)]) -> Option<Value> {
    let mut out = Map::new();
    let mut r = Reader { b, i: 0 };
    while let Some((n, f)) = r.next()? {
        let Some((_, name, kind)) = schema.iter().find(|(num, _, _)| *num == n) else {
            continue;
        };
        let name = name.to_string();
        match (kind, f) {
            (Kind::Str, Field::Bytes(x)) => {
                out.insert(name, json!(text(x)?));
            }
            (Kind::Bool, Field::Varint(v)) => {
                out.insert(name, json!(v != 0));
            }
            (Kind::Int, Field::Varint(v)) => {
                out.insert(name, json!(v as i64));
            }
            (Kind::StrList, Field::Bytes(x)) => {
                let e = out.entry(name).or_insert_with(|| json!([]));
                e.as_array_mut()?.push(json!(text(x)?));
            }
            (Kind::MapStr, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                let e = out.entry(name).or_insert_with(|| json!({}));
                e.as_object_mut()?.insert(k, json!(text(v)?));
            }
            (Kind::MapB64, Field::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                let e = out.entry(name).or_insert_with(|| json!({}));
                e.as_object_mut()?.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                );
            }
            (Kind::Msg(s), Field::Bytes(x)) => {
                out.insert(name, decode(x, s)?);
            }
            (Kind::MsgList(s), Field::Bytes(x)) => {
                let item = decode(x, s)?;
                let e = out.entry(name).or_insert_with(|| json!([]));
                e.as_array_mut()?.push(item);
            }
            (Kind::Time, Field::Bytes(x)) => {
                let mut tr = Reader { b: x, i: 0 };
                let mut secs = 0i64;
                while let Some((tn, tf)) = tr.next()? {
                    if let (1, Field::Varint(v)) = (tn, tf) {
                        secs = v as i64;
                    }
                }
                let t = chrono::DateTime::from_timestamp(secs, 0)?;
                out.insert(name, json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
            }
            _ => return None,
        }
    }
    Some(Value::Object(out))
}

/// Decode a `application/vnd.kubernetes.protobuf` body of a supported kind into JSON.
pub fn to_json(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body without the k8s envelope")?;
    let mut r = Reader { b: rest, i: 0 };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &rest[0..0]);
    while let Some((n, f)) = r.next().ok_or("malformed protobuf envelope")? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                let mut t = Reader { b: tm, i: 0 };
                while let Some((tn, tf)) = t.next().ok_or("malformed type meta")? {
                    match (tn, tf) {
                        (1, Field::Bytes(x)) => api_version = text(x).unwrap_or_default(),
                        (2, Field::Bytes(x)) => kind = text(x).unwrap_or_default(),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    let schema = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        _ => {
            return Err(format!(
                "protobuf bodies of {api_version} {kind} are not supported; send JSON"
            ));
        }
    };
    let mut v = decode(raw, schema).ok_or_else(|| format!("malformed protobuf {kind}"))?;
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}
