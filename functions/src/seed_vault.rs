//! Each event's seed is stored sealed: PostgreSQL holds it encrypted under a key that
//! only the services which draw, reveal or shuffle read (goods-worker, the admitter,
//! the operator's CLI), so reading the database or a backup of it no longer tells
//! anyone who will win before the drop closes. At the close the admitter writes the
//! seed in the clear, which is when it becomes public anyway (docs/fairness.md).
//!
//! The cipher is XChaCha20-Poly1305: its 192-bit nonce can be drawn at random for
//! every seal without a counter to keep, and the tag makes a swapped or edited sealed
//! seed fail to open instead of yielding another seed. The event id is authenticated
//! with it, so one event's sealed seed cannot be copied onto another.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use dropgate_core::{EventId, EventSeed, hex};
use sha2::{Digest, Sha256};

/// The sealed form's first field: the cipher and the layout, so a later scheme can be
/// told apart.
const SCHEME: &str = "xchacha20poly1305";

/// Authenticated with every seal, before the event id.
const DOMAIN: &[u8] = b"dropgate/seed-seal/v1";

/// Where the seed key is.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedKeyArgs {
    /// File holding the 32-byte key that seals every event's seed in PostgreSQL, as 64
    /// hex digits. Only goods-worker, the admitter and the operator's CLI read it; on
    /// GCP it is a Secret Manager secret mounted as a file. The local stack makes one
    /// in its state directory.
    #[arg(
        id = "seed_key_file",
        long = "seed-key-file",
        env = "DROPGATE_SEED_KEY_FILE"
    )]
    pub seed_key_file: PathBuf,
}

impl SeedKeyArgs {
    /// Reads the key.
    pub fn load(&self) -> Result<SeedKey> {
        SeedKey::read_file(&self.seed_key_file)
    }
}

/// The key that seals seeds.
#[derive(Clone)]
pub struct SeedKey {
    cipher: XChaCha20Poly1305,
    /// The first 8 bytes of SHA-256 of the key, in hex: names the key a seed was sealed
    /// under, so a service given the wrong key says so rather than "decryption failed".
    id: String,
}

impl std::fmt::Debug for SeedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeedKey({})", self.id)
    }
}

impl SeedKey {
    /// A key from its 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode_32(text.trim())
            .map_err(|e| anyhow::anyhow!("a seed key is 64 hex digits: {e}"))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&bytes.into()),
            id: hex::encode(&Sha256::digest(bytes)[..8]),
        }
    }

    /// A fresh random key, as 64 hex digits (what `dropgate stack up` writes).
    pub fn generate_hex() -> String {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        hex::encode(&bytes)
    }

    /// Reads a key file.
    pub fn read_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "Failed to read the seed key {} (DROPGATE_SEED_KEY_FILE)",
                path.display()
            )
        })?;
        Self::from_hex(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Names this key (not secret: a hash prefix of it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `event`'s seed sealed: `xchacha20poly1305:<key id>:<nonce>:<ciphertext and tag>`,
    /// all hex.
    pub fn seal(&self, event: &EventId, seed: &EventSeed) -> String {
        let mut nonce = [0u8; 24];
        rand::fill(&mut nonce);
        let aad = associated_data(event);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: seed.to_hex().as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message under 256 GiB");
        format!(
            "{SCHEME}:{}:{}:{}",
            self.id,
            hex::encode(&nonce),
            hex::encode(&sealed)
        )
    }

    /// Opens what [`SeedKey::seal`] made for `event`.
    pub fn open(&self, event: &EventId, sealed: &str) -> Result<EventSeed> {
        let mut fields = sealed.split(':');
        let (Some(SCHEME), Some(key_id), Some(nonce), Some(ciphertext), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            bail!("event {event}'s sealed seed is not in the {SCHEME} form");
        };
        if key_id != self.id {
            bail!(
                "event {event}'s seed was sealed under seed key {key_id}, and this service has key {} \
                 (DROPGATE_SEED_KEY_FILE)",
                self.id
            );
        }
        let nonce = hex::decode(nonce).ok().filter(|nonce| nonce.len() == 24);
        let ciphertext = hex::decode(ciphertext).ok();
        let (Some(nonce), Some(ciphertext)) = (nonce, ciphertext) else {
            bail!("event {event}'s sealed seed is malformed");
        };
        let aad = associated_data(event);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "event {event}'s sealed seed does not open under seed key {}: it was altered or belongs to another event",
                    self.id
                )
            })?;
        let text = std::str::from_utf8(&plain).context("sealed seed is not text")?;
        EventSeed::from_hex(text).map_err(|e| anyhow::anyhow!("sealed seed: {e}"))
    }
}

