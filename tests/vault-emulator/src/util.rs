//! Response envelopes, ids and time formatting shared by every endpoint.

use rand::Rng;
use serde_json::{Value, json};

/// One HTTP answer before it is turned into bytes.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn new(status: u16, body: Option<Value>) -> Self {
        Resp {
            status,
            body,
            headers: Vec::new(),
        }
    }

    pub fn no_content() -> Self {
        Resp::new(204, None)
    }

    /// The standard Vault response envelope around `data`.
    pub fn data(data: Value) -> Self {
        Resp::new(200, Some(envelope(Some(data), None, 0, false)))
    }

    pub fn err(status: u16, msg: impl Into<String>) -> Self {
        Resp::new(status, Some(json!({ "errors": [msg.into()] })))
    }

    /// Vault answers "not found" with an empty error list.
    pub fn not_found() -> Self {
        Resp::new(404, Some(json!({ "errors": [] })))
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Resp::err(400, msg)
    }

    /// No token, or a request the auth method refuses.
    pub fn denied() -> Self {
        Resp::err(403, "permission denied")
    }

    /// An unknown, revoked or expired token: Vault (1.15+) reports both
    /// errors in its multierror format.
    pub fn invalid_token() -> Self {
        Resp::err(
            403,
            "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n",
        )
    }

    /// A valid token whose policies do not grant the capability; Vault wraps
    /// this one in its multierror formatting.
    pub fn acl_denied() -> Self {
        Resp::err(403, "1 error occurred:\n\t* permission denied\n\n")
    }

    pub fn no_route(path: &str) -> Self {
        Resp::err(
            404,
            format!("no handler for route \"{path}\". route entry not found."),
        )
    }

    pub fn unsupported_op() -> Self {
        Resp::err(405, "1 error occurred:\n\t* unsupported operation\n\n")
    }
}

pub(crate) fn envelope(
    data: Option<Value>,
    auth: Option<Value>,
    lease_duration: u64,
    renewable: bool,
) -> Value {
    json!({
        "request_id": uuid(),
        "lease_id": "",
        "renewable": renewable,
        "lease_duration": lease_duration,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": auth,
    })
}

pub(crate) fn uuid() -> String {
    let b: [u8; 16] = rand::rng().random();
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]),
        u16::from_be_bytes([b[8], b[9]]),
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

pub(crate) fn random_string(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub(crate) fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Parses a Vault duration: plain seconds (number or string) or Go-style
/// `1h30m`, `10s`, `5m`, `2d` strings.
pub(crate) fn parse_duration(v: &Value) -> Result<u64, String> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("invalid duration {n}")),
        Value::String(s) => parse_duration_str(s),
        other => Err(format!("invalid duration {other}")),
    }
}

pub(crate) fn parse_duration_str(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let mut total: f64 = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut saw_unit = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next().unwrap_or('s'));
        }
        let n: f64 = num
            .parse()
            .map_err(|_| format!("time: invalid duration \"{s}\""))?;
        num.clear();
        let mult = match unit.as_str() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(format!("time: unknown unit \"{unit}\" in duration \"{s}\"")),
        };
        total += n * mult;
        saw_unit = true;
    }
    if !num.is_empty() || !saw_unit {
        return Err(format!("time: missing unit in duration \"{s}\""));
    }
    Ok(total as u64)
}

/// Reads a list-of-strings field that Vault also accepts as a
/// comma-separated string.
pub(crate) fn string_list(v: Option<&Value>) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.trim().to_string()),
                other => Err(format!("expected a list of strings, got {other}")),
            })
            .collect(),
        Some(other) => Err(format!("expected a list of strings, got {other}")),
    }
}

pub(crate) fn opt_str(body: &Value, key: &str) -> Option<String> {
    match body.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn opt_bool(body: &Value, key: &str) -> Result<Option<bool>, String> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.as_str() {
            "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(Some(true)),
            "false" | "0" | "f" | "F" | "FALSE" | "False" => Ok(Some(false)),
            _ => Err(format!("cannot parse '{key}' as bool: {s}")),
        },
        Some(other) => Err(format!("cannot parse '{key}' as bool: {other}")),
    }
}

pub(crate) fn opt_u64(body: &Value, key: &str) -> Result<Option<u64>, String> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("cannot parse '{key}' as int: {n}")),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("cannot parse '{key}' as int: {s}")),
        Some(other) => Err(format!("cannot parse '{key}' as int: {other}")),
    }
}

/// Direct children of `prefix` among `keys`: leaf names, and folder names
/// with a trailing `/`, sorted and deduplicated like Vault's LIST.
pub(crate) fn list_children<'a>(
    keys: impl Iterator<Item = &'a String>,
    prefix: &str,
) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for k in keys {
        if let Some(rest) = k.strip_prefix(prefix) {
            if rest.is_empty() {
                continue;
            }
            match rest.find('/') {
                Some(i) => out.insert(rest[..=i].to_string()),
                None => out.insert(rest.to_string()),
            };
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_str("90").unwrap(), 90);
        assert_eq!(parse_duration_str("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration_str("10s").unwrap(), 10);
        assert!(parse_duration_str("10x").is_err());
        assert!(parse_duration_str("abc").is_err());
    }

    #[test]
    fn children() {
        let keys: Vec<String> = ["a/b", "a/c/d", "a/c/e", "b", "ab"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(list_children(keys.iter(), "a/"), vec!["b", "c/"]);
        assert_eq!(list_children(keys.iter(), ""), vec!["a/", "ab", "b"]);
    }
}
