//! sprig's `semver` and `semverCompare`, with Masterminds/semver v3's rules: versions may
//! drop minor and patch and start with `v`; constraints take `=`, `!=`, `>`, `<`, `>=`,
//! `<=`, `~`, `^`, wildcards (`1.2.x`), ranges (`1 - 2`), `,`/space for and, `||` for or;
//! a prerelease only satisfies a constraint that names one. Prerelease precedence is the
//! `semver` crate's (SemVer 2.0, as Masterminds compares).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use gotmpl::Value;
use regex::Regex;
use semver::Prerelease;

use super::args::{Plain, exec, s, strv, want};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("semver", |a| {
            want(a, "semver", 1, 1)?;
            let v =
                Version::parse(strv(&a[0], "semver")?).map_err(|e| exec(format!("semver: {e}")))?;
            // A version's fields as Go's methods name them (`(semver .v).Major`).
            let m: BTreeMap<Arc<str>, Value> = [
                ("Major", Value::Uint(v.major)),
                ("Minor", Value::Uint(v.minor)),
                ("Patch", Value::Uint(v.patch)),
                ("Prerelease", s(v.pre.as_str())),
                ("Metadata", s(v.metadata.as_str())),
                ("Original", s(v.original.as_str())),
            ]
            .into_iter()
            .map(|(k, v)| (Arc::from(k), v))
            .collect();
            Ok(Value::Map(Arc::new(m)))
        }),
        ("semverCompare", |a| {
            want(a, "semverCompare", 2, 2)?;
            let c = Constraints::parse(strv(&a[0], "semverCompare")?)
                .map_err(|e| exec(format!("semverCompare: {e}")))?;
            let v = Version::parse(strv(&a[1], "semverCompare")?)
                .map_err(|e| exec(format!("semverCompare: {e}")))?;
            Ok(Value::Bool(c.check(&v)))
        }),
    ]
}

#[derive(Debug, Clone)]
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Prerelease,
    metadata: String,
    original: String,
}

static VERSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$",
    )
    .expect("valid regex")
});

impl Version {
    /// Masterminds' `NewVersion`, with its error texts.
    fn parse(text: &str) -> Result<Version, String> {
        let invalid = || "Invalid Semantic Version".to_string();
        let m = VERSION.captures(text).ok_or_else(invalid)?;
        let num = |i: usize| -> Result<u64, String> {
            m.get(i).map_or(Ok(0), |g| {
                g.as_str()
                    .trim_start_matches('.')
                    .parse()
                    .map_err(|e| format!("Error parsing version segment: {e}"))
            })
        };
        let pre = m.get(5).map_or("", |g| g.as_str());
        let pre = Prerelease::new(pre).map_err(|_| "Version segment starts with 0".to_string())?;
        Ok(Version {
            major: num(1)?,
            minor: num(2)?,
            patch: num(3)?,
            pre,
            metadata: m.get(8).map_or("", |g| g.as_str()).to_string(),
            original: text.to_string(),
        })
    }

    /// Precedence: the numbers, then a prerelease below its release; metadata is ignored.
    fn compare(&self, o: &Version) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(o.major, o.minor, o.patch))
            .then_with(|| self.pre.cmp(&o.pre))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    TildeOrEqual,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

#[derive(Debug)]
struct Constraint {
    op: Op,
    con: Version,
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

const OPS: &str = r"=>|=<|>=|<=|!=|~>|>|<|=|~|\^|";
const CV: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";

static ONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"^\s*({OPS})\s*({CV})\s*$")).expect("valid regex"));
static RANGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"\s*({CV})\s+-\s+({CV})\s*")).expect("valid regex"));
static FIND: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"({OPS})\s*({CV})")).expect("valid regex"));
static VALID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"^(\s*({OPS})\s*({CV})\s*,?)+$")).expect("valid regex"));

fn is_x(p: &str) -> bool {
    matches!(p, "x" | "X" | "*")
}

