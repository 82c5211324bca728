//! What Vault's answers must look like. Pure checks that turn a response body into what a
//! call needs, or a text saying what was wrong: never a value from the body (it may hold
//! secrets), and never more than a bounded amount of text Vault sent. Callers prefix the
//! method and path.
//!
//! Anything that is not the documented shape is an error, never "no data": an empty or
//! foreign answer must not read as a deleted secret, or a Secret would be emptied.

use std::time::Duration;

use serde_json::Value;

/// Upper bound of JSON values (objects, arrays, keys, scalars) in one answer. Parsed JSON
/// takes up to ~16 times the bytes of its text (`[0,0,0,…]`: 2 bytes become a 32-byte
/// `Value`), so the byte limit alone would let a 32 MiB answer take half a GiB. The largest
/// real answers (a LIST of 10,000 keys, metadata of a secret with many versions) stay far
/// below this.
pub(crate) const MAX_JSON_VALUES: usize = 1_000_000;
/// Vault's error texts shown in messages are cut here: they end up in status conditions,
/// which must stay small.
const MAX_ERRORS_TEXT: usize = 500;
/// Said of any body that is not JSON: Vault always answers JSON.
pub(crate) const FOREIGN_HINT: &str = "something other than Vault may be answering: a proxy or \
     load balancer, or spec.provider.vault.server is not Vault's address";
/// Token TTLs above this are taken as this: far beyond any Vault max TTL, and small enough
/// that the arithmetic on it cannot overflow.
pub(crate) const MAX_TOKEN_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// "a string", "an array", … for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) use crate::text::clip;

/// Whether `json` may hold more than `limit` values and keys (see [`crate::json_values`]).
pub(crate) fn too_many_values(json: &[u8], limit: usize) -> bool {
    crate::json_values::values_and_keys(json) > limit
}

/// A response body as JSON. An empty body is `Null` (Vault answers 204 to some calls);
/// callers that need data say so. The error says why it is not JSON, with the content type.
pub(crate) fn decode(bytes: &[u8], content_type: Option<&str>) -> Result<Value, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    if too_many_values(bytes, MAX_JSON_VALUES) {
        return Err(format!(
            "the body holds more than {MAX_JSON_VALUES} JSON values, more than any Vault answer"
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let ct = content_type
            .map(|c| format!(" (content-type {:?})", clip(c, 100)))
            .unwrap_or_default();
        format!("the body is not valid JSON{ct}: {e}; {FOREIGN_HINT}")
    })
}

/// Vault's `errors` as `: a; b` (a single string is taken as one), or nothing; cut to a
/// bounded length. Vault's error texts do not echo request bodies, so they are safe to show.
pub(crate) fn errors_suffix(body: &Value) -> String {
    let text = match body.get("errors") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", clip(&text, MAX_ERRORS_TEXT))
    }
}

/// The top-level `data` object of an answer.
pub(crate) fn data_object(body: &Value) -> Result<&serde_json::Map<String, Value>, String> {
    match body {
        Value::Null => return Err("the body is empty".into()),
        Value::Object(_) => {}
        other => return Err(format!("the body is {}, not a JSON object", kind(other))),
    }
    match body.get("data") {
        Some(Value::Object(m)) => Ok(m),
        None | Some(Value::Null) => Err("the answer has no \"data\"".into()),
        Some(other) => Err(format!("\"data\" is {}, expected an object", kind(other))),
    }
}

/// The secret of a KV read: v1 `data`, v2 `data.data`. `None` for a v2 version without data
/// (deleted or destroyed), which ESO treats as a missing secret.
pub(crate) fn kv_data(body: &Value, v2: bool) -> Result<Option<&Value>, String> {
    data_object(body)?;
    let data = &body["data"];
    if !v2 {
        return Ok(Some(data));
    }
    match data.get("metadata") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(other) => {
            return Err(format!(
                "\"data.metadata\" is {}, expected an object",
                kind(other)
            ));
        }
    }
    match data.get("data") {
        Some(d @ Value::Object(_)) => Ok(Some(d)),
        Some(Value::Null) => Ok(None),
        None => Err(
            "the answer has no \"data.data\", so it is not a KV v2 read: is the mount KV v1? \
             (spec.provider.vault.version)"
                .into(),
        ),
        Some(other) => Err(format!(
            "\"data.data\" is {}, expected an object",
            kind(other)
        )),
    }
}

