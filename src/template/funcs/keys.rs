//! ESO's key functions: `jwkPublicKeyPem`, `jwkPrivateKeyPem` (a JWK as PEM PKIX public
//! key / PKCS#8 private key, as Go's `x509.Marshal…` writes them) and `rsaDecrypt`
//! (RSA-OAEP). The key arithmetic and encodings are the `rsa`, `p256`, `p384` and
//! `p521` crates'; this file only reads JWK fields and picks the crate.
//!
//! Errors describe the key's shape (type, curve, missing field), never its content.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use rsa::BoxedUint;
use rsa::pkcs1::DecodeRsaPrivateKey as _;

use super::args::{Plain, exec, s, strv, want};
use super::pem;
use crate::template::bytes::{to_bytes, to_text};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("jwkPublicKeyPem", |a| {
            want(a, "jwkPublicKeyPem", 1, 1)?;
            jwk_public_pem(strv(&a[0], "jwkPublicKeyPem")?)
                .map(s)
                .map_err(|e| exec(format!("jwkPublicKeyPem: {e}")))
        }),
        ("jwkPrivateKeyPem", |a| {
            want(a, "jwkPrivateKeyPem", 1, 1)?;
            jwk_private_pem(strv(&a[0], "jwkPrivateKeyPem")?)
                .map(s)
                .map_err(|e| exec(format!("jwkPrivateKeyPem: {e}")))
        }),
        ("rsaDecrypt", |a| {
            want(a, "rsaDecrypt", 4, 4)?;
            let scheme = strv(&a[0], "rsaDecrypt")?;
            let hash = strv(&a[1], "rsaDecrypt")?;
            let input = to_bytes(strv(&a[2], "rsaDecrypt")?);
            let key = strv(&a[3], "rsaDecrypt")?;
            rsa_decrypt(scheme, hash, &input, key)
                .map(|out| s(to_text(&out)))
                .map_err(|e| exec(format!("rsaDecrypt: {e}")))
        }),
    ]
}

/// ESO's `parsePrivateKey` (PKCS#1, then PKCS#8, then SEC 1 EC), as PKCS#8 DER the way
/// Go's `x509.MarshalPKCS8PrivateKey` writes the parsed key.
pub(crate) fn parse_private_key(der: &[u8]) -> Result<Vec<u8>, String> {
    const ERR: &str = "unable to parse private key type";
    if let Ok(k) = rsa::PrivateKey::from_pkcs1_der(der) {
        return pkcs8(k.to_pkcs8_der());
    }
    if let Ok(k) = pkcs8_as_go_marshals(der) {
        return Ok(k);
    }
    if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        return pkcs8(k.to_pkcs8_der());
    }
    if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        return pkcs8(k.to_pkcs8_der());
    }
    if let Ok(k) = p521::SecretKey::from_sec1_der(der) {
        return pkcs8(k.to_pkcs8_der());
    }
    Err(ERR.into())
}

/// A PKCS#8 key as Go re-encodes it after `x509.ParsePKCS8PrivateKey`: RSA and NIST
/// curve keys are decoded and encoded again; other key types are kept as they are.
pub(crate) fn pkcs8_as_go_marshals(der: &[u8]) -> Result<Vec<u8>, String> {
    let info = rsa::pkcs8::PrivateKeyInfoRef::try_from(der)
        .map_err(|_| "the private key is not PKCS#8".to_string())?;
    let oid = info.algorithm.oid.to_string();
    match oid.as_str() {
        // rsaEncryption
        "1.2.840.113549.1.1.1" => rsa::PrivateKey::from_pkcs8_der(der)
            .map_err(|_| "the RSA private key is malformed".to_string())
            .and_then(|k| pkcs8(k.to_pkcs8_der())),
        // id-ecPublicKey
        "1.2.840.10045.2.1" => {
            if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
                pkcs8(k.to_pkcs8_der())
            } else if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
                pkcs8(k.to_pkcs8_der())
            } else if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
                pkcs8(k.to_pkcs8_der())
            } else {
                Err("the EC private key is malformed or not on P-256, P-384 or P-521".into())
            }
        }
        _ => Ok(der.to_vec()),
    }
}

fn pkcs8(doc: Result<p256::pkcs8::SecretDocument, p256::pkcs8::Error>) -> Result<Vec<u8>, String> {
    doc.map(|d| d.as_bytes().to_vec())
        .map_err(|e| format!("x509: {e}"))
}

/// ESO's `rsaDecrypt SCHEME HASH INPUT KEY`: scheme `None` returns the input; `RSA-OAEP`
/// decrypts with HASH (SHA1, SHA256, SHA512; anything else is SHA256) for OAEP and MGF1.
pub(crate) fn rsa_decrypt(
    scheme: &str,
    hash: &str,
    input: &[u8],
    key: &str,
) -> Result<Vec<u8>, String> {
    match scheme {
        "None" => Ok(input.to_vec()),
        "RSA-OAEP" => {
            let (_, der, _) = pem::decode_one(key).ok_or("failed to decode PEM block")?;
            let pkcs8 =
                parse_private_key(&der).map_err(|e| format!("could not parse private key: {e}"))?;
            let key = rsa::PrivateKey::from_pkcs8_der(&pkcs8)
                .map_err(|_| "could not parse RSA private key".to_string())?;
            let out = match hash {
                "SHA1" => key.decrypt(rsa::Oaep::<sha1_oaep::Sha1>::new(), input),
                "SHA512" => key.decrypt(rsa::Oaep::<rsa::sha2::Sha512>::new(), input),
                _ => key.decrypt(rsa::Oaep::<rsa::sha2::Sha256>::new(), input),
            };
            out.map_err(|e| format!("error decrypting data with RSA: {e}"))
        }
        other => Err(format!("decryption scheme {other} is not supported")),
    }
}

