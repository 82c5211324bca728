//! sprig's JSON functions (`toJson`, `toPrettyJson`, `toRawJson`, `fromJson` and their
//! `must…` forms) and ESO's `toYaml` / `fromYaml`, writing text as Go's encoders do.

use std::collections::BTreeMap;

use gotmpl::Value;

use super::args::{Plain, R, exec, s, strv, want};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("toJson", |a| {
            json_out(a, "toJson", JsonStyle::Compact, true)
        }),
        ("mustToJson", |a| {
            json_out(a, "mustToJson", JsonStyle::Compact, true)
        }),
        ("toPrettyJson", |a| {
            json_out(a, "toPrettyJson", JsonStyle::Pretty, true)
        }),
        ("mustToPrettyJson", |a| {
            json_out(a, "mustToPrettyJson", JsonStyle::Pretty, true)
        }),
        ("toRawJson", |a| {
            json_out(a, "toRawJson", JsonStyle::Compact, false)
        }),
        ("mustToRawJson", |a| {
            json_out(a, "mustToRawJson", JsonStyle::Compact, false)
        }),
        ("fromJson", |a| {
            want(a, "fromJson", 1, 1)?;
            // sprig swallows the parse error and returns nil.
            Ok(
                serde_json::from_str::<serde_json::Value>(strv(&a[0], "fromJson")?)
                    .map(|j| from_json(&j))
                    .unwrap_or(Value::Nil),
            )
        }),
        ("mustFromJson", |a| {
            want(a, "mustFromJson", 1, 1)?;
            serde_json::from_str::<serde_json::Value>(strv(&a[0], "mustFromJson")?)
                .map(|j| from_json(&j))
                .map_err(|e| {
                    exec(format!(
                        "mustFromJson: invalid JSON at line {} column {}",
                        e.line(),
                        e.column()
                    ))
                })
        }),
        ("toYaml", to_yaml),
        ("fromYaml", from_yaml),
    ]
}

#[derive(Clone, Copy)]
enum JsonStyle {
    Compact,
    Pretty,
}

fn json_out(a: &[Value], name: &str, style: JsonStyle, escape_html: bool) -> R {
    want(a, name, 1, 1)?;
    let mut out = String::new();
    match write_json(&mut out, &a[0], style, escape_html, 0) {
        Ok(()) => Ok(s(out)),
        // Go cannot marshal a function either; the non-must forms give "".
        Err(()) if name.starts_with("must") => {
            Err(exec(format!("{name}: json: unsupported type func")))
        }
        Err(()) => Ok(s(String::new())),
    }
}

/// Go's float formatting in `encoding/json`.
fn go_json_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let e = format!("{f:e}");
        return Some(match e.split_once('e') {
            Some((m, x)) if !x.starts_with('-') => format!("{m}e+{x}"),
            _ => e,
        });
    }
    Some(format!("{f}"))
}

fn write_json_str(out: &mut String, v: &str, escape_html: bool) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' if escape_html => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_json(
    out: &mut String,
    v: &Value,
    style: JsonStyle,
    escape_html: bool,
    depth: usize,
) -> Result<(), ()> {
    let nl = |out: &mut String, d: usize| {
        if let JsonStyle::Pretty = style {
            out.push('\n');
            out.push_str(&"  ".repeat(d));
        }
    };
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Uint(u) => out.push_str(&u.to_string()),
        Value::Float(f) => out.push_str(&go_json_float(*f).ok_or(())?),
        Value::String(x) => write_json_str(out, x, escape_html),
        Value::List(l) => {
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                write_json(out, x, style, escape_html, depth + 1)?;
            }
            if !l.is_empty() {
                nl(out, depth);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                write_json_str(out, k, escape_html);
                out.push(':');
                if let JsonStyle::Pretty = style {
                    out.push(' ');
                }
                write_json(out, x, style, escape_html, depth + 1)?;
            }
            if !m.is_empty() {
                nl(out, depth);
            }
            out.push('}');
        }
        _ => return Err(()),
    }
    Ok(())
}

/// JSON numbers become float64 in Go (`json.Unmarshal` into `interface{}`).
fn from_json(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(x) => s(x.as_str()),
        serde_json::Value::Array(a) => Value::List(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            let m: BTreeMap<String, Value> =
                o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect();
            Value::from(m)
        }
    }
}

