//! Certificates for the webhook: a CA and a serving certificate signed by it.
//!
//! Used by `vaultgate certs` (development certificates) and by the self-managed certificate
//! mode of `vaultgate run`, which keeps them in a Secret and rotates them before expiry.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// A CA and a serving certificate, all PEM.
#[derive(Clone, Debug)]
pub struct CertBundle {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Lifetime of a generated CA: longer than the serving certificate so that rotating the serving
/// certificate does not change the caBundle clients trust.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Generates a new CA and a serving certificate for `names` (DNS names or IP addresses).
pub fn generate(names: &[String], validity: Duration) -> anyhow::Result<CertBundle> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vaultgate webhook CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let (nb, na) = window(CA_VALIDITY.max(validity))?;
    ca_params.not_before = nb;
    ca_params.not_after = na;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_cert_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let (cert_pem, key_pem) = sign_serving(&ca_cert_pem, &ca_key_pem, names, validity)?;
    Ok(CertBundle {
        ca_cert_pem,
        ca_key_pem,
        cert_pem,
        key_pem,
    })
}

/// Issues a new serving certificate from an existing CA (rotation keeps the CA).
pub fn sign_serving(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    validity: Duration,
) -> anyhow::Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key_pem).context("parsing the CA key")?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).context("parsing the CA certificate")?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    for name in names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                anyhow::ensure!(
                    is_dns_name(name),
                    "{name:?} is neither an IP address nor a DNS name"
                );
                SanType::DnsName(
                    name.clone()
                        .try_into()
                        .with_context(|| format!("DNS name {name:?}"))?,
                )
            }
        };
        params.subject_alt_names.push(san);
    }
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (nb, na) = window(validity)?;
    params.not_before = nb;
    params.not_after = na;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The `notAfter` of the first certificate in a PEM.
pub fn not_after(cert_pem: &str) -> anyhow::Result<SystemTime> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).context("reading PEM")?;
    let cert = pem.parse_x509().context("parsing the certificate")?;
    let secs = cert.validity().not_after.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600 for the key) into `dir`.
pub fn write_dir(bundle: &CertBundle, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("ca.crt"), &bundle.ca_cert_pem)?;
    std::fs::write(dir.join("tls.crt"), &bundle.cert_pem)?;
    let key_path = dir.join("tls.key");
    std::fs::write(&key_path, &bundle.key_pem)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// RFC 1123 host names (with an optional leading `*.` wildcard label).
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn window(validity: Duration) -> anyhow::Result<(OffsetDateTime, OffsetDateTime)> {
    // Back-date a little: clocks in a cluster are not perfectly in step.
    let now = OffsetDateTime::now_utc();
    let nb = now - time::Duration::minutes(5);
    let na = now + time::Duration::try_from(validity).context("validity too large")?;
    Ok((nb, na))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_certificate_is_signed_by_the_ca_and_carries_the_names() {
        let names = vec!["svc.ns.svc".to_string(), "127.0.0.1".to_string()];
        let b = generate(&names, Duration::from_secs(3600)).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(b.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let text = format!("{:?}", san.value.general_names);
        assert!(text.contains("svc.ns.svc"), "{text}");
        assert!(
            text.contains("127.0.0.1") || text.contains("[127, 0, 0, 1]"),
            "{text}"
        );
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(b.ca_cert_pem.as_bytes()).unwrap();
        let ca = ca_pem.parse_x509().unwrap();
        assert_eq!(cert.issuer(), ca.subject());
        cert.verify_signature(Some(ca.public_key())).unwrap();
        let left = not_after(&b.cert_pem)
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(
            left > Duration::from_secs(3500) && left <= Duration::from_secs(3600),
            "{left:?}"
        );
        assert!(not_after(&b.ca_cert_pem).unwrap() > not_after(&b.cert_pem).unwrap());
    }

    #[test]
    fn rotation_keeps_the_ca() {
        let b = generate(&["a.b.svc".into()], Duration::from_secs(60)).unwrap();
        let (cert, _key) = sign_serving(
            &b.ca_cert_pem,
            &b.ca_key_pem,
            &["a.b.svc".into()],
            Duration::from_secs(7200),
        )
        .unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(b.ca_cert_pem.as_bytes()).unwrap();
        pem.parse_x509()
            .unwrap()
            .verify_signature(Some(ca_pem.parse_x509().unwrap().public_key()))
            .unwrap();
    }

    #[test]
    fn bad_names_are_errors() {
        for bad in ["not a name!", "", "a..b", "-a.b", "a_b.svc"] {
            assert!(
                generate(&[bad.into()], Duration::from_secs(60)).is_err(),
                "{bad:?}"
            );
        }
        for good in ["*.ns.svc", "localhost", "::1", "a-b.c"] {
            assert!(
                generate(&[good.into()], Duration::from_secs(60)).is_ok(),
                "{good:?}"
            );
        }
    }
}
