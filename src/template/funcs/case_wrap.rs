//! sprig's case and wrap helpers, ported from the libraries sprig v3.3.0 calls, on Go's
//! bytes (a template string goes through `to_bytes`, the result back through `to_text`,
//! so byte-based slicing and invalid UTF-8 behave as in Go):
//! - huandu/xstrings v1.5.0: `camelcase` (`ToPascalCase`: sprig kept upper camel case
//!   when xstrings' `ToCamelCase` turned lower), `snakecase`, `kebabcase`;
//! - Masterminds/goutils v1.1.1: `swapcase` (goutils' word-based `SwapCase`, not
//!   xstrings'), `initials`, `abbrev`, `abbrevboth`, `wrap`, `wrapWith`.

use gotmpl::Value;

use super::args::{Plain, R, int, s, strv, want};
use super::go_runes::{
    RUNE_ERROR, decode, is_letter, is_lower, is_number, is_punct, is_space, is_title, is_upper,
    push_rune, to_lower, to_title, to_upper,
};
use crate::template::bytes::{to_bytes, to_text};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("camelcase", |a| bytes_fn(a, "camelcase", to_pascal_case)),
        ("snakecase", |a| {
            bytes_fn(a, "snakecase", |b| camel_to_lower(b, b'_'))
        }),
        ("kebabcase", |a| {
            bytes_fn(a, "kebabcase", |b| camel_to_lower(b, b'-'))
        }),
        ("swapcase", |a| bytes_fn(a, "swapcase", swap_case)),
        ("initials", |a| bytes_fn(a, "initials", initials)),
        ("abbrev", |a| {
            want(a, "abbrev", 2, 2)?;
            let width = int(&a[0], "abbrev")?;
            let text = to_bytes(strv(&a[1], "abbrev")?);
            // sprig returns the text as is where goutils would refuse the width.
            if width < 4 {
                return Ok(s(to_text(&text)));
            }
            Ok(s(to_text(&abbreviate_full(&text, 0, width))))
        }),
        ("abbrevboth", |a| {
            want(a, "abbrevboth", 3, 3)?;
            let (left, right) = (int(&a[0], "abbrevboth")?, int(&a[1], "abbrevboth")?);
            let text = to_bytes(strv(&a[2], "abbrevboth")?);
            if right < 4 || left > 0 && right < 7 {
                return Ok(s(to_text(&text)));
            }
            Ok(s(to_text(&abbreviate_full(&text, left, right))))
        }),
        ("wrap", |a| {
            want(a, "wrap", 2, 2)?;
            let width = int(&a[0], "wrap")?;
            let text = to_bytes(strv(&a[1], "wrap")?);
            Ok(s(to_text(&wrap_custom(&text, width, b"", false))))
        }),
        ("wrapWith", |a| {
            want(a, "wrapWith", 3, 3)?;
            let width = int(&a[0], "wrapWith")?;
            let sep = to_bytes(strv(&a[1], "wrapWith")?);
            let text = to_bytes(strv(&a[2], "wrapWith")?);
            Ok(s(to_text(&wrap_custom(&text, width, &sep, true))))
        }),
    ]
}

fn bytes_fn(a: &[Value], name: &str, f: fn(&[u8]) -> Vec<u8>) -> R {
    want(a, name, 1, 1)?;
    Ok(s(to_text(&f(&to_bytes(strv(&a[0], name)?)))))
}

/// xstrings' `isConnector`.
fn is_connector(r: u32) -> bool {
    r == '-' as u32 || r == '_' as u32 || is_space(r)
}

/// xstrings' `isAlphabet`: a letter that is not a CJK ideograph.
fn is_alphabet(r: u32) -> bool {
    if !is_letter(r) {
        return false;
    }
    !(r >= 0x3400
        && ((0x4E00..=0x9FCC).contains(&r)
            || (0x3400..=0x4D85).contains(&r)
            || (0x20000..=0x2B81D).contains(&r)))
}

