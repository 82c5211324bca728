//! Go's regular expressions in Rust's `regex`.
//!
//! ESO compiles every pattern a user writes (`spec.conditions[].namespaceRegexes`,
//! `dataFrom[].find.name.regexp`, `rewrite[].regexp.source`, the sprig `regex*` template
//! functions) with Go's `regexp` (RE2 syntax). Rust's `regex` reads nearly the same syntax but
//! means some of it differently, so a pattern is rewritten before it is compiled:
//!
//! | Go | means in Go | in Rust it would mean | written as |
//! |---|---|---|---|
//! | `\d` `\w` `\s` (and `\D` `\W` `\S`) | ASCII classes | Unicode classes (`\d` matches `٣`, `\w` matches `é`) | `[0-9]`, `[0-9A-Za-z_]`, `[\t\n\f\r ]` |
//! | `\b` `\B` | ASCII word boundary | Unicode word boundary | `(?-u:\b)`, `(?-u:\B)` |
//! | `[` inside a class, `&&` `--` `~~` | literal characters | nested class, set operations | escaped |
//! | `\Q…\E` | quoted literal text | an error | the text, escaped |
//! | `{` not starting a repetition (`a{b`) | a literal `{` | an error | `\{` |
//! | `\<` `\>` | literal `<` `>` | start / end of a word | `<` `>` |
//! | `\012`, `\12` | octal escape | an error (a backreference) | `\x{0A}` |
//!
//! Everything else (groups and flags, `\p{…}`, POSIX classes such as `[[:alpha:]]`, `\x{…}`,
//! repetitions, `$1` / `${name}` in replacements) already means the same in both.

use regex::{Regex, RegexBuilder};

const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";
/// Go's `\s` is `[\t\n\f\r ]`: no vertical tab, unlike POSIX `[:space:]`.
const SPACE: &str = r"\t\n\x0C\r\x20";

/// A builder for the Rust regex with the meaning of Go pattern `go`.
pub fn builder(go: &str) -> RegexBuilder {
    RegexBuilder::new(&translate(go))
}

/// Go's `regexp.QuoteMeta`: only `\.+*?()|[]{}^$` are escaped (Rust's `regex::escape` also
/// escapes `#&-~`, which would change what a template writes).
pub fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        if r"\.+*?()|[]{}^$".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Compiles Go pattern `go` with Rust's default size limits.
pub fn new(go: &str) -> Result<Regex, regex::Error> {
    builder(go).build()
}

/// What is wrong with a pattern, in one line: a syntax error's own description, without the
/// rewritten pattern and the caret diagram `regex` draws under it (the caller names the
/// pattern as the user wrote it).
pub fn message(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .last()
            .map(|l| l.trim().trim_start_matches("error: ").to_string())
            .unwrap_or_default(),
        other => other.to_string(),
    }
}

/// The Rust pattern with the meaning of Go pattern `go`. A pattern Go refuses may come out
/// either refused by Rust too or accepted with the nearest meaning; one Go accepts always
/// comes out meaning the same.
pub fn translate(go: &str) -> String {
    let c: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() + 16);
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' if i + 1 < c.len() => i = escape(&c, i + 1, false, &mut out),
            '[' => i = class(&c, i, &mut out),
            '{' => match repetition_end(&c, i) {
                Some(end) => {
                    out.extend(&c[i..end]);
                    i = end;
                }
                None => {
                    out.push_str(r"\{");
                    i += 1;
                }
            },
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// Translates the escape whose letter is `c[i]` (after the backslash), inside a bracketed class
/// or outside one; returns the index after it.
fn escape(c: &[char], i: usize, in_class: bool, out: &mut String) -> usize {
    let e = c[i];
    let next = i + 1;
    match e {
        'd' | 'w' | 's' if in_class => out.push_str(perl(e)),
        'd' | 'w' | 's' => {
            out.push('[');
            out.push_str(perl(e));
            out.push(']');
        }
        // Negated: a class of its own; inside a class, Rust nests it (a union).
        'D' | 'W' | 'S' => {
            out.push_str("[^");
            out.push_str(perl(e.to_ascii_lowercase()));
            out.push(']');
        }
        '0'..='7' => {
            if let Some(end) = octal(c, i, out) {
                return end;
            }
            out.push('\\');
            out.push(e);
        }
        'b' if !in_class => out.push_str(r"(?-u:\b)"),
        'B' if !in_class => out.push_str(r"(?-u:\B)"),
        'Q' if !in_class => {
            let rest: String = c[next..].iter().collect();
            let (lit, used) = match rest.find(r"\E") {
                Some(end) => (&rest[..end], end + 2),
                None => (rest.as_str(), rest.len()),
            };
            out.push_str(&regex::escape(lit));
            return next + rest[..used].chars().count();
        }
        '<' | '>' => out.push(e),
        'p' | 'P' | 'x' => {
            out.push('\\');
            out.push(e);
            return copy_braced(c, next, out);
        }
        _ => {
            out.push('\\');
            out.push(e);
        }
    }
    next
}

