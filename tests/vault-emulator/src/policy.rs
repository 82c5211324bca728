//! ACL policies: the HCL (or JSON) policy language and Vault's path matching
//! and priority rules.

use serde_json::Value;

pub(crate) const CREATE: u16 = 1;
pub(crate) const READ: u16 = 2;
pub(crate) const UPDATE: u16 = 4;
pub(crate) const DELETE: u16 = 8;
pub(crate) const LIST: u16 = 16;
pub(crate) const SUDO: u16 = 32;
pub(crate) const DENY: u16 = 64;
pub(crate) const PATCH: u16 = 128;

fn cap_bit(name: &str) -> Option<u16> {
    Some(match name {
        "create" => CREATE,
        "read" => READ,
        "update" => UPDATE,
        "delete" => DELETE,
        "list" => LIST,
        "sudo" => SUDO,
        "deny" => DENY,
        "patch" => PATCH,
        // Vault accepts these and ignores them outside Enterprise.
        "subscribe" | "recover" => 0,
        _ => return None,
    })
}

pub(crate) fn cap_names(bits: u16) -> Vec<&'static str> {
    let all = [
        (CREATE, "create"),
        (DELETE, "delete"),
        (DENY, "deny"),
        (LIST, "list"),
        (PATCH, "patch"),
        (READ, "read"),
        (SUDO, "sudo"),
        (UPDATE, "update"),
    ];
    all.iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub pattern: String,
    pub caps: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub name: String,
    pub text: String,
    pub rules: Vec<Rule>,
}

impl Policy {
    pub fn parse(name: &str, text: &str) -> Result<Policy, String> {
        let rules = if text.trim_start().starts_with('{') {
            parse_json(text)?
        } else {
            parse_hcl(text)?
        };
        Ok(Policy {
            name: name.to_string(),
            text: text.to_string(),
            rules,
        })
    }
}

pub(crate) const DEFAULT_POLICY: &str = r#"
# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its resultant ACL from all policies
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}
"#;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Ident(String),
    Num(String),
    Sym(char),
}

fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '#' || (c == '/' && chars.get(i + 1) == Some(&'/')) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            if i + 1 >= chars.len() {
                return Err(format!("At {line}: unterminated comment"));
            }
            i += 2;
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None | Some('\n') => {
                        return Err(format!("At {line}: literal not terminated"));
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let n = chars.get(i + 1).copied().unwrap_or('\\');
                        s.push(match n {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                        i += 2;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), line));
        } else if "{}[]=,:".contains(c) {
            out.push((Tok::Sym(c), line));
            i += 1;
        } else if c.is_ascii_digit() || c == '-' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '-')
            {
                i += 1;
            }
            out.push((Tok::Num(chars[start..i].iter().collect()), line));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || chars[i] == '_'
                    || chars[i] == '-'
                    || chars[i] == '.')
            {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), line));
        } else {
            return Err(format!("At {line}: illegal char '{c}'"));
        }
    }
    Ok(out)
}

/// A parsed HCL value; only the shapes that policies use.
#[derive(Debug)]
enum HVal {
    Str(String),
    Other,
    List(Vec<HVal>),
    Block(Vec<(String, Vec<String>, HVal)>),
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map(|t| t.1)
            .unwrap_or(1)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.0.clone());
        self.pos += 1;
        t
    }

    /// Body items until `end` (a closing brace, or end of input at top level).
    fn items(&mut self, top: bool) -> Result<Vec<(String, Vec<String>, HVal)>, String> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None if top => return Ok(items),
                None => return Err(format!("At {}: expected '}}'", self.line())),
                Some(Tok::Sym('}')) if !top => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(Tok::Sym(',')) => {
                    self.pos += 1;
                }
                _ => {
                    let line = self.line();
                    let key = match self.next() {
                        Some(Tok::Ident(s)) | Some(Tok::Str(s)) => s,
                        other => return Err(format!("At {line}: unexpected token {other:?}")),
                    };
                    let mut labels = Vec::new();
                    while let Some(Tok::Str(s)) = self.peek() {
                        labels.push(s.clone());
                        self.pos += 1;
                    }
                    let val = match self.peek() {
                        Some(Tok::Sym('=')) | Some(Tok::Sym(':')) => {
                            self.pos += 1;
                            self.value()?
                        }
                        Some(Tok::Sym('{')) => {
                            self.pos += 1;
                            HVal::Block(self.items(false)?)
                        }
                        other => {
                            return Err(format!(
                                "At {}: key '{key}' expected start of object ('{{') or assignment ('='), got {other:?}",
                                self.line()
                            ));
                        }
                    };
                    items.push((key, labels, val));
                }
            }
        }
    }

    fn value(&mut self) -> Result<HVal, String> {
        let line = self.line();
        match self.next() {
            Some(Tok::Str(s)) => Ok(HVal::Str(s)),
            Some(Tok::Num(_)) | Some(Tok::Ident(_)) => Ok(HVal::Other),
            Some(Tok::Sym('[')) => {
                let mut list = Vec::new();
                loop {
                    match self.peek() {
                        Some(Tok::Sym(']')) => {
                            self.pos += 1;
                            return Ok(HVal::List(list));
                        }
                        Some(Tok::Sym(',')) => self.pos += 1,
                        None => return Err(format!("At {line}: list not terminated")),
                        _ => list.push(self.value()?),
                    }
                }
            }
            Some(Tok::Sym('{')) => Ok(HVal::Block(self.items(false)?)),
            other => Err(format!("At {line}: unexpected token {other:?}")),
        }
    }
}

