//! sprig's certificate functions: `genCA`, `genSelfSignedCert`, `genSignedCert` (each also
//! `…WithKey`, taking a PEM key) and `buildCustomCert`. A certificate is a dict with `Cert`
//! and `Key` (PEM), as sprig's struct is read in templates (`$ca.Cert`). Certificates are
//! made by `rcgen` from sprig's template: the common name, IP and DNS names, valid from now
//! for the given days, key encipherment and digital signature (and certificate signing for a
//! CA), server and client auth, a random 128-bit serial; generated keys are 2048-bit RSA.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gotmpl::Value;
use p256::pkcs8::DecodePrivateKey as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rsa::pkcs1::DecodeRsaPrivateKey as _;

use super::args::{Plain, R, exec, int, list, map, s, strv, want};
use super::keygen::Generated;
use super::pem::decode_one;

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("genCA", |a| {
            want(a, "genCA", 2, 2)?;
            let key = Generated::rsa(2048)
                .map_err(|e| fail("genCA", format!("error generating rsa key: {e}")))?;
            ca(a, "genCA", key)
        }),
        ("genCAWithKey", |a| {
            want(a, "genCAWithKey", 3, 3)?;
            let key = parsed(&a[2], "genCAWithKey")?;
            ca(a, "genCAWithKey", key)
        }),
        ("genSelfSignedCert", |a| {
            want(a, "genSelfSignedCert", 4, 4)?;
            let key = Generated::rsa(2048).map_err(|e| {
                fail(
                    "genSelfSignedCert",
                    format!("error generating rsa key: {e}"),
                )
            })?;
            leaf(a, "genSelfSignedCert", key, None)
        }),
        ("genSelfSignedCertWithKey", |a| {
            want(a, "genSelfSignedCertWithKey", 5, 5)?;
            let key = parsed(&a[4], "genSelfSignedCertWithKey")?;
            leaf(a, "genSelfSignedCertWithKey", key, None)
        }),
        ("genSignedCert", |a| {
            want(a, "genSignedCert", 5, 5)?;
            let key = Generated::rsa(2048)
                .map_err(|e| fail("genSignedCert", format!("error generating rsa key: {e}")))?;
            leaf(a, "genSignedCert", key, Some(&a[4]))
        }),
        ("genSignedCertWithKey", |a| {
            want(a, "genSignedCertWithKey", 6, 6)?;
            let key = parsed(&a[5], "genSignedCertWithKey")?;
            leaf(a, "genSignedCertWithKey", key, Some(&a[4]))
        }),
        ("buildCustomCert", build_custom),
    ]
}

fn fail(name: &str, msg: String) -> gotmpl::TemplateError {
    exec(format!("{name}: {msg}"))
}

fn parsed(v: &Value, name: &str) -> gotmpl::Result<Generated> {
    parse_key_pem(strv(v, name)?).map_err(|e| fail(name, format!("parsing private key: {e}")))
}

/// sprig's `parsePrivateKeyPEM`, with its messages.
fn parse_key_pem(text: &str) -> Result<Generated, String> {
    let (kind, der, _) = decode_one(text).ok_or("no PEM data in input")?;
    match kind.as_str() {
        "PRIVATE KEY" => {
            if let Ok(k) = rsa::PrivateKey::from_pkcs8_der(&der) {
                Ok(Generated::Rsa(Box::new(k)))
            } else if let Ok(k) = p256::SecretKey::from_pkcs8_der(&der) {
                Ok(Generated::P256(k))
            } else if KeyPair::try_from(der.as_slice()).is_ok() {
                Ok(Generated::Pkcs8(der))
            } else {
                Err("decoding PEM as PKCS#8: the key is malformed or of an unsupported type".into())
            }
        }
        "RSA PRIVATE KEY" => rsa::PrivateKey::from_pkcs1_der(&der)
            .map(|k| Generated::Rsa(Box::new(k)))
            .map_err(|e| format!("parsing RSA private key from PEM: {e}")),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
            .map(Generated::P256)
            .map_err(|e| format!("parsing EC private key from PEM (P-256 only): {e}")),
        "DSA PRIVATE KEY" => Err("DSA keys are not supported".into()),
        k if k.ends_with(" PRIVATE KEY") => Err(format!("invalid private key type {k}")),
        k => Err(format!("no private key data in PEM block of type {k}")),
    }
}

fn signing_key(key: &Generated) -> Result<KeyPair, String> {
    KeyPair::try_from(key.pkcs8()?.as_slice()).map_err(|e| e.to_string())
}

