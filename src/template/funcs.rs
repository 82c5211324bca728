//! The sprig functions ESO exposes (minus `env` / `expandenv`), with sprig's argument
//! order and results, plus ESO's `toYaml`, `fromYaml`, `filterPEM`, `filterCertChain`.
//!
//! Every function spends a budget step and may neither take nor return a value larger
//! than the output cap, so a template cannot grow a value without bound in a loop.
//! Go's `print`, `printf`, `println`, `html`, `js` and `urlquery` are wrapped the
//! same way and then run by gotmpl's own builtins.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gotmpl::{FuncMap, Template, TemplateError, Value};
use sha2::Digest as _;

use super::bytes::{to_bytes, to_text};
use super::engine::{Budget, LIMIT_MARK, MAX_OUTPUT};
use super::pem;

pub(super) type R = gotmpl::Result<Value>;
pub(super) type Plain = fn(&[Value]) -> R;

/// Whether `name` is a registered function, for the parse-time check: the names come
/// from the same tables that [`sprig`] registers.
pub(crate) fn registered(name: &str) -> bool {
    static NAMES: LazyLock<BTreeSet<&'static str>> =
        LazyLock::new(|| plain_functions().iter().map(|(n, _)| *n).collect());
    NAMES.contains(name)
}

fn plain_functions() -> Vec<(&'static str, Plain)> {
    let mut table: Vec<(&'static str, Plain)> = vec![
        ("upper", upper),
        ("lower", lower),
        ("title", title),
        ("untitle", untitle),
        ("trim", |a| {
            want(a, "trim", 1, 1)?;
            Ok(s(strv(&a[0], "trim")?.trim().to_string()))
        }),
        ("trimAll", trim_all),
        ("trimall", trim_all),
        ("trimPrefix", |a| {
            want(a, "trimPrefix", 2, 2)?;
            let (p, v) = (strv(&a[0], "trimPrefix")?, strv(&a[1], "trimPrefix")?);
            Ok(s(v.strip_prefix(p).unwrap_or(v).to_string()))
        }),
        ("trimSuffix", |a| {
            want(a, "trimSuffix", 2, 2)?;
            let (p, v) = (strv(&a[0], "trimSuffix")?, strv(&a[1], "trimSuffix")?);
            Ok(s(v.strip_suffix(p).unwrap_or(v).to_string()))
        }),
        ("replace", replace),
        ("quote", |a| {
            Ok(s(a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| go_quote(&strval(v)))
                .collect::<Vec<_>>()
                .join(" ")))
        }),
        ("squote", |a| {
            Ok(s(a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(" ")))
        }),
        ("indent", |a| indent("indent", a, false)),
        ("nindent", |a| indent("nindent", a, true)),
        ("contains", |a| {
            want(a, "contains", 2, 2)?;
            Ok(Value::Bool(
                strv(&a[1], "contains")?.contains(strv(&a[0], "contains")?),
            ))
        }),
        ("hasPrefix", |a| {
            want(a, "hasPrefix", 2, 2)?;
            Ok(Value::Bool(
                strv(&a[1], "hasPrefix")?.starts_with(strv(&a[0], "hasPrefix")?),
            ))
        }),
        ("hasSuffix", |a| {
            want(a, "hasSuffix", 2, 2)?;
            Ok(Value::Bool(
                strv(&a[1], "hasSuffix")?.ends_with(strv(&a[0], "hasSuffix")?),
            ))
        }),
        ("split", |a| {
            want(a, "split", 2, 2)?;
            let parts = go_split(strv(&a[1], "split")?, strv(&a[0], "split")?, None);
            Ok(indexed_map(parts))
        }),
        ("splitn", |a| {
            want(a, "splitn", 3, 3)?;
            let n = int(&a[1], "splitn")?;
            let parts = go_split(strv(&a[2], "splitn")?, strv(&a[0], "splitn")?, Some(n));
            Ok(indexed_map(parts))
        }),
        ("splitList", |a| {
            want(a, "splitList", 2, 2)?;
            let parts = go_split(strv(&a[1], "splitList")?, strv(&a[0], "splitList")?, None);
            Ok(Value::List(parts.into_iter().map(s).collect()))
        }),
        ("join", |a| {
            want(a, "join", 2, 2)?;
            Ok(s(strslice(&a[1]).join(strv(&a[0], "join")?)))
        }),
        ("repeat", |a| {
            want(a, "repeat", 2, 2)?;
            let n = int(&a[0], "repeat")?.max(0) as usize;
            let v = strv(&a[1], "repeat")?;
            if n.saturating_mul(v.len()) > MAX_OUTPUT {
                return Err(limit(format!(
                    "repeat would produce more than {MAX_OUTPUT} bytes"
                )));
            }
            Ok(s(v.repeat(n)))
        }),
        ("substr", substr),
        ("trunc", |a| {
            want(a, "trunc", 2, 2)?;
            let c = int(&a[0], "trunc")?;
            let b = &to_bytes(strv(&a[1], "trunc")?);
            let len = b.len() as i64;
            let out = if c < 0 && len + c > 0 {
                &b[(len + c) as usize..]
            } else if c >= 0 && len > c {
                &b[..c as usize]
            } else {
                b
            };
            Ok(s(to_text(out)))
        }),
        ("cat", |a| {
            Ok(s(a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")))
        }),
        ("nospace", |a| {
            want(a, "nospace", 1, 1)?;
            Ok(s(strv(&a[0], "nospace")?
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()))
        }),
        ("plural", |a| {
            want(a, "plural", 3, 3)?;
            let n = int(&a[2], "plural")?;
            Ok(if n == 1 { a[0].clone() } else { a[1].clone() })
        }),
        ("sortAlpha", |a| {
            want(a, "sortAlpha", 1, 1)?;
            let mut v = strslice(&a[0]);
            v.sort();
            Ok(Value::List(v.into_iter().map(s).collect()))
        }),
        ("b64enc", |a| {
            want(a, "b64enc", 1, 1)?;
            Ok(s(B64.encode(to_bytes(strv(&a[0], "b64enc")?))))
        }),
        ("b64dec", |a| {
            want(a, "b64dec", 1, 1)?;
            Ok(s(b64dec(strv(&a[0], "b64dec")?)))
        }),
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
        ("toString", |a| {
            want(a, "toString", 1, 1)?;
            Ok(s(strval(&a[0])))
        }),
        ("toStrings", |a| {
            want(a, "toStrings", 1, 1)?;
            Ok(Value::List(strslice(&a[0]).into_iter().map(s).collect()))
        }),
        ("default", |a| {
            want(a, "default", 1, 2)?;
            Ok(match a.get(1) {
                Some(v) if !empty(v) => v.clone(),
                _ => a[0].clone(),
            })
        }),
        ("empty", |a| {
            want(a, "empty", 1, 1)?;
            Ok(Value::Bool(empty(&a[0])))
        }),
        ("coalesce", |a| {
            Ok(a.iter().find(|v| !empty(v)).cloned().unwrap_or(Value::Nil))
        }),
        ("all", |a| Ok(Value::Bool(a.iter().all(|v| !empty(v))))),
        ("any", |a| Ok(Value::Bool(a.iter().any(|v| !empty(v))))),
        ("ternary", |a| {
            want(a, "ternary", 3, 3)?;
            match &a[2] {
                Value::Bool(true) => Ok(a[0].clone()),
                Value::Bool(false) => Ok(a[1].clone()),
                other => Err(wrong_type("ternary", "bool", other)),
            }
        }),
        ("fail", |a| {
            want(a, "fail", 1, 1)?;
            Err(exec(format!("fail: {}", strv(&a[0], "fail")?)))
        }),
        ("list", |a| Ok(Value::List(a.iter().cloned().collect()))),
        ("tuple", |a| Ok(Value::List(a.iter().cloned().collect()))),
        ("dict", |a| {
            let mut m = BTreeMap::new();
            for pair in a.chunks(2) {
                let v = pair.get(1).cloned().unwrap_or_else(|| s(String::new()));
                m.insert(strval(&pair[0]), v);
            }
            Ok(Value::from(m))
        }),
        ("get", |a| {
            want(a, "get", 2, 2)?;
            let m = map(&a[0], "get")?;
            Ok(m.get(strv(&a[1], "get")?)
                .cloned()
                .unwrap_or_else(|| s(String::new())))
        }),
        ("set", |a| {
            want(a, "set", 3, 3)?;
            let mut m = owned_map(&a[0], "set")?;
            m.insert(strv(&a[1], "set")?.into(), a[2].clone());
            Ok(Value::Map(Arc::new(m)))
        }),
        ("unset", |a| {
            want(a, "unset", 2, 2)?;
            let mut m = owned_map(&a[0], "unset")?;
            m.remove(strv(&a[1], "unset")?);
            Ok(Value::Map(Arc::new(m)))
        }),
        ("hasKey", |a| {
            want(a, "hasKey", 2, 2)?;
            Ok(Value::Bool(
                map(&a[0], "hasKey")?.contains_key(strv(&a[1], "hasKey")?),
            ))
        }),
        ("keys", |a| {
            let mut out = Vec::new();
            for d in a {
                out.extend(map(d, "keys")?.keys().map(|k| Value::String(k.clone())));
            }
            Ok(Value::List(out.into()))
        }),
        ("values", |a| {
            want(a, "values", 1, 1)?;
            Ok(Value::List(
                map(&a[0], "values")?.values().cloned().collect(),
            ))
        }),
        ("pluck", |a| {
            want(a, "pluck", 1, usize::MAX)?;
            let key = strv(&a[0], "pluck")?;
            let mut out = Vec::new();
            for d in &a[1..] {
                if let Some(v) = map(d, "pluck")?.get(key) {
                    out.push(v.clone());
                }
            }
            Ok(Value::List(out.into()))
        }),
        ("pick", |a| {
            want(a, "pick", 1, usize::MAX)?;
            let m = map(&a[0], "pick")?;
            let mut out = BTreeMap::new();
            for k in &a[1..] {
                let k = strv(k, "pick")?;
                if let Some((k, v)) = m.get_key_value(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
            Ok(Value::Map(Arc::new(out)))
        }),
        ("omit", |a| {
            want(a, "omit", 1, usize::MAX)?;
            let mut m = owned_map(&a[0], "omit")?;
            for k in &a[1..] {
                m.remove(strv(k, "omit")?);
            }
            Ok(Value::Map(Arc::new(m)))
        }),
        ("merge", |a| merge("merge", a, false)),
        ("mustMerge", |a| merge("mustMerge", a, false)),
        ("mergeOverwrite", |a| merge("mergeOverwrite", a, true)),
        ("mustMergeOverwrite", |a| {
            merge("mustMergeOverwrite", a, true)
        }),
        ("first", |a| {
            want(a, "first", 1, 1)?;
            Ok(list(&a[0], "first")?.first().cloned().unwrap_or(Value::Nil))
        }),
        ("last", |a| {
            want(a, "last", 1, 1)?;
            Ok(list(&a[0], "last")?.last().cloned().unwrap_or(Value::Nil))
        }),
        ("rest", |a| {
            want(a, "rest", 1, 1)?;
            let l = list(&a[0], "rest")?;
            Ok(Value::List(l.iter().skip(1).cloned().collect()))
        }),
        ("initial", |a| {
            want(a, "initial", 1, 1)?;
            let l = list(&a[0], "initial")?;
            Ok(Value::List(
                l.iter().take(l.len().saturating_sub(1)).cloned().collect(),
            ))
        }),
        ("append", push),
        ("push", push),
        ("prepend", |a| {
            want(a, "prepend", 2, 2)?;
            let mut l = vec![a[1].clone()];
            l.extend(list(&a[0], "prepend")?.iter().cloned());
            Ok(Value::List(l.into()))
        }),
        ("concat", |a| {
            let mut l = Vec::new();
            for v in a {
                l.extend(list(v, "concat")?.iter().cloned());
            }
            Ok(Value::List(l.into()))
        }),
        ("has", |a| {
            want(a, "has", 2, 2)?;
            Ok(Value::Bool(
                list(&a[1], "has")?.iter().any(|v| same(v, &a[0])),
            ))
        }),
        ("uniq", |a| {
            want(a, "uniq", 1, 1)?;
            let mut out: Vec<Value> = Vec::new();
            for v in list(&a[0], "uniq")?.iter() {
                if !out.iter().any(|o| same(o, v)) {
                    out.push(v.clone());
                }
            }
            Ok(Value::List(out.into()))
        }),
        ("compact", |a| {
            want(a, "compact", 1, 1)?;
            Ok(Value::List(
                list(&a[0], "compact")?
                    .iter()
                    .filter(|v| !empty(v))
                    .cloned()
                    .collect(),
            ))
        }),
        ("reverse", |a| {
            want(a, "reverse", 1, 1)?;
            Ok(Value::List(
                list(&a[0], "reverse")?.iter().rev().cloned().collect(),
            ))
        }),
        ("add", |a| {
            Ok(Value::Int(
                a.iter().fold(0i64, |acc, v| acc.wrapping_add(to_i64(v))),
            ))
        }),
        ("add1", |a| {
            want(a, "add1", 1, 1)?;
            Ok(Value::Int(to_i64(&a[0]).wrapping_add(1)))
        }),
        ("sub", |a| {
            want(a, "sub", 2, 2)?;
            Ok(Value::Int(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
        }),
        ("mul", |a| {
            want(a, "mul", 1, usize::MAX)?;
            Ok(Value::Int(
                a.iter().fold(1i64, |acc, v| acc.wrapping_mul(to_i64(v))),
            ))
        }),
        ("div", |a| {
            want(a, "div", 2, 2)?;
            to_i64(&a[0])
                .checked_div(to_i64(&a[1]))
                .map(Value::Int)
                .ok_or_else(|| exec("div: integer divide by zero"))
        }),
        ("mod", |a| {
            want(a, "mod", 2, 2)?;
            to_i64(&a[0])
                .checked_rem(to_i64(&a[1]))
                .map(Value::Int)
                .ok_or_else(|| exec("mod: integer divide by zero"))
        }),
        ("max", |a| {
            want(a, "max", 1, usize::MAX)?;
            Ok(Value::Int(a.iter().map(to_i64).max().unwrap_or(0)))
        }),
        ("min", |a| {
            want(a, "min", 1, usize::MAX)?;
            Ok(Value::Int(a.iter().map(to_i64).min().unwrap_or(0)))
        }),
        ("atoi", |a| {
            want(a, "atoi", 1, 1)?;
            Ok(Value::Int(strv(&a[0], "atoi")?.parse().unwrap_or(0)))
        }),
        ("int", |a| {
            want(a, "int", 1, 1)?;
            Ok(Value::Int(to_i64(&a[0])))
        }),
        ("int64", |a| {
            want(a, "int64", 1, 1)?;
            Ok(Value::Int(to_i64(&a[0])))
        }),
        ("regexMatch", |a| {
            want(a, "regexMatch", 2, 2)?;
            // sprig's regexMatch reports an invalid pattern as "no match".
            Ok(Value::Bool(
                regex("regexMatch", &a[0])
                    .map(|r| r.is_match(strv(&a[1], "regexMatch").unwrap_or("")))
                    .unwrap_or(false),
            ))
        }),
        ("mustRegexMatch", |a| {
            want(a, "mustRegexMatch", 2, 2)?;
            Ok(Value::Bool(
                regex("mustRegexMatch", &a[0])?.is_match(strv(&a[1], "mustRegexMatch")?),
            ))
        }),
        ("regexFind", |a| regex_find("regexFind", a)),
        ("mustRegexFind", |a| regex_find("mustRegexFind", a)),
        ("regexFindAll", |a| regex_find_all("regexFindAll", a)),
        ("mustRegexFindAll", |a| {
            regex_find_all("mustRegexFindAll", a)
        }),
        ("regexReplaceAll", |a| {
            regex_replace("regexReplaceAll", a, false)
        }),
        ("mustRegexReplaceAll", |a| {
            regex_replace("mustRegexReplaceAll", a, false)
        }),
        ("regexReplaceAllLiteral", |a| {
            regex_replace("regexReplaceAllLiteral", a, true)
        }),
        ("mustRegexReplaceAllLiteral", |a| {
            regex_replace("mustRegexReplaceAllLiteral", a, true)
        }),
        ("regexSplit", |a| regex_split("regexSplit", a)),
        ("mustRegexSplit", |a| regex_split("mustRegexSplit", a)),
        ("regexQuoteMeta", |a| {
            want(a, "regexQuoteMeta", 1, 1)?;
            Ok(s(crate::goregex::quote_meta(strv(
                &a[0],
                "regexQuoteMeta",
            )?)))
        }),
        ("sha1sum", |a| {
            want(a, "sha1sum", 1, 1)?;
            Ok(s(hex(&sha1::Sha1::digest(to_bytes(strv(
                &a[0], "sha1sum",
            )?)))))
        }),
        ("sha256sum", |a| {
            want(a, "sha256sum", 1, 1)?;
            Ok(s(hex(&sha2::Sha256::digest(to_bytes(strv(
                &a[0],
                "sha256sum",
            )?)))))
        }),
        ("sha512sum", |a| {
            want(a, "sha512sum", 1, 1)?;
            Ok(s(hex(&sha2::Sha512::digest(to_bytes(strv(
                &a[0],
                "sha512sum",
            )?)))))
        }),
        ("uuidv4", |a| {
            want(a, "uuidv4", 0, 0)?;
            Ok(s(uuidv4()))
        }),
        ("htpasswd", htpasswd),
        ("bcrypt", |a| {
            want(a, "bcrypt", 1, 1)?;
            Ok(s(bcrypt_hash(strv(&a[0], "bcrypt")?)?))
        }),
        ("filterPEM", |a| {
            want(a, "filterPEM", 2, 2)?;
            pem::filter_pem(strv(&a[0], "filterPEM")?, strv(&a[1], "filterPEM")?)
                .map(s)
                .map_err(|e| exec(format!("filterPEM: {e}")))
        }),
        ("filterCertChain", |a| {
            want(a, "filterCertChain", 2, 2)?;
            pem::filter_cert_chain(
                strv(&a[0], "filterCertChain")?,
                strv(&a[1], "filterCertChain")?,
            )
            .map(s)
            .map_err(|e| exec(format!("filterCertChain: {e}")))
        }),
        ("print", |a| {
            let est = a.iter().map(size).fold(a.len(), usize::saturating_add);
            guard_estimate("print", est)?;
            builtin("print", a)
        }),
        ("println", |a| {
            let est = a.iter().map(size).fold(a.len() + 1, usize::saturating_add);
            guard_estimate("println", est)?;
            builtin("println", a)
        }),
        ("printf", |a| {
            guard_estimate("printf", printf_estimate(a))?;
            builtin("printf", a)
        }),
        ("html", |a| builtin("html", a)),
        ("js", |a| builtin("js", a)),
        ("urlquery", |a| builtin("urlquery", a)),
    ];
    table.extend(super::funcs_pkcs12::functions());
    table.extend(super::funcs_keys::functions());
    table.extend(super::funcs_sprig_more::functions());
    for (alias, of) in super::funcs_sprig_more::ALIASES {
        if let Some(&(_, f)) = table.iter().find(|(n, _)| n == of) {
            table.push((alias, f));
        }
    }
    table
}

/// The function map for one execution, every function bounded by `budget`.
pub(crate) fn sprig(budget: &Arc<Budget>) -> FuncMap {
    let mut m = FuncMap::new();
    for (name, f) in plain_functions() {
        let b = Arc::clone(budget);
        m.insert(
            name.to_string(),
            Arc::new(move |args: &[Value]| {
                b.step()?;
                for a in args {
                    if !fits(a, MAX_OUTPUT) {
                        return Err(limit(format!(
                            "{name} was given a value larger than {MAX_OUTPUT} bytes or nested deeper than {MAX_DEPTH}"
                        )));
                    }
                }
                let out = f(args)?;
                if !fits(&out, MAX_OUTPUT) {
                    return Err(limit(format!(
                        "{name} produced a value larger than {MAX_OUTPUT} bytes or nested deeper than {MAX_DEPTH}"
                    )));
                }
                Ok(out)
            }),
        );
    }
    m
}

// ---- helpers -------------------------------------------------------------------------

/// sprig's `b64dec`: the decoded bytes, or, as sprig does, Go's error text instead of
/// failing. Go's decoder skips line breaks (wrapped base64, as in PEM bodies).
fn b64dec(v: &str) -> String {
    let kept: Vec<usize> = v
        .char_indices()
        .filter(|(_, c)| !matches!(c, '\r' | '\n'))
        .map(|(i, _)| i)
        .collect();
    let filtered: String = v.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    match B64.decode(&filtered) {
        Ok(bytes) => to_text(&bytes),
        Err(e) => {
            use base64::DecodeError as E;
            let at = match e {
                E::InvalidByte(o, _) | E::InvalidLastSymbol(o, _) => o,
                E::InvalidLength(n) => n,
                E::InvalidPadding => filtered.find('=').unwrap_or(filtered.len()),
            };
            // The offset counts the input as given, line breaks included.
            let at = kept.get(at).copied().unwrap_or(v.len());
            format!("illegal base64 data at input byte {at}")
        }
    }
}

pub(super) fn s(v: impl Into<Arc<str>>) -> Value {
    Value::String(v.into())
}

pub(super) fn exec(msg: impl Into<String>) -> TemplateError {
    TemplateError::Exec(msg.into())
}

fn limit(msg: String) -> TemplateError {
    TemplateError::Exec(format!("{LIMIT_MARK}{msg}"))
}

fn wrong_type(name: &str, expected: &str, got: &Value) -> TemplateError {
    exec(format!(
        "{name}: wrong type for value; expected {expected}; got {}",
        got.type_name()
    ))
}

pub(super) fn want(a: &[Value], name: &str, min: usize, max: usize) -> gotmpl::Result<()> {
    if a.len() < min || a.len() > max {
        let expected = if min == max {
            min.to_string()
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(exec(format!(
            "wrong number of args for {name}: want {expected} got {}",
            a.len()
        )));
    }
    Ok(())
}

pub(super) fn strv<'a>(v: &'a Value, name: &str) -> gotmpl::Result<&'a str> {
    v.as_str().ok_or_else(|| wrong_type(name, "string", v))
}

pub(super) fn int(v: &Value, name: &str) -> gotmpl::Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Uint(u) => i64::try_from(*u).map_err(|_| exec(format!("{name}: number too large"))),
        other => Err(wrong_type(name, "int", other)),
    }
}

fn map<'a>(v: &'a Value, name: &str) -> gotmpl::Result<&'a BTreeMap<Arc<str>, Value>> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(wrong_type(name, "map[string]interface {}", other)),
    }
}

