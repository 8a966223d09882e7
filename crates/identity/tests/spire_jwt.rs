//! JWT-SVIDs signed by an independent toolchain (python `cryptography`) with
//! the JWT authorities of SPIRE's bundle, plus tokens built here with
//! jsonwebtoken and the same keys for the refusals the fixtures do not cover.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{EC_KID, FIXTURE_EXPIRY, NOW, RSA_KID, example_org, fixture, jwt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mandate_identity::{
    IdentityError, JWT_NBF_LEEWAY_SECONDS, TrustBundles, VerifiedJwtSvid, verify_jwt_svid,
};
use serde_json::{Value, json};

fn verify(token: &str) -> Result<VerifiedJwtSvid, IdentityError> {
    verify_jwt_svid(&example_org(), token, "mandate", NOW)
}

fn expected() -> VerifiedJwtSvid {
    VerifiedJwtSvid {
        spiffe_id: "spiffe://example.org/workload".parse().unwrap(),
        exp: FIXTURE_EXPIRY,
        audience: vec!["mandate".to_owned()],
    }
}

fn claims() -> Value {
    json!({
        "sub": "spiffe://example.org/workload",
        "aud": ["mandate"],
        "exp": FIXTURE_EXPIRY,
        "iat": NOW,
    })
}

/// A token signed here with a fixture key; `header` is adjusted by `edit`.
fn signed(
    alg: Algorithm,
    kid: Option<&str>,
    claims: &Value,
    edit: impl FnOnce(&mut Header),
) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(fixture("jwt-ec.key").as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(fixture("jwt-rsa.key").as_bytes()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.typ = Some("JWT".to_owned());
    header.kid = kid.map(str::to_owned);
    edit(&mut header);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn es256(claims: &Value) -> String {
    signed(Algorithm::ES256, Some(EC_KID), claims, |_| {})
}

/// A token with a hand-written header and no valid signature.
fn unsigned(header: &Value, claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.AAAA", part(header), part(claims))
}

#[test]
fn verifies_spire_es256_rs256_and_ps256_tokens() {
    for name in ["es256", "rs256", "ps256"] {
        assert_eq!(verify(&jwt(name)), Ok(expected()), "{name}");
    }
}

#[test]
fn verifies_every_rsa_algorithm_the_spec_allows() {
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let token = signed(alg, Some(RSA_KID), &claims(), |_| {});
        assert_eq!(verify(&token), Ok(expected()), "{alg:?}");
    }
}

#[test]
fn accepts_typ_jose_or_no_typ_and_a_single_string_audience() {
    let jose = signed(Algorithm::ES256, Some(EC_KID), &claims(), |h| {
        h.typ = Some("JOSE".to_owned())
    });
    assert_eq!(verify(&jose), Ok(expected()));
    let none = signed(Algorithm::ES256, Some(EC_KID), &claims(), |h| h.typ = None);
    assert_eq!(verify(&none), Ok(expected()));
    let mut one = claims();
    one["aud"] = json!("mandate");
    assert_eq!(verify(&es256(&one)), Ok(expected()));
}

#[test]
fn refuses_a_token_for_another_audience() {
    let err = verify(&jwt("aud-other")).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"JWT-SVID audience ["other"] does not include "mandate""#
    );
}

#[test]
fn refuses_an_expired_token() {
    let err = verify(&jwt("expired")).unwrap_err();
    assert_eq!(
        err,
        IdentityError::JwtExpired {
            exp: "2021-01-01T00:00:00Z".to_owned()
        }
    );
    assert_eq!(err.to_string(), "JWT-SVID expired at 2021-01-01T00:00:00Z");
}

#[test]
fn refuses_a_token_at_the_second_of_its_exp() {
    let token = jwt("es256");
    assert!(verify_jwt_svid(&example_org(), &token, "mandate", FIXTURE_EXPIRY - 1).is_ok());
    let err = verify_jwt_svid(&example_org(), &token, "mandate", FIXTURE_EXPIRY).unwrap_err();
    assert!(matches!(err, IdentityError::JwtExpired { .. }), "{err:?}");
}

