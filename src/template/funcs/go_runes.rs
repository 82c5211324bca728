//! Go's `unicode` and `unicode/utf8` as the case and wrap helpers use them: rune
//! classes by general category (std's `char` predicates use derived properties, which
//! differ for e.g. circled letters and combining marks), Go's one-rune case mappings
//! (std's are the full mappings: `ß` upper-cases to "SS" in Rust, stays `ß` in Go), and
//! `DecodeRuneInString`, which yields U+FFFD for a byte that is not valid UTF-8.

use unicode_general_category::{GeneralCategory as G, get_general_category};

pub(super) const RUNE_ERROR: u32 = 0xFFFD;

fn category(r: u32) -> Option<G> {
    char::from_u32(r).map(get_general_category)
}

/// `unicode.IsUpper`: category Lu.
pub(super) fn is_upper(r: u32) -> bool {
    category(r) == Some(G::UppercaseLetter)
}

/// `unicode.IsLower`: category Ll.
pub(super) fn is_lower(r: u32) -> bool {
    category(r) == Some(G::LowercaseLetter)
}

/// `unicode.IsTitle`: category Lt.
pub(super) fn is_title(r: u32) -> bool {
    category(r) == Some(G::TitlecaseLetter)
}

/// `unicode.IsLetter`: category L.
pub(super) fn is_letter(r: u32) -> bool {
    matches!(
        category(r),
        Some(
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
        )
    )
}

/// `unicode.IsPunct`: category P.
pub(super) fn is_punct(r: u32) -> bool {
    matches!(
        category(r),
        Some(
            G::ConnectorPunctuation
                | G::DashPunctuation
                | G::OpenPunctuation
                | G::ClosePunctuation
                | G::InitialPunctuation
                | G::FinalPunctuation
                | G::OtherPunctuation
        )
    )
}

/// `unicode.IsNumber`: category N.
pub(super) fn is_number(r: u32) -> bool {
    matches!(
        category(r),
        Some(G::DecimalNumber | G::LetterNumber | G::OtherNumber)
    )
}

/// `unicode.IsSpace`: the White_Space property, which std's `is_whitespace` is too.
pub(super) fn is_space(r: u32) -> bool {
    char::from_u32(r).is_some_and(char::is_whitespace)
}

fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let c = it.next()?;
    it.next().is_none().then_some(c)
}

/// `unicode.ToUpper`: a rune whose mapping is not one rune keeps its case.
pub(super) fn to_upper(r: u32) -> u32 {
    char::from_u32(r)
        .and_then(|c| single(c.to_uppercase()))
        .map_or(r, u32::from)
}

/// `unicode.ToLower`; `İ` lower-cases to `i` in Go (std gives "i̇").
pub(super) fn to_lower(r: u32) -> u32 {
    if r == 0x130 {
        return 'i' as u32;
    }
    char::from_u32(r)
        .and_then(|c| single(c.to_lowercase()))
        .map_or(r, u32::from)
}

/// `unicode.ToTitle`: upper case, except the Latin digraphs, which have a title form.
pub(super) fn to_title(r: u32) -> u32 {
    match r {
        0x1C4..=0x1C6 => 0x1C5,
        0x1C7..=0x1C9 => 0x1C8,
        0x1CA..=0x1CC => 0x1CB,
        0x1F1..=0x1F3 => 0x1F2,
        _ => to_upper(r),
    }
}

/// `utf8.DecodeRuneInString`: the first rune and its length; (U+FFFD, 1) for a byte
/// that does not start valid UTF-8, (U+FFFD, 0) for nothing.
pub(super) fn decode(b: &[u8]) -> (u32, usize) {
    let Some(&first) = b.first() else {
        return (RUNE_ERROR, 0);
    };
    let n = match first {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (RUNE_ERROR, 1),
    };
    match b.get(..n).map(std::str::from_utf8) {
        Some(Ok(s)) => (s.chars().next().map_or(RUNE_ERROR, u32::from), n),
        _ => (RUNE_ERROR, 1),
    }
}

/// `bytes.Buffer.WriteRune`: an invalid rune is written as U+FFFD.
pub(super) fn push_rune(buf: &mut Vec<u8>, r: u32) {
    let c = char::from_u32(r).unwrap_or('\u{fffd}');
    buf.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_rune_classes_and_mappings() {
        // Go's answers, where std's char predicates or full mappings differ.
        assert!(!is_upper('Ⓐ' as u32) && 'Ⓐ'.is_uppercase());
        assert!(!is_letter('\u{0345}' as u32) && '\u{0345}'.is_alphabetic());
        assert!(is_punct('、' as u32) && is_punct('/' as u32) && !is_punct('+' as u32));
        assert!(is_space(0x85) && is_space(0xA0) && !is_space(0x1C));
        assert_eq!(to_upper('ß' as u32), 'ß' as u32);
        assert_eq!(to_lower('İ' as u32), 'i' as u32);
        assert_eq!(to_title('ǆ' as u32), 'ǅ' as u32);
        assert_eq!(decode(b"\xffa"), (RUNE_ERROR, 1));
        assert_eq!(decode("é".as_bytes()), ('é' as u32, 2));
        assert_eq!(decode(b"\xe2\x82"), (RUNE_ERROR, 1));
        assert_eq!(decode(b""), (RUNE_ERROR, 0));
    }
}
