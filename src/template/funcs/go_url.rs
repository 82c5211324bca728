//! Go's `net/url` as sprig's `urlParse` / `urlJoin` use it: `url.Parse` (no normalisation:
//! the path stays as written, relative references parse) and `URL.String`, with Go's
//! escaping rules. WHATWG parsers (the `url` crate) normalise and refuse relative URLs, so
//! they would give other answers.

/// The parts of Go's `url.URL` that sprig reads or writes.
#[derive(Debug, Default, PartialEq)]
pub(super) struct GoUrl {
    pub scheme: String,
    pub opaque: String,
    /// `User.String()`: escaped, `user` or `user:password`; `None` without `@`.
    pub user: Option<String>,
    pub host: String,
    pub path: String,
    pub raw_path: String,
    pub omit_host: bool,
    pub force_query: bool,
    pub raw_query: String,
    pub fragment: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Path,
    Host,
    UserPassword,
    Fragment,
}

fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if mode == Mode::Host && b"!$&'()*+,;=:[]<>\"".contains(&c) {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => {
            return match mode {
                Mode::Path => c == b'?',
                Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
                Mode::Fragment => false,
                Mode::Host => true,
            };
        }
        _ => {}
    }
    !(mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*'))
}

fn escape(s: &str, mode: Mode) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if should_escape(c, mode) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(char::from(c));
        }
    }
    out
}

fn unescape(s: &str, mode: Mode) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| {
                    let h = std::str::from_utf8(h).ok()?;
                    u8::from_str_radix(h, 16).ok().filter(|_| h.len() == 2)
                });
                let Some(v) = hex else {
                    let bad = &s[i..(i + 3).min(s.len())];
                    return Err(format!("invalid URL escape {bad:?}"));
                };
                // Go allows only escapes of non-ASCII bytes (and %25) in a host.
                if mode == Mode::Host && v < 0x80 && &s[i..i + 3] != "%25" {
                    return Err(format!("invalid URL escape {:?}", &s[i..i + 3]));
                }
                out.push(v);
                i += 3;
            }
            c => {
                if mode == Mode::Host && c < 0x80 && should_escape(c, mode) {
                    return Err(format!(
                        "invalid character {:?} in host name",
                        char::from(c).to_string()
                    ));
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `validEncoded` for a path: a raw path is kept only if it is escaped as written.
fn valid_encoded(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| b"!$&'()*+,;=:@[]%".contains(&c) || !should_escape(c, Mode::Path))
}

/// Go's `getScheme`: a scheme only when a letter starts it and `:` ends it.
fn get_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

fn valid_optional_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit()))
}

fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let Some(end) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        let port = &host[end + 1..];
        if !valid_optional_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
    } else if let Some(i) = host.rfind(':') {
        let port = &host[i..];
        if !valid_optional_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
    }
    unescape(host, Mode::Host)
}

fn valid_userinfo(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&c))
}

/// `Userinfo.String()` of the userinfo as written in a URL.
fn parse_userinfo(info: &str) -> Result<String, String> {
    if !valid_userinfo(info) {
        return Err("net/url: invalid userinfo".into());
    }
    Ok(match info.split_once(':') {
        None => escape(&unescape(info, Mode::UserPassword)?, Mode::UserPassword),
        Some((u, p)) => format!(
            "{}:{}",
            escape(&unescape(u, Mode::UserPassword)?, Mode::UserPassword),
            escape(&unescape(p, Mode::UserPassword)?, Mode::UserPassword)
        ),
    })
}

/// Go's `url.Parse`, with its error text (`parse "…": …`).
pub(super) fn parse(raw: &str) -> Result<GoUrl, String> {
    let (u, frag) = match raw.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (raw, None),
    };
    let mut url = parse_no_fragment(u).map_err(|e| format!("parse {u:?}: {e}"))?;
    if let Some(f) = frag {
        url.fragment = unescape(f, Mode::Fragment).map_err(|e| format!("parse {raw:?}: {e}"))?;
    }
    Ok(url)
}

fn parse_no_fragment(raw: &str) -> Result<GoUrl, String> {
    if raw.bytes().any(|c| c < 0x20 || c == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let mut url = GoUrl::default();
    if raw == "*" {
        url.path = "*".into();
        return Ok(url);
    }
    let (scheme, mut rest) = get_scheme(raw)?;
    url.scheme = scheme.to_ascii_lowercase();
    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        url.force_query = true;
        rest = &rest[..rest.len() - 1];
    } else if let Some((r, q)) = rest.split_once('?') {
        url.raw_query = q.into();
        rest = r;
    }
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            url.opaque = rest.into();
            return Ok(url);
        }
        let segment = rest.split('/').next().unwrap_or("");
        if segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let (authority, path) = match rest[2..].find('/') {
            Some(i) => (&rest[2..2 + i], &rest[2 + i..]),
            None => (&rest[2..], ""),
        };
        match authority.rfind('@') {
            Some(i) => {
                url.user = Some(parse_userinfo(&authority[..i])?);
                url.host = parse_host(&authority[i + 1..])?;
            }
            None => url.host = parse_host(authority)?,
        }
        rest = path;
    } else if !url.scheme.is_empty() && rest.starts_with('/') {
        url.omit_host = true;
    }
    url.path = unescape(rest, Mode::Path)?;
    if escape(&url.path, Mode::Path) != rest {
        url.raw_path = rest.into();
    }
    Ok(url)
}

