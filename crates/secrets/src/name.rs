//! Which names a secret may have: short, printable, safe in a URL path and a
//! log line without quoting.

use crate::error::SecretError;

/// Longest secret name, in characters.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a secret name: 1 to [`MAX_NAME_LEN`] characters of ASCII letters,
/// digits, `.`, `_` and `-`.
pub fn validate_name(name: &str) -> Result<(), SecretError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(allowed) {
        return Err(SecretError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_letters_digits_dots_dashes_and_underscores_are_accepted() {
        for name in ["a", "DB_PASSWORD", "openai.api-key", "0", &"x".repeat(128)] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn empty_long_and_unusual_names_are_refused_and_quoted() {
        for name in ["", &"x".repeat(129), "a b", "a/b", "näme", "a\0b", "a:b"] {
            assert!(validate_name(name).is_err(), "{name:?}");
        }
        assert_eq!(
            validate_name("a b").unwrap_err().to_string(),
            r#""a b" is not a secret name: use 1 to 128 characters of letters, digits, '.', '_' and '-'"#
        );
    }
}
