//! The test vectors of docs/fairness.md, computed here from the specification's own
//! steps (not through the crate's helpers), compared with the crate's results and
//! with `docs/fairness-vectors.json`, which the independent verifier
//! (`verifier/dropgate_verify.py`) checks too. `DROPGATE_UPDATE_DOCS=1` rewrites the
//! file after a deliberate change of the rules.

use dropgate_core::{
    Beacon, EventId, EventSeed, Outcome, UserKey, WinProbability, decide_batch, draw_value,
    draw_value_of_pseudonym, pseudonym, shuffle_pre_queue,
};
use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The specification's message: the domain tag's bytes, then each part as a 4-byte
/// big-endian length and its UTF-8 bytes.
fn message(domain: &str, parts: &[&str]) -> Vec<u8> {
    let mut bytes = domain.as_bytes().to_vec();
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn seed_bytes(n: u8) -> [u8; 32] {
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(7).wrapping_add(n);
    }
    seed
}

fn vectors() -> Value {
    let seeds = [seed_bytes(0), seed_bytes(101), [0xff; 32]];
    let commitments: Vec<Value> = seeds
        .iter()
        .map(|seed| {
            let spec = hex(&Sha256::digest(seed));
            let crate_says = EventSeed::from_bytes(*seed).commitment().to_hex();
            assert_eq!(spec, crate_says);
            json!({"seed": hex(seed), "commitment": spec})
        })
        .collect();

    let identities = [
        ("drop-1", "web", "u1"),
        ("drop-1", "app", "u1"),
        ("drop-1", "web", "alice@example.com"),
        ("spring-sale_2026", "shop.example", "00042"),
    ];
    let mut pseudonyms = Vec::new();
    let mut draw_values = Vec::new();
    for seed in &seeds[..2] {
        for (event, platform, user) in identities {
            let named = message("dropgate/pseudonym/v2", &[event, platform, user]);
            let mac = hmac_sha256(seed, &named);
            let spec = hex(&mac[..16]);
            let event_id = EventId::parse(event).expect("valid");
            let user_key = UserKey::parse(platform, user).expect("valid");
            let crate_says = pseudonym(&EventSeed::from_bytes(*seed), &event_id, &user_key);
            assert_eq!(spec, crate_says, "{event} {platform} {user}");
            pseudonyms.push(json!({
                "seed": hex(seed),
                "event_id": event,
                "platform_id": platform,
                "user_id": user,
                "message": hex(&named),
                "hmac": hex(&mac),
                "pseudonym": spec,
            }));

            let drawn = message("dropgate/draw/v2", &[event, &spec]);
            let mac = hmac_sha256(seed, &drawn);
            let mut first = [0u8; 8];
            first.copy_from_slice(&mac[..8]);
            let value = u64::from_be_bytes(first);
            let seed = EventSeed::from_bytes(*seed);
            assert_eq!(value, draw_value_of_pseudonym(&seed, &event_id, &spec));
            assert_eq!(value, draw_value(&seed, &event_id, &user_key));
            draw_values.push(json!({
                "seed": seed.to_hex(),
                "event_id": event,
                "pseudonym": spec,
                "message": hex(&drawn),
                "hmac": hex(&mac),
                "draw_value": value.to_string(),
            }));
        }
    }

    // A beacon round's value mixed into the event key; the key then stands where the
    // seed stood (pseudonyms, draw values, the pre-queue shuffle).
    let mut beacon_keys = Vec::new();
    for (seed, round, value) in [
        (seeds[0], "drand-quicknet/12345678", "ab".repeat(32)),
        (
            seeds[1],
            "nist-beacon/2026-12-01T10:00Z",
            "0123456789abcdef".repeat(4),
        ),
    ] {
        let mixed = message("dropgate/beacon/v2", &[round, &value]);
        let key = hmac_sha256(&seed, &mixed);
        let crate_says = EventSeed::from_bytes(seed)
            .event_key(Some(&Beacon {
                round: round.to_owned(),
                value: Some(value.clone()),
            }))
            .expect("a beacon with its value");
        assert_eq!(EventSeed::from_bytes(key), crate_says, "{round}");
        let user = UserKey::parse("web", "u1").expect("valid");
        let event = EventId::parse("drop-1").expect("valid");
        beacon_keys.push(json!({
            "seed": hex(&seed),
            "round": round,
            "value": value,
            "message": hex(&mixed),
            "key": hex(&key),
            "event_id": "drop-1",
            "platform_id": "web",
            "user_id": "u1",
            "pseudonym": pseudonym(&crate_says, &event, &user),
            "draw_value": draw_value(&crate_says, &event, &user).to_string(),
        }));
    }

    let thresholds: Vec<Value> = [1.0, 0.5, 0.05, 0.1, 1.0 / 3.0, 1e-9]
        .into_iter()
        .map(|p: f64| {
            // floor(p * 2^64), in binary64 arithmetic (exact for p in (0, 1]).
            let threshold = (p * 18_446_744_073_709_551_616.0) as u128;
            let probability = WinProbability::new(p).expect("valid");
            assert!(threshold == 0 || probability.is_winning((threshold - 1) as u64));
            if threshold <= u128::from(u64::MAX) {
                assert!(!probability.is_winning(threshold as u64));
            }
            json!({"p": p, "threshold": threshold.to_string()})
        })
        .collect();

    // A whole drop: 30 users in ticket order, stock 3, p 0.3.
    let seed = EventSeed::from_bytes(seeds[0]);
    let event = EventId::parse("drop-1").expect("valid");
    let users: Vec<UserKey> = (1..=30)
        .map(|n| {
            UserKey::parse(if n % 2 == 0 { "web" } else { "app" }, &format!("u{n}")).expect("valid")
        })
        .collect();
    let probability = WinProbability::new(0.3).expect("valid");
    let decided = decide_batch(&seed, &event, probability, 3, &users);
    let decisions: Vec<Value> = decided
        .iter()
        .zip(&users)
        .enumerate()
        .map(|(i, ((value, decision), user))| {
            json!({
                "decision_order": i + 1,
                "ticket": i + 1,
                "pseudonym": pseudonym(&seed, &event, user),
                "draw_value": value.to_string(),
                "outcome": decision.outcome.as_str(),
                "stock_left": decision.stock_left,
            })
        })
        .collect();
    assert_eq!(
        decided
            .iter()
            .filter(|(_, d)| d.outcome == Outcome::Won)
            .count(),
        3,
        "the vector drop sells out"
    );
    let drop = json!({
        "seed": hex(&seeds[0]),
        "commitment": seed.commitment().to_hex(),
        "event_id": "drop-1",
        "stock": 3,
        "win_probability": 0.3,
        "decisions": decisions,
    });

    let mut shuffles = Vec::new();
    for (seed, event, n) in [(seeds[0], "drop-1", 10u64), (seeds[1], "pre-queue-7", 25)] {
        let key = hmac_sha256(&seed, &message("dropgate/pre-queue/v1", &[event]));
        let mut rng = ChaCha20Rng::from_seed(key);
        let first_u64s: Vec<String> = (0..4).map(|_| rng.next_u64().to_string()).collect();
        let mut permutation: Vec<u64> = (0..n).collect();
        shuffle_pre_queue(
            &EventSeed::from_bytes(seed),
            &EventId::parse(event).expect("valid"),
            &mut permutation,
        );
        shuffles.push(json!({
            "seed": hex(&seed),
            "event_id": event,
            "key": hex(&key),
            "first_u64s": first_u64s,
            "n": n,
            "order": permutation,
        }));
    }

    json!({
        "about": "Test vectors of docs/fairness.md (rule dropgate/draw/v2). 64-bit values are decimal strings.",
        "commitments": commitments,
        "pseudonyms": pseudonyms,
        "draw_values": draw_values,
        "beacon_keys": beacon_keys,
        "thresholds": thresholds,
        "drop": drop,
        "shuffles": shuffles,
    })
}

#[test]
fn the_published_vectors_are_what_the_rules_give() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/fairness-vectors.json");
    let expected = format!(
        "{}\n",
        serde_json::to_string_pretty(&vectors()).expect("json")
    );
    if std::env::var_os("DROPGATE_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).expect("write the vectors");
        return;
    }
    let published = std::fs::read_to_string(&path).expect("docs/fairness-vectors.json");
    // Compared as JSON values: the key order of the text depends on serde_json's
    // features, which the workspace's other crates may switch on.
    let published: Value = serde_json::from_str(&published).expect("the vectors are JSON");
    assert!(
        published == vectors(),
        "docs/fairness-vectors.json differs from what the rules give; after a deliberate \
         change of the rules rewrite it with `DROPGATE_UPDATE_DOCS=1 cargo test -p dropgate-core --test fairness_vectors`"
    );
}
