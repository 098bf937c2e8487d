//! Authentication: the lab's bearer token and kube-apiserver's rules for checking it.
//!
//! The lab behaves like a kube-apiserver with one static token and anonymous authentication restricted (the
//! structured `AuthenticationConfiguration`'s `anonymous.conditions`) to the paths RBAC's
//! `system:public-info-viewer` ClusterRole lets `system:unauthenticated` GET: `/healthz`, `/livez`, `/readyz`,
//! `/version`, `/version/`. Everything else needs the token. As in `bearertoken.go` and the union authenticator:
//! no (or a non-Bearer) `Authorization` header is anonymous; a Bearer header with a wrong token is a 401 on every
//! path, the public ones included.

use std::fmt;

use rand::TryRngCore;

use crate::error::LabError;

/// The paths anonymous requests may GET (`system:public-info-viewer`'s `nonResourceURLs`).
pub const PUBLIC_PATHS: [&str; 5] = ["/healthz", "/livez", "/readyz", "/version", "/version/"];

/// Bytes of OS randomness in a token (256 bits).
const TOKEN_BYTES: usize = 32;

/// The lab's bearer token. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// A fresh token: 256 bits from the OS RNG, hex-encoded (valid in a header and in YAML as is).
    pub fn generate() -> Result<Self, LabError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| LabError::Token(e.to_string()))?;
        Ok(BearerToken(
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the `Authorization` header of a request says about its sender.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Authn {
        let Some(presented) = authorization.and_then(bearer) else {
            return Authn::Anonymous;
        };
        if constant_time_eq(presented, self.0.as_bytes()) {
            Authn::Authenticated
        } else {
            Authn::Rejected
        }
    }
}

/// The outcome of authenticating a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authn {
    /// The right bearer token.
    Authenticated,
    /// No credentials: `system:anonymous`, allowed on [`PUBLIC_PATHS`] only.
    Anonymous,
    /// A bearer token that is not the lab's: 401 everywhere.
    Rejected,
}

/// The token of a `Bearer` header, as `bearertoken.go` reads it: trimmed, split on the first two spaces, scheme
/// case-insensitive, anything after the token ignored; `None` (anonymous) for other schemes or an empty token.
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let header = header.trim_ascii();
    let mut parts = header.splitn(3, |b| *b == b' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

/// Compares in time independent of where the inputs differ (the length, which is public, may short-cut).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // black_box per byte keeps the optimizer from turning the fold into an early exit.
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_header_is_judged_without_panicking(header in proptest::collection::vec(any::<u8>(), 0..200)) {
            let t = BearerToken("s3cret".to_string());
            let verdict = t.authenticate(Some(&header));
            // Only a header carrying exactly the token authenticates.
            if verdict == Authn::Authenticated {
                prop_assert_eq!(bearer(&header), Some(&b"s3cret"[..]));
            }
        }
    }

    #[test]
    fn tokens_are_256_random_bits_and_differ() {
        let a = BearerToken::generate().unwrap();
        let b = BearerToken::generate().unwrap();
        assert_eq!(a.as_str().len(), 2 * TOKEN_BYTES);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn headers_are_read_as_kube_apiserver_reads_them() {
        let t = BearerToken("s3cret".to_string());
        let auth = |h: &str| t.authenticate(Some(h.as_bytes()));
        assert_eq!(t.authenticate(None), Authn::Anonymous);
        assert_eq!(auth("Bearer s3cret"), Authn::Authenticated);
        assert_eq!(auth("  bEaReR s3cret  "), Authn::Authenticated);
        assert_eq!(auth("Bearer s3cret trailing"), Authn::Authenticated);
        assert_eq!(auth("Bearer s3cre"), Authn::Rejected);
        assert_eq!(auth("Bearer s3cretx"), Authn::Rejected);
        assert_eq!(auth("Bearer  s3cret"), Authn::Anonymous);
        assert_eq!(auth("Bearer"), Authn::Anonymous);
        assert_eq!(auth(""), Authn::Anonymous);
        assert_eq!(auth("Basic czNjcmV0"), Authn::Anonymous);
        assert_eq!(t.authenticate(Some(b"Bearer \xff\xfe")), Authn::Rejected);
    }
}
