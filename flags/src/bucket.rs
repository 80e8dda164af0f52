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
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    let mut k: u32 = 0;
    if tail.len() >= 3 {
        k ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        k ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        k ^= u32::from(tail[0]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The place of a unit of priority `priority` (0–100) in a `category` rollout: 1..=10,100,
/// `(100 - priority) * 100 + h % 100 + 1`, so a higher priority always comes first and a level
/// is ordered by hash.
pub fn category_position(group: &str, unit: &str, priority: u8) -> u32 {
    let h = group_hash(group, unit);
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
    group_hash(group, unit) % buckets(mode) + 1
}

/// `murmur3_x86_32("<group>:<unit>", 0)`, the key built on the stack when it is short.
pub fn group_hash(group: &str, unit: &str) -> u32 {
    let len = group.len() + unit.len() + 1;
    let mut stack = [0u8; 256];
    if len <= stack.len() {
        stack[..group.len()].copy_from_slice(group.as_bytes());
        stack[group.len()] = b':';
        stack[group.len() + 1..len].copy_from_slice(unit.as_bytes());
        return murmur3_x86_32(&stack[..len], 0);
    }
    murmur3_x86_32(format!("{group}:{unit}").as_bytes(), 0)
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