/// sprig's `getBaseCertTemplate`.
fn base_params(cn: &str, ips: &Value, dns: &Value, days: i64) -> Result<CertificateParams, String> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if !cn.is_empty() {
        dn.push(DnType::CommonName, cn);
    }
    p.distinguished_name = dn;
    for ip in strings(ips, "ip")? {
        let addr: IpAddr = ip.parse().map_err(|_| format!("error parsing ip: {ip}"))?;
        p.subject_alt_names.push(SanType::IpAddress(addr));
    }
    for name in strings(dns, "alternate dns name")? {
        let name = name
            .try_into()
            .map_err(|_| "error processing alternate dns name: not ASCII".to_string())?;
        p.subject_alt_names.push(SanType::DnsName(name));
    }
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now;
    p.not_after = now
        .checked_add(time::Duration::days(days))
        .ok_or("daysValid is out of range")?;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.is_ca = IsCa::ExplicitNoCa;
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// A list of strings (nil is none), as sprig's `getNetIPs` / `getAlternateDNSStrs`.
fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::List(l) => l
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.to_string()),
                other => Err(format!("error parsing {what}: {other} is not a string")),
            })
            .collect(),
        other => Err(format!(
            "error parsing {what}s: expected a list, got {}",
            other.type_name()
        )),
    }
}

fn cert_value(cert: String, key: String) -> Value {
    let m: BTreeMap<Arc<str>, Value> = [("Cert", s(cert)), ("Key", s(key))]
        .into_iter()
        .map(|(k, v)| (Arc::from(k), v))
        .collect();
    Value::Map(Arc::new(m))
}

fn ca(a: &[Value], name: &str, key: Generated) -> R {
    let cn = strv(&a[0], name)?;
    let days = int(&a[1], name)?;
    let make = || -> Result<Value, String> {
        let mut p = base_params(cn, &Value::Nil, &Value::Nil, days)?;
        p.key_usages.push(KeyUsagePurpose::KeyCertSign);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let kp = signing_key(&key)?;
        let cert = p
            .self_signed(&kp)
            .map_err(|e| format!("error creating certificate: {e}"))?;
        Ok(cert_value(cert.pem(), key.go_pem()?))
    };
    make().map_err(|e| fail(name, e))
}

/// A self-signed certificate, or one signed by `signer` (a dict with `Cert` and `Key`).
fn leaf(a: &[Value], name: &str, key: Generated, signer: Option<&Value>) -> R {
    let cn = strv(&a[0], name)?;
    let ips = list_or_nil(&a[1], name)?;
    let dns = list_or_nil(&a[2], name)?;
    let days = int(&a[3], name)?;
    let signer = signer.map(|v| map(v, name)).transpose()?;
    let make = || -> Result<Value, String> {
        let p = base_params(cn, ips, dns, days)?;
        let kp = signing_key(&key)?;
        let cert = match signer {
            None => p.self_signed(&kp),
            Some(ca) => {
                let field = |f: &str| match ca.get(f) {
                    Some(Value::String(v)) => Ok(v.to_string()),
                    _ => Err(format!("the signing certificate has no {f}")),
                };
                let ca_key = parse_key_pem(&field("Key")?)
                    .map_err(|e| format!("error parsing private key: {e}"))?;
                let ca_kp = signing_key(&ca_key)?;
                let issuer = Issuer::from_ca_cert_pem(&field("Cert")?, &ca_kp)
                    .map_err(|e| format!("error parsing certificate: {e}"))?;
                p.signed_by(&kp, &issuer)
            }
        }
        .map_err(|e| format!("error creating certificate: {e}"))?;
        Ok(cert_value(cert.pem(), key.go_pem()?))
    };
    make().map_err(|e| fail(name, e))
}

fn list_or_nil<'a>(v: &'a Value, name: &str) -> gotmpl::Result<&'a Value> {
    match v {
        Value::Nil => Ok(v),
        other => list(other, name).map(|_| other),
    }
}

