//! sprig's random values: `randAlphaNum`, `randAlpha`, `randAscii`, `randNumeric` (goutils'
//! `CryptoRandom…`: uniform over their alphabets from the OS generator), `randBytes`,
//! `randInt` and `shuffle`. As in ESO, a template using them renders differently at every
//! refresh.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gotmpl::Value;
use rand::Rng as _;
use rand::seq::SliceRandom as _;

use super::args::{Plain, R, exec, int, limit, s, strv, want};
use crate::template::budget::MAX_OUTPUT;

const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const DIGITS: &str = "0123456789";

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("randAlphaNum", |a| {
            random_string(a, "randAlphaNum", Alphabet::AlphaNum)
        }),
        ("randAlpha", |a| {
            random_string(a, "randAlpha", Alphabet::Alpha)
        }),
        ("randAscii", |a| {
            random_string(a, "randAscii", Alphabet::Ascii)
        }),
        ("randNumeric", |a| {
            random_string(a, "randNumeric", Alphabet::Numeric)
        }),
        ("randBytes", |a| {
            want(a, "randBytes", 1, 1)?;
            let n = count(&a[0], "randBytes")?
                .ok_or_else(|| exec("randBytes: runtime error: makeslice: len out of range"))?;
            let mut buf = vec![0u8; n];
            rand::rng().fill(&mut buf[..]);
            Ok(s(B64.encode(buf)))
        }),
        ("randInt", |a| {
            want(a, "randInt", 2, 2)?;
            let (min, max) = (int(&a[0], "randInt")?, int(&a[1], "randInt")?);
            // Go's rand.Intn(max-min) panics unless the range is positive.
            match max.checked_sub(min) {
                Some(span) if span > 0 => Ok(Value::Int(min + rand::rng().random_range(0..span))),
                _ => Err(exec("randInt: invalid argument to Intn")),
            }
        }),
        ("shuffle", |a| {
            want(a, "shuffle", 1, 1)?;
            let mut chars: Vec<char> = strv(&a[0], "shuffle")?.chars().collect();
            chars.shuffle(&mut rand::rng());
            Ok(s(chars.into_iter().collect::<String>()))
        }),
    ]
}

#[derive(Clone, Copy)]
enum Alphabet {
    AlphaNum,
    Alpha,
    Ascii,
    Numeric,
}

impl Alphabet {
    fn chars(self) -> Vec<u8> {
        match self {
            Alphabet::AlphaNum => [UPPER, LOWER, DIGITS].concat().into_bytes(),
            Alphabet::Alpha => [UPPER, LOWER].concat().into_bytes(),
            // goutils' CryptoRandomAscii: the printable range 32..=126.
            Alphabet::Ascii => (32u8..127).collect(),
            Alphabet::Numeric => DIGITS.as_bytes().to_vec(),
        }
    }
}

/// A non-negative count within the output cap; `None` for a negative one.
fn count(v: &Value, name: &str) -> gotmpl::Result<Option<usize>> {
    let n = int(v, name)?;
    if n < 0 {
        return Ok(None);
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > MAX_OUTPUT {
        return Err(limit(format!("{name} of {n} exceeds {MAX_OUTPUT} bytes")));
    }
    Ok(Some(n))
}

/// goutils fails on a negative count and sprig turns that into an empty string.
fn random_string(a: &[Value], name: &str, alphabet: Alphabet) -> R {
    want(a, name, 1, 1)?;
    let Some(n) = count(&a[0], name)? else {
        return Ok(s(""));
    };
    let chars = alphabet.chars();
    let mut rng = rand::rng();
    let out: String = (0..n)
        .map(|_| char::from(chars[rng.random_range(0..chars.len())]))
        .collect();
    Ok(s(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> gotmpl::Result<Value> {
        let f = functions()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f)
            .unwrap();
        f(args)
    }

    fn text(name: &str, args: &[Value]) -> String {
        call(name, args).unwrap().as_str().unwrap().to_string()
    }

    #[test]
    fn random_strings_have_their_length_and_alphabet() {
        // Each generator's length and character class, as sprig's strings docs describe them.
        type Class = fn(char) -> bool;
        let cases: [(&str, Class); 4] = [
            ("randAlphaNum", |c| c.is_ascii_alphanumeric()),
            ("randAlpha", |c| c.is_ascii_alphabetic()),
            ("randAscii", |c| (' '..='~').contains(&c)),
            ("randNumeric", |c| c.is_ascii_digit()),
        ];
        for (name, class) in cases {
            let out = text(name, &[Value::Int(2000)]);
            assert_eq!(out.len(), 2000, "{name}");
            assert!(out.chars().all(class), "{name}: {out}");
            assert_ne!(
                out,
                text(name, &[Value::Int(2000)]),
                "{name} repeats itself"
            );
            assert_eq!(text(name, &[Value::Int(0)]), "", "{name} of 0");
            assert_eq!(
                text(name, &[Value::Int(-3)]),
                "",
                "{name} of a negative count"
            );
        }
        // Over 2000 draws from 62 letters, every one appears (a miss has odds below 1e-12).
        let out = text("randAlphaNum", &[Value::Int(2000)]);
        assert!(
            Alphabet::AlphaNum
                .chars()
                .iter()
                .all(|c| out.as_bytes().contains(c))
        );
    }

    #[test]
    fn rand_bytes_int_and_shuffle() {
        let b = B64.decode(text("randBytes", &[Value::Int(12)])).unwrap();
        assert_eq!(b.len(), 12);
        assert!(call("randBytes", &[Value::Int(-1)]).is_err());
        for _ in 0..200 {
            let Value::Int(n) = call("randInt", &[Value::Int(-2), Value::Int(3)]).unwrap() else {
                panic!("randInt gives an int");
            };
            assert!((-2..3).contains(&n), "{n}");
        }
        let err = call("randInt", &[Value::Int(3), Value::Int(3)]).unwrap_err();
        assert!(
            err.to_string().contains("invalid argument to Intn"),
            "{err}"
        );
        let mut shuffled: Vec<char> = text("shuffle", &[s("hello, wörld")]).chars().collect();
        shuffled.sort_unstable();
        let mut want: Vec<char> = "hello, wörld".chars().collect();
        want.sort_unstable();
        assert_eq!(shuffled, want);
        let err = call("randAlpha", &[Value::Int(MAX_OUTPUT as i64 + 1)]).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}
