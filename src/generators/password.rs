//! The Password generator (ESO's, on sethvargo/go-password): `length` characters of which
//! `digits` are digits and `symbols` symbols, the rest letters, in random order, drawn from a
//! cryptographic RNG; without `allowRepeat` no character appears twice.

use std::collections::BTreeMap;

use base64::Engine;
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};

use crate::api::generators::{PasswordEncoding, PasswordSpec};

const DEFAULT_LENGTH: usize = 24;
/// go-password's default symbols, which ESO passes when `symbolCharacters` is unset.
pub const DEFAULT_SYMBOLS: &str = "~!@#$%^&*()_+`-={}|[]\\:\"<>?,./";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";

/// A Password spec with ESO's defaults applied, checked to be satisfiable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub length: usize,
    pub digits: usize,
    pub symbols: usize,
    pub symbol_characters: Vec<char>,
    pub no_upper: bool,
    pub allow_repeat: bool,
    pub encoding: PasswordEncoding,
    pub keys: Vec<String>,
}

/// ESO's defaults (length 24; digits and symbols a quarter of the length each; the key
/// `password`), and every way the spec cannot be met, each naming its field under `at`.
pub fn plan(spec: &PasswordSpec, at: &str) -> Result<Plan, Vec<String>> {
    let length = if spec.length > 0 {
        spec.length
    } else {
        DEFAULT_LENGTH
    };
    let digits = spec.digits.unwrap_or(length / 4);
    let symbols = spec.symbols.unwrap_or(length / 4);
    let symbol_characters: Vec<char> = spec
        .symbol_characters
        .as_deref()
        .unwrap_or(DEFAULT_SYMBOLS)
        .chars()
        .collect();
    let mut problems = Vec::new();
    let keys = spec
        .secret_keys
        .clone()
        .unwrap_or_else(|| vec!["password".into()]);
    if keys.is_empty() {
        problems.push(format!(
            "{at}.secretKeys: give at least one key, or leave it out"
        ));
    }
    for (i, k) in keys.iter().enumerate() {
        if k.is_empty() {
            problems.push(format!("{at}.secretKeys[{i}]: empty key"));
        } else if keys[..i].contains(k) {
            problems.push(format!("{at}.secretKeys[{i}]: {k:?} appears twice"));
        } else if !crate::vault::values::is_valid_secret_key(k) {
            problems.push(format!(
                "{at}.secretKeys[{i}]: {k:?} is not a valid Secret key (letters, digits, '-', '.', '_')"
            ));
        }
    }
    let letters = length.checked_sub(digits + symbols);
    if letters.is_none() {
        problems.push(format!(
            "{at}: digits ({digits}) + symbols ({symbols}) exceed length ({length})"
        ));
    }
    if symbols > 0 && symbol_characters.is_empty() {
        problems.push(format!(
            "{at}.symbolCharacters: empty, yet {symbols} symbols are asked for"
        ));
    }
    if !spec.allow_repeat {
        let alphabet = if spec.no_upper { 26 } else { 52 };
        let distinct_symbols = distinct(&symbol_characters).len();
        if let Some(l) = letters.filter(|l| *l > alphabet) {
            problems.push(format!(
                "{at}: {l} letters without repeats, but only {alphabet} exist (set allowRepeat, \
                 or ask for fewer)"
            ));
        }
        if digits > 10 {
            problems.push(format!(
                "{at}.digits: {digits} digits without repeats, but only 10 exist (set allowRepeat)"
            ));
        }
        if symbols > distinct_symbols {
            problems.push(format!(
                "{at}.symbols: {symbols} symbols without repeats, but symbolCharacters has only \
                 {distinct_symbols} (set allowRepeat)"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Plan {
        length,
        digits,
        symbols,
        symbol_characters,
        no_upper: spec.no_upper,
        allow_repeat: spec.allow_repeat,
        encoding: spec.encoding.unwrap_or_default(),
        keys,
    })
}

fn distinct(chars: &[char]) -> Vec<char> {
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    for c in chars {
        if !out.contains(c) {
            out.push(*c);
        }
    }
    out
}

/// One password per key.
pub fn generate(plan: &Plan, rng: &mut impl Rng) -> BTreeMap<String, Vec<u8>> {
    plan.keys
        .iter()
        .map(|k| (k.clone(), encode(&one(plan, rng), plan.encoding)))
        .collect()
}

fn one(plan: &Plan, rng: &mut impl Rng) -> String {
    let mut letters: Vec<char> = LOWER.chars().collect();
    if !plan.no_upper {
        letters.extend(UPPER.chars());
    }
    let digits: Vec<char> = DIGITS.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(plan.length);
    let n_letters = plan.length - plan.digits - plan.symbols;
    for (pool, n) in [
        (letters, n_letters),
        (digits, plan.digits),
        (distinct(&plan.symbol_characters), plan.symbols),
    ] {
        pick(&mut out, &pool, n, plan.allow_repeat, rng);
    }
    out.shuffle(rng);
    out.into_iter().collect()
}

/// `n` characters of `pool`; without repeats, none already in `out` (the symbols may share
/// characters with letters or digits).
fn pick(out: &mut Vec<char>, pool: &[char], n: usize, allow_repeat: bool, rng: &mut impl Rng) {
    if allow_repeat {
        out.extend((0..n).filter_map(|_| pool.choose(rng).copied()));
        return;
    }
    let free: Vec<char> = pool.iter().copied().filter(|c| !out.contains(c)).collect();
    out.extend(free.choose_multiple(rng, n).copied());
}

fn encode(password: &str, encoding: PasswordEncoding) -> Vec<u8> {
    let b = password.as_bytes();
    match encoding {
        PasswordEncoding::Raw => b.to_vec(),
        PasswordEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(b).into(),
        PasswordEncoding::Base64url => base64::engine::general_purpose::URL_SAFE.encode(b).into(),
        PasswordEncoding::Base32 => data_encoding::BASE32.encode(b).into(),
        PasswordEncoding::Hex => data_encoding::HEXLOWER.encode(b).into(),
    }
}

#[cfg(test)]
#[path = "password_tests.rs"]
mod tests;