/// xstrings' `toCamelCase(str, isBig = true)`, i.e. `ToPascalCase`.
fn to_pascal_case(mut rest: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(rest.len());
    if rest.is_empty() {
        return buf;
    }
    let (mut r0, mut size) = (0, 0);
    let mut first_upper = false;
    // Leading connectors are kept.
    while !rest.is_empty() {
        (r0, size) = decode(rest);
        rest = &rest[size..];
        if !is_connector(r0) {
            first_upper = is_upper(r0);
            r0 = to_upper(r0);
            break;
        }
        push_rune(&mut buf, r0);
    }
    if rest.is_empty() {
        if size != 0 {
            push_rune(&mut buf, r0);
        }
        return buf;
    }
    while !rest.is_empty() {
        let r1 = r0;
        (r0, size) = decode(rest);
        rest = &rest[size..];
        if is_connector(r0) && is_connector(r1) {
            push_rune(&mut buf, r1);
            continue;
        }
        if is_connector(r1) {
            first_upper = is_upper(r0);
            r0 = to_upper(r0);
        } else {
            if first_upper {
                if is_upper(r0) {
                    r0 = to_lower(r0);
                } else {
                    first_upper = false;
                }
            }
            push_rune(&mut buf, r1);
        }
    }
    push_rune(&mut buf, r0);
    buf
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Word {
    Invalid,
    Number,
    Upper,
    Alphabet,
    Connector,
    Punct,
    Other,
}

/// xstrings' `nextValidRune`: the first rune that is not U+FFFD (`prev` if none) and
/// the bytes up to and including it.
fn next_valid_rune(mut b: &[u8], prev: u32) -> (u32, usize) {
    let mut size = 0;
    while !b.is_empty() {
        let (r, sz) = decode(b);
        size += sz;
        if r != RUNE_ERROR {
            return (r, size);
        }
        b = &b[sz..];
    }
    (prev, size)
}

/// xstrings' `nextWord`: the kind of the first word, the word and what follows it.
fn next_word(input: &[u8]) -> (Word, &[u8], &[u8]) {
    if input.is_empty() {
        return (Word::Invalid, &[], &[]);
    }
    let (mut r, mut size) = next_valid_rune(input, RUNE_ERROR);
    let mut offset = size;
    if r == RUNE_ERROR {
        return (Word::Invalid, &input[..offset], &input[offset..]);
    }
    let mut rest = &input[size..];
    let wt = if is_connector(r) {
        extend(&mut r, &mut offset, &mut rest, &is_connector);
        Word::Connector
    } else if is_punct(r) {
        extend(&mut r, &mut offset, &mut rest, &is_punct);
        Word::Punct
    } else if is_upper(r) {
        if !rest.is_empty() {
            (r, size) = next_valid_rune(rest, r);
            if is_upper(r) {
                let mut prev_size = size;
                offset += size;
                rest = &rest[size..];
                while !rest.is_empty() {
                    (r, size) = next_valid_rune(rest, r);
                    if !is_upper(r) {
                        break;
                    }
                    prev_size = size;
                    offset += size;
                    rest = &rest[size..];
                }
                // "HTTPStatus" splits into "HTTP" and "Status": the last upper-case
                // rune starts the next word.
                if !rest.is_empty() && is_alphabet(r) {
                    offset -= prev_size;
                    rest = &input[offset..];
                }
            } else if is_alphabet(r) {
                offset += size;
                rest = &rest[size..];
                extend(&mut r, &mut offset, &mut rest, &|x| {
                    is_alphabet(x) && !is_upper(x)
                });
            }
        }
        Word::Upper
    } else if is_alphabet(r) {
        extend(&mut r, &mut offset, &mut rest, &|x| {
            is_alphabet(x) && !is_upper(x)
        });
        Word::Alphabet
    } else if is_number(r) {
        extend(&mut r, &mut offset, &mut rest, &is_number);
        Word::Number
    } else {
        // Go stops at a size of 0 too, which only an empty rest gives: the loop's guard.
        extend(&mut r, &mut offset, &mut rest, &|x| {
            !(is_connector(x) || is_alphabet(x) || is_number(x) || is_punct(x))
        });
        Word::Other
    };
    (wt, &input[..offset], rest)
}

/// Extends a word while `keep` holds for the next valid rune.
fn extend(r: &mut u32, offset: &mut usize, rest: &mut &[u8], keep: &dyn Fn(u32) -> bool) {
    while !rest.is_empty() {
        let (next, sz) = next_valid_rune(rest, *r);
        *r = next;
        if !keep(next) {
            break;
        }
        *offset += sz;
        *rest = &rest[sz..];
    }
}

/// xstrings' `toLower`: upper-case and connector words lower-cased with `connector`
/// for every connector rune; other words as they are.
fn lower_word(buf: &mut Vec<u8>, wt: Word, mut word: &[u8], connector: u8) {
    if wt != Word::Upper && wt != Word::Connector {
        buf.extend_from_slice(word);
        return;
    }
    while !word.is_empty() {
        let (r, size) = decode(word);
        word = &word[size..];
        if is_connector(r) {
            buf.push(connector);
        } else if is_upper(r) {
            push_rune(buf, to_lower(r));
        } else {
            push_rune(buf, r);
        }
    }
}

/// xstrings' `camelCaseToLowerCase`: `ToSnakeCase` with `_`, `ToKebabCase` with `-`.
fn camel_to_lower(input: &[u8], c: u8) -> Vec<u8> {
    let mut buf = Vec::with_capacity(input.len() + input.len() / 2);
    if input.is_empty() {
        return buf;
    }
    let (mut wt, mut word, mut rest) = next_word(input);
    while !rest.is_empty() {
        if wt != Word::Connector {
            lower_word(&mut buf, wt, word, c);
        }
        let (prev, last) = (wt, word);
        (wt, word, rest) = next_word(rest);
        match prev {
            Word::Number => {
                while wt == Word::Alphabet || wt == Word::Number {
                    lower_word(&mut buf, wt, word, c);
                    (wt, word, rest) = next_word(rest);
                }
                if wt != Word::Invalid && wt != Word::Punct && wt != Word::Connector {
                    buf.push(c);
                }
            }
            Word::Connector => lower_word(&mut buf, prev, last, c),
            Word::Punct => {}
            _ => 'after_word: {
                if wt != Word::Number {
                    if wt != Word::Connector && wt != Word::Punct {
                        buf.push(c);
                    }
                    break 'after_word;
                }
                if rest.is_empty() {
                    break 'after_word;
                }
                let number = word;
                (wt, word, rest) = next_word(rest);
                // A number is part of the word before it ("Bld4Floor" => "bld4_floor")
                // unless letters follow it ("HTTP2xx" => "http_2xx").
                if wt != Word::Alphabet {
                    lower_word(&mut buf, Word::Number, number, c);
                    if wt != Word::Connector && wt != Word::Punct {
                        buf.push(c);
                    }
                    break 'after_word;
                }
                buf.push(c);
                lower_word(&mut buf, Word::Number, number, c);
                while wt == Word::Alphabet || wt == Word::Number {
                    lower_word(&mut buf, wt, word, c);
                    (wt, word, rest) = next_word(rest);
                }
                if wt != Word::Invalid && wt != Word::Connector && wt != Word::Punct {
                    buf.push(c);
                }
            }
        }
    }
    lower_word(&mut buf, wt, word, c);
    buf
}

