//! Fixtures shared by the unit tests: one agent, one task, keys and a JWS forger.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::claims::{Confirmation, TaskClaims};
use crate::grant::TaskGrant;
use crate::jwk::PublicJwk;
use crate::jws;

/// RFC 9449's example thumbprint, used where any well-formed jkt will do.
pub(crate) const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
pub(crate) const ISS: &str = "https://mandate.example";
pub(crate) const AUD: &str = "https://gateway.example";

pub(crate) fn grant() -> TaskGrant {
    serde_json::from_value(json!({
        "type": "agent_task",
        "purpose": "triage new issues",
        "tools": ["github.list_issues", "github.add_label"],
        "data_domains": ["github"],
        "ttl_seconds": 600,
        "max_calls": 50,
        "capabilities": ["read", "act", "delegate"]
    }))
    .expect("valid grant")
}

/// Claims issued at `now`, valid for 600 s, bound to [`JKT`].
pub(crate) fn claims(now: i64) -> TaskClaims {
    TaskClaims {
        iss: ISS.into(),
        sub: "spiffe://example.org/agent/triage"
            .parse()
            .expect("spiffe id"),
        aud: AUD.into(),
        iat: now,
        nbf: now,
        exp: now + 600,
        jti: format!("tok-{now}"),
        task_id: "task-1".into(),
        authorization_details: vec![grant()],
        cnf: Some(Confirmation::Jkt(JKT.into())),
        act: None,
        task_chain: Vec::new(),
    }
}

/// A JWS with any header and payload, signed by `sign` over the signing input.
pub(crate) fn forge(header: &Value, payload: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        jws::b64(header.to_string().as_bytes()),
        jws::b64(payload.to_string().as_bytes())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", jws::b64(&signature))
}

/// An agent's proof-of-possession key, in the forms the tests need.
pub(crate) struct AgentKey {
    pub(crate) alg: Algorithm,
    pub(crate) encoding: EncodingKey,
    pub(crate) jwk: PublicJwk,
    pkcs8: Vec<u8>,
}

impl AgentKey {
    pub(crate) fn es256() -> AgentKey {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("p256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("p256 key");
        let point = pair.public_key().as_ref();
        AgentKey {
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: PublicJwk::Ec {
                crv: "P-256".into(),
                x: jws::b64(&point[1..33]),
                y: jws::b64(&point[33..65]),
            },
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    pub(crate) fn ed25519() -> AgentKey {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed25519 key");
        AgentKey {
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: PublicJwk::Okp {
                crv: "Ed25519".into(),
                x: jws::b64(pair.public_key().as_ref()),
            },
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    pub(crate) fn jkt(&self) -> String {
        self.jwk.thumbprint()
    }

    /// Signs raw bytes with this key (for forged headers).
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self.alg {
            Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8(&self.pkcs8)
                .expect("key")
                .sign(message)
                .as_ref()
                .to_vec(),
            _ => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.pkcs8)
                .expect("key")
                .sign(&SystemRandom::new(), message)
                .expect("sign")
                .as_ref()
                .to_vec(),
        }
    }
}