impl Constraint {
    fn parse(c: &str) -> Result<Constraint, String> {
        let m = ONE
            .captures(c)
            .ok_or_else(|| format!("improper constraint: {c}"))?;
        let op = match &m[1] {
            "" | "=" => Op::TildeOrEqual,
            "!=" => Op::NotEqual,
            ">" => Op::Greater,
            "<" => Op::Less,
            ">=" | "=>" => Op::GreaterEqual,
            "<=" | "=<" => Op::LessEqual,
            "~" | "~>" => Op::Tilde,
            _ => Op::Caret,
        };
        let part = |i: usize| m.get(i).map_or("", |g| g.as_str());
        let (major, minor, patch, pre) = (part(3), part(4), part(5), part(6));
        let (mut dirty, mut minor_dirty, mut patch_dirty) = (false, false, false);
        let ver = if is_x(major) {
            dirty = true;
            "0.0.0".to_string()
        } else if minor.is_empty() || is_x(&minor[1..]) {
            (dirty, minor_dirty) = (true, true);
            format!("{major}.0.0{pre}")
        } else if patch.is_empty() || is_x(&patch[1..]) {
            (dirty, patch_dirty) = (true, true);
            format!("{major}{minor}.0{pre}")
        } else {
            m[2].to_string()
        };
        let con = Version::parse(&ver).map_err(|_| "constraint Parser Error".to_string())?;
        Ok(Constraint {
            op,
            con,
            dirty,
            minor_dirty,
            patch_dirty,
        })
    }

    /// Masterminds' check of one constraint (its `constraint…` functions).
    fn check(&self, v: &Version) -> bool {
        let c = &self.con;
        // A prerelease satisfies only constraints that name a prerelease.
        if !v.pre.is_empty() && c.pre.is_empty() {
            return false;
        }
        let cmp = v.compare(c);
        match self.op {
            Op::TildeOrEqual if self.dirty => self.tilde(v),
            Op::TildeOrEqual => cmp == Ordering::Equal,
            Op::Tilde => self.tilde(v),
            Op::NotEqual if self.dirty => {
                if c.major != v.major {
                    true
                } else if self.minor_dirty {
                    false
                } else if c.minor != v.minor {
                    true
                } else if self.patch_dirty {
                    v.pre != c.pre
                } else {
                    c.patch != v.patch
                }
            }
            Op::NotEqual => cmp != Ordering::Equal,
            Op::Greater if self.dirty => {
                if v.major != c.major {
                    v.major > c.major
                } else if self.minor_dirty {
                    false
                } else if self.patch_dirty {
                    v.minor > c.minor
                } else {
                    cmp == Ordering::Greater
                }
            }
            Op::Greater => cmp == Ordering::Greater,
            Op::Less => cmp == Ordering::Less,
            Op::GreaterEqual => cmp != Ordering::Less,
            Op::LessEqual if self.dirty => {
                !(v.major > c.major
                    || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
            }
            Op::LessEqual => cmp != Ordering::Greater,
            Op::Caret => {
                if cmp == Ordering::Less {
                    false
                } else if c.major > 0 || self.minor_dirty {
                    v.major == c.major
                } else if v.major > 0 {
                    false
                } else if c.minor > 0 || self.patch_dirty {
                    v.minor == c.minor
                } else {
                    v.patch == c.patch
                }
            }
        }
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.con;
        if v.compare(c) == Ordering::Less {
            return false;
        }
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        v.major == c.major && (v.minor == c.minor || self.minor_dirty)
    }
}

/// Alternatives (`||`) of constraints that must all hold.
struct Constraints(Vec<Vec<Constraint>>);

impl Constraints {
    fn parse(text: &str) -> Result<Constraints, String> {
        // `1.2 - 1.4` means `>= 1.2, <= 1.4`.
        let mut text = text.to_string();
        let ranges: Vec<(String, String)> = RANGE
            .captures_iter(&text)
            .map(|m| (m[0].to_string(), format!(">= {}, <= {}", &m[1], &m[11])))
            .collect();
        for (from, to) in ranges {
            text = text.replacen(&from, &to, 1);
        }
        let mut out = Vec::new();
        for alt in text.split("||") {
            if !VALID.is_match(alt) {
                return Err(format!("improper constraint: {alt}"));
            }
            let found: Vec<&str> = FIND.find_iter(alt).map(|m| m.as_str()).collect();
            let found = if found.is_empty() { vec![alt] } else { found };
            out.push(
                found
                    .into_iter()
                    .map(Constraint::parse)
                    .collect::<Result<_, _>>()?,
            );
        }
        Ok(Constraints(out))
    }

