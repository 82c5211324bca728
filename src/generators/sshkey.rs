//! The SSHKey generator (ESO's): `privateKey` in OpenSSH's format and `publicKey` as an
//! authorized_keys line, both carrying `comment`. Keys come from the `ssh-key` crate, drawn
//! from the operating system's random source.

use std::collections::BTreeMap;

use getrandom::SysRng;
use getrandom::rand_core::UnwrapErr;
use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData, RsaKeypair};
use ssh_key::{EcdsaCurve, LineEnding, PrivateKey};

use crate::api::generators::{SSHKeySpec, SshKeyType};

const DEFAULT_RSA_BITS: u32 = 2048;
/// Shorter RSA keys are refused by the key library and by OpenSSH itself.
pub const MIN_RSA_BITS: u32 = 2048;
pub const MAX_RSA_BITS: u32 = 8192;

/// What to generate, after ESO's defaults: RSA 2048; ECDSA by size (256, 384, 521; any other
/// size P-256).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Rsa(u32),
    Ecdsa(EcdsaCurve),
    Ed25519,
}

/// The plan, or why the spec cannot be met (naming its field under `at`).
pub fn plan(spec: &SSHKeySpec, at: &str) -> Result<Plan, String> {
    match spec.key_type.unwrap_or_default() {
        SshKeyType::Rsa => {
            let bits = spec.key_size.unwrap_or(DEFAULT_RSA_BITS);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(format!(
                    "{at}.keySize: an RSA key of {bits} bits; give {MIN_RSA_BITS} to {MAX_RSA_BITS}"
                ));
            }
            Ok(Plan::Rsa(bits))
        }
        SshKeyType::Ecdsa => Ok(Plan::Ecdsa(match spec.key_size {
            Some(384) => EcdsaCurve::NistP384,
            Some(521) => EcdsaCurve::NistP521,
            _ => EcdsaCurve::NistP256,
        })),
        SshKeyType::Ed25519 => Ok(Plan::Ed25519),
    }
}

/// A new key pair. RSA keys take a while: call this off the async runtime.
pub fn generate(plan: &Plan, comment: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut rng = UnwrapErr(SysRng);
    let data = match plan {
        Plan::Rsa(bits) => RsaKeypair::random(&mut rng, *bits as usize).map(KeypairData::from),
        Plan::Ecdsa(curve) => EcdsaKeypair::random(&mut rng, *curve).map(KeypairData::from),
        Plan::Ed25519 => Ok(KeypairData::from(Ed25519Keypair::random(&mut rng))),
    }
    .map_err(|e| format!("could not generate the SSH key: {e}"))?;
    let key = PrivateKey::new(data, comment).map_err(|e| format!("SSH key: {e}"))?;
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| format!("SSH key encoding: {e}"))?;
    let mut public = key
        .public_key()
        .to_openssh()
        .map_err(|e| format!("SSH public key encoding: {e}"))?;
    public.push('\n');
    Ok(BTreeMap::from([
        ("privateKey".to_string(), private.as_bytes().to_vec()),
        ("publicKey".to_string(), public.into_bytes()),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> SSHKeySpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn plans_follow_esos_defaults() {
        for (v, want) in [
            (serde_json::json!({}), Ok(Plan::Rsa(2048))),
            (serde_json::json!({"keySize": 4096}), Ok(Plan::Rsa(4096))),
            (
                serde_json::json!({"keyType": "ecdsa"}),
                Ok(Plan::Ecdsa(EcdsaCurve::NistP256)),
            ),
            (
                serde_json::json!({"keyType": "ecdsa", "keySize": 384}),
                Ok(Plan::Ecdsa(EcdsaCurve::NistP384)),
            ),
            (
                serde_json::json!({"keyType": "ecdsa", "keySize": 521}),
                Ok(Plan::Ecdsa(EcdsaCurve::NistP521)),
            ),
            (
                serde_json::json!({"keyType": "ed25519", "keySize": 999}),
                Ok(Plan::Ed25519),
            ),
            (
                serde_json::json!({"keySize": 1024}),
                Err("spec.keySize: an RSA key of 1024 bits; give 2048 to 8192".to_string()),
            ),
        ] {
            assert_eq!(plan(&spec(v.clone()), "spec"), want, "{v}");
        }
    }

    #[test]
    fn keys_parse_back_and_carry_the_comment() {
        for (p, prefix) in [
            (Plan::Ed25519, "ssh-ed25519 "),
            (Plan::Ecdsa(EcdsaCurve::NistP256), "ecdsa-sha2-nistp256 "),
            (Plan::Ecdsa(EcdsaCurve::NistP521), "ecdsa-sha2-nistp521 "),
            (Plan::Rsa(2048), "ssh-rsa "),
        ] {
            let out = generate(&p, "me@example").unwrap();
            let private = std::str::from_utf8(&out["privateKey"]).unwrap();
            let public = std::str::from_utf8(&out["publicKey"]).unwrap();
            assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
            assert!(public.starts_with(prefix), "{public}");
            assert!(public.ends_with(" me@example\n"), "{public}");
            let parsed = PrivateKey::from_openssh(private).unwrap();
            assert_eq!(parsed.comment().as_bytes(), b"me@example");
            assert_eq!(
                parsed.public_key().to_openssh().unwrap() + "\n",
                public,
                "the halves belong together"
            );
            let again = generate(&p, "").unwrap();
            assert_ne!(again["publicKey"], out["publicKey"]);
            assert!(
                !std::str::from_utf8(&again["publicKey"])
                    .unwrap()
                    .contains("  ")
            );
        }
    }
}
