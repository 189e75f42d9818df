//! The long causal convolution call on the CPU: short filters directly, long
//! ones through real FFTs (`realfft`), channel by channel over the thread pool.
//! The plan (direct or FFT, and its size) is the compiler's
//! (`seqc_compiler::ir::kernel::longconv`), so the cost model counts what runs.

use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use seqc_compiler::ir::kernel::longconv::{direct, effective_taps, fft_size};

/// Channels per task: neighbours share cache lines when gathered and scattered.
const CHANNEL_BLOCK: usize = 8;

/// `y[b, l, d] = sum_{t <= l, t < taps} k[t, d] * x[b, l - t, d]`, all row-major.
pub fn causal_conv(batch: usize, len: usize, channels: usize, taps: usize, x: &[f32], k: &[f32], y: &mut [f32]) {
    let Some(n) = fft_size(len, taps) else {
        return direct(batch, len, channels, taps, x, k, y);
    };
    let t = effective_taps(len, taps);
    let d = channels;
    let mut planner = RealFftPlanner::<f32>::new();
    let (forward, inverse) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let bins = n / 2 + 1;

    // The filters' spectra, scaled by 1/n so the inverse needs no pass of its own.
    let mut spectra = vec![Complex::new(0f32, 0f32); d * bins];
    spectra.par_chunks_mut(bins).enumerate().for_each_init(
        || (forward.make_input_vec(), forward.make_scratch_vec()),
        |(input, scratch), (c, out)| {
            input.fill(0.0);
            for (tt, v) in input[..t].iter_mut().enumerate() {
                *v = k[tt * d + c] / n as f32;
            }
            forward.process_with_scratch(input, out, scratch).expect("sizes from the plan");
        },
    );

    // Each task owns whole channels of one sequence: disjoint columns of `y`.
    let blocks = d.div_ceil(CHANNEL_BLOCK);
    let out = SharedOut(y.as_mut_ptr());
    crate::team::rest();
    (0..batch * blocks).into_par_iter().for_each_init(
        || {
            let signal = forward.make_input_vec();
            let spectrum = forward.make_output_vec();
            let scratch = vec![Complex::new(0f32, 0f32); forward.get_scratch_len().max(inverse.get_scratch_len())];
            (signal, spectrum, scratch)
        },
        |(signal, spectrum, scratch), task| {
            let (b, block) = (task / blocks, task % blocks);
            for c in block * CHANNEL_BLOCK..((block + 1) * CHANNEL_BLOCK).min(d) {
                signal.fill(0.0);
                for (l, v) in signal[..len].iter_mut().enumerate() {
                    *v = x[(b * len + l) * d + c];
                }
                forward.process_with_scratch(signal, spectrum, scratch).expect("sizes from the plan");
                for (s, f) in spectrum.iter_mut().zip(&spectra[c * bins..(c + 1) * bins]) {
                    *s *= f;
                }
                // A real signal's spectrum: the inverse ignores these imaginary parts.
                spectrum[0].im = 0.0;
                spectrum[bins - 1].im = 0.0;
                inverse.process_with_scratch(spectrum, signal, scratch).expect("sizes from the plan");
                for (l, v) in signal[..len].iter().enumerate() {
                    // SAFETY: element (b, l, c) belongs to this task alone and is
                    // inside `y` (batch * len * d elements).
                    unsafe { out.write((b * len + l) * d + c, *v) };
                }
            }
        },
    );
}

/// The output, written by many tasks at disjoint elements.
struct SharedOut(*mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `i` is in bounds and no other task writes it.
    unsafe fn write(&self, i: usize, v: f32) {
        *self.0.add(i) = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::noise;

    #[test]
    fn fft_path_matches_the_direct_convolution() {
        // Lengths on both sides of the filter's, channels not a multiple of the block.
        for (batch, len, d, taps) in [(2, 300, 11, 200), (1, 97, 3, 512), (3, 64, 9, 64)] {
            assert!(fft_size(len, taps).is_some());
            let (x, k) = (noise(1, batch * len * d), noise(2, taps * d));
            let (mut want, mut got) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            direct(batch, len, d, taps, &x, &k, &mut want);
            causal_conv(batch, len, d, taps, &x, &k, &mut got);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = want.iter().zip(&got).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= 1e-5 * scale, "{batch}x{len}x{d}, {taps} taps: error {err} of {scale}");
        }
    }
}
