//! The key-encryption key: the one key that seals every secret of a node, and
//! the AEAD that uses it.
//!
//! AES-256-GCM with a random 96-bit nonce per seal. The associated data is the
//! secret's name and version, so a ciphertext copied to another row, or an old
//! version put back in place of a newer one, does not open.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, MAX_TAG_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

use crate::error::SecretError;
use crate::name::validate_name;
use crate::sealed::SealedSecret;
use crate::value::{MAX_VALUE_LEN, SecretValue};

/// Length of a key-encryption key in bytes.
pub const KEK_LEN: usize = 32;

/// Prefix of the associated data, naming the format.
const AAD_CONTEXT: &[u8] = b"mandate-secret-v1\0";

/// Prefix of the input hashed into a key's ID, so the ID is no other hash of
/// the key.
const ID_CONTEXT: &[u8] = b"mandate-secrets-kek-id-v1\0";

/// A 32-byte key-encryption key. Its bytes are wiped when it is dropped and
/// never printed; its [`Kek::id`] may be shown anywhere.
pub struct Kek {
    bytes: Zeroizing<[u8; KEK_LEN]>,
    key: RandomizedNonceKey,
    id: String,
}

impl Kek {
    /// A key from its 32 bytes. The caller wipes its own copy.
    pub fn from_bytes(bytes: &[u8; KEK_LEN]) -> Result<Kek, SecretError> {
        let key =
            RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| SecretError::Crypto {
                what: "cannot set up AES-256-GCM",
            })?;
        let mut input = Zeroizing::new(Vec::with_capacity(ID_CONTEXT.len() + KEK_LEN));
        input.extend_from_slice(ID_CONTEXT);
        input.extend_from_slice(bytes);
        let id = format!(
            "kek-{}",
            hex::encode(&digest(&SHA256, &input).as_ref()[..8])
        );
        Ok(Kek {
            bytes: Zeroizing::new(*bytes),
            key,
            id,
        })
    }

    /// A key from text: 64 hex characters, or the base64 (standard or
    /// URL-safe, padded or not) of 32 bytes. Surrounding whitespace is
    /// ignored. The error never quotes the text.
    pub fn parse(text: &str) -> Result<Kek, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::InvalidKek {
                reason: "it is empty",
            });
        }
        let decoded = if text.len() == 2 * KEK_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
        };
        let Some(decoded) = decoded.map(Zeroizing::new) else {
            return Err(SecretError::InvalidKek {
                reason: "it is neither hex nor base64",
            });
        };
        let bytes: Zeroizing<[u8; KEK_LEN]> = Zeroizing::new(
            decoded
                .as_slice()
                .try_into()
                .map_err(|_| SecretError::InvalidKek {
                    reason: "it does not decode to exactly 32 bytes",
                })?,
        );
        Kek::from_bytes(&bytes)
    }

    /// A new random key.
    pub fn generate() -> Result<Kek, SecretError> {
        let mut bytes = Zeroizing::new([0u8; KEK_LEN]);
        aws_lc_rs::rand::fill(&mut bytes[..]).map_err(|_| SecretError::Crypto {
            what: "no randomness available",
        })?;
        Kek::from_bytes(&bytes)
    }

    /// The key as 64 lower-case hex characters, the form [`Kek::parse`]
    /// reads: for writing it to a key file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.bytes[..]))
    }

    /// A short fingerprint (`kek-` and 16 hex digits of a SHA-256 of the key)
    /// stored with every value it seals, so that a value offered to another
    /// key is refused by name. It reveals nothing about the key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plaintext` as version `version` of the secret `name`.
    pub fn seal(
        &self,
        name: &str,
        version: u64,
        plaintext: &[u8],
    ) -> Result<SealedSecret, SecretError> {
        validate_name(name)?;
        if plaintext.is_empty() {
            return Err(SecretError::EmptyValue {
                name: name.to_owned(),
            });
        }
        if plaintext.len() > MAX_VALUE_LEN {
            return Err(SecretError::ValueTooLong {
                name: name.to_owned(),
                max: MAX_VALUE_LEN,
            });
        }
        // Room for the tag up front: the buffer never moves, so no copy of
        // the plaintext is left behind unwiped.
        let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + MAX_TAG_LEN));
        buffer.extend_from_slice(plaintext);
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad(name, version)), &mut *buffer)
            .map_err(|_| SecretError::Crypto {
                what: "cannot encrypt",
            })?;
        Ok(SealedSecret {
            kek_id: self.id.clone(),
            nonce: *nonce.as_ref(),
            ciphertext: std::mem::take(&mut *buffer),
        })
    }

    /// Decrypts `sealed` as version `version` of the secret `name`. Fails if
    /// it was sealed under another key, altered, or sealed for another name
    /// or version.
    pub fn open(
        &self,
        name: &str,
        version: u64,
        sealed: &SealedSecret,
    ) -> Result<SecretValue, SecretError> {
        if sealed.kek_id != self.id {
            return Err(SecretError::WrongKek {
                name: name.to_owned(),
                sealed_under: sealed.kek_id.clone(),
                loaded: self.id.clone(),
            });
        }
        let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
        let opened = self.key.open_in_place(
            Nonce::assume_unique_for_key(sealed.nonce),
            Aad::from(aad(name, version)),
            &mut buffer[..],
        );
        let len = opened
            .map_err(|_| SecretError::Unsealable {
                name: name.to_owned(),
                version,
            })?
            .len();
        buffer.truncate(len);
        Ok(SecretValue::new(buffer))
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({}, <redacted>)", self.id)
    }
}

