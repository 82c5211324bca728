//! Text cut to a size on a character boundary, for messages, events and names.

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// `s` cut to at most `max` bytes, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    let p = prefix(s, max);
    if p.len() == s.len() {
        s.to_string()
    } else {
        format!("{p}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_on_character_boundaries() {
        for (s, max, want) in [
            ("abc", 5, "abc"),
            ("abc", 3, "abc"),
            ("abc", 2, "ab"),
            ("aé", 2, "a"),
            ("aé", 3, "aé"),
            ("日本", 4, "日"),
            ("日本", 2, ""),
        ] {
            assert_eq!(prefix(s, max), want, "{s} {max}");
        }
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