fn owned_map(v: &Value, name: &str) -> gotmpl::Result<BTreeMap<Arc<str>, Value>> {
    map(v, name).cloned()
}

pub(super) fn list<'a>(v: &'a Value, name: &str) -> gotmpl::Result<&'a [Value]> {
    match v {
        Value::List(l) => Ok(l),
        other => Err(wrong_type(name, "list", other)),
    }
}

/// sprig's `strval`: strings as they are, everything else as Go's `%v`.
pub(super) fn strval(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// sprig's `strslice`: a list's non-nil items as strings; nil is empty; one value alone.
pub(super) fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l
            .iter()
            .filter(|x| !matches!(x, Value::Nil))
            .map(strval)
            .collect(),
        Value::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

/// sprig's `empty`: the zero value of its type.
fn empty(v: &Value) -> bool {
    match v {
        Value::Nil => true,
        Value::Bool(b) => !b,
        Value::Int(i) => *i == 0,
        Value::Uint(u) => *u == 0,
        Value::Float(f) => *f == 0.0,
        Value::String(s) => s.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        _ => false,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    a == b
}

/// cast.ToInt64 as sprig uses it: numbers, numeric strings, bools; anything else is 0.
fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Uint(u) => *u as i64,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Approximate printed size of a value, stopping early once past `cap`; shared
/// sub-values count every time they appear, as they would when printed.
fn fits(v: &Value, cap: usize) -> bool {
    let mut left = cap;
    within(v, &mut left)
}

/// Deepest nesting of lists and maps a function may take or return: deeper values
/// would overflow the stack when printed or dropped.
const MAX_DEPTH: usize = 64;

fn within(v: &Value, left: &mut usize) -> bool {
    within_depth(v, left, 0)
}

fn within_depth(v: &Value, left: &mut usize, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let take = |left: &mut usize, n: usize| -> bool {
        if n > *left {
            false
        } else {
            *left -= n;
            true
        }
    };
    match v {
        Value::String(s) => take(left, s.len()),
        Value::List(l) => {
            take(left, 2 + l.len()) && l.iter().all(|x| within_depth(x, left, depth + 1))
        }
        Value::Map(m) => {
            take(left, 5 + m.len())
                && m.iter()
                    .all(|(k, x)| take(left, k.len() + 1) && within_depth(x, left, depth + 1))
        }
        _ => take(left, 24),
    }
}

fn size(v: &Value) -> usize {
    let mut left = MAX_OUTPUT + 1;
    if within(v, &mut left) {
        MAX_OUTPUT + 1 - left
    } else {
        usize::MAX
    }
}

fn guard_estimate(name: &str, est: usize) -> gotmpl::Result<()> {
    if est > MAX_OUTPUT {
        return Err(limit(format!(
            "{name} would produce more than {MAX_OUTPUT} bytes"
        )));
    }
    Ok(())
}

/// Upper bound of printf's output: the format, the arguments, and every width or
/// precision written in the format or taken from an argument with `*`.
fn printf_estimate(a: &[Value]) -> usize {
    let Some(Value::String(f)) = a.first() else {
        return a.iter().map(size).fold(0, usize::saturating_add);
    };
    let mut est = f.len();
    for x in &a[1..] {
        est = est.saturating_add(size(x));
    }
    let mut digits = String::new();
    for c in f.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if !digits.is_empty() {
            est = est.saturating_add(digits.parse::<usize>().unwrap_or(usize::MAX));
            digits.clear();
        }
    }
    if f.contains('*') {
        for x in &a[1..] {
            if let Value::Int(_) | Value::Uint(_) = x {
                est = est.saturating_add(to_i64(x).unsigned_abs() as usize);
            }
        }
    }
    est
}

/// Runs one of gotmpl's own builtins on already evaluated arguments.
fn builtin(name: &str, a: &[Value]) -> R {
    let mut src = format!("{{{{{name}");
    let mut data = BTreeMap::new();
    for (i, v) in a.iter().enumerate() {
        src.push_str(&format!(" .a{i}"));
        data.insert(format!("a{i}"), v.clone());
    }
    src.push_str("}}");
    let out = Template::new(name)
        .parse(&src)?
        .execute_to_string(&Value::from(data))?;
    Ok(s(out))
}

// ---- strings -------------------------------------------------------------------------

/// Go maps rune by rune; a rune whose case mapping is several runes stays as it is.
fn map_runes(v: &str, f: impl Fn(char) -> Option<char>) -> String {
    v.chars().map(|c| f(c).unwrap_or(c)).collect()
}

fn single<I: Iterator<Item = char>>(mut it: I) -> Option<char> {
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

fn upper(a: &[Value]) -> R {
    want(a, "upper", 1, 1)?;
    Ok(s(map_runes(strv(&a[0], "upper")?, |c| {
        single(c.to_uppercase())
    })))
}

fn lower(a: &[Value]) -> R {
    want(a, "lower", 1, 1)?;
    Ok(s(map_runes(strv(&a[0], "lower")?, |c| {
        single(c.to_lowercase())
    })))
}

/// Go's `strings.Title`: the first letter of every word upper-cased.
fn title(a: &[Value]) -> R {
    want(a, "title", 1, 1)?;
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    let out = strv(&a[0], "title")?
        .chars()
        .map(|c| {
            let r = if is_sep(prev) {
                single(c.to_uppercase()).unwrap_or(c)
            } else {
                c
            };
            prev = c;
            r
        })
        .collect::<String>();
    Ok(s(out))
}

fn untitle(a: &[Value]) -> R {
    want(a, "untitle", 1, 1)?;
    let v = strv(&a[0], "untitle")?;
    let mut cs = v.chars();
    Ok(s(match cs.next() {
        Some(c) => single(c.to_lowercase()).unwrap_or(c).to_string() + cs.as_str(),
        None => String::new(),
    }))
}

fn trim_all(a: &[Value]) -> R {
    want(a, "trimAll", 2, 2)?;
    let cut: Vec<char> = strv(&a[0], "trimAll")?.chars().collect();
    Ok(s(strv(&a[1], "trimAll")?
        .trim_matches(|c| cut.contains(&c))
        .to_string()))
}

fn replace(a: &[Value]) -> R {
    want(a, "replace", 3, 3)?;
    let (old, new, src) = (
        strv(&a[0], "replace")?,
        strv(&a[1], "replace")?,
        strv(&a[2], "replace")?,
    );
    let hits = if old.is_empty() {
        src.chars().count() + 1
    } else {
        src.matches(old).count()
    };
    guard_estimate(
        "replace",
        src.len().saturating_add(hits.saturating_mul(new.len())),
    )?;
    if old.is_empty() {
        // Go inserts `new` before every rune and at the end.
        let mut out = String::new();
        for c in src.chars() {
            out.push_str(new);
            out.push(c);
        }
        out.push_str(new);
        return Ok(s(out));
    }
    Ok(s(src.replace(old, new)))
}

fn indent(name: &str, a: &[Value], newline: bool) -> R {
    want(a, name, 2, 2)?;
    let n = int(&a[0], name)?.max(0) as usize;
    let v = strv(&a[1], name)?;
    let lines = v.matches('\n').count() + 1;
    guard_estimate(name, v.len().saturating_add(n.saturating_mul(lines)))?;
    let pad = " ".repeat(n);
    let body = format!("{pad}{}", v.replace('\n', &format!("\n{pad}")));
    Ok(s(if newline { format!("\n{body}") } else { body }))
}

/// Go's `strings.Split` / `SplitN`: an empty separator splits into runes.
fn go_split(v: &str, sep: &str, n: Option<i64>) -> Vec<String> {
    match n {
        Some(0) => Vec::new(),
        Some(n) if n > 0 => {
            let n = n as usize;
            if sep.is_empty() {
                let mut out: Vec<String> = Vec::new();
                let mut it = v.char_indices();
                while out.len() + 1 < n {
                    match it.next() {
                        Some((_, c)) => out.push(c.to_string()),
                        None => return out,
                    }
                }
                let rest = it.as_str();
                if !rest.is_empty() {
                    out.push(rest.to_string());
                }
                out
            } else {
                v.splitn(n, sep).map(str::to_string).collect()
            }
        }
        _ => {
            if sep.is_empty() {
                v.chars().map(|c| c.to_string()).collect()
            } else {
                v.split(sep).map(str::to_string).collect()
            }
        }
    }
}

fn indexed_map(parts: Vec<String>) -> Value {
    let m: BTreeMap<String, Value> = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (format!("_{i}"), s(p)))
        .collect();
    Value::from(m)
}

/// sprig's `substr start end s` on bytes, as Go slices strings.
fn substr(a: &[Value]) -> R {
    want(a, "substr", 3, 3)?;
    let (start, end) = (int(&a[0], "substr")?, int(&a[1], "substr")?);
    let b = &to_bytes(strv(&a[2], "substr")?);
    let len = b.len() as i64;
    let oob = || exec("substr: slice bounds out of range");
    let out = if start < 0 {
        if end < 0 || end > len {
            return Err(oob());
        }
        &b[..end as usize]
    } else if end < 0 || end > len {
        if start > len {
            return Err(oob());
        }
        &b[start as usize..]
    } else {
        if start > end {
            return Err(oob());
        }
        &b[start as usize..end as usize]
    };
    Ok(s(to_text(out)))
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---- collections ---------------------------------------------------------------------

fn push(a: &[Value]) -> R {
    want(a, "append", 2, 2)?;
    let mut l: Vec<Value> = list(&a[0], "append")?.to_vec();
    l.push(a[1].clone());
    Ok(Value::List(l.into()))
}

/// mergo's Merge (keep what `dst` has, fill the rest, recurse into maps) or
/// MergeWithOverwrite (`src` wins unless its value is empty).
fn merge(name: &str, a: &[Value], overwrite: bool) -> R {
    want(a, name, 1, usize::MAX)?;
    let mut dst = owned_map(&a[0], name)?;
    for src in &a[1..] {
        merge_into(&mut dst, map(src, name)?, overwrite);
    }
    Ok(Value::Map(Arc::new(dst)))
}

fn merge_into(
    dst: &mut BTreeMap<Arc<str>, Value>,
    src: &BTreeMap<Arc<str>, Value>,
    overwrite: bool,
) {
    for (k, sv) in src {
        match dst.get_mut(k) {
            Some(Value::Map(dm)) if matches!(sv, Value::Map(_)) => {
                if let Value::Map(sm) = sv {
                    let mut inner = dm.as_ref().clone();
                    merge_into(&mut inner, sm, overwrite);
                    *dm = Arc::new(inner);
                }
            }
            Some(dv) => {
                if empty(dv) || (overwrite && !empty(sv)) {
                    *dv = sv.clone();
                }
            }
            None => {
                dst.insert(k.clone(), sv.clone());
            }
        }
    }
}

// ---- JSON and YAML -------------------------------------------------------------------

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

// ---- regular expressions -------------------------------------------------------------

fn regex(name: &str, pattern: &Value) -> gotmpl::Result<regex::Regex> {
    crate::goregex::builder(strv(pattern, name)?)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            exec(format!(
                "{name}: invalid pattern: {}",
                crate::goregex::message(&e)
            ))
        })
}

