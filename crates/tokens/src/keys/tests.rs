use serde_json::{Value, json};

use super::*;
use crate::testing::{AUD, AgentKey, ISS, claims, forge};

const NOW: i64 = 1_800_000_000;

fn keys() -> SigningKeys {
    SigningKeys::new(SigningKey::generate().unwrap(), 3_600)
}

fn payload() -> Value {
    serde_json::to_value(claims(NOW)).unwrap()
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&jws::unb64(h).unwrap()).unwrap()
}

#[test]
fn issues_a_token_that_verifies_back_to_the_same_claims() {
    let keys = keys();
    let token = keys.issue(&claims(NOW)).unwrap();
    assert_eq!(keys.verify(&token, NOW + 1, AUD, ISS).unwrap(), claims(NOW));
    assert_eq!(
        header_of(&token),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": keys.active_kid()})
    );
}

#[test]
fn jsonwebtoken_verifies_issued_tokens_with_the_published_jwk() {
    let keys = keys();
    let token = keys.issue(&claims(NOW)).unwrap();
    let jwks = serde_json::to_value(keys.jwks()).unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let jwk = set.find(keys.active_kid()).expect("published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[ISS]);
    let data = jsonwebtoken::decode::<TaskClaims>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(data.claims, claims(NOW));
}

#[test]
fn publishes_keys_as_an_okp_ed25519_jwk_set() {
    let keys = keys();
    let jwks = serde_json::to_value(keys.jwks()).unwrap();
    let x = match keys.active.public_jwk() {
        PublicJwk::Okp { x, .. } => x,
        other => panic!("not OKP: {other:?}"),
    };
    assert_eq!(
        jwks,
        json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": x,
            "kid": keys.active_kid(), "use": "sig", "alg": "EdDSA"
        }]})
    );
    assert_eq!(keys.active_kid(), keys.active.public_jwk().thumbprint());
}

#[test]
fn refuses_an_unsigned_token_with_alg_none() {
    let keys = keys();
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": keys.active_kid()});
    let token = forge(&header, &payload(), |_| Vec::new());
    assert_eq!(
        keys.verify(&token, NOW, AUD, ISS),
        Err(TokenError::UnsupportedAlgorithm { alg: "none".into() })
    );
}

