//! Bucketing: a unit's place in a rollout, deterministic and portable.
//!
//! Both modes hash the UTF-8 bytes of `"<group>:<unit>"` with MurmurHash3 x86_32, seed 0
//! (`group` is the rollout's group, by default the flag key):
//!
//! - [`Bucketing::Unleash`]: `bucket = h % 100 + 1` (1–100); on iff `percentage > 0 &&
//!   bucket <= percentage`. Exactly Unleash's `normalizedValue` and its gradual/flexible rollouts.
//! - [`Bucketing::Default`]: `bucket = h % 10000 + 1` (1–10,000); on iff
//!   `bucket <= round(percentage * 100)`: every two-decimal percentage is a whole number of
//!   buckets (0.01% is one bucket).
//!
//! Raising the percentage only adds units (the bucket does not depend on it). The vectors in
//! `docs/bucketing-vectors.json` let another language check its implementation.

use gatehouse_events::flag::Bucketing;

/// MurmurHash3 x86_32 (Austin Appleby's reference `MurmurHash3_x86_32`).
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    Murmur3::new(seed).write(data).finish()
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// MurmurHash3 x86_32 fed in pieces: `Murmur3::new(seed).write(a).write(b).finish()` is
/// [`murmur3_x86_32`] of `a` followed by `b`, with no buffer. A state that has hashed a
/// prefix (a flag's `"<group>:"`) is `Copy`, so it is kept and each unit continues from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Murmur3 {
    h: u32,
    /// The bytes of an unfinished block, little-endian.
    tail: u32,
    tail_len: u32,
    len: u32,
}

impl Murmur3 {
    pub fn new(seed: u32) -> Self {
        Murmur3 {
            h: seed,
            tail: 0,
            tail_len: 0,
            len: 0,
        }
    }

    fn mix(k: u32) -> u32 {
        k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
    }

    fn block(&mut self, k: u32) {
        self.h ^= Self::mix(k);
        self.h = self
            .h
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }

    /// Hashes `data` after what was written so far.
    #[inline]
    pub fn write(mut self, mut data: &[u8]) -> Self {
        // The reference hashes the length modulo 2^32.
        self.len = self.len.wrapping_add(data.len() as u32);
        while self.tail_len > 0 {
            let Some((&byte, rest)) = data.split_first() else {
                return self;
            };
            self.tail |= u32::from(byte) << (8 * self.tail_len);
            self.tail_len += 1;
            data = rest;
            if self.tail_len == 4 {
                let k = self.tail;
                self.block(k);
                (self.tail, self.tail_len) = (0, 0);
            }
        }
        let mut chunks = data.chunks_exact(4);
        for chunk in &mut chunks {
            self.block(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
        }
        for (i, &byte) in chunks.remainder().iter().enumerate() {
            self.tail |= u32::from(byte) << (8 * i);
        }
        self.tail_len = chunks.remainder().len() as u32;
        self
    }

    /// The hash of everything written.
    #[inline]
    pub fn finish(self) -> u32 {
        let mut h = self.h;
        if self.tail_len > 0 {
            h ^= Self::mix(self.tail);
        }
        h ^= self.len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        h
    }
}

/// The place of a unit of priority `priority` (0–100) in a `category` rollout: 1..=10,100,
/// `(100 - priority) * 100 + h % 100 + 1`, so a higher priority always comes first and a level
/// is ordered by hash.
pub fn category_position(group: &str, unit: &str, priority: u8) -> u32 {
    position_of(group_hash(group, unit), priority)
}

/// [`category_position`] of a unit whose [`group_hash`] is `h`.
pub fn position_of(h: u32, priority: u8) -> u32 {
    (100 - u32::from(priority.min(100))) * 100 + h % 100 + 1
}

/// Is a `category` rollout's `position` within `percentage`: `position <= round(percentage * 101)`.
pub fn category_within(position: u32, percentage: f64) -> bool {
    f64::from(position) <= (percentage * 101.0).round()
}

/// How many buckets a mode has.
pub fn buckets(mode: Bucketing) -> u32 {
    match mode {
        Bucketing::Default => 10_000,
        Bucketing::Unleash => 100,
    }
}

/// The bucket of `unit` in `group`: 1..=[`buckets`].
pub fn bucket(mode: Bucketing, group: &str, unit: &str) -> u32 {
    bucket_of(mode, group_hash(group, unit))
}

/// The bucket of a unit whose [`group_hash`] is `h`.
pub fn bucket_of(mode: Bucketing, h: u32) -> u32 {
    h % buckets(mode) + 1
}

/// `murmur3_x86_32("<group>:<unit>", 0)`, hashed in pieces (no key is built).
pub fn group_hash(group: &str, unit: &str) -> u32 {
    group_prefix(group).write(unit.as_bytes()).finish()
}

/// The hash state after `"<group>:"`: [`group_hash`] is `group_prefix(group)` continued with
/// the unit, so a flag computes it once and each evaluation hashes only the unit.
pub fn group_prefix(group: &str) -> Murmur3 {
    Murmur3::new(0).write(group.as_bytes()).write(b":")
}

/// Is `bucket` within `percentage` (0–100) in `mode`?
pub fn within(mode: Bucketing, bucket: u32, percentage: f64) -> bool {
    match mode {
        Bucketing::Unleash => percentage > 0.0 && f64::from(bucket) <= percentage,
        Bucketing::Default => {
            let threshold = (percentage * 100.0).round();
            threshold > 0.0 && f64::from(bucket) <= threshold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        // From the SMHasher verification set and common published vectors.
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_x86_32(b"\0\0\0\0", 0), 0x2362_f9de);
        assert_eq!(murmur3_x86_32(b"aaaa", 0x9747_b28c), 0x5a97_808a);
        assert_eq!(murmur3_x86_32(b"abc", 0), 0xb3dd_93fa);
        assert_eq!(murmur3_x86_32(b"Hello, world!", 0x9747_b28c), 0x2488_4cba);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2fa8_26cd
        );
    }

