//! sprig's `encryptAES` / `decryptAES`: AES-256-CBC with the password's first 32 bytes
//! (zero-padded) as key, PKCS#7 padding and a random IV sent ahead of the ciphertext, all
//! base64. Decryption strips as many bytes as the last one says without checking the rest
//! of the padding, as sprig does; input Go would panic on fails with an error.

use aes::Aes256;
use aes::cipher::block_padding::{NoPadding, Pkcs7};
use aes::cipher::{BlockModeDecrypt as _, BlockModeEncrypt as _, KeyIvInit as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gotmpl::Value;
use rand::Rng as _;

use super::args::{Plain, R, exec, s, strv, want};
use super::encoding::go_b64_decode;
use crate::template::bytes::{to_bytes, to_text};

const BLOCK: usize = 16;

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("encryptAES", |a| {
            want(a, "encryptAES", 2, 2)?;
            let iv: [u8; BLOCK] = rand::rng().random();
            let out = encrypt(strv(&a[0], "encryptAES")?, strv(&a[1], "encryptAES")?, iv);
            Ok(s(out))
        }),
        ("decryptAES", decrypt_fn),
    ]
}

fn key(password: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    let p = to_bytes(password);
    let n = p.len().min(32);
    key[..n].copy_from_slice(&p[..n]);
    key
}

fn encrypt(password: &str, plaintext: &str, iv: [u8; BLOCK]) -> String {
    if plaintext.is_empty() {
        return String::new();
    }
    let content = to_bytes(plaintext);
    let content = &content[..];
    let mut buf = vec![0u8; BLOCK + (content.len() / BLOCK + 1) * BLOCK];
    buf[..BLOCK].copy_from_slice(&iv);
    buf[BLOCK..BLOCK + content.len()].copy_from_slice(content);
    let enc = cbc::Encryptor::<Aes256>::new(&key(password).into(), &iv.into());
    let n = enc
        .encrypt_padded::<Pkcs7>(&mut buf[BLOCK..], content.len())
        .expect("the buffer holds the padded plaintext")
        .len();
    buf.truncate(BLOCK + n);
    B64.encode(buf)
}

fn decrypt_fn(a: &[Value]) -> R {
    want(a, "decryptAES", 2, 2)?;
    decrypt(strv(&a[0], "decryptAES")?, strv(&a[1], "decryptAES")?)
        .map(s)
        .map_err(|e| exec(format!("decryptAES: {e}")))
}

fn decrypt(password: &str, crypt64: &str) -> Result<String, String> {
    if crypt64.is_empty() {
        return Ok(String::new());
    }
    let crypt = go_b64_decode(crypt64)?;
    if crypt.len() < BLOCK {
        return Err("ciphertext shorter than the IV".into());
    }
    let (iv, body) = crypt.split_at(BLOCK);
    if body.len() % BLOCK != 0 {
        return Err("crypto/cipher: input not full blocks".into());
    }
    let mut buf = body.to_vec();
    let iv: [u8; BLOCK] = iv.try_into().expect("split at the block size");
    let dec = cbc::Decryptor::<Aes256>::new(&key(password).into(), &iv.into());
    let plain = dec
        .decrypt_padded::<NoPadding>(&mut buf)
        .map_err(|_| "crypto/cipher: input not full blocks".to_string())?;
    let strip = usize::from(*plain.last().ok_or("nothing to decrypt")?);
    let keep = plain
        .len()
        .checked_sub(strip)
        .ok_or("padding longer than the plaintext")?;
    Ok(to_text(&plain[..keep]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plaintext` under the password `secretkey` with IV 00..0f, from `openssl enc
    /// -aes-256-cbc` (the key being the password zero-padded to 32 bytes).
    const OPENSSL: &str = "AAECAwQFBgcICQoLDA0OD4aChIkqfhLglmmHSXlA6r0=";

    #[test]
    fn encrypts_and_decrypts_as_sprig_does() {
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(encrypt("secretkey", "plaintext", iv), OPENSSL);
        assert_eq!(decrypt("secretkey", OPENSSL).as_deref(), Ok("plaintext"));
        // sprig's TestEncryptDecryptAES: a round trip through the template functions.
        let f = |name| functions().into_iter().find(|(n, _)| *n == name).unwrap().1;
        for text in ["plaintext", "exactly sixteen!", "ü", &"long ".repeat(40)] {
            let c = f("encryptAES")(&[s("secretkey"), s(text)]).unwrap();
            let back = f("decryptAES")(&[s("secretkey"), c]).unwrap();
            assert_eq!(back.as_str(), Some(text));
        }
        // A password over 32 bytes counts for its first 32 only.
        let long = "0123456789abcdef0123456789abcdefIGNORED";
        assert_eq!(
            decrypt(&long[..32], &encrypt(long, "x", iv)).as_deref(),
            Ok("x")
        );
        assert_eq!(encrypt("k", "", iv), "");
        assert_eq!(decrypt("k", "").as_deref(), Ok(""));
    }

    #[test]
    fn bad_ciphertext_fails() {
        for (input, want) in [
            ("%%%", "illegal base64 data at input byte 0"),
            ("AAEC", "shorter than the IV"),
            ("AAECAwQFBgcICQoLDA0ODwAB", "not full blocks"),
        ] {
            let err = decrypt("k", input).unwrap_err();
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}