/// The fields of a JWK this file reads.
struct Jwk {
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Jwk {
    fn parse(text: &str) -> Result<Jwk, String> {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(fields)) => Ok(Jwk { fields }),
            Ok(_) => Err("the JWK is not a JSON object".into()),
            Err(e) => Err(format!(
                "the JWK is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            )),
        }
    }

    fn text(&self, name: &str) -> Result<&str, String> {
        self.fields
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("the JWK has no {name:?} field"))
    }

    fn has(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    /// A base64url member (padding and the standard alphabet tolerated).
    fn bytes(&self, name: &str) -> Result<Vec<u8>, String> {
        let v: String = self
            .text(name)?
            .chars()
            .filter(|c| *c != '=')
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        B64URL
            .decode(v)
            .map_err(|_| format!("the JWK field {name:?} is not base64url"))
    }

    fn uint(&self, name: &str) -> Result<BoxedUint, String> {
        Ok(BoxedUint::from_be_slice_vartime(&self.bytes(name)?))
    }

    fn kty(&self) -> Result<&str, String> {
        self.text("kty")
    }

    fn crv(&self) -> Result<&str, String> {
        self.text("crv")
    }

    fn ec_point(&self) -> Result<Vec<u8>, String> {
        let mut point = vec![4u8];
        point.extend(self.bytes("x")?);
        point.extend(self.bytes("y")?);
        Ok(point)
    }
}

const BAD_EC: &str = "the JWK's EC point is not on its curve";

/// `jwkPublicKeyPem`: PEM `PUBLIC KEY` (PKIX). As in ESO, a private JWK is refused.
pub(crate) fn jwk_public_pem(text: &str) -> Result<String, String> {
    let k = Jwk::parse(text)?;
    if k.has("d") {
        return Err("x509: unsupported public key type: the JWK holds a private key".into());
    }
    let der = match k.kty()? {
        "RSA" => {
            let key = rsa::PublicKey::new(k.uint("n")?, k.uint("e")?)
                .map_err(|e| format!("invalid RSA public key: {e}"))?;
            key.to_public_key_der()
        }
        "EC" => {
            let point = k.ec_point()?;
            match k.crv()? {
                "P-256" => p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| BAD_EC.to_string())?
                    .to_public_key_der(),
                "P-384" => p384::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| BAD_EC.to_string())?
                    .to_public_key_der(),
                "P-521" => p521::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| BAD_EC.to_string())?
                    .to_public_key_der(),
                other => return Err(format!("unsupported EC curve {other:?}")),
            }
        }
        other => return Err(format!("unsupported JWK key type {other:?}")),
    }
    .map_err(|e| format!("x509: {e}"))?;
    Ok(pem::encode_der("PUBLIC KEY", der.as_bytes()))
}

/// `jwkPrivateKeyPem`: PEM `PRIVATE KEY` (PKCS#8). As in ESO, a public JWK is refused.
pub(crate) fn jwk_private_pem(text: &str) -> Result<String, String> {
    let k = Jwk::parse(text)?;
    if !k.has("d") {
        return Err(
            "x509: unknown key type while marshaling PKCS#8: the JWK holds a public key".into(),
        );
    }
    let der = match k.kty()? {
        "RSA" => {
            let mut primes = Vec::new();
            if k.has("p") && k.has("q") {
                primes = vec![k.uint("p")?, k.uint("q")?];
            }
            let key =
                rsa::PrivateKey::from_components(k.uint("n")?, k.uint("e")?, k.uint("d")?, primes)
                    .map_err(|e| format!("invalid RSA private key: {e}"))?;
            pkcs8(key.to_pkcs8_der())?
        }
        "EC" => {
            let d = k.bytes("d")?;
            let point = k.ec_point()?;
            macro_rules! ec {
                ($curve:ident) => {{
                    let key = $curve::SecretKey::from_slice(&d).map_err(|_| {
                        "the JWK's EC private key is not valid for its curve".to_string()
                    })?;
                    if key.public_key().to_sec1_bytes().as_ref() != point.as_slice() {
                        return Err("the JWK's x and y do not belong to its d".into());
                    }
                    pkcs8(key.to_pkcs8_der())?
                }};
            }
            match k.crv()? {
                "P-256" => ec!(p256),
                "P-384" => ec!(p384),
                "P-521" => ec!(p521),
                other => return Err(format!("unsupported EC curve {other:?}")),
            }
        }
        other => return Err(format!("unsupported JWK key type {other:?}")),
    };
    Ok(pem::encode_der("PRIVATE KEY", &der))
}