    #[test]
    fn unleash_buckets_match_unleash() {
        // Unleash's own normalizedValue tests (unleash-client-node `test/util.test`).
        assert_eq!(bucket(Bucketing::Unleash, "gr1", "123"), 73);
        assert_eq!(bucket(Bucketing::Unleash, "groupX", "999"), 25);
    }

    /// The one-shot reference: blocks of four bytes, then the tail, then the length.
    fn reference(data: &[u8], seed: u32) -> u32 {
        let mut h = seed;
        let mut chunks = data.chunks_exact(4);
        for chunk in &mut chunks {
            let k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
            h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
        }
        let mut k = 0u32;
        for (i, &byte) in chunks.remainder().iter().enumerate() {
            k |= u32::from(byte) << (8 * i);
        }
        if !chunks.remainder().is_empty() {
            h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        }
        h ^= data.len() as u32;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }

    proptest::proptest! {
        /// Hashing in any number of pieces is hashing the whole.
        #[test]
        fn hashing_in_pieces_is_hashing_the_whole(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            cuts in proptest::collection::vec(0usize..40, 0..5),
            seed in proptest::num::u32::ANY,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut hasher = Murmur3::new(seed);
            let mut from = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                hasher = hasher.write(&data[from..cut]);
                from = cut;
            }
            proptest::prop_assert_eq!(hasher.finish(), reference(&data, seed));
            proptest::prop_assert_eq!(murmur3_x86_32(&data, seed), reference(&data, seed));
        }

        /// The group's prefix continued with the unit is the hash of `"<group>:<unit>"`.
        #[test]
        fn the_group_prefix_continues_to_the_key(group in ".{0,20}", unit in ".{0,300}") {
            let key = format!("{group}:{unit}");
            proptest::prop_assert_eq!(group_hash(&group, &unit), reference(key.as_bytes(), 0));
        }
    }

    #[test]
    fn zero_is_off_and_a_hundred_is_everyone() {
        for unit in ["a", "b", "c", "123"] {
            for mode in [Bucketing::Default, Bucketing::Unleash] {
                let b = bucket(mode, "g", unit);
                assert!(!within(mode, b, 0.0));
                assert!(within(mode, b, 100.0));
            }
        }
    }
}