/// Go's octal escape whose first digit is `c[i]` (after the backslash): `\0` with up to two
/// more octal digits, or `\1`–`\7` with one or two more (a lone `\1` is a backreference, which
/// Go refuses, and is left for Rust to refuse too). Writes it as `\x{…}` and returns the index
/// after it.
fn octal(c: &[char], i: usize, out: &mut String) -> Option<usize> {
    let is_octal = |j: usize| c.get(j).is_some_and(|d| ('0'..='7').contains(d));
    if c[i] != '0' && !is_octal(i + 1) {
        return None;
    }
    let mut end = i + 1;
    while end < i + 3 && is_octal(end) {
        end += 1;
    }
    let value = c[i..end]
        .iter()
        .fold(0u32, |v, d| v * 8 + d.to_digit(8).unwrap_or(0));
    out.push_str(&format!(r"\x{{{value:X}}}"));
    Some(end)
}

fn perl(e: char) -> &'static str {
    match e {
        'd' => DIGIT,
        'w' => WORD,
        _ => SPACE,
    }
}

/// Copies a `{…}` argument (of `\p`, `\P`, `\x`) starting at `i` unchanged; returns the index
/// after it. Without a brace, the escape's one-letter or two-digit form follows and is copied
/// by the caller as ordinary characters.
fn copy_braced(c: &[char], i: usize, out: &mut String) -> usize {
    if c.get(i) != Some(&'{') {
        return i;
    }
    match c[i..].iter().position(|&x| x == '}') {
        Some(len) => {
            out.extend(&c[i..=i + len]);
            i + len + 1
        }
        None => i,
    }
}

/// The end (exclusive) of a counted repetition `{n}`, `{n,}` or `{n,m}` starting at `i`; `None`
/// when the brace starts none, which Go reads as a literal `{`.
fn repetition_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let digits = |j: &mut usize| {
        let from = *j;
        while c.get(*j).is_some_and(char::is_ascii_digit) {
            *j += 1;
        }
        *j > from
    };
    if !digits(&mut j) {
        return None;
    }
    if c.get(j) == Some(&',') {
        j += 1;
        digits(&mut j);
    }
    (c.get(j) == Some(&'}')).then_some(j + 1)
}

