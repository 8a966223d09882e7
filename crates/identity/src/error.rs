//! What can go wrong reading a bundle, verifying an SVID or issuing one.
//!
//! Every refusal is its own variant, so the server maps each to a status and an
//! audit reason without parsing text, and every message quotes the value at
//! fault: an agent that is turned away learns exactly why.

/// A bundle, an SVID, a key or a certificate request that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    // --- names, PEM, DER ---
    /// A trust domain name breaks the SPIFFE ID rules.
    #[error("{name:?} is not a trust domain name: {reason}")]
    BadTrustDomain {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// PEM text cannot be read, or holds nothing of the kind expected.
    #[error("the PEM for {what} cannot be read: {reason}")]
    BadPem {
        /// What the PEM was meant to hold (`certificate chain`, `private key`, ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// DER bytes are not an X.509 certificate.
    #[error("certificate cannot be parsed: {reason}")]
    BadCertificate {
        /// The parser's complaint.
        reason: String,
    },
    /// A key cannot be used for what it was given for.
    #[error("{what} is not usable: {reason}")]
    BadKey {
        /// Which key (`private key`, `public key`, ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    // --- bundles ---
    /// A bundle document is not a SPIFFE bundle (not JSON, no `keys`, ...).
    #[error("the SPIFFE bundle for {trust_domain} is malformed: {reason}")]
    BadBundle {
        /// The trust domain the bundle was read for.
        trust_domain: String,
        /// What is wrong with it.
        reason: String,
    },
    /// One entry of a bundle's `keys` is malformed.
    #[error("the SPIFFE bundle for {trust_domain} has a malformed keys[{index}]: {reason}")]
    BadBundleEntry {
        /// The trust domain the bundle was read for.
        trust_domain: String,
        /// The entry's index in `keys`.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A JWT authority is not a usable public JWK.
    #[error("JWT authority {kid:?} is not a usable public JWK: {reason}")]
    BadJwtAuthority {
        /// Its key ID.
        kid: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No bundle is known for the trust domain an SVID claims.
    #[error("no trust bundle is configured for trust domain {trust_domain}")]
    UnknownTrustDomain {
        /// The SVID's trust domain.
        trust_domain: String,
    },

    // --- X.509-SVID ---
    /// The peer presented no certificate.
    #[error("no certificate was presented")]
    EmptyChain,
    /// The leaf carries no URI SAN.
    #[error("certificate has no SPIFFE ID (no URI SAN)")]
    NoSpiffeId,
    /// The leaf carries more than one URI SAN.
    #[error("certificate has {} URI SANs {uris:?}; an X.509-SVID has exactly one", uris.len())]
    MultipleUriSans {
        /// All of them.
        uris: Vec<String>,
    },
    /// The leaf's URI SAN is not a SPIFFE ID with a path.
    #[error("certificate URI SAN {uri:?} is not a SPIFFE ID: {reason}")]
    BadSpiffeIdInCertificate {
        /// The URI SAN.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The leaf is a CA certificate.
    #[error(
        "the leaf certificate {subject:?} is a CA (basicConstraints CA:TRUE); an X.509-SVID leaf must not be"
    )]
    LeafIsCa {
        /// The leaf's subject.
        subject: String,
    },
    /// The leaf's key usage breaks the X.509-SVID rules.
    #[error("the leaf certificate for {spiffe_id} {problem}")]
    BadLeafKeyUsage {
        /// The leaf's SPIFFE ID.
        spiffe_id: String,
        /// What is wrong (`has no keyUsage extension`, `has keyCertSign set`, ...).
        problem: &'static str,
    },
    /// The leaf is past its notAfter.
    #[error("X.509-SVID expired at {not_after}")]
    SvidExpired {
        /// Its notAfter, RFC 3339.
        not_after: String,
    },
    /// The leaf is before its notBefore.
    #[error("X.509-SVID is not valid before {not_before}")]
    SvidNotYetValid {
        /// Its notBefore, RFC 3339.
        not_before: String,
    },
    /// The chain does not verify to an X.509 authority of the SVID's trust domain.
    #[error(
        "certificate chain does not lead to a trust anchor of trust domain {trust_domain}: {reason}"
    )]
    UntrustedChain {
        /// The SVID's trust domain.
        trust_domain: String,
        /// Why path building failed, as rustls-webpki reports it.
        reason: String,
    },

    // --- JWT-SVID ---
    /// The token is not a compact JWS with a JSON header and payload.
    #[error("JWT-SVID is malformed: {reason}")]
    MalformedJwt {
        /// What is wrong with it.
        reason: String,
    },
    /// The header's `alg` is not one the JWT-SVID specification allows.
    #[error(
        "JWT-SVID algorithm {alg:?} is refused (allowed: RS256, RS384, RS512, ES256, ES384, PS256, PS384, PS512)"
    )]
    JwtAlgorithmRefused {
        /// The header's `alg`.
        alg: String,
    },
    /// The header has no `kid`.
    #[error("JWT-SVID header has no kid")]
    JwtMissingKid,
    /// The header's `typ` is neither `JWT` nor `JOSE`.
    #[error("JWT-SVID typ {typ:?} is neither \"JWT\" nor \"JOSE\"")]
    JwtBadType {
        /// The header's `typ`.
        typ: String,
    },
    /// The header marks extensions critical; none are understood.
    #[error("JWT-SVID header marks {names:?} critical; no critical extension is understood")]
    JwtCritical {
        /// The `crit` names.
        names: Vec<String>,
    },
    /// A required claim is absent or of the wrong JSON type.
    #[error("JWT-SVID claim {claim} is {problem}")]
    JwtBadClaim {
        /// The claim (`sub`, `aud`, `exp`, `nbf`).
        claim: &'static str,
        /// `missing`, `not a string`, ...
        problem: &'static str,
    },
    /// `sub` is not a SPIFFE ID with a path.
    #[error("JWT-SVID sub {sub:?} is not a SPIFFE ID: {reason}")]
    JwtBadSubject {
        /// The `sub` claim.
        sub: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The trust domain's bundle has no JWT authority with the token's `kid`.
    #[error("JWT-SVID kid {kid:?} is not a JWT authority of trust domain {trust_domain}")]
    JwtUnknownKid {
        /// The header's `kid`.
        kid: String,
        /// The trust domain of `sub`.
        trust_domain: String,
    },
    /// The `alg` does not fit the JWT authority's key type or curve.
    #[error("JWT-SVID algorithm {alg} does not fit JWT authority {kid:?}, a {key} key")]
    JwtKeyMismatch {
        /// The header's `alg`.
        alg: String,
        /// The header's `kid`.
        kid: String,
        /// The authority's key (`EC P-256`, `RSA 2048-bit`).
        key: String,
    },
    /// The signature does not verify.
    #[error(
        "JWT-SVID signature does not verify with JWT authority {kid:?} of trust domain {trust_domain}"
    )]
    JwtBadSignature {
        /// The header's `kid`.
        kid: String,
        /// The trust domain of `sub`.
        trust_domain: String,
    },
    /// `aud` does not name this audience.
    #[error("JWT-SVID audience {audience:?} does not include {expected:?}")]
    JwtAudienceMismatch {
        /// The token's audience.
        audience: Vec<String>,
        /// The audience required.
        expected: String,
    },
    /// `exp` is not after now.
    #[error("JWT-SVID expired at {exp}")]
    JwtExpired {
        /// Its `exp`, RFC 3339.
        exp: String,
    },
    /// `nbf` is in the future.
    #[error("JWT-SVID is not valid before {nbf}")]
    JwtNotYetValid {
        /// Its `nbf`, RFC 3339.
        nbf: String,
    },

    // --- built-in CA ---
    /// A certificate cannot serve as the built-in CA.
    #[error("the CA certificate is not usable: {reason}")]
    BadCaCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// An SVID was requested for another trust domain.
    #[error("{id} is not in trust domain {trust_domain} of this CA")]
    ForeignTrustDomain {
        /// The requested SPIFFE ID.
        id: String,
        /// The CA's trust domain.
        trust_domain: String,
    },
    /// The CA is past its notAfter at the requested time.
    #[error("the CA certificate expired at {not_after}; it cannot issue")]
    CaExpired {
        /// Its notAfter, RFC 3339.
        not_after: String,
    },
    /// A validity of zero was requested.
    #[error("{what} must be at least 1, not 0")]
    ZeroValidity {
        /// `ttl_seconds` or `validity_days`.
        what: &'static str,
    },
    /// A DNS name cannot go into a certificate.
    #[error("{name:?} cannot be a DNS name in a certificate: {reason}")]
    BadDnsName {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Building or signing a certificate failed.
    #[error("certificate generation failed: {reason}")]
    Generation {
        /// rcgen's complaint.
        reason: String,
    },
}