/// What a KV v2 read says of a version that has no data because it was deleted or destroyed
/// (Vault answers it with 404 and the version's metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeletedVersion {
    /// `deletion_time`, when set.
    pub deleted_at: Option<String>,
    pub destroyed: bool,
}

/// The deleted or destroyed version a KV v2 read answered with, if that is what it is:
/// `data.data` null and `data.metadata` with `deletion_time` set or `destroyed: true`.
pub(crate) fn deleted_version(body: &Value) -> Option<DeletedVersion> {
    let data = body.get("data")?;
    if !data.get("data").is_some_and(Value::is_null) {
        return None;
    }
    let meta = data.get("metadata")?.as_object()?;
    let deleted_at = meta
        .get("deletion_time")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(String::from);
    let destroyed = meta.get("destroyed").and_then(Value::as_bool) == Some(true);
    (deleted_at.is_some() || destroyed).then_some(DeletedVersion {
        deleted_at,
        destroyed,
    })
}

/// The metadata of a KV v2 metadata read (`data`), with `custom_metadata` and `versions`
/// objects when present.
pub(crate) fn kv_metadata(body: &Value) -> Result<&Value, String> {
    let m = data_object(body)?;
    for field in ["custom_metadata", "versions"] {
        match m.get(field) {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(other) => {
                return Err(format!(
                    "\"data.{field}\" is {}, expected an object",
                    kind(other)
                ));
            }
        }
    }
    Ok(&body["data"])
}

/// The names of a LIST answer: secrets, and folders ending in `/`. Each must be one path
/// segment, so that listing cannot loop on a folder named `""` or climb with `..`.
pub(crate) fn list_keys(body: &Value) -> Result<Vec<&str>, String> {
    let keys = match data_object(body)?.get("keys") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => return Err("the answer has no \"data.keys\"".into()),
        Some(other) => {
            return Err(format!(
                "\"data.keys\" is {}, expected an array of names",
                kind(other)
            ));
        }
    };
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let s = k
                .as_str()
                .ok_or_else(|| format!("\"data.keys[{i}]\" is {}, expected a string", kind(k)))?;
            let name = s.strip_suffix('/').unwrap_or(s);
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(format!(
                    "\"data.keys[{i}]\" ({:?}) is not a secret or folder name",
                    clip(s, 100)
                ));
            }
            Ok(s)
        })
        .collect()
}

/// The capabilities `sys/capabilities-self` gives for `path`: under the path's name at top
/// level or in `data`, or (for a single path) as `capabilities`.
pub(crate) fn capabilities(body: &Value, path: &str, single: bool) -> Result<Vec<String>, String> {
    let found = body
        .get(path)
        .map(|v| (v, path))
        .or_else(|| {
            body.get("data")
                .and_then(|d| d.get(path))
                .map(|v| (v, path))
        })
        .or_else(|| {
            single
                .then(|| body.get("capabilities"))
                .flatten()
                .map(|v| (v, "capabilities"))
        });
    let Some((caps, field)) = found else {
        return Err(format!(
            "the answer lists no capabilities for {:?}",
            clip(path, 200)
        ));
    };
    let list = caps.as_array().ok_or_else(|| {
        format!(
            "{:?} is {}, expected an array of capabilities",
            clip(field, 200),
            kind(caps)
        )
    })?;
    list.iter()
        .map(|c| {
            c.as_str().map(str::to_string).ok_or_else(|| {
                format!(
                    "{:?} holds {}, expected capability names",
                    clip(field, 200),
                    kind(c)
                )
            })
        })
        .collect()
}