/// Translates the bracketed class starting at `c[i] == '['`; returns the index after it.
fn class(c: &[char], mut i: usize, out: &mut String) -> usize {
    out.push('[');
    i += 1;
    if c.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // A `]` first is a member, in both syntaxes; escaped, it cannot be misread.
    if c.get(i) == Some(&']') {
        out.push_str(r"\]");
        i += 1;
    }
    let mut prev_dash = false;
    while i < c.len() {
        let ch = c[i];
        let mut dash = false;
        match ch {
            ']' => {
                out.push(']');
                return i + 1;
            }
            '[' if c.get(i + 1) == Some(&':') => {
                // A POSIX class, `[:alpha:]` or `[:^alpha:]`: the same in both.
                let rest = &c[i + 2..];
                match rest.windows(2).position(|w| w == [':', ']']) {
                    Some(p) => {
                        out.extend(&c[i..i + 2 + p + 2]);
                        i += 2 + p + 2;
                    }
                    None => {
                        out.push_str(r"\[");
                        i += 1;
                    }
                }
                prev_dash = false;
                continue;
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(ch);
                i += 1;
            }
            '-' if prev_dash => {
                out.push_str(r"\-");
                i += 1;
            }
            '-' => {
                out.push('-');
                dash = true;
                i += 1;
            }
            '\\' if i + 1 < c.len() => i = escape(c, i + 1, true, out),
            _ => {
                out.push(ch);
                i += 1;
            }
        }
        prev_dash = dash;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites() {
        let cases = [
            ("^team/.*db$", "^team/.*db$"),
            (r"\d+", "[0-9]+"),
            (r"\W", "[^0-9A-Za-z_]"),
            (r"\s", r"[\t\n\x0C\r\x20]"),
            (r"\bkey\b", r"(?-u:\b)key(?-u:\b)"),
            (r"[\w.-]+", r"[0-9A-Za-z_.-]+"),
            (r"[^\d]", "[^0-9]"),
            (r"[\D_]", "[[^0-9]_]"),
            ("[[]", r"[\[]"),
            ("[]a]", r"[\]a]"),
            ("[a&&b~~c]", r"[a\&\&b\~\~c]"),
            ("[!--]", r"[!-\-]"),
            ("[[:alpha:][:^digit:]]", "[[:alpha:][:^digit:]]"),
            (r"\Qa.b*\E+", r"a\.b\*+"),
            (r"\Qa.b", r"a\.b"),
            ("a{2}", "a{2}"),
            ("a{2,}", "a{2,}"),
            ("a{2,5}", "a{2,5}"),
            ("a{b", r"a\{b"),
            ("a{,5}", r"a\{,5}"),
            (r"\<a\>", "<a>"),
            (r"\p{Greek}\pL\x{41}\x41", r"\p{Greek}\pL\x{41}\x41"),
            (r"[\p{Lu}\x{41}]", r"[\p{Lu}\x{41}]"),
            ("(?i)(?P<n>x)|(?:y)", "(?i)(?P<n>x)|(?:y)"),
            (r"\.\$", r"\.\$"),
            (r"\0\101\12x\1", r"\x{0}\x{41}\x{A}x\1"),
            (r"[\0-\101]", r"[\x{0}-\x{41}]"),
        ];
        for (go, want) in cases {
            assert_eq!(translate(go), want, "{go}");
        }
    }

    /// What Go's regexp answers for these (its documented ASCII classes and literal rules).
    #[test]
    fn matches_as_go_does() {
        let cases: &[(&str, &str, bool)] = &[
            (r"^\w+$", "café", false),
            (r"^\w+$", "cafe_1", true),
            (r"^\d$", "٣", false),
            (r"^\d$", "7", true),
            (r"^\s$", "\u{a0}", false),
            (r"^\s$", "\u{0b}", false),
            (r"^\s$", "\u{0c}", true),
            (r"^\W$", "é", true),
            (r"^\S$", "\u{a0}", true),
            (r"^[\D]$", "é", true),
            (r"^[\D]$", "5", false),
            (r"é\b", "éa", true),
            (r"a\b", "aé", true),
            (r"\Bé", "aé", false),
            ("^[[]$", "[", true),
            ("^a{b$", "a{b", true),
            ("^[a&&b]$", "&", true),
            (r"^\Q*.*\E$", "*.*", true),
            (r"^\Q*.*\E$", "x", false),
            (r"^\101$", "A", true),
            (r"^\<$", "<", true),
            ("(?i)^k$", "\u{212a}", true),
            ("^[[:alpha:]]+$", "abc", true),
        ];
        for (go, text, want) in cases {
            let re = new(go).unwrap_or_else(|e| panic!("{go}: {e}"));
            assert_eq!(re.is_match(text), *want, "{go} on {text:?}");
        }
    }

    #[test]
    fn quote_meta_as_go() {
        assert_eq!(quote_meta("a-b#c~d&e"), "a-b#c~d&e");
        assert_eq!(
            quote_meta(r"1.5*[x]{2}(y)|z?^$+\"),
            r"1\.5\*\[x\]\{2\}\(y\)\|z\?\^\$\+\\"
        );
        let q = quote_meta("a.b[c]-d");
        assert!(new(&q).unwrap().is_match("a.b[c]-d"));
    }

    #[test]
    fn refusals_stay_refusals_with_a_one_line_message() {
        for go in ["(", "[a", "*a", r"\p{Nope}", "x{2,1}", r"(a)\1"] {
            let e = new(go).expect_err(go);
            let m = message(&e);
            assert!(!m.is_empty() && !m.contains('\n'), "{go}: {m:?}");
        }
        assert_eq!(message(&new("(").unwrap_err()), "unclosed group");
    }

    /// ASCII classes compile small: a counted `\w` no longer pulls in all of Unicode.
    #[test]
    fn counted_classes_are_small() {
        assert!(builder(r"\w{100}").size_limit(1 << 20).build().is_ok());
        assert!(
            RegexBuilder::new(r"\w{100}")
                .size_limit(1 << 20)
                .build()
                .is_err()
        );
    }
}
