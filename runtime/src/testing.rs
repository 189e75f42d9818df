//! Shared by the unit tests: deterministic noise in [-0.5, 0.5).

/// `n` values of a linear congruential sequence from `seed`.
pub fn noise(seed: u32, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}