/// The event's seed as its row stores it: sealed, or in the clear once revealed (and,
/// for events created before seeds were sealed, from creation).
pub fn stored_seed(
    key: &SeedKey,
    event: &EventId,
    sealed: Option<&str>,
    clear: Option<&str>,
) -> Result<EventSeed> {
    match (sealed, clear) {
        (Some(sealed), _) => key.open(event, sealed),
        (None, Some(clear)) => {
            EventSeed::from_hex(clear).map_err(|e| anyhow::anyhow!("event {event}'s seed: {e}"))
        }
        (None, None) => bail!("event {event} has no seed"),
    }
}

fn associated_data(event: &EventId) -> Vec<u8> {
    let mut aad = DOMAIN.to_vec();
    aad.extend_from_slice(event.as_str().as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> EventId {
        EventId::parse(id).expect("valid")
    }

    #[test]
    fn a_sealed_seed_opens_under_its_key_for_its_event_only() {
        let key = SeedKey::from_bytes([7; 32]);
        let seed = EventSeed::from_bytes([42; 32]);
        let sealed = key.seal(&event("drop-1"), &seed);
        assert!(!sealed.contains(&seed.to_hex()), "{sealed}");
        assert_eq!(key.open(&event("drop-1"), &sealed).expect("opens"), seed);

        let elsewhere = key
            .open(&event("drop-2"), &sealed)
            .expect_err("other event");
        assert!(
            elsewhere.to_string().contains("another event"),
            "{elsewhere}"
        );
        let other_key = SeedKey::from_bytes([8; 32]);
        let wrong = other_key
            .open(&event("drop-1"), &sealed)
            .expect_err("other key");
        assert!(wrong.to_string().contains(key.id()), "{wrong}");
    }

    #[test]
    fn two_seals_of_one_seed_differ() {
        let key = SeedKey::from_bytes([7; 32]);
        let seed = EventSeed::from_bytes([1; 32]);
        assert_ne!(
            key.seal(&event("e"), &seed),
            key.seal(&event("e"), &seed),
            "a random nonce per seal"
        );
    }

    #[test]
    fn an_edited_or_malformed_seal_is_refused() {
        let key = SeedKey::from_bytes([7; 32]);
        let sealed = key.seal(&event("e"), &EventSeed::from_bytes([1; 32]));
        let last = sealed.chars().last().expect("non-empty");
        let flipped = format!(
            "{}{}",
            &sealed[..sealed.len() - 1],
            if last == '0' { '1' } else { '0' }
        );
        assert!(key.open(&event("e"), &flipped).is_err());
        for malformed in ["", "plain", "xchacha20poly1305:a:b", "aes:x:y:z"] {
            assert!(key.open(&event("e"), malformed).is_err(), "{malformed}");
        }
    }

    #[test]
    fn a_key_file_holds_64_hex_digits() {
        let key = SeedKey::generate_hex();
        assert_eq!(key.len(), 64);
        assert!(SeedKey::from_hex(&format!("{key}\n")).is_ok());
        assert!(SeedKey::from_hex("abc").is_err());
    }

    #[test]
    fn the_stored_seed_is_the_sealed_one_until_revealed() {
        let key = SeedKey::from_bytes([7; 32]);
        let seed = EventSeed::from_bytes([3; 32]);
        let sealed = key.seal(&event("e"), &seed);
        assert_eq!(
            stored_seed(&key, &event("e"), Some(&sealed), None).expect("sealed"),
            seed
        );
        assert_eq!(
            stored_seed(&key, &event("e"), None, Some(&seed.to_hex())).expect("clear"),
            seed
        );
        assert!(stored_seed(&key, &event("e"), None, None).is_err());
    }
}
