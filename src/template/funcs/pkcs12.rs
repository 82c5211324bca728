//! ESO's PKCS#12 functions: `pkcs12key`, `pkcs12cert` (and their `…Pass` forms) read a
//! keystore as Go's `go-pkcs12` `DecodeChain` does; `pemToPkcs12`, `fullPemToPkcs12` and
//! `pemTruststoreToPKCS12` (and `…Pass`) write one with go-pkcs12's `Modern` settings
//! (AES-256-CBC, HMAC-SHA-256, 2048 iterations). The PKCS#12 codec is `p12-keystore`.
//!
//! Keystores arrive as template text (bytes that are not UTF-8 escaped, see `bytes`);
//! errors describe the keystore, never its content.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gotmpl::Value;
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, Pkcs12Archive,
    PrivateKey, PrivateKeyChain,
};
use sha1::Digest as _;

use super::args::{Plain, R, exec, s, strv, want};
use super::keys::{parse_private_key, pkcs8_as_go_marshals};
use super::pem;
use crate::template::bytes::to_bytes;

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("pkcs12key", |a| {
            want(a, "pkcs12key", 1, 1)?;
            key(&a[0], "", "pkcs12key")
        }),
        ("pkcs12keyPass", |a| {
            want(a, "pkcs12keyPass", 2, 2)?;
            key(&a[1], strv(&a[0], "pkcs12keyPass")?, "pkcs12keyPass")
        }),
        ("pkcs12cert", |a| {
            want(a, "pkcs12cert", 1, 1)?;
            cert(&a[0], "", "pkcs12cert")
        }),
        ("pkcs12certPass", |a| {
            want(a, "pkcs12certPass", 2, 2)?;
            cert(&a[1], strv(&a[0], "pkcs12certPass")?, "pkcs12certPass")
        }),
        ("pemToPkcs12", |a| {
            want(a, "pemToPkcs12", 2, 2)?;
            from_pem(a, "", false, "pemToPkcs12")
        }),
        ("pemToPkcs12Pass", |a| {
            want(a, "pemToPkcs12Pass", 3, 3)?;
            from_pem(a, strv(&a[2], "pemToPkcs12Pass")?, false, "pemToPkcs12Pass")
        }),
        ("fullPemToPkcs12", |a| {
            want(a, "fullPemToPkcs12", 2, 2)?;
            from_pem(a, "", true, "fullPemToPkcs12")
        }),
        ("fullPemToPkcs12Pass", |a| {
            want(a, "fullPemToPkcs12Pass", 3, 3)?;
            let pass = strv(&a[2], "fullPemToPkcs12Pass")?;
            from_pem(a, pass, true, "fullPemToPkcs12Pass")
        }),
        ("pemTruststoreToPKCS12", |a| {
            want(a, "pemTruststoreToPKCS12", 1, 1)?;
            truststore(&a[0], "", "pemTruststoreToPKCS12")
        }),
        ("pemTruststoreToPKCS12Pass", |a| {
            want(a, "pemTruststoreToPKCS12Pass", 2, 2)?;
            let pass = strv(&a[1], "pemTruststoreToPKCS12Pass")?;
            truststore(&a[0], pass, "pemTruststoreToPKCS12Pass")
        }),
    ]
}

/// What `DecodeChain` finds: the one private key (PKCS#8 DER) and the certificates,
/// the first certificate bag first.
pub(crate) fn decode_chain(pfx: &[u8], pass: &str) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    let archive = Pkcs12Archive::from_pkcs12(pfx, pass).map_err(|e| format!("pkcs12: {e}"))?;
    if archive.keys.len() > 1 {
        return Err("pkcs12: expected exactly one key bag".into());
    }
    let certs: Vec<Vec<u8>> = archive
        .certs
        .iter()
        .map(|c| c.cert.as_der().to_vec())
        .collect();
    if certs.is_empty() {
        return Err("pkcs12: certificate missing".into());
    }
    let key = archive
        .keys
        .first()
        .ok_or("pkcs12: private key missing")?
        .key
        .as_der()
        .to_vec();
    Ok((key, certs))
}

