//! Random secrets (session ids, CSRF and API tokens, the setup token) and their digests.
//! Secrets are 256 bits from the OS; only their SHA-256 is stored.

use sha2::{Digest, Sha256};

use super::AuthError;

/// Fills `buf` from the OS random source.
pub fn fill(buf: &mut [u8]) -> Result<(), AuthError> {
    getrandom::fill(buf).map_err(|e| AuthError::Internal(format!("os random source failed: {e}")))
}

/// A new 256-bit secret as 64 lowercase hex digits, with `prefix` in front.
pub fn new_secret(prefix: &str) -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    fill(&mut bytes)?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

/// SHA-256 of a secret, as stored at rest.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_hex() {
        let a = new_secret("crl_").unwrap();
        let b = new_secret("crl_").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert!(constant_time_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), b.as_bytes()));
        assert!(!constant_time_eq(b"a", b"ab"));
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
