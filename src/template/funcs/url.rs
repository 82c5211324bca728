//! sprig's URL functions: `urlParse` (a URL's parts as a dict) and `urlJoin` (a dict of
//! parts back to a URL), with Go's `net/url` semantics (`go_url.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::Value;

use super::args::{Plain, exec, map, s, strv, want};
use super::go_url::{GoUrl, parse};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("urlParse", |a| {
            want(a, "urlParse", 1, 1)?;
            let u = parse(strv(&a[0], "urlParse")?)
                .map_err(|e| exec(format!("urlParse: unable to parse url: {e}")))?;
            let parts = [
                ("scheme", u.scheme.as_str()),
                ("host", u.host.as_str()),
                ("hostname", u.hostname()),
                ("path", u.path.as_str()),
                ("query", u.raw_query.as_str()),
                ("opaque", u.opaque.as_str()),
                ("fragment", u.fragment.as_str()),
                ("userinfo", u.user.as_deref().unwrap_or("")),
            ];
            let m: BTreeMap<Arc<str>, Value> = parts
                .into_iter()
                .map(|(k, v)| (Arc::from(k), s(v)))
                .collect();
            Ok(Value::Map(Arc::new(m)))
        }),
        ("urlJoin", |a| {
            want(a, "urlJoin", 1, 1)?;
            let d = map(&a[0], "urlJoin")?;
            let get = |key: &str| -> gotmpl::Result<String> {
                match d.get(key) {
                    None => Ok(String::new()),
                    Some(Value::String(v)) => Ok(v.to_string()),
                    Some(other) => Err(exec(format!(
                        "urlJoin: unable to parse {key} key, must be of type string, but {} found",
                        go_kind(other)
                    ))),
                }
            };
            let user = GoUrl::userinfo_from(&get("userinfo")?)
                .map_err(|e| exec(format!("urlJoin: unable to parse userinfo in dict: {e}")))?;
            let u = GoUrl {
                scheme: get("scheme")?,
                host: get("host")?,
                path: get("path")?,
                raw_query: get("query")?,
                opaque: get("opaque")?,
                fragment: get("fragment")?,
                user,
                ..GoUrl::default()
            };
            Ok(s(u.to_go_string()))
        }),
    ]
}

/// Go's `reflect.Kind` name of a template value.
fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "slice",
        Value::Nil => "invalid",
        other => other.type_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> gotmpl::Result<Value> {
        let f = functions().into_iter().find(|(n, _)| *n == name).unwrap().1;
        f(args)
    }

    fn dict(pairs: &[(&str, Value)]) -> Value {
        Value::Map(Arc::new(
            pairs
                .iter()
                .map(|(k, v)| (Arc::from(*k), v.clone()))
                .collect(),
        ))
    }

    #[test]
    fn sprig_url_cases() {
        // sprig's url_test.go, TestUrlParse.
        let parsed = call("urlParse", &[s("proto://auth@host:80/path?query#fragment")]).unwrap();
        let want = dict(&[
            ("fragment", s("fragment")),
            ("host", s("host:80")),
            ("hostname", s("host")),
            ("opaque", s("")),
            ("path", s("/path")),
            ("query", s("query")),
            ("scheme", s("proto")),
            ("userinfo", s("auth")),
        ]);
        assert_eq!(parsed, want);
        // (input, host, path, userinfo) of sprig's other TestUrlParse cases.
        for (input, host, path, userinfo) in [
            ("proto://host:80/path", "host:80", "/path", ""),
            ("something", "", "something", ""),
            (
                "proto://user:passwor%20d@host:80/path",
                "host:80",
                "/path",
                "user:passwor%20d",
            ),
            ("proto://@host:80/pa%20th", "host:80", "/pa th", ""),
        ] {
            let Value::Map(m) = call("urlParse", &[s(input)]).unwrap() else {
                panic!("urlParse gives a dict");
            };
            let got = |k: &str| m[k].as_str().unwrap().to_string();
            assert_eq!(
                (got("host"), got("path"), got("userinfo")),
                (host.into(), path.into(), userinfo.into()),
                "{input}"
            );
        }
        // sprig's TestUrlJoin case first, then others of Go's URL.String.
        let joins = [
            (
                dict(&[
                    ("fragment", s("fragment")),
                    ("host", s("host:80")),
                    ("path", s("/path")),
                    ("query", s("query")),
                    ("scheme", s("proto")),
                ]),
                "proto://host:80/path?query#fragment",
            ),
            (
                dict(&[
                    ("host", s("host:80")),
                    ("path", s("/path")),
                    ("scheme", s("proto")),
                    ("userinfo", s("ASDJKJSD")),
                ]),
                "proto://ASDJKJSD@host:80/path",
            ),
            (
                dict(&[
                    ("path", s("/path")),
                    ("scheme", s("mailto")),
                    ("opaque", s("a@b.c")),
                ]),
                "mailto:a@b.c",
            ),
            (dict(&[("path", s("a b/c:d"))]), "a%20b/c:d"),
            (dict(&[("path", s("c:d"))]), "./c:d"),
        ];
        for (d, want) in joins {
            assert_eq!(call("urlJoin", &[d]).unwrap().as_str(), Some(want));
        }
        // A round trip keeps the URL.
        let u = "https://user:p%40ss@example.com:8443/a/b?x=1#top";
        let back = call("urlJoin", &[call("urlParse", &[s(u)]).unwrap()]).unwrap();
        assert_eq!(back.as_str(), Some(u));
    }

    #[test]
    fn bad_input_fails_with_sprigs_message() {
        let err = call("urlParse", &[s("http://h:x/")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "unable to parse url: parse \"http://h:x/\": invalid port \":x\" after host"
            ),
            "{err}"
        );
        let err = call("urlJoin", &[dict(&[("host", Value::Int(3))])])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unable to parse host key, must be of type string, but int found"),
            "{err}"
        );
    }
}
