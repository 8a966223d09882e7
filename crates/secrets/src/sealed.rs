//! A secret as it is kept at rest: which key sealed it, the nonce, and the
//! ciphertext with its tag. Nothing here is secret; the text forms are what a
//! store keeps in its columns.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::SecretError;

/// Length of a nonce in bytes (96 bits, as AES-GCM wants).
pub const NONCE_LEN: usize = 12;

/// An encrypted secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The [`crate::Kek::id`] of the key that sealed it.
    pub kek_id: String,
    /// The random nonce it was sealed with, never reused.
    pub nonce: [u8; NONCE_LEN],
    /// The ciphertext followed by the 16-byte authentication tag.
    pub ciphertext: Vec<u8>,
}

impl SealedSecret {
    /// The nonce as standard base64.
    pub fn nonce_base64(&self) -> String {
        STANDARD.encode(self.nonce)
    }

    /// The ciphertext as standard base64.
    pub fn ciphertext_base64(&self) -> String {
        STANDARD.encode(&self.ciphertext)
    }

    /// Reads back what [`SealedSecret::nonce_base64`] and
    /// [`SealedSecret::ciphertext_base64`] wrote; `name` is the secret's, for
    /// the error message.
    pub fn from_base64(
        name: &str,
        kek_id: &str,
        nonce: &str,
        ciphertext: &str,
    ) -> Result<SealedSecret, SecretError> {
        let malformed = |reason| SecretError::Malformed {
            name: name.to_owned(),
            reason,
        };
        let nonce = STANDARD
            .decode(nonce)
            .map_err(|_| malformed("the nonce is not base64"))?
            .try_into()
            .map_err(|_| malformed("the nonce is not 12 bytes"))?;
        let ciphertext = STANDARD
            .decode(ciphertext)
            .map_err(|_| malformed("the ciphertext is not base64"))?;
        Ok(SealedSecret {
            kek_id: kek_id.to_owned(),
            nonce,
            ciphertext,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_forms_read_back_to_the_same_sealed_secret() {
        let sealed = SealedSecret {
            kek_id: "kek-0011223344556677".to_owned(),
            nonce: [7; NONCE_LEN],
            ciphertext: vec![1, 2, 3, 250],
        };
        let back = SealedSecret::from_base64(
            "n",
            &sealed.kek_id,
            &sealed.nonce_base64(),
            &sealed.ciphertext_base64(),
        );
        assert_eq!(back, Ok(sealed));
    }

    #[test]
    fn malformed_text_forms_are_refused_with_the_secret_named() {
        let err = SealedSecret::from_base64("db", "k", "AAAA", "AAAA").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"the sealed value of secret "db" is malformed: the nonce is not 12 bytes"#
        );
        let nonce = STANDARD.encode([0u8; NONCE_LEN]);
        let err = SealedSecret::from_base64("db", "k", &nonce, "*").unwrap_err();
        assert!(
            matches!(err, SecretError::Malformed { reason, .. } if reason.contains("ciphertext"))
        );
    }
}