    fn check(&self, v: &Version) -> bool {
        self.0.iter().any(|all| all.iter().all(|c| c.check(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compare(c: &str, v: &str) -> Result<bool, String> {
        Ok(Constraints::parse(c)?.check(&Version::parse(v)?))
    }

    #[test]
    fn sprig_semver_cases() {
        // sprig's semver_test.go: TestSemverCompare, TestSemverCompareErr and TestSemver.
        assert_eq!(compare("1.2.3", "1.2.3"), Ok(true));
        assert_eq!(compare("^1.2.0", "1.2.3"), Ok(true));
        assert_eq!(compare("^1.2.0", "2.2.3"), Ok(false));
        assert!(compare("badConstraint", "1.2.3").is_err());
        assert!(compare("1.2.0", "badVersion").is_err());
        let f = functions()
            .into_iter()
            .find(|(n, _)| *n == "semver")
            .unwrap()
            .1;
        let Value::Map(m) = f(&[s("1.2.3-beta.1+c0ff33")]).unwrap() else {
            panic!("semver gives a dict");
        };
        assert_eq!(m["Prerelease"].as_str(), Some("beta.1"));
        assert_eq!(m["Major"], Value::Uint(1));
        assert_eq!(m["Metadata"].as_str(), Some("c0ff33"));
        let ordered = ["1.2.3", "1.3.3", "1.4.3"].map(|v| Version::parse(v).unwrap());
        assert_eq!(ordered[0].compare(&ordered[0]), Ordering::Equal);
        assert_eq!(ordered[1].compare(&ordered[0]), Ordering::Greater);
        assert_eq!(ordered[0].compare(&ordered[2]), Ordering::Less);
    }

    #[test]
    fn masterminds_constraint_rules() {
        // Cases from Masterminds/semver's README and constraints tests.
        let cases = [
            ("~1.2.3", "1.2.9", true),
            ("~1.2.3", "1.3.0", false),
            ("~1", "1.9.0", true),
            ("~1", "2.0.0", false),
            ("^1.2.3", "1.9.9", true),
            ("^0.2.3", "0.2.9", true),
            ("^0.2.3", "0.3.0", false),
            ("^0.0.3", "0.0.4", false),
            ("1.2.x", "1.2.7", true),
            ("1.2.x", "1.3.0", false),
            ("*", "4.5.6", true),
            ("!=1.2.3", "1.2.4", true),
            ("!=1.2.x", "1.2.4", false),
            (">1.x", "2.0.0", true),
            (">1.x", "1.9.0", false),
            ("<=1.2.x", "1.2.9", true),
            ("<=1.2.x", "1.3.0", false),
            (">= 1.2, < 3.0.0 || >= 4.2.3", "2.5.0", true),
            (">= 1.2, < 3.0.0 || >= 4.2.3", "3.5.0", false),
            (">= 1.2, < 3.0.0 || >= 4.2.3", "4.3.0", true),
            (">=1.2 <2", "1.5.0", true),
            ("1.2 - 1.4.5", "1.4.5", true),
            ("1.2 - 1.4.5", "1.4.6", false),
            (">=1.2.3", "1.3.0-beta", false),
            (">=1.2.3-0", "1.3.0-beta", true),
            ("v1.2.3", "1.2.3+build", true),
            ("=1.2", "1.2.5", true),
        ];
        for (c, v, want) in cases {
            assert_eq!(compare(c, v), Ok(want), "{c} against {v}");
        }
        assert_eq!(
            compare("1.2.3", "1.2.3-01").unwrap_err(),
            "Version segment starts with 0"
        );
        assert_eq!(
            compare("1.2.3", "1.2.3.4").unwrap_err(),
            "Invalid Semantic Version"
        );
        assert_eq!(
            compare(">> 1", "1.0.0").unwrap_err(),
            "improper constraint: >> 1"
        );
    }
}
