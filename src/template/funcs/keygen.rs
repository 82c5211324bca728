//! sprig's `genPrivateKey` and `derivePassword`. Keys come from the `rsa`, `p256` and
//! `rcgen` crates and are written as Go's `pemBlockForKey` writes them: RSA as PKCS#1,
//! ECDSA as SEC 1, Ed25519 as PKCS#8. DSA, which Go itself deprecates, is refused.

use hmac::{KeyInit as _, Mac as _};
use p256::pkcs8::DecodePrivateKey as _;
use rsa::pkcs1::EncodeRsaPrivateKey as _;

use super::args::{Plain, exec, int, s, strv, want};
use super::pem::encode_der;

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("genPrivateKey", |a| {
            want(a, "genPrivateKey", 1, 1)?;
            let typ = strv(&a[0], "genPrivateKey")?;
            let key = match typ {
                "" | "rsa" => Generated::rsa(4096),
                "ecdsa" => Generated::ecdsa(),
                "ed25519" => Generated::ed25519(),
                "dsa" => return Err(exec("genPrivateKey: dsa keys are not supported")),
                other => return Ok(s(format!("Unknown type {other}"))),
            };
            key.and_then(|k| k.go_pem()).map(s).map_err(|e| {
                exec(format!(
                    "genPrivateKey: failed to generate private key: {e}"
                ))
            })
        }),
        ("derivePassword", |a| {
            want(a, "derivePassword", 5, 5)?;
            let counter = u32::try_from(int(&a[0], "derivePassword")?)
                .map_err(|_| exec("derivePassword: the counter must fit in 32 bits"))?;
            let [typ, password, user, site] = [1, 2, 3, 4].map(|i| strv(&a[i], "derivePassword"));
            Ok(s(derive_password(counter, typ?, password?, user?, site?)))
        }),
    ]
}

/// A freshly generated (or parsed) private key.
pub(super) enum Generated {
    Rsa(Box<rsa::PrivateKey>),
    P256(p256::SecretKey),
    /// Ed25519 and other keys kept as PKCS#8.
    Pkcs8(Vec<u8>),
}

impl Generated {
    pub fn rsa(bits: usize) -> Result<Generated, String> {
        rsa::PrivateKey::new(&mut rand10::rng(), bits)
            .map(|k| Generated::Rsa(Box::new(k)))
            .map_err(|e| e.to_string())
    }

    pub fn ecdsa() -> Result<Generated, String> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| e.to_string())?;
        p256::SecretKey::from_pkcs8_der(&kp.serialize_der())
            .map(Generated::P256)
            .map_err(|e| e.to_string())
    }

    fn ed25519() -> Result<Generated, String> {
        // Go's MarshalPKCS8PrivateKey of an Ed25519 key: version 0, the OID, the seed.
        let seed: [u8; 32] = rand::random();
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        Ok(Generated::Pkcs8(der))
    }

    /// Go's `pemBlockForKey`.
    pub fn go_pem(&self) -> Result<String, String> {
        Ok(match self {
            Generated::Rsa(k) => {
                let der = k.to_pkcs1_der().map_err(|e| e.to_string())?;
                encode_der("RSA PRIVATE KEY", der.as_bytes())
            }
            Generated::P256(k) => {
                let der = k.to_sec1_der().map_err(|e| e.to_string())?;
                encode_der("EC PRIVATE KEY", &der)
            }
            Generated::Pkcs8(der) => encode_der("PRIVATE KEY", der),
        })
    }

    /// PKCS#8 DER, for signing with rcgen.
    pub fn pkcs8(&self) -> Result<Vec<u8>, String> {
        use p256::pkcs8::EncodePrivateKey as _;
        match self {
            Generated::Rsa(k) => k.to_pkcs8_der().map(|d| d.as_bytes().to_vec()),
            Generated::P256(k) => k.to_pkcs8_der().map(|d| d.as_bytes().to_vec()),
            Generated::Pkcs8(der) => return Ok(der.clone()),
        }
        .map_err(|e| e.to_string())
    }
}

/// Master Password's characters per template letter, as sprig has them.
fn template_chars(c: u8) -> &'static [u8] {
    match c {
        b'V' => b"AEIOU",
        b'C' => b"BCDFGHJKLMNPQRSTVWXYZ",
        b'v' => b"aeiou",
        b'c' => b"bcdfghjklmnpqrstvwxyz",
        b'A' => b"AEIOUBCDFGHJKLMNPQRSTVWXYZ",
        b'a' => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
        b'n' => b"0123456789",
        b'o' => b"@&%?,=[]_:-+*$#!'^~;()/.",
        _ => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
    }
}