/// sprig's `buildCustomCert`: a certificate and key given in base64, checked and returned.
fn build_custom(a: &[Value]) -> R {
    want(a, "buildCustomCert", 2, 2)?;
    let name = "buildCustomCert";
    let cert = B64
        .decode(strv(&a[0], name)?)
        .map_err(|_| fail(name, "unable to decode base64 certificate".into()))?;
    let key = B64
        .decode(strv(&a[1], name)?)
        .map_err(|_| fail(name, "unable to decode base64 private key".into()))?;
    let cert = String::from_utf8_lossy(&cert).into_owned();
    let key = String::from_utf8_lossy(&key).into_owned();
    let (_, der, _) =
        decode_one(&cert).ok_or_else(|| fail(name, "unable to decode certificate".into()))?;
    use x509_parser::prelude::FromDer as _;
    x509_parser::certificate::X509Certificate::from_der(&der).map_err(|e| {
        fail(
            name,
            format!("error parsing certificate: decodedCert.Bytes: {e}"),
        )
    })?;
    parse_key_pem(&key).map_err(|e| fail(name, format!("error parsing private key: {e}")))?;
    Ok(cert_value(cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer as _, X509Certificate};

    fn call(name: &str, args: &[Value]) -> R {
        let f = functions().into_iter().find(|(n, _)| *n == name).unwrap().1;
        f(args)
    }

    fn field(v: &Value, f: &str) -> String {
        let Value::Map(m) = v else {
            panic!("a certificate dict")
        };
        m[f].as_str().unwrap().to_string()
    }

    fn list_of(items: &[&str]) -> Value {
        Value::List(items.iter().map(|x| s(*x)).collect())
    }

    /// (common name, is CA, IPs, DNS names, issuer CN) of a PEM certificate.
    fn inspect(pem: &str) -> (String, bool, Vec<String>, Vec<String>, String) {
        let der = decode_one(pem).unwrap().1;
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        let cn = |n: &x509_parser::x509::X509Name| {
            n.iter_common_name()
                .next()
                .map(|a| a.as_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let mut ips = Vec::new();
        let mut dns = Vec::new();
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string())
                    }
                    x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
                    _ => {}
                }
            }
        }
        (cn(c.subject()), c.is_ca(), ips, dns, cn(c.issuer()))
    }

    #[test]
    fn sprig_certificate_cases() {
        // sprig's crypto_test.go: TestGenCA, TestGenSelfSignedCert, TestGenSignedCert,
        // TestBuildCustomCert.
        let ca = call("genCA", &[s("foo-ca"), Value::Int(365)]).unwrap();
        assert_eq!(
            inspect(&field(&ca, "Cert")),
            ("foo-ca".into(), true, vec![], vec![], "foo-ca".into())
        );
        assert!(field(&ca, "Key").starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));

        let ips = list_of(&["10.0.0.1", "10.0.0.2"]);
        let dns = list_of(&["bar.com", "bat.com"]);
        let want = |issuer: &str| {
            (
                "foo.com".to_string(),
                false,
                vec!["10.0.0.1".to_string(), "10.0.0.2".into()],
                vec!["bar.com".to_string(), "bat.com".into()],
                issuer.to_string(),
            )
        };
        let own = call(
            "genSelfSignedCert",
            &[s("foo.com"), ips.clone(), dns.clone(), Value::Int(365)],
        )
        .unwrap();
        assert_eq!(inspect(&field(&own, "Cert")), want("foo.com"));
        let signed = call(
            "genSignedCert",
            &[
                s("foo.com"),
                ips.clone(),
                dns.clone(),
                Value::Int(365),
                ca.clone(),
            ],
        )
        .unwrap();
        assert_eq!(inspect(&field(&signed, "Cert")), want("foo-ca"));

        let b64 = |t: String| s(B64.encode(t));
        let built = call(
            "buildCustomCert",
            &[b64(field(&ca, "Cert")), b64(field(&ca, "Key"))],
        )
        .unwrap();
        assert_eq!(field(&built, "Cert"), field(&ca, "Cert"));
        let err = call(
            "buildCustomCert",
            &[b64("fail".into()), b64(field(&ca, "Key"))],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unable to decode certificate"),
            "{err}"
        );
    }

    #[test]
    fn with_key_variants_keep_the_given_key() {
        let ec = Generated::ecdsa().unwrap().go_pem().unwrap();
        let ca = call("genCAWithKey", &[s("ec-ca"), Value::Int(1), s(ec.as_str())]).unwrap();
        assert_eq!(field(&ca, "Key"), ec);
        let leaf_key = Generated::ecdsa().unwrap().go_pem().unwrap();
        let leaf = call(
            "genSignedCertWithKey",
            &[
                s("svc"),
                Value::Nil,
                list_of(&["svc.local"]),
                Value::Int(1),
                ca,
                s(leaf_key.as_str()),
            ],
        )
        .unwrap();
        assert_eq!(field(&leaf, "Key"), leaf_key);
        assert_eq!(inspect(&field(&leaf, "Cert")).4, "ec-ca");
        let own = call(
            "genSelfSignedCertWithKey",
            &[
                s("me"),
                Value::Nil,
                Value::Nil,
                Value::Int(1),
                s(leaf_key.as_str()),
            ],
        )
        .unwrap();
        assert_eq!(inspect(&field(&own, "Cert")).0, "me");
        let errors = [
            (
                vec![s("x"), Value::Int(1), s("no pem here")],
                "no PEM data in input",
            ),
            (
                vec![
                    s("x"),
                    Value::Int(1),
                    s("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                ],
                "no private key data in PEM block of type CERTIFICATE",
            ),
        ];
        for (args, want) in errors {
            let err = call("genCAWithKey", &args).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = call(
            "genSelfSignedCertWithKey",
            &[
                s("x"),
                list_of(&["not-an-ip"]),
                Value::Nil,
                Value::Int(1),
                s(leaf_key.as_str()),
            ],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("error parsing ip: not-an-ip"),
            "{err}"
        );
    }
}