impl GoUrl {
    /// `URL.Hostname()`: the host without its port or IPv6 brackets.
    pub fn hostname(&self) -> &str {
        let h = self.host.as_str();
        if let Some(inner) = h.strip_prefix('[') {
            return inner.split(']').next().unwrap_or(inner);
        }
        h.rsplit_once(':').map_or(h, |(name, _)| name)
    }

    fn escaped_path(&self) -> String {
        if valid_encoded(&self.raw_path)
            && unescape(&self.raw_path, Mode::Path).ok().as_deref() == Some(self.path.as_str())
        {
            return self.raw_path.clone();
        }
        if self.path == "*" {
            return "*".into();
        }
        escape(&self.path, Mode::Path)
    }

    /// Go's `URL.String`.
    pub fn to_go_string(&self) -> String {
        let mut out = String::new();
        if !self.scheme.is_empty() {
            out.push_str(&self.scheme);
            out.push(':');
        }
        if !self.opaque.is_empty() {
            out.push_str(&self.opaque);
        } else {
            let has_authority =
                !self.scheme.is_empty() || !self.host.is_empty() || self.user.is_some();
            if has_authority && !(self.omit_host && self.host.is_empty() && self.user.is_none()) {
                if !self.host.is_empty() || !self.path.is_empty() || self.user.is_some() {
                    out.push_str("//");
                }
                if let Some(u) = &self.user {
                    out.push_str(u);
                    out.push('@');
                }
                out.push_str(&escape(&self.host, Mode::Host));
            }
            let path = self.escaped_path();
            if !path.is_empty() && !path.starts_with('/') && !self.host.is_empty() {
                out.push('/');
            }
            if out.is_empty() && path.split('/').next().unwrap_or("").contains(':') {
                out.push_str("./");
            }
            out.push_str(&path);
        }
        if self.force_query || !self.raw_query.is_empty() {
            out.push('?');
            out.push_str(&self.raw_query);
        }
        if !self.fragment.is_empty() {
            out.push('#');
            out.push_str(&escape(&self.fragment, Mode::Fragment));
        }
        out
    }

    /// The userinfo as sprig's `urlJoin` reads it: through `proto://{info}@host`.
    pub fn userinfo_from(info: &str) -> Result<Option<String>, String> {
        if info.is_empty() {
            return Ok(None);
        }
        Ok(parse(&format!("proto://{info}@host"))?.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_as_go_does() {
        // (input, scheme, user, host, hostname, path, query, opaque, fragment, String()).
        let cases = [
            (
                "proto://auth@host:80/path?query#fragment",
                [
                    "proto", "auth", "host:80", "host", "/path", "query", "", "fragment",
                ],
                "proto://auth@host:80/path?query#fragment",
            ),
            (
                "https://u%40x:p%3Ass@example.com/a%2Fb/../c?x=1&y=%20",
                [
                    "https",
                    "u%40x:p%3Ass",
                    "example.com",
                    "example.com",
                    "/a/b/../c",
                    "x=1&y=%20",
                    "",
                    "",
                ],
                "https://u%40x:p%3Ass@example.com/a%2Fb/../c?x=1&y=%20",
            ),
            (
                "mailto:someone@example.com",
                ["mailto", "", "", "", "", "", "someone@example.com", ""],
                "mailto:someone@example.com",
            ),
            (
                "relative/path with space#frag ment",
                [
                    "",
                    "",
                    "",
                    "",
                    "relative/path with space",
                    "",
                    "",
                    "frag ment",
                ],
                "relative/path%20with%20space#frag%20ment",
            ),
            (
                "HTTP://[::1]:8443/",
                ["http", "", "[::1]:8443", "::1", "/", "", "", ""],
                "http://[::1]:8443/",
            ),
            (
                "file:///etc/hosts",
                ["file", "", "", "", "/etc/hosts", "", "", ""],
                "file:///etc/hosts",
            ),
        ];
        for (input, [scheme, user, host, hostname, path, query, opaque, fragment], printed) in cases
        {
            let u = parse(input).unwrap();
            assert_eq!(u.scheme, scheme, "{input}");
            assert_eq!(u.user.as_deref().unwrap_or(""), user, "{input}");
            assert_eq!(u.host, host, "{input}");
            assert_eq!(u.hostname(), hostname, "{input}");
            assert_eq!(u.path, path, "{input}");
            assert_eq!(u.raw_query, query, "{input}");
            assert_eq!(u.opaque, opaque, "{input}");
            assert_eq!(u.fragment, fragment, "{input}");
            assert_eq!(u.to_go_string(), printed, "{input}");
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        let cases = [
            (":nothing", "parse \":nothing\": missing protocol scheme"),
            (
                "http://h:port/",
                "parse \"http://h:port/\": invalid port \":port\" after host",
            ),
            ("a:b/c:d", "parse \"a:b/c:d\": "),
            ("x/%zz", "parse \"x/%zz\": invalid URL escape \"%zz\""),
            (
                "1a:b",
                "parse \"1a:b\": first path segment in URL cannot contain colon",
            ),
            (
                "http://a b.com/",
                "parse \"http://a b.com/\": invalid character \" \" in host name",
            ),
        ];
        for (input, want) in cases {
            match parse(input) {
                Err(e) => assert!(e.starts_with(want), "{input}: {e}"),
                // `a:b/c:d` is an opaque URL in Go, not an error.
                Ok(u) => assert_eq!((input, u.opaque.as_str()), ("a:b/c:d", "b/c:d")),
            }
        }
    }
}
