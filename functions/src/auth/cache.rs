//! Verified tokens, so a user polling every few seconds or reconnecting a stream does
//! not pay for a signature check each time. Keyed by SHA-256 of the token (the token
//! itself is a credential and is not kept), valid until the token's `exp` and while the
//! key that verified it is still in the key set; bounded, with quick_cache's O(1)
//! eviction (a full cache of live tokens evicts the coldest, not everything).

use dropgate_core::UserKey;
use sha2::{Digest, Sha256};

use super::keys::Algorithm;

/// What a verified token proved, and what must still hold for it to count.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) user: UserKey,
    pub(crate) expires_at: u64,
    /// The key that verified it: (`kid`, algorithm).
    pub(crate) key_id: Option<std::sync::Arc<str>>,
    pub(crate) algorithm: Algorithm,
}

/// A bounded map from token hash to what it proved; `None` when disabled.
pub(crate) struct TokenCache(Option<quick_cache::sync::Cache<[u8; 32], Verified>>);

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.0.as_ref().map_or(0, |cache| cache.len());
        write!(f, "TokenCache({entries} entries)")
    }
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self((capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)))
    }

    /// The entry for `token` if it has not expired at `now_s`.
    pub(crate) fn get(&self, token: &TokenHash, now_s: u64) -> Option<Verified> {
        let cache = self.0.as_ref()?;
        let verified = cache.get(&token.0)?;
        if verified.expires_at > now_s {
            Some(verified)
        } else {
            cache.remove(&token.0);
            None
        }
    }

    /// Forgets `token` (its key left the key set).
    pub(crate) fn forget(&self, token: &TokenHash) {
        if let Some(cache) = &self.0 {
            cache.remove(&token.0);
        }
    }

    pub(crate) fn insert(&self, token: TokenHash, verified: Verified) {
        if let Some(cache) = &self.0 {
            cache.insert(token.0, verified);
        }
    }
}

/// What a token is cached under: hashed once per request, for the lookup and, on a
/// miss, the insert.
pub(crate) struct TokenHash([u8; 32]);

impl TokenHash {
    pub(crate) fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(n: u32, expires_at: u64) -> Verified {
        Verified {
            user: UserKey::parse("p", &format!("u{n}")).expect("valid"),
            expires_at,
            key_id: Some("k1".into()),
            algorithm: Algorithm::Rs256,
        }
    }

    #[test]
    fn hits_until_expiry_and_stays_bounded() {
        let cache = TokenCache::new(2);
        cache.insert(TokenHash::of("a"), verified(1, 100));
        assert_eq!(
            cache.get(&TokenHash::of("a"), 50).map(|v| v.user),
            Some(verified(1, 0).user)
        );
        assert!(
            cache.get(&TokenHash::of("a"), 100).is_none(),
            "expired at exp"
        );
        for n in 0..100 {
            cache.insert(TokenHash::of(&format!("t{n}")), verified(n, 200));
        }
        assert!(cache.0.as_ref().expect("enabled").len() <= 2);
        assert!(
            cache.get(&TokenHash::of("t99"), 20).is_some(),
            "the newest entry is kept"
        );
    }

    #[test]
    fn a_zero_capacity_cache_keeps_nothing() {
        let cache = TokenCache::new(0);
        cache.insert(TokenHash::of("a"), verified(1, 100));
        assert!(cache.get(&TokenHash::of("a"), 50).is_none());
    }
}
