//! The long causal convolution library call (`fftconv` in parallel mode):
//! `y[b, l, d] = sum_{t <= l, t < taps} k[t, d] * x[b, l - t, d]`.
//!
//! How it runs is decided here, once, for every consumer: the CPU runtime, the
//! kernel evaluator and the cost model (so `seqc analyze` counts what runs).
//! Short filters (or short sequences) convolve directly; long ones go through a
//! real FFT of a power-of-two size that holds the whole linear convolution of
//! the first `len` outputs, so nothing wraps around into them. A GPU backend maps
//! the same call to cuFFT (or to a direct kernel under the same rule).

/// Taps seen by the last output: positions before 0 contribute nothing.
pub fn effective_taps(len: usize, taps: usize) -> usize {
    taps.min(len)
}

/// Below this many effective taps the direct form is cheaper than three FFTs.
const DIRECT_MAX_TAPS: usize = 48;

/// The FFT length, or `None` for the direct form.
pub fn fft_size(len: usize, taps: usize) -> Option<usize> {
    let t = effective_taps(len, taps);
    (t > DIRECT_MAX_TAPS).then(|| (len + t - 1).next_power_of_two())
}

/// Floating-point work per channel: for each sequence (its transform, the
/// product of spectra, the inverse) and for the filter (its transform, once per
/// channel whatever the batch). A real FFT of `n` points costs about
/// `2.5 n log2 n`; a complex product of spectra 6 per bin.
pub fn flops(len: usize, taps: usize) -> (f64, f64) {
    match fft_size(len, taps) {
        None => {
            let t = effective_taps(len, taps) as f64;
            // sum over l of min(l + 1, t) multiply-adds.
            let pairs = t * (t + 1.0) / 2.0 + (len as f64 - t) * t;
            (2.0 * pairs, 0.0)
        }
        Some(n) => {
            let n = n as f64;
            let fft = 2.5 * n * n.log2();
            (2.0 * fft + 6.0 * (n / 2.0 + 1.0), fft)
        }
    }
}

/// The runs of rows a causal convolution convolves on their own, as (first
/// row, rows): each batch row's `len` positions, or, in a packed batch, each
/// sequence (the positions sharing a start).
pub fn sequences(batch: usize, len: usize, starts: Option<&[f32]>) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    for b in 0..batch {
        let mut at = 0;
        while at < len {
            let first = starts.map_or(0.0, |s| s[at]);
            let n = match starts {
                Some(s) => s[at..len].iter().take_while(|&&x| x == first).count(),
                None => len,
            };
            runs.push((b * len + at, n));
            at += n;
        }
    }
    runs
}

/// The convolution computed directly: the reference the FFT path is checked
/// against, and what runs for short filters.
pub fn direct(batch: usize, len: usize, channels: usize, taps: usize, x: &[f32], k: &[f32], y: &mut [f32]) {
    let d = channels;
    for b in 0..batch {
        for l in 0..len {
            let out = &mut y[(b * len + l) * d..][..d];
            out.fill(0.0);
            for t in 0..taps.min(l + 1) {
                let (kr, xr) = (&k[t * d..][..d], &x[(b * len + l - t) * d..][..d]);
                for c in 0..d {
                    out[c] += kr[c] * xr[c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_switches_at_the_threshold_and_holds_the_linear_convolution() {
        assert_eq!(fft_size(1000, 4), None);
        assert_eq!(fft_size(20, 2048), None);
        let n = fft_size(1000, 2048).unwrap();
        assert!(n >= 1000 + 1000 - 1 && n.is_power_of_two() && n / 2 < 1999);
        assert_eq!(fft_size(100, 49), Some(256));
    }

    #[test]
    fn direct_flops_count_causal_pairs() {
        // len 3, taps 2: outputs see 1, 2, 2 taps.
        assert_eq!(flops(3, 2), (10.0, 0.0));
    }
}