fn caps_from_list(pattern: &str, caps: &HVal) -> Result<u16, String> {
    let HVal::List(items) = caps else {
        return Err(format!("path {pattern:?}: capabilities must be a list"));
    };
    let mut bits = 0;
    for item in items {
        let HVal::Str(name) = item else {
            return Err(format!("path {pattern:?}: capabilities must be strings"));
        };
        bits |= cap_bit(name)
            .ok_or_else(|| format!("path {pattern:?}: invalid capability \"{name}\""))?;
    }
    Ok(bits)
}

/// The pre-0.9 `policy = "read"` shorthand.
fn caps_from_legacy(pattern: &str, policy: &str) -> Result<u16, String> {
    Ok(match policy {
        "deny" => DENY,
        "read" => READ | LIST,
        "write" => CREATE | READ | UPDATE | DELETE | LIST,
        "sudo" => CREATE | READ | UPDATE | DELETE | LIST | SUDO,
        other => return Err(format!("path {pattern:?}: invalid policy \"{other}\"")),
    })
}

fn rule_from_block(pattern: &str, body: &[(String, Vec<String>, HVal)]) -> Result<Rule, String> {
    let mut caps = 0;
    for (key, _, val) in body {
        match key.as_str() {
            "capabilities" => caps |= caps_from_list(pattern, val)?,
            "policy" => {
                let HVal::Str(p) = val else {
                    return Err(format!("path {pattern:?}: policy must be a string"));
                };
                caps |= caps_from_legacy(pattern, p)?;
            }
            "allowed_parameters"
            | "denied_parameters"
            | "required_parameters"
            | "min_wrapping_ttl"
            | "max_wrapping_ttl"
            | "control_group"
            | "mfa_methods"
            | "comment" => {}
            other => return Err(format!("path {pattern:?}: invalid key \"{other}\"")),
        }
    }
    if caps & DENY != 0 {
        caps = DENY;
    }
    Ok(Rule {
        pattern: pattern.to_string(),
        caps,
    })
}

fn parse_hcl(text: &str) -> Result<Vec<Rule>, String> {
    let toks = tokenize(text)?;
    let mut p = Parser { toks, pos: 0 };
    let items = p.items(true)?;
    let mut rules = Vec::new();
    for (key, labels, val) in items {
        match key.as_str() {
            "path" => {
                let [pattern] = labels.as_slice() else {
                    // `path { "a" { ... } }` nesting is also valid HCL.
                    if let HVal::Block(inner) = &val {
                        for (pat, _, body) in inner {
                            let HVal::Block(b) = body else {
                                return Err(format!("path {pat:?}: expected an object"));
                            };
                            rules.push(rule_from_block(pat, b)?);
                        }
                        continue;
                    }
                    return Err("path must have exactly one name".into());
                };
                let HVal::Block(body) = val else {
                    return Err(format!("path {pattern:?}: expected an object"));
                };
                rules.push(rule_from_block(pattern, &body)?);
            }
            "name" => {}
            other => return Err(format!("invalid key \"{other}\" on line 1")),
        }
    }
    Ok(rules)
}

fn parse_json(text: &str) -> Result<Vec<Rule>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut rules = Vec::new();
    let Some(paths) = v.get("path").and_then(Value::as_object) else {
        return Ok(rules);
    };
    for (pattern, body) in paths {
        let mut caps = 0;
        if let Some(list) = body.get("capabilities").and_then(Value::as_array) {
            for c in list {
                let name = c.as_str().unwrap_or_default();
                caps |= cap_bit(name)
                    .ok_or_else(|| format!("path {pattern:?}: invalid capability \"{name}\""))?;
            }
        }
        if let Some(p) = body.get("policy").and_then(Value::as_str) {
            caps |= caps_from_legacy(pattern, p)?;
        }
        if caps & DENY != 0 {
            caps = DENY;
        }
        rules.push(Rule {
            pattern: pattern.clone(),
            caps,
        });
    }
    Ok(rules)
}

