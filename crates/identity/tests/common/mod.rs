//! Shared by the integration tests: the SPIRE fixtures of `fixtures/spire/`
//! (made by `gen.sh` with openssl and python, never by this crate) and the
//! instant the tests run at.

#![allow(dead_code, unreachable_pub)]

use mandate_identity::{SpiffeBundle, TrustBundles, certificates_from_pem};
use rustls_pki_types::CertificateDer;

/// 2033-05-18: after the fixtures' notBefore (2025) and JWT `iat`, long
/// before their notAfter and `exp` (2120).
pub const NOW: i64 = 2_000_000_000;

/// 2120-01-01T00:00:00Z, the fixtures' notAfter and `exp`.
pub const FIXTURE_EXPIRY: i64 = 4_733_510_400;

/// Key IDs of the JWT authorities in `bundle.json`.
pub const EC_KID: &str = "ec-p256-TqNrHmfF0kJ4Hn8e3sF5xC1Vw2uJ9yLd";
pub const RSA_KID: &str = "rsa-2048-Jb7xW2qLmV0cR9tK4hZ8nP3sD6fY1aGe";

/// The text of a fixture file.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/spire/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fixture PEM chain as DER.
pub fn chain(name: &str) -> Vec<CertificateDer<'static>> {
    certificates_from_pem(&fixture(name)).unwrap()
}

/// A JWT fixture, trimmed.
pub fn jwt(name: &str) -> String {
    fixture(&format!("jwt/{name}.jwt")).trim().to_owned()
}

/// SPIRE's bundle for example.org, from `bundle.json`.
pub fn spire_bundle() -> SpiffeBundle {
    SpiffeBundle::from_json("example.org", &fixture("bundle.json")).unwrap()
}

/// The trust bundles with only example.org.
pub fn example_org() -> TrustBundles {
    let mut bundles = TrustBundles::default();
    bundles.insert(spire_bundle());
    bundles
}
