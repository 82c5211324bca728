//! Bearer-token authentication: the admin token and service-account JWTs
//! (ES256, signed with a key generated at start), plus TokenReview answers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn admin() -> Self {
        User {
            username: "admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }
}

/// Fixed DER prefix of a P-256 SubjectPublicKeyInfo, followed by the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    pub kid: String,
    pub issuer: String,
    pub admin_token: String,
}

/// Claims of a verified service-account token.
#[derive(Debug, Clone)]
pub struct SaClaims {
    pub namespace: String,
    pub service_account: String,
    pub sa_uid: String,
    pub audiences: Vec<String>,
}

pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut b).expect("system randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn new_uid() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

impl Signer {
    pub fn new(issuer: String) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("generating the token signing key failed"))?;
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .map_err(|e| anyhow::anyhow!("loading the token signing key failed: {e}"))?;
        let kid = {
            let d = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
            B64URL.encode(&d.as_ref()[..16])
        };
        Ok(Signer {
            key,
            rng,
            kid,
            issuer,
            admin_token: random_hex(24),
        })
    }

    pub fn public_key_der(&self) -> Vec<u8> {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key.public_key().as_ref());
        der
    }

    pub fn public_key_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.public_key_der());
        let mut s = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
            s.push('\n');
        }
        s.push_str("-----END PUBLIC KEY-----\n");
        s
    }

    pub fn jwks(&self) -> Value {
        let pt = self.key.public_key().as_ref();
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": B64URL.encode(&pt[1..33]),
            "y": B64URL.encode(&pt[33..65]),
        }]})
    }

    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .expect("ECDSA signing does not fail with a valid key");
        format!("{input}.{}", B64URL.encode(sig.as_ref()))
    }

    /// A service-account token as TokenRequest issues it.
    pub fn issue(
        &self,
        ns: &str,
        sa: &str,
        sa_uid: &str,
        audiences: &[String],
        ttl_secs: i64,
    ) -> (String, i64) {
        let now = chrono::Utc::now().timestamp();
        let exp = now + ttl_secs;
        let aud: Vec<String> = if audiences.is_empty() {
            vec![self.issuer.clone()]
        } else {
            audiences.to_vec()
        };
        let claims = json!({
            "aud": aud,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "jti": new_uid(),
            "sub": format!("system:serviceaccount:{ns}:{sa}"),
            "kubernetes.io": {
                "namespace": ns,
                "serviceaccount": {"name": sa, "uid": sa_uid},
            },
        });
        (self.sign(&claims), exp)
    }

    /// Verify signature, issuer and expiry of a service-account JWT.
    pub fn verify(&self, token: &str) -> Result<SaClaims, String> {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err("invalid bearer token".into());
        }
        let header: Value = B64URL
            .decode(parts[0])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("invalid bearer token")?;
        if header["alg"] != json!("ES256") {
            return Err("invalid bearer token, token signed with an unsupported algorithm".into());
        }
        let sig = B64URL
            .decode(parts[2])
            .map_err(|_| "invalid bearer token")?;
        let pk = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        pk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .map_err(|_| {
                "invalid bearer token, square/go-jose: error in cryptographic primitive".to_string()
            })?;
        let claims: Value = B64URL
            .decode(parts[1])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("invalid bearer token")?;
        if claims["iss"] != json!(self.issuer) {
            return Err("invalid bearer token, token issuer not recognized".into());
        }
        let exp = claims["exp"].as_i64().unwrap_or(0);
        if exp <= chrono::Utc::now().timestamp() {
            return Err("invalid bearer token, service account token has expired".into());
        }
        let ns = claims["kubernetes.io"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let sa = claims["kubernetes.io"]["serviceaccount"]["name"]
            .as_str()
            .unwrap_or_default();
        let audiences = match &claims["aud"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            _ => vec![],
        };
        Ok(SaClaims {
            namespace: ns.into(),
            service_account: sa.into(),
            sa_uid: claims["kubernetes.io"]["serviceaccount"]["uid"]
                .as_str()
                .unwrap_or_default()
                .into(),
            audiences,
        })
    }

    /// The user a bearer token stands for (signature and expiry only; API audience checked).
    pub fn authenticate(&self, token: &str) -> Option<User> {
        if token == self.admin_token {
            return Some(User::admin());
        }
        let c = self.verify(token).ok()?;
        if !c.audiences.contains(&self.issuer) {
            return None;
        }
        Some(sa_user(&c))
    }
}

pub fn sa_user(c: &SaClaims) -> User {
    User {
        username: format!(
            "system:serviceaccount:{}:{}",
            c.namespace, c.service_account
        ),
        uid: c.sa_uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", c.namespace),
            "system:authenticated".into(),
        ],
    }
}