/// Whether `pattern` (with `+` segment wildcards and a trailing `*` glob)
/// matches `path`.
pub(crate) fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (pat, glob) = match pattern.strip_suffix('*') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    if !pat.contains('+') {
        return if glob {
            path.starts_with(pat)
        } else {
            path == pat
        };
    }
    let psegs: Vec<&str> = pat.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    let last = psegs.len() - 1;
    for (i, p) in psegs.iter().enumerate() {
        if i == last {
            if glob {
                let rest = if i < segs.len() {
                    segs[i..].join("/")
                } else {
                    return p.is_empty();
                };
                return if *p == "+" { true } else { rest.starts_with(p) };
            }
            return segs.len() == psegs.len() && (*p == "+" || segs[i] == *p);
        }
        let Some(s) = segs.get(i) else { return false };
        if *p != "+" && s != p {
            return false;
        }
    }
    false
}

/// Sort key implementing Vault's priority rules: a later first wildcard,
/// no trailing glob, fewer `+` segments, a longer pattern and then a
/// lexicographically larger pattern each win.
fn priority(pattern: &str) -> (usize, bool, std::cmp::Reverse<usize>, usize, String) {
    let first_wild = pattern.find(['+', '*']).unwrap_or(usize::MAX);
    let plus = pattern.split('/').filter(|s| *s == "+").count();
    (
        first_wild,
        !pattern.ends_with('*'),
        std::cmp::Reverse(plus),
        pattern.len(),
        pattern.to_string(),
    )
}

/// The capabilities the given policies grant on `path`: rules with the same
/// pattern are merged across policies (deny wins), then the highest-priority
/// matching pattern decides.
pub(crate) fn capabilities<'a>(policies: impl Iterator<Item = &'a Policy>, path: &str) -> u16 {
    let mut best: Option<(String, u16)> = None;
    let mut merged: std::collections::HashMap<&str, u16> = std::collections::HashMap::new();
    for p in policies {
        for r in &p.rules {
            if pattern_matches(&r.pattern, path) {
                *merged.entry(r.pattern.as_str()).or_default() |= r.caps;
            }
        }
    }
    for (pattern, caps) in merged {
        let better = match &best {
            None => true,
            Some((b, _)) => priority(pattern) > priority(b),
        };
        if better {
            best = Some((pattern.to_string(), caps));
        }
    }
    match best {
        Some((_, caps)) if caps & DENY != 0 => DENY,
        Some((_, caps)) => caps,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hcl_with_comments_and_blocks() {
        let p = Policy::parse(
            "p",
            r#"
            # comment
            path "secret/data/app/*" {
              capabilities = ["read", "list"]
            }
            // another
            path "secret/metadata/+/x" { capabilities = ["list"] }
            path "secret/data/app/blocked" {
              capabilities = ["deny"]
              allowed_parameters = { "foo" = [] }
            }
            /* block comment */
            path "legacy/*" { policy = "write" }
            "#,
        )
        .unwrap();
        assert_eq!(p.rules.len(), 4);
        assert_eq!(p.rules[0].caps, READ | LIST);
        assert_eq!(p.rules[2].caps, DENY);
        assert_eq!(p.rules[3].caps, CREATE | READ | UPDATE | DELETE | LIST);
    }

    #[test]
    fn rejects_bad_policies() {
        assert!(Policy::parse("p", r#"path "a" { capabilities = ["fly"] }"#).is_err());
        assert!(Policy::parse("p", r#"path "a" { capabilities = ["read"] "#).is_err());
        assert!(Policy::parse("p", r#"bogus "a" { }"#).is_err());
    }

    #[test]
    fn matching() {
        assert!(pattern_matches("secret/*", "secret/data/x"));
        assert!(pattern_matches("secret/data/x", "secret/data/x"));
        assert!(!pattern_matches("secret/data/x", "secret/data/xy"));
        assert!(pattern_matches("secret/data/x*", "secret/data/xy"));
        assert!(pattern_matches("secret/+/x", "secret/data/x"));
        assert!(!pattern_matches("secret/+/x", "secret/data/y/x"));
        assert!(pattern_matches("secret/+/x/*", "secret/data/x/y/z"));
        assert!(!pattern_matches("secret/+/x/*", "secret/data/y/x"));
    }

    #[test]
    fn most_specific_wins_and_deny_overrides() {
        let a = Policy::parse(
            "a",
            r#"
            path "secret/*" { capabilities = ["read"] }
            path "secret/data/private" { capabilities = ["deny"] }
            path "secret/data/+/open" { capabilities = ["read", "update"] }
            "#,
        )
        .unwrap();
        let b = Policy::parse("b", r#"path "secret/*" { capabilities = ["list"] }"#).unwrap();
        let both = [a.clone(), b];
        assert_eq!(capabilities(both.iter(), "secret/data/x"), READ | LIST);
        assert_eq!(capabilities(both.iter(), "secret/data/private"), DENY);
        assert_eq!(
            capabilities(both.iter(), "secret/data/a/open"),
            READ | UPDATE
        );
        assert_eq!(capabilities([a].iter(), "other/x"), 0);
    }
}
