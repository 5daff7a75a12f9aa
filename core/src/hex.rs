//! Lower-case hex for seeds and commitments: the form operators copy between the CLI,
//! PostgreSQL and a published announcement.

/// Why a hex string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Not 64 digits.
    #[error("expected 64 hex digits, got {0} characters")]
    WrongLength(usize),
    /// A character that is not a hex digit.
    #[error("{0:?} is not a hex digit")]
    NotHex(char),
    /// An odd number of digits: not whole bytes.
    #[error("{0} hex digits are not whole bytes")]
    OddLength(usize),
}

/// Encodes bytes as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Decodes any number of whole bytes (either case).
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let digits: Vec<u8> = text
        .trim()
        .chars()
        .map(|c| c.to_digit(16).map(|d| d as u8).ok_or(HexError::NotHex(c)))
        .collect::<Result<_, _>>()?;
    if !digits.len().is_multiple_of(2) {
        return Err(HexError::OddLength(digits.len()));
    }
    Ok(digits
        .chunks_exact(2)
        .map(|pair| (pair[0] << 4) | pair[1])
        .collect())
}

/// Decodes exactly 32 bytes (64 digits, either case).
pub fn decode_32(text: &str) -> Result<[u8; 32], HexError> {
    let text = text.trim();
    if text.chars().count() != 64 {
        return Err(HexError::WrongLength(text.chars().count()));
    }
    let mut out = [0u8; 32];
    let digits: Vec<u8> = text
        .chars()
        .map(|c| c.to_digit(16).map(|d| d as u8).ok_or(HexError::NotHex(c)))
        .collect::<Result<_, _>>()?;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_bad_input() {
        assert_eq!(decode_32("abc"), Err(HexError::WrongLength(3)));
        assert_eq!(decode_32(&"g".repeat(64)), Err(HexError::NotHex('g')));
        assert!(decode_32(&"é".repeat(64)).is_err());
        assert_eq!(decode("abc"), Err(HexError::OddLength(3)));
        assert_eq!(decode("zz"), Err(HexError::NotHex('z')));
    }

    proptest! {
        #[test]
        fn any_length_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(decode(&encode(&bytes)), Ok(bytes));
        }

        #[test]
        fn round_trips(bytes in any::<[u8; 32]>()) {
            prop_assert_eq!(decode_32(&encode(&bytes)), Ok(bytes));
            prop_assert_eq!(decode_32(&encode(&bytes).to_uppercase()), Ok(bytes));
        }
    }
}