#[test]
fn refuses_alg_none() {
    let err = verify(&jwt("alg-none")).unwrap_err();
    assert_eq!(
        err,
        IdentityError::JwtAlgorithmRefused {
            alg: "none".to_owned()
        }
    );
}

#[test]
fn refuses_hs256_keyed_with_the_rsa_public_key() {
    let err = verify(&jwt("hs256-rsa-pubkey")).unwrap_err();
    assert_eq!(
        err,
        IdentityError::JwtAlgorithmRefused {
            alg: "HS256".to_owned()
        }
    );
    assert!(
        err.to_string()
            .starts_with("JWT-SVID algorithm \"HS256\" is refused")
    );
}

#[test]
fn refuses_eddsa_es512_and_unknown_algorithms() {
    for alg in ["EdDSA", "ES512", "HS512", "RSA-OAEP", ""] {
        let token = unsigned(&json!({"alg": alg, "kid": EC_KID, "typ": "JWT"}), &claims());
        assert_eq!(
            verify(&token),
            Err(IdentityError::JwtAlgorithmRefused {
                alg: alg.to_owned()
            })
        );
    }
}

#[test]
fn refuses_an_unknown_kid() {
    let err = verify(&jwt("unknown-kid")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "JWT-SVID kid \"no-such-kid\" is not a JWT authority of trust domain example.org"
    );
}

#[test]
fn refuses_a_token_without_kid() {
    let token = signed(Algorithm::ES256, None, &claims(), |_| {});
    assert_eq!(verify(&token), Err(IdentityError::JwtMissingKid));
}

#[test]
fn refuses_a_typ_other_than_jwt_or_jose() {
    let token = signed(Algorithm::ES256, Some(EC_KID), &claims(), |h| {
        h.typ = Some("at+jwt".to_owned());
    });
    assert_eq!(
        verify(&token).unwrap_err().to_string(),
        r#"JWT-SVID typ "at+jwt" is neither "JWT" nor "JOSE""#
    );
}

#[test]
fn refuses_critical_header_extensions() {
    let token = unsigned(
        &json!({"alg": "ES256", "kid": EC_KID, "crit": ["exp-ext"]}),
        &claims(),
    );
    assert_eq!(
        verify(&token),
        Err(IdentityError::JwtCritical {
            names: vec!["exp-ext".to_owned()]
        })
    );
}

#[test]
fn refuses_a_key_of_the_wrong_type_for_alg() {
    let token = unsigned(&json!({"alg": "RS256", "kid": EC_KID}), &claims());
    assert_eq!(
        verify(&token).unwrap_err().to_string(),
        format!("JWT-SVID algorithm RS256 does not fit JWT authority \"{EC_KID}\", a EC P-256 key")
    );
    let token = unsigned(&json!({"alg": "ES256", "kid": RSA_KID}), &claims());
    assert_eq!(
        verify(&token).unwrap_err().to_string(),
        format!(
            "JWT-SVID algorithm ES256 does not fit JWT authority \"{RSA_KID}\", a RSA 2048-bit key"
        )
    );
}

#[test]
fn refuses_a_tampered_payload() {
    let token = jwt("es256");
    let parts: Vec<&str> = token.split('.').collect();
    let mut widened = claims();
    widened["sub"] = json!("spiffe://example.org/admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(widened.to_string()),
        parts[2]
    );
    assert_eq!(
        verify(&forged),
        Err(IdentityError::JwtBadSignature {
            kid: EC_KID.to_owned(),
            trust_domain: "example.org".to_owned()
        })
    );
}