fn password_templates(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "maximum" => &["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
        "long" => &[
            "CvcvnoCvcvCvcv",
            "CvcvCvcvnoCvcv",
            "CvcvCvcvCvcvno",
            "CvccnoCvcvCvcv",
            "CvccCvcvnoCvcv",
            "CvccCvcvCvcvno",
            "CvcvnoCvccCvcv",
            "CvcvCvccnoCvcv",
            "CvcvCvccCvcvno",
            "CvcvnoCvcvCvcc",
            "CvcvCvcvnoCvcc",
            "CvcvCvcvCvccno",
            "CvccnoCvccCvcv",
            "CvccCvccnoCvcv",
            "CvccCvccCvcvno",
            "CvcvnoCvccCvcc",
            "CvcvCvccnoCvcc",
            "CvcvCvccCvccno",
            "CvccnoCvcvCvcc",
            "CvccCvcvnoCvcc",
            "CvccCvcvCvccno",
        ],
        "medium" => &["CvcnoCvc", "CvcCvcno"],
        "short" => &["Cvcn"],
        "basic" => &["aaanaaan", "aannaaan", "aaannaaa"],
        "pin" => &["nnnn"],
        _ => return None,
    })
}

/// sprig's `derivePassword` (the Master Password algorithm): scrypt of the password salted
/// with the user name, HMAC-SHA256 of the site and counter, then one template's letters.
/// Failures come back as text, as in sprig.
fn derive_password(counter: u32, kind: &str, password: &str, user: &str, site: &str) -> String {
    const SEED: &[u8] = b"com.lyndir.masterpassword";
    let Some(templates) = password_templates(kind) else {
        return format!("cannot find password template {kind}");
    };
    let mut salt = SEED.to_vec();
    salt.extend_from_slice(&(user.len() as u32).to_be_bytes());
    salt.extend_from_slice(user.as_bytes());
    let mut key = [0u8; 64];
    // N = 32768, r = 8, p = 2.
    let params = scrypt::Params::new(15, 8, 2).expect("valid scrypt parameters");
    if let Err(e) = scrypt::scrypt(password.as_bytes(), &salt, &params, &mut key) {
        return format!("failed to derive password: {e}");
    }
    let mut msg = SEED.to_vec();
    msg.extend_from_slice(&(site.len() as u32).to_be_bytes());
    msg.extend_from_slice(site.as_bytes());
    msg.extend_from_slice(&counter.to_be_bytes());
    let mut mac = hmac::Hmac::<sha2_11::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(&msg);
    let seed = mac.finalize().into_bytes();
    let template = templates[usize::from(seed[0]) % templates.len()].as_bytes();
    template
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let chars = template_chars(c);
            char::from(chars[usize::from(seed[i + 1]) % chars.len()])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gotmpl::Value;

    fn call(name: &str, args: &[Value]) -> gotmpl::Result<Value> {
        let f = functions().into_iter().find(|(n, _)| *n == name).unwrap().1;
        f(args)
    }

    #[test]
    fn sprig_derive_password_cases() {
        // sprig's crypto_test.go, TestDerivePassword.
        let cases = [
            (1, "long", "ZedaFaxcZaso9*"),
            (2, "long", "Fovi2@JifpTupx"),
            (1, "maximum", "pf4zS1LjCg&LjhsZ7T2~"),
            (1, "medium", "ZedJuz8$"),
            (1, "basic", "pIS54PLs"),
            (1, "short", "Zed5"),
            (1, "pin", "6685"),
        ];
        for (counter, kind, want) in cases {
            assert_eq!(
                derive_password(counter, kind, "password", "user", "example.com"),
                want,
                "{kind} {counter}"
            );
        }
        assert_eq!(
            derive_password(1, "nope", "p", "u", "s"),
            "cannot find password template nope"
        );
    }

    #[test]
    fn sprig_gen_private_key_cases() {
        // sprig's crypto_test.go, TestGenPrivateKey (RSA is covered by the certificate
        // tests with 2048-bit keys: 4096-bit generation is slow without optimisation).
        let text = |typ: &str| {
            call("genPrivateKey", &[s(typ)])
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        };
        let ec = text("ecdsa");
        assert!(ec.starts_with("-----BEGIN EC PRIVATE KEY-----\n"), "{ec}");
        let der = super::super::pem::decode_one(&ec).unwrap().1;
        assert!(p256::SecretKey::from_sec1_der(&der).is_ok());
        let ed = text("ed25519");
        assert!(ed.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{ed}");
        let der = super::super::pem::decode_one(&ed).unwrap().1;
        assert!(
            rcgen::KeyPair::try_from(der.as_slice()).is_ok(),
            "rcgen reads the Ed25519 key"
        );
        assert_eq!(text("bad"), "Unknown type bad");
        assert!(call("genPrivateKey", &[s("dsa")]).is_err());
    }
}