fn regex_find(name: &str, a: &[Value]) -> R {
    want(a, name, 2, 2)?;
    let r = regex(name, &a[0])?;
    Ok(s(r
        .find(strv(&a[1], name)?)
        .map(|m| m.as_str().to_string())
        .unwrap_or_default()))
}

fn regex_find_all(name: &str, a: &[Value]) -> R {
    want(a, name, 3, 3)?;
    let r = regex(name, &a[0])?;
    let n = int(&a[2], name)?;
    let limit = if n < 0 { usize::MAX } else { n as usize };
    Ok(Value::List(
        r.find_iter(strv(&a[1], name)?)
            .take(limit)
            .map(|m| s(m.as_str()))
            .collect(),
    ))
}

fn regex_replace(name: &str, a: &[Value], literal: bool) -> R {
    want(a, name, 3, 3)?;
    let r = regex(name, &a[0])?;
    let (src, repl) = (strv(&a[1], name)?, strv(&a[2], name)?);
    let hits = r.find_iter(src).count();
    guard_estimate(
        name,
        src.len()
            .saturating_add(hits.saturating_mul(repl.len() * 2)),
    )?;
    Ok(s(if literal {
        r.replace_all(src, regex::NoExpand(repl)).into_owned()
    } else {
        r.replace_all(src, repl).into_owned()
    }))
}

