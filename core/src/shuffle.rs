//! The randomized pre-queue: a seeded, reproducible permutation of the tickets handed
//! out before opening.
//!
//! Everyone who arrives before the opening time is equally likely to get any place
//! among them. The permutation is a Fisher–Yates shuffle driven by ChaCha20 keyed from
//! the event seed, so once the seed is revealed anyone can recompute who got which
//! place.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::draw::EventSeed;
use crate::identity::EventId;

/// Shuffles `items` (the pre-queue in arrival order) into their admission order.
pub fn shuffle_pre_queue<T>(seed: &EventSeed, event: &EventId, items: &mut [T]) {
    let mut rng = ChaCha20Rng::from_seed(seed.derive("dropgate/pre-queue/v1", &[event.as_str()]));
    for i in (1..items.len()).rev() {
        let j = uniform_below(&mut rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A uniform integer in `0..bound` without modulo bias (Lemire's multiply-and-reject).
fn uniform_below(rng: &mut impl RngCore, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(bound);
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> EventId {
        EventId::parse("ev").expect("valid")
    }

    #[test]
    fn every_place_is_about_equally_likely() {
        // 4,000 events' worth of 4-element shuffles: each element lands in each place
        // with probability 1/4; allow 5 sigma.
        let mut counts = [[0u32; 4]; 4];
        for s in 0..4_000u32 {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&s.to_be_bytes());
            let mut items = [0usize, 1, 2, 3];
            shuffle_pre_queue(&EventSeed::from_bytes(bytes), &event(), &mut items);
            for (place, item) in items.iter().enumerate() {
                counts[*item][place] += 1;
            }
        }
        let sigma = (4_000.0f64 * 0.25 * 0.75).sqrt();
        for row in counts {
            for count in row {
                assert!(
                    (f64::from(count) - 1_000.0).abs() < 5.0 * sigma,
                    "{counts:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn is_a_reproducible_permutation(seed_byte in any::<u8>(), n in 0usize..500) {
            let seed = EventSeed::from_bytes([seed_byte; 32]);
            let mut first: Vec<usize> = (0..n).collect();
            shuffle_pre_queue(&seed, &event(), &mut first);
            let mut second: Vec<usize> = (0..n).collect();
            shuffle_pre_queue(&seed, &event(), &mut second);
            prop_assert_eq!(&first, &second);
            let mut sorted = first.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        }
    }
}
