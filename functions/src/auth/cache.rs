//! Verified tokens, so a user polling every few seconds or reconnecting a stream does
//! not pay for a signature check each time. Keyed by SHA-256 of the token (the token
//! itself is a credential and is not kept), valid until the token's `exp`, bounded.

use std::collections::HashMap;
use std::sync::Mutex;

use dropgate_core::UserKey;
use sha2::{Digest, Sha256};

/// A bounded map from token hash to (user, exp).
#[derive(Debug)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], (UserKey, u64)>>,
    capacity: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::with_capacity(capacity.min(1 << 16))),
            capacity,
        }
    }

    pub(crate) fn get(&self, token: &str, now_s: u64) -> Option<UserKey> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&key)
            .filter(|(_, expires_at)| *expires_at > now_s)
            .map(|(user, _)| user.clone())
    }

    pub(crate) fn insert(&self, token: &str, user: UserKey, expires_at: u64, now_s: u64) {
        if self.capacity == 0 {
            return;
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, exp)| *exp > now_s);
            if entries.len() >= self.capacity {
                // Still full of live tokens: start over rather than grow; the cost is
                // one signature check per user on their next request.
                entries.clear();
            }
        }
        entries.insert(key, (user, expires_at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u32) -> UserKey {
        UserKey::parse("p", &format!("u{n}")).expect("valid")
    }

    #[test]
    fn hits_until_expiry_and_stays_bounded() {
        let cache = TokenCache::new(2);
        cache.insert("a", user(1), 100, 10);
        assert_eq!(cache.get("a", 50), Some(user(1)));
        assert_eq!(cache.get("a", 100), None, "expired at exp");
        cache.insert("b", user(2), 200, 10);
        cache.insert("c", user(3), 200, 10);
        assert!(cache.entries.lock().expect("lock").len() <= 2);
        assert_eq!(cache.get("c", 20), Some(user(3)));
    }
}