#[test]
fn refuses_hs256_signed_with_the_public_key_as_secret() {
    let keys = keys();
    let secret = serde_json::to_vec(&keys.active.public_jwk()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(keys.active_kid().into());
    let token = jsonwebtoken::encode(
        &header,
        &claims(NOW),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let err = keys.verify(&token, NOW, AUD, ISS).unwrap_err();
    assert_eq!(
        err,
        TokenError::UnsupportedAlgorithm {
            alg: "HS256".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "task tokens are signed with EdDSA only, not \"HS256\""
    );
}

#[test]
fn refuses_an_es256_token_even_when_well_signed() {
    let keys = keys();
    let agent = AgentKey::es256();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": keys.active_kid()});
    let token = forge(&header, &payload(), |m| agent.sign(m));
    assert!(matches!(
        keys.verify(&token, NOW, AUD, ISS),
        Err(TokenError::UnsupportedAlgorithm { .. })
    ));
}

#[test]
fn refuses_a_token_whose_kid_is_unknown() {
    let other = keys();
    let token = other.issue(&claims(NOW)).unwrap();
    assert_eq!(
        keys().verify(&token, NOW, AUD, ISS),
        Err(TokenError::UnknownKid {
            kid: other.active_kid().into()
        })
    );
}

#[test]
fn refuses_a_token_signed_by_another_key_under_our_kid() {
    let keys = keys();
    let forger = SigningKey::generate().unwrap();
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": keys.active_kid()});
    let token = forge(&header, &payload(), |m| {
        forger.pair.sign(m).as_ref().to_vec()
    });
    assert_eq!(
        keys.verify(&token, NOW, AUD, ISS),
        Err(TokenError::BadSignature {
            kid: keys.active_kid().into()
        })
    );
}

#[test]
fn refuses_a_token_whose_claims_were_edited() {
    let keys = keys();
    let token = keys.issue(&claims(NOW)).unwrap();
    let mut wider = payload();
    wider["authorization_details"][0]["tools"]
        .as_array_mut()
        .unwrap()
        .push(json!("shell.exec"));
    let parts: Vec<&str> = token.split('.').collect();
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        jws::b64(wider.to_string().as_bytes()),
        parts[2]
    );
    assert!(matches!(
        keys.verify(&edited, NOW, AUD, ISS),
        Err(TokenError::BadSignature { .. })
    ));
}

#[test]
fn refuses_a_token_after_exp_and_before_nbf() {
    let keys = keys();
    let token = keys.issue(&claims(NOW)).unwrap();
    assert!(keys.verify(&token, NOW + 599, AUD, ISS).is_ok());
    assert_eq!(
        keys.verify(&token, NOW + 600, AUD, ISS),
        Err(TokenError::Expired {
            exp: NOW + 600,
            now: NOW + 600
        })
    );
    assert_eq!(
        keys.verify(&token, NOW - 1, AUD, ISS),
        Err(TokenError::NotYetValid {
            nbf: NOW,
            now: NOW - 1
        })
    );
}

#[test]
fn refuses_a_token_for_another_audience_or_from_another_issuer() {
    let keys = keys();
    let token = keys.issue(&claims(NOW)).unwrap();
    assert_eq!(
        keys.verify(&token, NOW, "https://other.example", ISS),
        Err(TokenError::WrongAudience {
            expected: "https://other.example".into(),
            found: AUD.into()
        })
    );
    assert!(matches!(
        keys.verify(&token, NOW, AUD, "https://evil.example"),
        Err(TokenError::WrongIssuer { .. })
    ));
}

#[test]
fn refuses_another_kind_of_jwt_presented_as_a_task_token() {
    let keys = keys();
    for typ in [json!("dpop+jwt"), json!("JWT"), Value::Null] {
        let mut header = json!({"alg": "EdDSA", "kid": keys.active_kid()});
        if !typ.is_null() {
            header["typ"] = typ;
        }
        let token = forge(&header, &payload(), |m| {
            keys.active.pair.sign(m).as_ref().to_vec()
        });
        assert!(matches!(
            keys.verify(&token, NOW, AUD, ISS),
            Err(TokenError::WrongTokenType { .. })
        ));
    }
}

#[test]
fn refuses_critical_extensions_and_a_missing_kid() {
    let keys = keys();
    let sign = |m: &[u8]| keys.active.pair.sign(m).as_ref().to_vec();
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": keys.active_kid(), "crit": ["b64"], "b64": false});
    assert!(matches!(
        keys.verify(&forge(&header, &payload(), sign), NOW, AUD, ISS),
        Err(TokenError::UnsupportedCritical { .. })
    ));
    let header = json!({"alg": "EdDSA", "typ": "at+jwt"});
    assert_eq!(
        keys.verify(&forge(&header, &payload(), sign), NOW, AUD, ISS),
        Err(TokenError::MissingKid)
    );
}

#[test]
fn refuses_malformed_tokens() {
    let keys = keys();
    for token in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.e30.x",
        "e30..x",
        &"a".repeat(20_000),
    ] {
        assert!(
            matches!(
                keys.verify(token, NOW, AUD, ISS),
                Err(TokenError::Malformed { .. })
            ),
            "{token:.20}"
        );
    }
}

#[test]
fn refuses_well_signed_claims_that_break_the_rules() {
    let keys = keys();
    let mut bad = payload();
    bad["authorization_details"] = json!([]);
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": keys.active_kid()});
    let token = forge(&header, &bad, |m| {
        keys.active.pair.sign(m).as_ref().to_vec()
    });
    assert_eq!(
        keys.verify(&token, NOW, AUD, ISS),
        Err(TokenError::GrantCount { count: 0 })
    );
}

#[test]
fn never_signs_invalid_claims() {
    let mut c = claims(NOW);
    c.authorization_details[0].tools.clear();
    assert_eq!(keys().issue(&c), Err(TokenError::NoTools));
}

#[test]
fn old_tokens_verify_during_the_overlap_and_not_after() {
    let mut keys = keys();
    let old_kid = keys.active_kid().to_owned();
    let old_token = keys.issue(&claims(NOW)).unwrap();
    keys.rotate(SigningKey::generate().unwrap(), NOW + 10)
        .unwrap();
    assert_ne!(keys.active_kid(), old_kid);
    assert_eq!(keys.retired_kids(), vec![old_kid.as_str()]);

    // New tokens carry the new kid; both verify.
    let new_token = keys.issue(&claims(NOW + 10)).unwrap();
    assert_eq!(header_of(&new_token)["kid"], json!(keys.active_kid()));
    assert!(keys.verify(&new_token, NOW + 20, AUD, ISS).is_ok());
    assert!(keys.verify(&old_token, NOW + 20, AUD, ISS).is_ok());
    assert_eq!(keys.jwks().keys.len(), 2);

    // Past the overlap the retired key no longer verifies, pruned or not.
    assert!(matches!(
        keys.verify(&old_token, NOW + 3_610, AUD, ISS),
        Err(TokenError::KeyRetired { .. })
    ));
    assert_eq!(keys.prune(NOW + 3_610), vec![old_kid.clone()]);
    assert_eq!(
        keys.verify(&old_token, NOW + 3_610, AUD, ISS),
        Err(TokenError::UnknownKid { kid: old_kid })
    );
    assert_eq!(keys.jwks().keys.len(), 1);
}

#[test]
fn refuses_to_rotate_to_a_key_already_in_the_set() {
    let mut keys = keys();
    let again = SigningKey::from_pkcs8(&keys.active.to_pkcs8().unwrap()).unwrap();
    assert!(matches!(
        keys.rotate(again, NOW),
        Err(TokenError::DuplicateKid { .. })
    ));
}

#[test]
fn pkcs8_export_and_import_keep_the_key_and_its_kid() {
    let key = SigningKey::generate().unwrap();
    let back = SigningKey::from_pkcs8(&key.to_pkcs8().unwrap()).unwrap();
    assert_eq!(back.kid(), key.kid());
    let v1 = key.pair.to_pkcs8v1().unwrap();
    assert_eq!(
        SigningKey::from_pkcs8(v1.as_ref()).unwrap().kid(),
        key.kid()
    );
    assert!(matches!(
        SigningKey::from_pkcs8(b"not a key"),
        Err(TokenError::BadPrivateKey { .. })
    ));
    assert!(
        !format!("{key:?}").contains("pair"),
        "Debug shows no key material"
    );
}

#[test]
fn a_retired_key_reloaded_after_restart_still_verifies() {
    let old = SigningKey::generate().unwrap();
    let token = SigningKeys::new(
        SigningKey::from_pkcs8(&old.to_pkcs8().unwrap()).unwrap(),
        60,
    )
    .issue(&claims(NOW))
    .unwrap();
    let mut keys = keys();
    keys.add_retired(&old, NOW).unwrap();
    assert!(keys.verify(&token, NOW + 30, AUD, ISS).is_ok());
}

#[test]
fn a_peer_nodes_key_verifies_until_its_overlap_ends_and_appears_in_the_jwks() {
    let other_node = keys();
    let token = other_node.issue(&claims(NOW)).unwrap();
    let mut here = keys();
    assert!(matches!(
        here.verify(&token, NOW + 1, AUD, ISS),
        Err(TokenError::UnknownKid { .. })
    ));
    let peer = (
        other_node.active_kid().to_owned(),
        other_node.active.public_jwk(),
        None,
    );
    here.set_peer_keys(std::slice::from_ref(&peer)).unwrap();
    assert_eq!(here.verify(&token, NOW + 1, AUD, ISS).unwrap(), claims(NOW));
    assert!(here.jwks().keys.iter().any(|k| k.kid == peer.0));
    // Retired an hour ago with a one-hour overlap: no longer.
    here.set_peer_keys(&[(peer.0.clone(), peer.1.clone(), Some(NOW - 3_600))])
        .unwrap();
    assert!(matches!(
        here.verify(&token, NOW + 1, AUD, ISS),
        Err(TokenError::KeyRetired { .. })
    ));
    // Another node cannot shadow this node's own key with a different one.
    let own = here.active_kid().to_owned();
    here.set_peer_keys(&[(own, peer.1.clone(), None)]).unwrap();
    let mine = here.issue(&claims(NOW)).unwrap();
    assert!(here.verify(&mine, NOW + 1, AUD, ISS).is_ok());
}
