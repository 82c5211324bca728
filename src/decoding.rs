//! ESO's `decodingStrategy`: how a value's bytes are decoded, with Go's base64 rules (ESO
//! decodes with Go's standard library).

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::api::DecodingStrategy;

fn go_base64(alphabet: &base64::alphabet::Alphabet) -> GeneralPurpose {
    // Go's default (non-strict) decoders require padding but accept non-zero trailing bits.
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
            .with_decode_allow_trailing_bits(true),
    )
}

/// `decodingStrategy`: None keeps the bytes, Base64/Base64URL must decode, Auto decodes when
/// the value is valid base64 (standard, then URL alphabet) and keeps it otherwise.
pub fn decode(strategy: DecodingStrategy, input: &[u8]) -> Result<Vec<u8>, String> {
    // Go's decoders skip line breaks.
    let cleaned = || -> Vec<u8> {
        input
            .iter()
            .copied()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect()
    };
    match strategy {
        DecodingStrategy::None => Ok(input.to_vec()),
        DecodingStrategy::Base64 => go_base64(&base64::alphabet::STANDARD)
            .decode(cleaned())
            .map_err(|e| format!("value is not valid base64 (decodingStrategy Base64): {e}")),
        DecodingStrategy::Base64Url => go_base64(&base64::alphabet::URL_SAFE)
            .decode(cleaned())
            .map_err(|e| format!("value is not valid base64url (decodingStrategy Base64URL): {e}")),
        DecodingStrategy::Auto => Ok(decode(DecodingStrategy::Base64, input)
            .or_else(|_| decode(DecodingStrategy::Base64Url, input))
            .unwrap_or_else(|_| input.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        use DecodingStrategy::*;
        type Case<'a> = (DecodingStrategy, &'a [u8], Result<&'a [u8], ()>);
        let cases: &[Case] = &[
            (None, b"aGVsbG8=", Ok(b"aGVsbG8=")),
            (Base64, b"aGVsbG8=", Ok(b"hello")),
            (Base64, b"aGVs\nbG8=", Ok(b"hello")),
            (Base64, b"aGVsbG8", Err(())),
            (Base64, b"not base64!", Err(())),
            (Base64Url, b"-_8=", Ok(&[0xfb, 0xff])),
            (Base64Url, b"+/8=", Err(())),
            (Auto, b"aGVsbG8=", Ok(b"hello")),
            (Auto, b"-_8=", Ok(&[0xfb, 0xff])),
            (Auto, b"plain text", Ok(b"plain text")),
            (Auto, b"", Ok(b"")),
        ];
        for (s, input, want) in cases {
            let got = decode(*s, input);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{s:?} {input:?}"),
                Err(()) => assert!(got.is_err(), "{s:?} {input:?} gave {got:?}"),
            }
        }
    }
}
