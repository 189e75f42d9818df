//! Exact counts as expressions in the batch `B` and the sequence length `L`:
//! sums of `c * B^b * L^l * s(L)`, where `s` is 1, `tri(L) = L (L + 1) / 2` (the
//! key positions a causal query sees, summed over queries) or `win_w(L) =
//! sum_{i < L} min(i + 1, w)` (the same under a sliding window of `w`), or the
//! work of the long-convolution call for a filter of `t` taps (`conv_t(L)` per
//! sequence and channel, `convk_t(L)` per channel for the filter's transform:
//! the direct form's multiply-adds or the FFTs', as `ir::kernel::longconv` plans).

use std::collections::BTreeMap;
use std::fmt;

/// A factor of `L` beyond its powers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Series {
    One,
    Tri,
    Win(i64),
    Conv(i64),
    ConvFilter(i64),
}

impl Series {
    fn eval(self, l: f64) -> f64 {
        match self {
            Series::One => 1.0,
            Series::Tri => l * (l + 1.0) / 2.0,
            Series::Win(w) => {
                let w = w as f64;
                if l <= w {
                    l * (l + 1.0) / 2.0
                } else {
                    w * (w + 1.0) / 2.0 + (l - w) * w
                }
            }
            Series::Conv(t) => crate::ir::kernel::longconv::flops(l as usize, t as usize).0,
            Series::ConvFilter(t) => crate::ir::kernel::longconv::flops(l as usize, t as usize).1,
        }
    }
}

/// A sum of terms `coefficient * B^b * L^l * series(L)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Count {
    terms: BTreeMap<(i32, i32, Series), f64>,
}

impl Count {
    pub fn zero() -> Count {
        Count::default()
    }

    pub fn constant(c: f64) -> Count {
        Count::term(c, 0, 0, Series::One)
    }

    pub fn term(c: f64, b: i32, l: i32, s: Series) -> Count {
        let mut x = Count::zero();
        if c != 0.0 {
            x.terms.insert((b, l, s), c);
        }
        x
    }

    /// `B`, `L` or a constant, for a dimension.
    pub fn dim(d: &crate::sema::Dim) -> Count {
        match d {
            crate::sema::Dim::Known(v) => Count::constant(*v as f64),
            crate::sema::Dim::Sym(s) if &**s == "B" => Count::term(1.0, 1, 0, Series::One),
            crate::sema::Dim::Sym(s) if &**s == "L" => Count::term(1.0, 0, 1, Series::One),
            // Other symbols (a step graph's `T`) count as one.
            crate::sema::Dim::Sym(_) => Count::constant(1.0),
        }
    }

    pub fn product(dims: &[crate::sema::Dim]) -> Count {
        dims.iter().fold(Count::constant(1.0), |acc, d| acc.mul(&Count::dim(d)))
    }

    pub fn add(&self, other: &Count) -> Count {
        let mut out = self.clone();
        for (k, v) in &other.terms {
            *out.terms.entry(*k).or_insert(0.0) += v;
        }
        out.terms.retain(|_, v| *v != 0.0);
        out
    }

    pub fn scale(&self, c: f64) -> Count {
        Count { terms: self.terms.iter().map(|(k, v)| (*k, v * c)).filter(|(_, v)| *v != 0.0).collect() }
    }

    pub fn mul(&self, other: &Count) -> Count {
        let mut out = Count::zero();
        for ((b1, l1, s1), c1) in &self.terms {
            for ((b2, l2, s2), c2) in &other.terms {
                let (s, l) = match (s1, s2) {
                    (Series::One, s) | (s, Series::One) => (*s, l1 + l2),
                    // Two series never meet in the counts built here; bound it by L^2.
                    _ => (Series::One, l1 + l2 + 2),
                };
                *out.terms.entry((b1 + b2, l, s)).or_insert(0.0) += c1 * c2;
            }
        }
        out.terms.retain(|_, v| *v != 0.0);
        out
    }

    /// The value at `B = b`, `L = l`.
    pub fn eval(&self, b: f64, l: f64) -> f64 {
        // `+ 0.0`: an empty sum is -0.0.
        self.terms.iter().map(|((pb, pl, s), c)| c * b.powi(*pb) * l.powi(*pl) * s.eval(l)).sum::<f64>() + 0.0
    }

    pub fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return write!(f, "0");
        }
        // Highest order first.
        let mut terms: Vec<(&(i32, i32, Series), &f64)> = self.terms.iter().collect();
        terms.sort_by_key(|t| std::cmp::Reverse((t.0 .1, t.0 .2, t.0 .0)));
        for (i, ((b, l, s), c)) in terms.into_iter().enumerate() {
            let mut factors: Vec<String> = Vec::new();
            let (sign, c) = if *c < 0.0 { ("-", -c) } else { ("+", *c) };
            let power = |name: &str, p: i32| match p {
                0 => None,
                1 => Some(name.to_string()),
                p => Some(format!("{name}^{p}")),
            };
            factors.extend(power("B", *b));
            factors.extend(power("L", *l));
            match s {
                Series::One => {}
                Series::Tri => factors.push("tri(L)".into()),
                Series::Win(w) => factors.push(format!("win{w}(L)")),
                Series::Conv(t) => factors.push(format!("conv{t}(L)")),
                Series::ConvFilter(t) => factors.push(format!("convk{t}(L)")),
            }
            let coeff = if c.fract() == 0.0 { format!("{c:.0}") } else { format!("{c}") };
            let text = match (coeff.as_str(), factors.is_empty()) {
                (_, true) => coeff,
                ("1", false) => factors.join("*"),
                (_, false) => format!("{coeff}*{}", factors.join("*")),
            };
            match (i, sign) {
                (0, "-") => write!(f, "-{text}")?,
                (0, _) => write!(f, "{text}")?,
                (_, s) => write!(f, " {s} {text}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_count_what_they_say() {
        let brute = |l: i64, w: Option<i64>| (0..l).map(|i| w.map_or(i + 1, |w| (i + 1).min(w))).sum::<i64>() as f64;
        for l in [1, 2, 5, 64, 100] {
            assert_eq!(Series::Tri.eval(l as f64), brute(l, None));
            assert_eq!(Series::Win(8).eval(l as f64), brute(l, Some(8)));
        }
    }

    #[test]
    fn arithmetic_and_printing() {
        let bl = Count::term(2.0, 1, 1, Series::One);
        let x = bl.mul(&Count::constant(3.0)).add(&Count::term(1.0, 1, 0, Series::Tri));
        assert_eq!(x.eval(2.0, 10.0), 6.0 * 2.0 * 10.0 + 2.0 * 55.0);
        assert_eq!(x.to_string(), "6*B*L + B*tri(L)");
    }
}