fn to_serde(v: &Value) -> Option<serde_json::Value> {
    Some(match v {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => (*i).into(),
        Value::Uint(u) => (*u).into(),
        Value::Float(f) => {
            // Go writes whole floats without a fraction (via JSON on the way to YAML).
            if f.fract() == 0.0 && f.abs() < 1e15 {
                (*f as i64).into()
            } else {
                serde_json::Number::from_f64(*f)?.into()
            }
        }
        Value::String(x) => serde_json::Value::String(x.to_string()),
        Value::List(l) => serde_json::Value::Array(l.iter().map(to_serde).collect::<Option<_>>()?),
        Value::Map(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| Some((k.to_string(), to_serde(v)?)))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

/// ESO's `toYaml` (sigs.k8s.io/yaml): marshal errors give "", one trailing newline cut.
fn to_yaml(a: &[Value]) -> R {
    want(a, "toYaml", 1, 1)?;
    let Some(j) = to_serde(&a[0]) else {
        return Ok(s(String::new()));
    };
    let out = serde_yaml_ng::to_string(&j).unwrap_or_default();
    let out: Vec<String> = out.lines().map(double_quoted).collect();
    Ok(s(out.join("\n")))
}

/// go-yaml writes a scalar that needs quotes in double quotes; serde_yaml in single
/// quotes. Same value, different text: rewrite single-quoted scalars on one line.
fn double_quoted(line: &str) -> String {
    let body = line.trim_start_matches([' ', '-']);
    let lead = &line[..line.len() - body.len()];
    let (prefix, scalar) = match body.strip_prefix('\'') {
        Some(_) => ("", body),
        None => match body.find(": '") {
            Some(i) if !body[..i].contains(['\'', '"']) => body.split_at(i + 2),
            _ => return line.to_string(),
        },
    };
    let Some(inner) = scalar
        .strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .filter(|x| !x.replace("''", "").contains('\''))
    else {
        return line.to_string();
    };
    let value = inner.replace("''", "'");
    let mut quoted = String::new();
    write_json_str(&mut quoted, &value, false);
    format!("{lead}{prefix}{quoted}")
}

/// ESO's `fromYaml`: a map; a parse error is put under the key `Error`.
fn from_yaml(a: &[Value]) -> R {
    want(a, "fromYaml", 1, 1)?;
    let mut m = BTreeMap::new();
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(strv(&a[0], "fromYaml")?) {
        Ok(serde_yaml_ng::Value::Mapping(map)) => {
            for (k, v) in &map {
                m.insert(yaml_key(k), from_yaml_value(v));
            }
        }
        Ok(serde_yaml_ng::Value::Null) => {}
        Ok(_) => {
            m.insert(
                "Error".to_string(),
                s("error unmarshaling JSON: json: cannot unmarshal into a map"),
            );
        }
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            m.insert(
                "Error".to_string(),
                s(format!("error converting YAML to JSON: invalid YAML{at}")),
            );
        }
    }
    Ok(Value::from(m))
}

fn yaml_key(k: &serde_yaml_ng::Value) -> String {
    match k {
        serde_yaml_ng::Value::String(x) => x.clone(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        serde_yaml_ng::Value::Null => "null".to_string(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn from_yaml_value(v: &serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Null => Value::Nil,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        Y::String(x) => s(x.as_str()),
        Y::Sequence(l) => Value::List(l.iter().map(from_yaml_value).collect()),
        Y::Mapping(m) => {
            let out: BTreeMap<String, Value> = m
                .iter()
                .map(|(k, v)| (yaml_key(k), from_yaml_value(v)))
                .collect();
            Value::from(out)
        }
        Y::Tagged(t) => from_yaml_value(&t.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_floats_follow_go() {
        assert_eq!(go_json_float(5432.0).unwrap(), "5432");
        assert_eq!(go_json_float(0.5).unwrap(), "0.5");
        assert_eq!(go_json_float(1e21).unwrap(), "1e+21");
        assert_eq!(go_json_float(1e-7).unwrap(), "1e-7");
    }
}