/// The associated data: the format, the name (which holds no NUL), the version.
fn aad(name: &str, version: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_CONTEXT.len() + name.len() + 9);
    aad.extend_from_slice(AAD_CONTEXT);
    aad.extend_from_slice(name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn kek() -> Kek {
        Kek::parse(HEX).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_to_the_same_bytes() {
        let kek = kek();
        let sealed = kek.seal("db-password", 1, b"correct horse").unwrap();
        assert_eq!(sealed.kek_id, kek.id());
        assert_eq!(sealed.ciphertext.len(), b"correct horse".len() + 16);
        assert!(
            !sealed.ciphertext.windows(7).any(|w| w == b"correct"),
            "the ciphertext holds the plaintext"
        );
        let opened = kek.open("db-password", 1, &sealed).unwrap();
        assert_eq!(opened.expose(), b"correct horse");
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let kek = kek();
        let a = kek.seal("n", 1, b"same").unwrap();
        let b = kek.seal("n", 1, b"same").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn another_kek_is_refused_by_id_without_trying_to_decrypt() {
        let sealed = kek().seal("db-password", 3, b"v").unwrap();
        let other = Kek::generate().unwrap();
        let err = other.open("db-password", 3, &sealed).unwrap_err();
        assert_eq!(
            err,
            SecretError::WrongKek {
                name: "db-password".into(),
                sealed_under: kek().id().into(),
                loaded: other.id().into(),
            }
        );
        assert!(err.to_string().contains(kek().id()), "{err}");
    }

    #[test]
    fn a_wrong_key_claiming_the_right_id_still_does_not_open() {
        let mut sealed = Kek::generate().unwrap().seal("n", 1, b"v").unwrap();
        sealed.kek_id = kek().id().to_owned();
        assert!(matches!(
            kek().open("n", 1, &sealed),
            Err(SecretError::Unsealable { .. })
        ));
    }

    #[test]
    fn a_tampered_ciphertext_tag_or_nonce_does_not_open() {
        let kek = kek();
        let sealed = kek.seal("n", 1, b"value").unwrap();
        for i in 0..sealed.ciphertext.len() {
            let mut bad = sealed.clone();
            bad.ciphertext[i] ^= 1;
            assert!(kek.open("n", 1, &bad).is_err(), "byte {i}");
        }
        let mut bad = sealed.clone();
        bad.nonce[0] ^= 1;
        assert!(kek.open("n", 1, &bad).is_err());
        let mut bad = sealed.clone();
        bad.ciphertext.truncate(3);
        assert!(kek.open("n", 1, &bad).is_err());
    }

    #[test]
    fn a_ciphertext_moved_to_another_name_or_version_does_not_open() {
        let kek = kek();
        let sealed = kek.seal("db-password", 2, b"value").unwrap();
        for (name, version) in [("db-passwore", 2), ("db-password", 1), ("db-password", 3)] {
            let err = kek.open(name, version, &sealed).unwrap_err();
            assert_eq!(
                err,
                SecretError::Unsealable {
                    name: name.into(),
                    version
                }
            );
        }
    }

    #[test]
    fn empty_oversized_and_badly_named_values_are_not_sealed() {
        let kek = kek();
        assert!(matches!(
            kek.seal("n", 1, b""),
            Err(SecretError::EmptyValue { .. })
        ));
        assert!(matches!(
            kek.seal("n", 1, &vec![1; MAX_VALUE_LEN + 1]),
            Err(SecretError::ValueTooLong { .. })
        ));
        assert!(kek.seal("n", 1, &vec![1; MAX_VALUE_LEN]).is_ok());
        assert!(matches!(
            kek.seal("a/b", 1, b"v"),
            Err(SecretError::InvalidName { .. })
        ));
    }

    #[test]
    fn a_kek_is_read_from_hex_or_any_base64_of_32_bytes() {
        let bytes: Vec<u8> = (0..32).collect();
        let id = kek().id().to_owned();
        for text in [
            HEX.to_owned(),
            HEX.to_uppercase(),
            format!("  {HEX}\n"),
            STANDARD.encode(&bytes),
            STANDARD_NO_PAD.encode(&bytes),
            URL_SAFE.encode(&bytes),
            URL_SAFE_NO_PAD.encode(&bytes),
        ] {
            assert_eq!(Kek::parse(&text).unwrap().id(), id, "{text}");
        }
        assert_eq!(*kek().to_hex(), HEX);
        assert!(id.starts_with("kek-") && id.len() == 20, "{id}");
    }

    #[test]
    fn a_kek_of_the_wrong_length_or_form_is_refused_without_quoting_it() {
        for text in [
            "",
            "  ",
            &HEX[..62],
            &format!("{HEX}00"),
            &STANDARD.encode([7u8; 31]),
            &STANDARD.encode([7u8; 33]),
            &STANDARD.encode([7u8; 48]),
            "not a key at all!",
        ] {
            let err = Kek::parse(text).unwrap_err();
            assert!(matches!(err, SecretError::InvalidKek { .. }), "{text}");
            if text.len() > 4 {
                assert!(!err.to_string().contains(text), "{err}");
            }
        }
    }

    #[test]
    fn debug_shows_the_id_and_never_the_key() {
        let kek = kek();
        let text = format!("{kek:?}");
        assert_eq!(text, format!("Kek({}, <redacted>)", kek.id()));
        assert!(!text.contains("0001020304"));
    }

    #[test]
    fn generated_keys_differ_and_round_trip_through_hex() {
        let a = Kek::generate().unwrap();
        let b = Kek::generate().unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(Kek::parse(&a.to_hex()).unwrap().id(), a.id());
    }
}
