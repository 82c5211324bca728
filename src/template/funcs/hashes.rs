//! sprig's hashes, ids and password functions: `sha1sum`, `sha256sum`, `sha512sum`,
//! `adler32sum`, `uuidv4`, `htpasswd`, `bcrypt`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gotmpl::Value;
use sha2::Digest as _;

use super::args::{Plain, R, exec, one, s, strv, want};
use crate::template::bytes::to_bytes;

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("sha1sum", |a| {
            want(a, "sha1sum", 1, 1)?;
            Ok(s(hex(&sha1::Sha1::digest(to_bytes(strv(
                &a[0], "sha1sum",
            )?)))))
        }),
        ("sha256sum", |a| {
            want(a, "sha256sum", 1, 1)?;
            Ok(s(hex(&sha2::Sha256::digest(to_bytes(strv(
                &a[0],
                "sha256sum",
            )?)))))
        }),
        ("sha512sum", |a| {
            want(a, "sha512sum", 1, 1)?;
            Ok(s(hex(&sha2::Sha512::digest(to_bytes(strv(
                &a[0],
                "sha512sum",
            )?)))))
        }),
        ("uuidv4", |a| {
            want(a, "uuidv4", 0, 0)?;
            Ok(s(uuidv4()))
        }),
        ("htpasswd", htpasswd),
        ("bcrypt", |a| {
            want(a, "bcrypt", 1, 1)?;
            Ok(s(bcrypt_hash(strv(&a[0], "bcrypt")?)?))
        }),
        ("adler32sum", |a| {
            one(a, "adler32sum", |v| adler32(&to_bytes(v)).to_string())
        }),
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn uuidv4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn bcrypt_hash(password: &str) -> gotmpl::Result<String> {
    // Go's bcrypt.DefaultCost and `$2a$` prefix.
    bcrypt::hash_with_result(password, 10)
        .map(|h| h.format_for_version(bcrypt::Version::TwoA))
        .map_err(|_| exec("bcrypt: could not hash the password"))
}

/// `htpasswd user password [bcrypt|sha]`: an Apache htpasswd line.
fn htpasswd(a: &[Value]) -> R {
    want(a, "htpasswd", 2, 3)?;
    let user = strv(&a[0], "htpasswd")?;
    let password = strv(&a[1], "htpasswd")?;
    if user.contains(':') {
        return Err(exec("htpasswd: invalid username: it contains ':'"));
    }
    let algo = match a.get(2) {
        Some(v) => strv(v, "htpasswd")?,
        None => "bcrypt",
    };
    Ok(s(match algo {
        "sha" => format!("{user}:{{SHA}}{}", B64.encode(sha1::Sha1::digest(password))),
        _ => format!("{user}:{}", bcrypt_hash(password)?),
    }))
}

/// Adler-32 (RFC 1950), as Go's `hash/adler32` computes it.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_follows_go() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }
}