/// `pkcs12keyPass`: the private key as PEM `PRIVATE KEY`, re-encoded as Go's
/// `x509.MarshalPKCS8PrivateKey` writes it.
pub(crate) fn key_pem(pfx: &[u8], pass: &str) -> Result<String, String> {
    let (key, _) = decode_chain(pfx, pass)
        .map_err(|e| format!("unable to decode pkcs12 with password: {e}"))?;
    Ok(pem::encode_der("PRIVATE KEY", &pkcs8_as_go_marshals(&key)?))
}

/// `pkcs12certPass`: the certificates as PEM, ordered leaf → root when they form one
/// chain, else in keystore order (as ESO does).
pub(crate) fn cert_pem(pfx: &[u8], pass: &str) -> Result<String, String> {
    let (_, certs) = decode_chain(pfx, pass)
        .map_err(|e| format!("unable to decode pkcs12 certificate with password: {e}"))?;
    Ok(pem::ordered_chain(&certs).unwrap_or_else(|_| {
        certs
            .iter()
            .map(|c| pem::encode_der("CERTIFICATE", c))
            .collect()
    }))
}

fn key(input: &Value, pass: &str, name: &str) -> R {
    let pfx = to_bytes(strv(input, name)?);
    key_pem(&pfx, pass)
        .map(s)
        .map_err(|e| exec(format!("{name}: {e}")))
}

fn cert(input: &Value, pass: &str, name: &str) -> R {
    let pfx = to_bytes(strv(input, name)?);
    cert_pem(&pfx, pass)
        .map(s)
        .map_err(|e| exec(format!("{name}: {e}")))
}

/// `pemToPkcs12 CERT KEY` / `fullPemToPkcs12 CERT KEY`: the first certificate of CERT
/// with KEY (and, for `full`, the rest of CERT as CA certificates), base64 of the PFX.
fn from_pem(a: &[Value], pass: &str, full: bool, name: &str) -> R {
    let certs = strv(&a[0], name)?;
    let key = strv(&a[1], name)?;
    keystore_from_pem(certs, key, pass, full)
        .map(|pfx| s(B64.encode(pfx)))
        .map_err(|e| exec(format!("{name}: {e}")))
}

pub(crate) fn keystore_from_pem(
    certs: &str,
    key: &str,
    pass: &str,
    full: bool,
) -> Result<Vec<u8>, String> {
    let (_, leaf, rest) =
        pem::decode_one(certs).ok_or("no PEM certificate found in the certificate input")?;
    let mut chain = vec![certificate(&leaf)?];
    if full {
        chain.extend(ca_certs(rest)?);
    }
    let (_, key_der, _) =
        pem::decode_one(key).ok_or("no PEM private key found in the key input")?;
    let key = PrivateKey::from_der(&parse_private_key(&key_der)?)
        .map_err(|_| "unable to parse private key type".to_string())?;
    let local_key_id = sha1::Sha1::digest(&leaf).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        "1",
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, chain)),
    );
    write(&store, pass)
}

fn truststore(input: &Value, pass: &str, name: &str) -> R {
    truststore_from_pem(strv(input, name)?, pass)
        .map(|pfx| s(B64.encode(pfx)))
        .map_err(|e| exec(format!("{name}: {e}")))
}

pub(crate) fn truststore_from_pem(certs: &str, pass: &str) -> Result<Vec<u8>, String> {
    let mut store = KeyStore::new();
    for (i, c) in ca_certs(certs)?.into_iter().enumerate() {
        // Aliases order the entries; the subject names them, as go-pkcs12 does.
        let alias = format!("{i:06} {}", c.subject());
        store.add_entry(&alias, KeyStoreEntry::Certificate(c));
    }
    write(&store, pass)
}

fn write(store: &KeyStore, pass: &str) -> Result<Vec<u8>, String> {
    store
        .writer(pass)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(2048)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(2048)
        .write()
        .map_err(|e| format!("pkcs12: {e}"))
}

fn certificate(der: &[u8]) -> Result<Certificate, String> {
    Certificate::from_der(der).map_err(|_| "a PEM block is not an X.509 certificate".to_string())
}

/// ESO's `parseCaCerts`: every PEM block is a certificate; text after the last one
/// other than whitespace is an error.
fn ca_certs(mut rest: &str) -> Result<Vec<Certificate>, String> {
    let mut out = Vec::new();
    while !rest.trim().is_empty() {
        let (_, der, after) =
            pem::decode_one(rest).ok_or("text after the certificates is not PEM")?;
        out.push(certificate(&der)?);
        rest = after;
    }
    Ok(out)
}
