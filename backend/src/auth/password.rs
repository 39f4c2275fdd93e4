//! argon2id password hashes (m = 19 MiB, t = 2, p = 1, OWASP's minimum) as PHC strings.
//! Call these on a blocking thread: one hash takes tens of milliseconds and 19 MiB.

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};

use super::AuthError;

/// Memory cost in KiB (19 MiB).
pub const M_COST_KIB: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

fn hasher() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| AuthError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes the whole password (any length, any Unicode; never truncated) with a random salt.
pub fn hash(password: &str) -> Result<String, AuthError> {
    hasher()?
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Internal(format!("argon2 hashing failed: {e}")))
}

/// Whether `password` matches the PHC string `hash` (its own parameters are used).
pub fn verify(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_unicode_passwords_are_not_truncated() {
        let long = "p".repeat(4000) + "ünïcødé-🔑";
        let h = hash(&long).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify(&long, &h));
        assert!(!verify(&long[..4000], &h));
        assert!(!verify(&(long.clone() + "x"), &h));
        assert!(!verify("", &h));
        assert!(!verify(&long, "not a hash"));
    }
}