#[test]
fn refuses_a_signature_by_another_key_under_a_trusted_kid() {
    let other = EncodingKey::from_ec_pem(fixture("workload.key").as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(EC_KID.to_owned());
    let token = jsonwebtoken::encode(&header, &claims(), &other).unwrap();
    assert!(matches!(
        verify(&token),
        Err(IdentityError::JwtBadSignature { .. })
    ));
}

#[test]
fn refuses_a_sub_that_is_not_a_spiffe_id() {
    let mut bad = claims();
    bad["sub"] = json!("workload");
    assert_eq!(
        verify(&es256(&bad)).unwrap_err().to_string(),
        r#"JWT-SVID sub "workload" is not a SPIFFE ID: the scheme must be "spiffe://""#
    );
    bad["sub"] = json!("spiffe://example.org");
    assert!(matches!(
        verify(&es256(&bad)),
        Err(IdentityError::JwtBadSubject { .. })
    ));
}

#[test]
fn refuses_a_sub_in_a_trust_domain_without_bundle() {
    let mut foreign = claims();
    foreign["sub"] = json!("spiffe://other.org/workload");
    assert_eq!(
        verify(&es256(&foreign)),
        Err(IdentityError::UnknownTrustDomain {
            trust_domain: "other.org".to_owned()
        })
    );
    // With no bundles at all, nothing verifies.
    let err = verify_jwt_svid(&TrustBundles::default(), &jwt("es256"), "mandate", NOW);
    assert!(matches!(err, Err(IdentityError::UnknownTrustDomain { .. })));
}

#[test]
fn refuses_missing_or_mistyped_claims() {
    for (claim, value, problem) in [
        ("sub", None, "missing"),
        ("sub", Some(json!(7)), "not a string"),
        ("aud", None, "missing"),
        ("aud", Some(json!(7)), "neither a string nor an array"),
        (
            "aud",
            Some(json!(["mandate", 7])),
            "an array with a non-string entry",
        ),
        ("exp", None, "missing"),
        ("exp", Some(json!("4733510400")), "not an integer"),
        ("nbf", Some(json!(1.5)), "not an integer"),
    ] {
        let mut c = claims();
        match value {
            Some(v) => c[claim] = v,
            None => {
                c.as_object_mut().unwrap().remove(claim);
            }
        }
        assert_eq!(
            verify(&es256(&c)).unwrap_err().to_string(),
            format!("JWT-SVID claim {claim} is {problem}"),
        );
    }
}

#[test]
fn refuses_an_empty_audience() {
    let mut c = claims();
    c["aud"] = json!([]);
    assert_eq!(
        verify(&es256(&c)).unwrap_err().to_string(),
        r#"JWT-SVID audience [] does not include "mandate""#
    );
}

#[test]
fn honours_nbf_with_a_small_leeway() {
    let mut c = claims();
    c["nbf"] = json!(NOW + JWT_NBF_LEEWAY_SECONDS);
    assert!(verify(&es256(&c)).is_ok());
    c["nbf"] = json!(NOW + JWT_NBF_LEEWAY_SECONDS + 1);
    assert!(matches!(
        verify(&es256(&c)),
        Err(IdentityError::JwtNotYetValid { .. })
    ));
}

#[test]
fn refuses_tokens_that_are_not_compact_jws() {
    for token in ["", "abc", "a.b", "a.b.c.d", "!!.e30.AAAA", "e30.e30.AAAA"] {
        let err = verify(token).unwrap_err();
        assert!(
            matches!(err, IdentityError::MalformedJwt { .. }),
            "{token}: {err:?}"
        );
    }
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": EC_KID}).to_string());
    for payload in ["!!", "W10"] {
        let err = verify(&format!("{header}.{payload}.AAAA")).unwrap_err();
        assert!(
            matches!(err, IdentityError::MalformedJwt { .. }),
            "{payload}: {err:?}"
        );
    }
    let huge = "a".repeat(17 * 1024);
    assert!(matches!(
        verify(&huge),
        Err(IdentityError::MalformedJwt { .. })
    ));
}