fn regex_split(name: &str, a: &[Value]) -> R {
    want(a, name, 3, 3)?;
    let r = regex(name, &a[0])?;
    let n = int(&a[2], name)?;
    let v = strv(&a[1], name)?;
    let parts: Vec<Value> = if n < 0 {
        r.split(v).map(s).collect()
    } else {
        r.splitn(v, n as usize).map(s).collect()
    };
    Ok(Value::List(parts.into()))
}

// ---- hashing, ids, passwords ---------------------------------------------------------

fn uuidv4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn bcrypt_hash(password: &str) -> gotmpl::Result<String> {
    // Go's bcrypt.DefaultCost and `$2a$` prefix.
    bcrypt::hash_with_result(password, 10)
        .map(|h| h.format_for_version(bcrypt::Version::TwoA))
        .map_err(|_| exec("bcrypt: could not hash the password"))
}

/// `htpasswd user password [bcrypt|sha]`: an Apache htpasswd line.
fn htpasswd(a: &[Value]) -> R {
    want(a, "htpasswd", 2, 3)?;
    let user = strv(&a[0], "htpasswd")?;
    let password = strv(&a[1], "htpasswd")?;
    if user.contains(':') {
        return Err(exec("htpasswd: invalid username: it contains ':'"));
    }
    let algo = match a.get(2) {
        Some(v) => strv(v, "htpasswd")?,
        None => "bcrypt",
    };
    Ok(s(match algo {
        "sha" => format!("{user}:{{SHA}}{}", B64.encode(sha1::Sha1::digest(password))),
        _ => format!("{user}:{}", bcrypt_hash(password)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_is_registered_once() {
        let mut names: Vec<&str> = plain_functions().iter().map(|(n, _)| *n).collect();
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all, "a function name is registered twice");
        assert!(registered("pkcs12key") && registered("ext") && !registered("env"));
    }

    #[test]
    fn go_quote_escapes_like_strconv() {
        assert_eq!(go_quote("a\"b\\c\n\t\u{1}é"), "\"a\\\"b\\\\c\\n\\t\\x01é\"");
        assert_eq!(go_quote("\u{a0}"), "\"\\u00a0\"");
    }

    #[test]
    fn json_floats_follow_go() {
        assert_eq!(go_json_float(5432.0).unwrap(), "5432");
        assert_eq!(go_json_float(0.5).unwrap(), "0.5");
        assert_eq!(go_json_float(1e21).unwrap(), "1e+21");
        assert_eq!(go_json_float(1e-7).unwrap(), "1e-7");
    }

    #[test]
    fn fits_stops_early_on_shared_structures() {
        let mut v = Value::List(vec![s("x".repeat(1000))].into());
        for _ in 0..40 {
            v = Value::List(vec![v.clone(), v].into());
        }
        assert!(!fits(&v, MAX_OUTPUT));
        assert!(fits(&s("abc"), 3));
        assert!(!fits(&s("abcd"), 3));
    }
}