/// goutils' `SwapCase`: upper and title case to lower; lower case to title case at the
/// start of a word, to upper case elsewhere. Runes, so invalid bytes become U+FFFD.
fn swap_case(mut rest: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(rest.len());
    let mut whitespace = true;
    while !rest.is_empty() {
        let (ch, size) = decode(rest);
        rest = &rest[size..];
        let out = if is_upper(ch) || is_title(ch) {
            whitespace = false;
            to_lower(ch)
        } else if is_lower(ch) {
            if std::mem::replace(&mut whitespace, false) {
                to_title(ch)
            } else {
                to_upper(ch)
            }
        } else {
            whitespace = is_space(ch);
            ch
        };
        push_rune(&mut buf, out);
    }
    buf
}

/// goutils' `Initials` with whitespace as delimiter. Go walks bytes, not runes: the
/// first byte of a multi-byte letter is written as the Latin-1 rune of that byte.
fn initials(text: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut last_was_gap = true;
    for &b in text {
        let ch = u32::from(b);
        if is_space(ch) {
            last_was_gap = true;
        } else if last_was_gap {
            push_rune(&mut buf, ch);
            last_was_gap = false;
        }
    }
    buf
}

/// goutils' `AbbreviateFull` on bytes, errors as the empty text sprig makes of them.
fn abbreviate_full(text: &[u8], offset: i64, max_width: i64) -> Vec<u8> {
    const MARKER: &[u8] = b"...";
    let len = text.len() as i64;
    if text.is_empty() || max_width < 4 {
        return Vec::new();
    }
    if len <= max_width {
        return text.to_vec();
    }
    // Clamped so the sums below cannot overflow; any offset below 1 acts alike.
    let mut offset = offset.clamp(-1, len);
    if len - offset < max_width - 3 {
        offset = len - (max_width - 3);
    }
    if offset <= 4 {
        return [&text[..(max_width - 3) as usize], MARKER].concat();
    }
    if max_width < 7 {
        return Vec::new();
    }
    if offset + max_width - 3 < len {
        let tail = abbreviate_full(&text[offset as usize..], 0, max_width - 3);
        return [MARKER, &tail].concat();
    }
    [MARKER, &text[(len - (max_width - 3)) as usize..]].concat()
}

/// goutils' `WrapCustom`: breaks at spaces (bytes), `"\n"` for an empty separator,
/// long words split only when `wrap_long`.
fn wrap_custom(text: &[u8], width: i64, sep: &[u8], wrap_long: bool) -> Vec<u8> {
    if text.is_empty() {
        return Vec::new();
    }
    let sep: &[u8] = if sep.is_empty() { b"\n" } else { sep };
    let len = text.len();
    // A width beyond the text never wraps; clamping keeps the index sums in range.
    let width = usize::try_from(width.max(1)).unwrap_or(usize::MAX).min(len);
    let mut offset = 0;
    let mut out = Vec::with_capacity(len + len / width * sep.len());
    while len - offset > width {
        if text[offset] == b' ' {
            offset += 1;
            continue;
        }
        let end = width + offset + 1;
        if let Some(space) = text[offset..end].iter().rposition(|&b| b == b' ') {
            out.extend_from_slice(&text[offset..offset + space]);
            out.extend_from_slice(sep);
            offset += space + 1;
        } else if wrap_long {
            out.extend_from_slice(&text[offset..offset + width]);
            out.extend_from_slice(sep);
            offset += width;
        } else {
            let end = width + offset;
            match text[end..].iter().position(|&b| b == b' ') {
                Some(i) => {
                    out.extend_from_slice(&text[offset..end + i]);
                    out.extend_from_slice(sep);
                    offset = end + i + 1;
                }
                None => {
                    out.extend_from_slice(&text[offset..]);
                    offset = len;
                }
            }
        }
    }
    out.extend_from_slice(&text[offset..]);
    out
}

#[cfg(test)]
#[path = "case_wrap_tests.rs"]
mod tests;