/// A mount's engine type and options version (`"1"` when not set), from `sys/mounts/<m>` or
/// `sys/internal/ui/mounts/<m>` (which wraps it in `data`).
pub(crate) fn mount_info(body: &Value) -> Result<(String, String), String> {
    let info = match (body, body.get("data")) {
        (Value::Null, _) => return Err("the body is empty".into()),
        (Value::Object(_), Some(d @ Value::Object(_))) => d,
        (Value::Object(_), _) => body,
        (other, _) => return Err(format!("the body is {}, not a JSON object", kind(other))),
    };
    let engine = match info.get("type") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err("the answer has no mount \"type\"".into()),
        Some(other) => {
            return Err(format!(
                "the mount \"type\" is {}, expected a string",
                kind(other)
            ));
        }
    };
    let version = match info.get("options").and_then(|o| o.get("version")) {
        None | Some(Value::Null) => "1".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(format!(
                "\"options.version\" is {}, expected a string",
                kind(other)
            ));
        }
    };
    Ok((engine, version))
}

/// What a login or renewal answer gives.
#[derive(Debug, PartialEq)]
pub(crate) struct LoginAnswer<'a> {
    pub token: &'a str,
    pub ttl: Duration,
    pub renewable: bool,
}

/// `auth.client_token`, `auth.lease_duration` (seconds, 0 when absent, at most
/// [`MAX_TOKEN_TTL`]) and `auth.renewable` (false when absent).
pub(crate) fn login(body: &Value) -> Result<LoginAnswer<'_>, String> {
    let auth = match body {
        Value::Null => return Err("the body is empty".into()),
        Value::Object(_) => match body.get("auth") {
            Some(a @ Value::Object(_)) => a,
            None | Some(Value::Null) => {
                return Err("the answer holds no \"auth\" (no token)".into());
            }
            Some(other) => return Err(format!("\"auth\" is {}, expected an object", kind(other))),
        },
        other => return Err(format!("the body is {}, not a JSON object", kind(other))),
    };
    let token = match auth.get("client_token") {
        Some(Value::String(t)) if !t.is_empty() => t.as_str(),
        Some(Value::String(_)) => return Err("\"auth.client_token\" is empty".into()),
        None | Some(Value::Null) => return Err("\"auth.client_token\" is missing".into()),
        Some(other) => {
            return Err(format!(
                "\"auth.client_token\" is {}, expected a string",
                kind(other)
            ));
        }
    };
    let ttl = match auth.get("lease_duration") {
        None | Some(Value::Null) => Duration::ZERO,
        Some(v) => match v.as_u64() {
            Some(s) => Duration::from_secs(s).min(MAX_TOKEN_TTL),
            None => {
                return Err(format!(
                    "\"auth.lease_duration\" is {}, expected a whole number of seconds",
                    match v {
                        Value::Number(_) => "a negative or fractional number",
                        other => kind(other),
                    }
                ));
            }
        },
    };
    let renewable = match auth.get("renewable") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "\"auth.renewable\" is {}, expected a boolean",
                kind(other)
            ));
        }
    };
    Ok(LoginAnswer {
        token,
        ttl,
        renewable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn value_counts() {
        let cases: &[(&str, usize, bool)] = &[
            ("0", 1, false),
            ("{}", 2, false),
            ("[0,0,0]", 4, false),
            ("[0,0,0]", 3, true),
            (r#"{"a":1,"b":2}"#, 5, false),
            (r#"{"a":1,"b":2}"#, 4, true),
            // Separators inside strings, escaped quotes included, do not count.
            (r#"["a,b:c[d{", "e\",f"]"#, 3, false),
            (r#"["a,b:c[d{", "e\",f"]"#, 2, true),
            (r#"["\\",1]"#, 3, false),
            (r#"["\\",1]"#, 2, true),
        ];
        for (json, limit, want) in cases {
            assert_eq!(too_many_values(json.as_bytes(), *limit), *want, "{json}");
        }
    }

    #[test]
    fn decoding() {
        assert_eq!(decode(b"", None), Ok(Value::Null));
        assert_eq!(decode(b" \n", None), Ok(Value::Null));
        assert_eq!(decode(br#"{"a":1}"#, None), Ok(json!({"a": 1})));
        let html = decode(b"<html>502</html>", Some("text/html; charset=utf-8")).unwrap_err();
        assert_eq!(
            html,
            format!(
                "the body is not valid JSON (content-type \"text/html; charset=utf-8\"): \
                 expected value at line 1 column 1; {FOREIGN_HINT}"
            )
        );
        let cut = decode(
            br#"{"data":{"data":{"password":"hunt"#,
            Some("application/json"),
        )
        .unwrap_err();
        assert!(cut.contains("EOF while parsing"), "{cut}");
        assert!(!cut.contains("hunt"), "no value from the body: {cut}");
        let many = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES));
        assert!(
            decode(many.as_bytes(), None)
                .unwrap_err()
                .contains("more than 1000000 JSON values")
        );
        // Too deep for serde_json's recursion limit: an error, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(decode(deep.as_bytes(), None).is_err());
    }

    #[test]
    fn error_texts() {
        let cases = [
            (
                json!({"errors": ["permission denied", "x"]}),
                ": permission denied; x",
            ),
            (json!({"errors": []}), ""),
            (json!({"errors": "one string"}), ": one string"),
            (json!({"errors": 42}), ""),
            (json!({"errors": [1, null, "kept"]}), ": kept"),
            (Value::Null, ""),
            (json!("text"), ""),
        ];
        for (body, want) in cases {
            assert_eq!(errors_suffix(&body), want, "{body}");
        }
        let long = errors_suffix(&json!({ "errors": ["é".repeat(1000)] }));
        assert!(
            long.len() <= MAX_ERRORS_TEXT + 2 + "…".len(),
            "{}",
            long.len()
        );
        assert!(long.ends_with('…'));
    }

    #[test]
    fn kv_reads() {
        type Case = (Value, bool, Result<Option<Value>, &'static str>);
        let cases: Vec<Case> = vec![
            (
                json!({"data": {"a": "b"}}),
                false,
                Ok(Some(json!({"a": "b"}))),
            ),
            (
                json!({"data": {"data": {"a": 1}, "metadata": {"version": 2}}}),
                true,
                Ok(Some(json!({"a": 1}))),
            ),
            (
                json!({"data": {"data": null, "metadata": {}}}),
                true,
                Ok(None),
            ),
            (Value::Null, true, Err("the body is empty")),
            (
                json!([1]),
                true,
                Err("the body is an array, not a JSON object"),
            ),
            (json!({}), false, Err("the answer has no \"data\"")),
            (
                json!({"data": null}),
                true,
                Err("the answer has no \"data\""),
            ),
            (
                json!({"data": "x"}),
                false,
                Err("\"data\" is a string, expected an object"),
            ),
            (
                json!({"data": [1]}),
                true,
                Err("\"data\" is an array, expected an object"),
            ),
            (
                json!({"data": 3}),
                true,
                Err("\"data\" is a number, expected an object"),
            ),
            (
                json!({"data": {"data": "x"}}),
                true,
                Err("\"data.data\" is a string, expected an object"),
            ),
            (
                json!({"data": {"data": {}, "metadata": "x"}}),
                true,
                Err("\"data.metadata\" is a string, expected an object"),
            ),
            (
                json!({"data": {"a": "b"}}),
                true,
                Err(
                    "the answer has no \"data.data\", so it is not a KV v2 read: is the mount KV v1? (spec.provider.vault.version)",
                ),
            ),
        ];
        for (body, v2, want) in cases {
            let got = kv_data(&body, v2).map(|o| o.cloned());
            match want {
                Ok(w) => assert_eq!(got, Ok(w), "{body}"),
                Err(e) => assert_eq!(got, Err(e.to_string()), "{body}"),
            }
        }
    }

    #[test]
    fn deleted_versions() {
        let meta = |m: Value| json!({"data": {"data": null, "metadata": m}});
        let at = "2026-01-02T03:04:05.000000006Z";
        let cases = [
            (
                meta(json!({"deletion_time": at, "destroyed": false, "version": 2})),
                Some((Some(at), false)),
            ),
            (
                meta(json!({"deletion_time": "", "destroyed": true, "version": 2})),
                Some((None, true)),
            ),
            (
                meta(json!({"deletion_time": at, "destroyed": true})),
                Some((Some(at), true)),
            ),
            // Neither deleted nor destroyed, or data present: not a deleted version.
            (meta(json!({"deletion_time": "", "destroyed": false})), None),
            (
                json!({"data": {"data": {"k": "v"}, "metadata": {"deletion_time": at}}}),
                None,
            ),
            (json!({"data": {"data": null}}), None),
            (json!({"errors": []}), None),
            (json!({"data": {"data": null, "metadata": "x"}}), None),
        ];
        for (body, want) in cases {
            let got = deleted_version(&body).map(|d| (d.deleted_at, d.destroyed));
            let want = want.map(|(t, d)| (t.map(String::from), d));
            assert_eq!(got, want, "{body}");
        }
    }

    #[test]
    fn metadata_reads() {
        let ok = json!({"data": {"custom_metadata": {"a": "b"}, "versions": {"1": {}}}});
        assert_eq!(kv_metadata(&ok).unwrap()["custom_metadata"]["a"], "b");
        assert!(kv_metadata(&json!({"data": {"custom_metadata": null}})).is_ok());
        for (body, want) in [
            (
                json!({"data": {"custom_metadata": "x"}}),
                "\"data.custom_metadata\" is a string, expected an object",
            ),
            (
                json!({"data": {"versions": [1]}}),
                "\"data.versions\" is an array, expected an object",
            ),
            (
                json!({"data": true}),
                "\"data\" is a boolean, expected an object",
            ),
        ] {
            assert_eq!(kv_metadata(&body), Err(want.to_string()), "{body}");
        }
    }

    #[test]
    fn lists() {
        let ok = json!({"data": {"keys": ["a", "b/", "c.d"]}});
        assert_eq!(list_keys(&ok).unwrap(), ["a", "b/", "c.d"]);
        for (body, want) in [
            (json!({"data": {}}), "the answer has no \"data.keys\""),
            (
                json!({"data": {"keys": "a"}}),
                "\"data.keys\" is a string, expected an array of names",
            ),
            (
                json!({"data": {"keys": ["a", 1]}}),
                "\"data.keys[1]\" is a number, expected a string",
            ),
            (
                json!({"data": {"keys": ["/"]}}),
                "\"data.keys[0]\" (\"/\") is not a secret or folder name",
            ),
            (
                json!({"data": {"keys": [""]}}),
                "\"data.keys[0]\" (\"\") is not a secret or folder name",
            ),
            (
                json!({"data": {"keys": ["a/b"]}}),
                "\"data.keys[0]\" (\"a/b\") is not a secret or folder name",
            ),
            (
                json!({"data": {"keys": ["../"]}}),
                "\"data.keys[0]\" (\"../\") is not a secret or folder name",
            ),
            (
                json!({"data": {"keys": ["a//"]}}),
                "\"data.keys[0]\" (\"a//\") is not a secret or folder name",
            ),
        ] {
            assert_eq!(list_keys(&body), Err(want.to_string()), "{body}");
        }
    }

    #[test]
    fn capability_answers() {
        let body = json!({
            "secret/data/a": ["read"],
            "data": {"secret/data/b": ["list", "read"], "secret/data/c": "read"},
            "capabilities": ["list", "read"],
        });
        assert_eq!(
            capabilities(&body, "secret/data/a", false).unwrap(),
            ["read"]
        );
        assert_eq!(
            capabilities(&body, "secret/data/b", false).unwrap(),
            ["list", "read"]
        );
        assert_eq!(
            capabilities(&body, "other", true).unwrap(),
            ["list", "read"]
        );
        assert_eq!(
            capabilities(&body, "other", false),
            Err("the answer lists no capabilities for \"other\"".into())
        );
        assert_eq!(
            capabilities(&body, "secret/data/c", false),
            Err("\"secret/data/c\" is a string, expected an array of capabilities".into())
        );
        assert_eq!(
            capabilities(&json!({"p": [1]}), "p", false),
            Err("\"p\" holds a number, expected capability names".into())
        );
    }

    #[test]
    fn mounts() {
        type Case = (Value, Result<(&'static str, &'static str), &'static str>);
        let cases: Vec<Case> = vec![
            (
                json!({"type": "kv", "options": {"version": "2"}}),
                Ok(("kv", "2")),
            ),
            (
                json!({"data": {"type": "kv", "options": null}}),
                Ok(("kv", "1")),
            ),
            (
                json!({"type": "kv", "options": {"version": 2}}),
                Ok(("kv", "2")),
            ),
            (json!({"type": "generic"}), Ok(("generic", "1"))),
            (Value::Null, Err("the body is empty")),
            (json!("kv"), Err("the body is a string, not a JSON object")),
            (
                json!({"options": {}}),
                Err("the answer has no mount \"type\""),
            ),
            (
                json!({"type": 1}),
                Err("the mount \"type\" is a number, expected a string"),
            ),
            (
                json!({"type": "kv", "options": {"version": [2]}}),
                Err("\"options.version\" is an array, expected a string"),
            ),
        ];
        for (body, want) in cases {
            let got = mount_info(&body);
            let want = want
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .map_err(str::to_string);
            assert_eq!(got, want, "{body}");
        }
    }

    #[test]
    fn login_answers() {
        let ok =
            json!({"auth": {"client_token": "s.x", "lease_duration": 3600, "renewable": true}});
        assert_eq!(
            login(&ok),
            Ok(LoginAnswer {
                token: "s.x",
                ttl: Duration::from_secs(3600),
                renewable: true
            })
        );
        let bare = json!({"auth": {"client_token": "s.x"}});
        assert_eq!(
            login(&bare),
            Ok(LoginAnswer {
                token: "s.x",
                ttl: Duration::ZERO,
                renewable: false
            })
        );
        let huge = json!({"auth": {"client_token": "s.x", "lease_duration": u64::MAX}});
        assert_eq!(login(&huge).unwrap().ttl, MAX_TOKEN_TTL);
        let cases = [
            (Value::Null, "the body is empty"),
            (json!([]), "the body is an array, not a JSON object"),
            (json!({}), "the answer holds no \"auth\" (no token)"),
            (
                json!({"auth": null}),
                "the answer holds no \"auth\" (no token)",
            ),
            (
                json!({"auth": "x"}),
                "\"auth\" is a string, expected an object",
            ),
            (json!({"auth": {}}), "\"auth.client_token\" is missing"),
            (
                json!({"auth": {"client_token": 12}}),
                "\"auth.client_token\" is a number, expected a string",
            ),
            (
                json!({"auth": {"client_token": ""}}),
                "\"auth.client_token\" is empty",
            ),
            (
                json!({"auth": {"client_token": "t", "lease_duration": "3600"}}),
                "\"auth.lease_duration\" is a string, expected a whole number of seconds",
            ),
            (
                json!({"auth": {"client_token": "t", "lease_duration": -1}}),
                "\"auth.lease_duration\" is a negative or fractional number, expected a whole \
                 number of seconds",
            ),
            (
                json!({"auth": {"client_token": "t", "renewable": "yes"}}),
                "\"auth.renewable\" is a string, expected a boolean",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(login(&body), Err(want.to_string()), "{body}");
        }
        // The token never appears in an error.
        let e = login(&json!({"auth": {"client_token": "s.secret", "renewable": 1}})).unwrap_err();
        assert!(!e.contains("s.secret"), "{e}");
    }
}
