//! Turning Vault JSON into Secret bytes the way ESO does: properties, extract, find, decoding,
//! key conversion and rewrites. Pure functions; errors are plain texts the caller puts in
//! context (they never contain a secret value).

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use crate::api::{ConversionStrategy, ExternalSecretRewrite};

/// Compact JSON with object keys sorted at every level and `<`, `>`, `&`, U+2028, U+2029
/// escaped, byte for byte what Go's `json.Marshal` gives ESO for a decoded secret.
pub fn compact_sorted(v: &Value) -> String {
    sorted_json(v)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Compact JSON with object keys sorted at every level, nothing escaped beyond JSON's needs:
/// what ESO's `JSONMarshal` (Go's encoder without HTML escaping) gives.
pub fn sorted_json(v: &Value) -> String {
    let mut out = String::new();
    write_sorted(v, &mut out);
    out
}

fn write_sorted(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_sorted(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// One JSON value as Secret bytes: a string as its raw bytes, a number as its literal, a bool
/// as `true`/`false`, null as empty, objects and arrays as compact JSON.
pub fn typed_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Null => Vec::new(),
        Value::Number(n) => n.to_string().into_bytes(),
        Value::Bool(b) => b.to_string().into_bytes(),
        other => compact_sorted(other).into_bytes(),
    }
}

/// A dotted path into nested JSON (`a.b.0.c`), `\.` escaping a dot inside a name, as gjson's
/// plain paths that ESO uses.
pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut segments = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.push(chars.next()?),
            '.' => segments.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    segments.push(cur);
    let mut node = v;
    for seg in &segments {
        node = match node {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

/// The JSON a `property` selects: the whole secret when empty, else an exact top-level key,
/// else a dotted path.
pub fn select_value<'a>(secret: &'a Value, property: &str) -> Result<&'a Value, String> {
    if property.is_empty() {
        return Ok(secret);
    }
    if let Some(v) = secret.as_object().and_then(|m| m.get(property)) {
        return Ok(v);
    }
    get_path(secret, property)
        .ok_or_else(|| format!("property {property:?} does not exist in the secret"))
}

/// `remoteRef.property` applied to a secret's data: bytes for one Secret key.
pub fn select_property(secret: &Value, property: &str) -> Result<Vec<u8>, String> {
    let v = select_value(secret, property)?;
    if property.is_empty() {
        return Ok(compact_sorted(v).into_bytes());
    }
    Ok(typed_bytes(v))
}

/// `dataFrom.extract`: the secret (or the subtree `property` selects) must be a JSON object;
/// each top-level entry becomes one key.
pub fn extract(secret: &Value, property: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let v = select_value(secret, property)?;
    let map = v.as_object().ok_or_else(|| {
        if property.is_empty() {
            "the secret is not a JSON object, so it cannot be extracted into keys".to_string()
        } else {
            format!(
                "property {property:?} is not a JSON object, so it cannot be extracted into keys"
            )
        }
    })?;
    Ok(map
        .iter()
        .map(|(k, v)| (k.clone(), typed_bytes(v)))
        .collect())
}

/// `metadataPolicy: Fetch`: the secret's custom_metadata at top level, plus the KV v2 metadata
/// scalars (`created_time`, `current_version`, …) where no custom key has that name.
pub fn metadata_value(metadata: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(m) = metadata.as_object() {
        for (k, v) in m {
            if k != "custom_metadata" && k != "versions" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(custom) = metadata.get("custom_metadata").and_then(Value::as_object) {
        for (k, v) in custom {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// A Secret key (`^[-._a-zA-Z0-9]+$`).
pub fn is_valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `conversionStrategy` for keys made from Vault names: characters outside `[-._a-zA-Z0-9]`
/// become `_` (Default) or `_UXXXX_` with the code point in hex (Unicode).
pub fn convert_key(strategy: ConversionStrategy, key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
            out.push(c);
        } else {
            match strategy {
                ConversionStrategy::Default => out.push('_'),
                ConversionStrategy::Unicode => out.push_str(&format!("_U{:04x}_", c as u32)),
            }
        }
    }
    out
}

/// `dataFrom.find.name.regexp` against a path relative to the mount (unanchored, as Go's
/// `regexp.MatchString`); no regexp matches everything.
pub fn name_matches(re: Option<&Regex>, relative_path: &str) -> bool {
    re.is_none_or(|re| re.is_match(relative_path))
}

/// `dataFrom.find.tags`: every tag must equal the secret's custom_metadata entry.
pub fn tags_match(custom_metadata: Option<&Value>, tags: &BTreeMap<String, String>) -> bool {
    tags.iter().all(|(k, want)| {
        custom_metadata
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .is_some_and(|have| have == want)
    })
}

/// `dataFrom[].rewrite`, applied in order to every key. Regexp targets use Go's `$1` /
/// `${name}` expansion (same rules as the regex crate: `$name` takes the longest name).
pub fn rewrite_keys(
    map: BTreeMap<String, Vec<u8>>,
    rewrites: &[ExternalSecretRewrite],
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut map = map;
    for (i, rw) in rewrites.iter().enumerate() {
        if let Some(t) = &rw.transform {
            // ESO: the template sees the key as `.value`; its output is the new key.
            let mut next = BTreeMap::new();
            for (k, v) in map {
                let nk = crate::template::transform_key(&t.template, &k)
                    .map_err(|e| format!("rewrite[{i}].transform: {e}"))?;
                next.insert(nk, v);
            }
            map = next;
            continue;
        }
        if let Some(m) = &rw.merge {
            map = super::merge::merge(m, map).map_err(|e| format!("rewrite[{i}].merge: {e}"))?;
            continue;
        }
        let Some(rx) = &rw.regexp else {
            return Err(format!(
                "rewrite[{i}] sets none of regexp, transform and merge"
            ));
        };
        let re = crate::goregex::new(&rx.source).map_err(|e| {
            format!(
                "rewrite[{i}].regexp.source {:?}: {}",
                rx.source,
                crate::goregex::message(&e)
            )
        })?;
        let mut next = BTreeMap::new();
        for (k, v) in map {
            let nk = re.replace_all(&k, rx.target.as_str()).into_owned();
            next.insert(nk, v);
        }
        map = next;
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RewriteRegexp;
    use serde_json::json;

    fn secret() -> Value {
        json!({
            "user": "admin",
            "port": 5432,
            "ratio": 1.5,
            "on": true,
            "none": null,
            "nested": {"b": 2, "a": "x<y&z"},
            "list": [1, {"k": "v"}],
            "a.b": "dotted-key",
            "a": {"b": "nested-path"}
        })
    }

    #[test]
    fn property_selection() {
        let s = secret();
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("user", Ok("admin")),
            ("port", Ok("5432")),
            ("ratio", Ok("1.5")),
            ("on", Ok("true")),
            ("none", Ok("")),
            ("nested", Ok(r#"{"a":"x\u003cy\u0026z","b":2}"#)),
            ("nested.b", Ok("2")),
            ("nested.a", Ok("x<y&z")),
            ("list", Ok(r#"[1,{"k":"v"}]"#)),
            ("list.1.k", Ok("v")),
            // An exact top-level key wins over the dotted path.
            ("a.b", Ok("dotted-key")),
            (
                "missing",
                Err("property \"missing\" does not exist in the secret"),
            ),
            (
                "nested.c",
                Err("property \"nested.c\" does not exist in the secret"),
            ),
            (
                "user.x",
                Err("property \"user.x\" does not exist in the secret"),
            ),
        ];
        for (prop, want) in cases {
            let got = select_property(&s, prop);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(w.as_bytes()), "{prop}"),
                Err(e) => assert_eq!(got, Err(e.to_string()), "{prop}"),
            }
        }
        let esc = json!({"a.b": {"c": "x"}, "z": 1});
        assert_eq!(get_path(&esc, r"a\.b.c"), Some(&json!("x")));
    }

    #[test]
    fn whole_secret_is_sorted_compact_json() {
        let s = json!({"z": 1, "a": {"y": [true, null], "b": "é"}});
        assert_eq!(
            select_property(&s, "").unwrap(),
            r#"{"a":{"b":"é","y":[true,null]},"z":1}"#.as_bytes()
        );
    }

    #[test]
    fn extraction() {
        let got = extract(&secret(), "").unwrap();
        assert_eq!(got["user"], b"admin");
        assert_eq!(got["port"], b"5432");
        assert_eq!(got["none"], b"");
        assert_eq!(got["nested"], br#"{"a":"x\u003cy\u0026z","b":2}"#);
        assert_eq!(got.len(), 9);
        let sub = extract(&secret(), "nested").unwrap();
        assert_eq!(sub.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(
            extract(&secret(), "user")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            extract(&json!([1]), "")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            extract(&secret(), "nope")
                .unwrap_err()
                .contains("does not exist")
        );
    }

    #[test]
    fn metadata_fetch() {
        let md = json!({
            "created_time": "2024-01-01T00:00:00Z",
            "current_version": 3,
            "custom_metadata": {"owner": "team-a", "current_version": "custom"},
            "versions": {"1": {}}
        });
        let v = metadata_value(&md);
        assert_eq!(v["owner"], "team-a");
        assert_eq!(v["current_version"], "custom");
        assert_eq!(v["created_time"], "2024-01-01T00:00:00Z");
        assert!(v.get("versions").is_none());
    }

    #[test]
    fn key_conversion_and_validity() {
        let cases = [
            (ConversionStrategy::Default, "team/app/db", "team_app_db"),
            (ConversionStrategy::Default, "a b:c", "a_b_c"),
            (ConversionStrategy::Default, "ok-._9", "ok-._9"),
            (ConversionStrategy::Default, "é", "_"),
            (ConversionStrategy::Unicode, "a/b", "a_U002f_b"),
            (ConversionStrategy::Unicode, "é", "_U00e9_"),
        ];
        for (s, k, want) in cases {
            assert_eq!(convert_key(s, k), want);
            assert!(is_valid_secret_key(want));
        }
        for (k, ok) in [("a", true), ("", false), ("a/b", false), ("a b", false)] {
            assert_eq!(is_valid_secret_key(k), ok, "{k}");
        }
    }

    #[test]
    fn find_filters() {
        let re = Regex::new("^team/.*db").unwrap();
        for (p, want) in [
            ("team/app/db", true),
            ("other/team/db", false),
            ("team/x", false),
        ] {
            assert_eq!(name_matches(Some(&re), p), want, "{p}");
        }
        let unanchored = Regex::new("db").unwrap();
        assert!(name_matches(Some(&unanchored), "a/db/x"));
        assert!(name_matches(None, "anything"));
        let md = json!({"env": "prod", "team": "a"});
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(tags_match(Some(&md), &tags(&[])));
        assert!(tags_match(None, &tags(&[])));
        assert!(tags_match(Some(&md), &tags(&[("env", "prod")])));
        assert!(tags_match(
            Some(&md),
            &tags(&[("env", "prod"), ("team", "a")])
        ));
        assert!(!tags_match(
            Some(&md),
            &tags(&[("env", "prod"), ("team", "b")])
        ));
        assert!(!tags_match(Some(&md), &tags(&[("missing", "x")])));
        assert!(!tags_match(None, &tags(&[("env", "prod")])));
    }

    fn rw(source: &str, target: &str) -> ExternalSecretRewrite {
        ExternalSecretRewrite {
            regexp: Some(RewriteRegexp {
                source: source.into(),
                target: target.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn rewrites() {
        let map: BTreeMap<String, Vec<u8>> = [("team/app/db", "1"), ("team/app/api", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        type Rules<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Rules, &[&str])] = &[
            (&[("team/app/", "")], &["api", "db"]),
            (&[("^team/(.*)/(.*)$", "${2}_$1")], &["api_app", "db_app"]),
            (
                &[("(?P<last>[a-z]+)$", "x-${last}")],
                &["team/app/x-api", "team/app/x-db"],
            ),
            // Go semantics: `$1x` is the (missing) group named `1x`, so it expands to empty.
            (&[("^(team)/", "$1x-")], &["-app/api", "-app/db"]),
            (&[("/", "_"), ("^team_", "")], &["app_api", "app_db"]),
            (&[("\\$", "$$")], &["team/app/api", "team/app/db"]),
        ];
        for (rules, want) in cases {
            let rws: Vec<_> = rules.iter().map(|(s, t)| rw(s, t)).collect();
            let got = rewrite_keys(map.clone(), &rws).unwrap();
            assert_eq!(got.keys().collect::<Vec<_>>(), *want, "{rules:?}");
        }
        let t = |template: &str| ExternalSecretRewrite {
            transform: Some(crate::api::RewriteTransform {
                template: template.into(),
            }),
            ..Default::default()
        };
        let got = rewrite_keys(
            map.clone(),
            &[
                rw("/", "_"),
                t("{{ .value | trimPrefix \"team_\" | upper }}"),
            ],
        )
        .unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["APP_API", "APP_DB"]);
        let err = rewrite_keys(map.clone(), &[t("{{ .value | nope }}")]).unwrap_err();
        assert!(err.starts_with("rewrite[0].transform: "), "{err}");
        assert!(err.contains("function \"nope\" not defined"), "{err}");
        assert!(rewrite_keys(map, &[rw("(", "x")]).is_err());
        // Go's classes are ASCII: `\w` stops at `é`, `\d` does not take `٣`; `\Q…\E` quotes.
        let keys: BTreeMap<String, Vec<u8>> = [("café-٣", "1"), ("a.b", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let got =
            rewrite_keys(keys, &[rw(r"\w+", "x"), rw(r"\d", "9"), rw(r"\Q.\E", "_")]).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["x_x", "xé-٣"]);
    }
}
