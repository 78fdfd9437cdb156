//! How far apart two systems are on the same photos: each photo is read
//! right or wrong by each, so the difference of their exact-plate rates is
//! (photos only we read − photos only the peer read) ÷ photos. Its 95 %
//! interval is a paired bootstrap (the photos resampled with replacement,
//! each keeping both outcomes; the 2.5th and 97.5th percentiles of the
//! difference over the resamples, with a fixed seed so a run repeats), and
//! beside it the exact McNemar test of the discordant photos (a two-sided
//! binomial test of "only ours" against "only the peer's" at ½).

use rand::{Rng, SeedableRng};

/// Resamples of the bootstrap.
pub const RESAMPLES: usize = 10_000;
/// How the interval is made, for reports.
pub const METHOD: &str = "paired bootstrap: the photos resampled with replacement 10,000 times \
                          (fixed seed), each keeping both systems' outcomes; the 2.5th and 97.5th \
                          percentiles of the difference";

/// Two systems' outcomes on the same photos.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    pub n: usize,
    /// Photos both read right, only ours, only the peer, neither.
    pub both: usize,
    pub ours_only: usize,
    pub peer_only: usize,
    pub neither: usize,
    /// Our exact-plate rate minus the peer's.
    pub diff: f64,
    /// Its 95 % interval.
    pub ci95: (f64, f64),
    /// The exact McNemar test's two-sided p-value.
    pub mcnemar_p: f64,
}

/// Compare `(ours right, peer right)` per photo; `None` for no photos.
pub fn compare(pairs: &[(bool, bool)]) -> Option<Paired> {
    let n = pairs.len();
    if n == 0 {
        return None;
    }
    let count = |f: fn(&(bool, bool)) -> bool| pairs.iter().filter(|p| f(p)).count();
    let both = count(|p| p.0 && p.1);
    let ours_only = count(|p| p.0 && !p.1);
    let peer_only = count(|p| !p.0 && p.1);
    Some(Paired {
        n,
        both,
        ours_only,
        peer_only,
        neither: n - both - ours_only - peer_only,
        diff: (ours_only as f64 - peer_only as f64) / n as f64,
        ci95: bootstrap_ci(pairs, RESAMPLES, 0x5EED_A1F7),
        mcnemar_p: mcnemar_exact_p(ours_only, peer_only),
    })
}

/// The 95 % percentile interval of the difference over `resamples`
/// paired resamples.
fn bootstrap_ci(pairs: &[(bool, bool)], resamples: usize, seed: u64) -> (f64, f64) {
    let n = pairs.len();
    // Each photo counts +1 (only ours), −1 (only the peer's) or 0.
    let score: Vec<i32> = pairs
        .iter()
        .map(|&(o, p)| i32::from(o) - i32::from(p))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut diffs: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let sum: i64 = (0..n).map(|_| i64::from(score[rng.gen_range(0..n)])).sum();
            sum as f64 / n as f64
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let at = |q: f64| diffs[((diffs.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// Two-sided exact McNemar p-value: P(X ≤ min(b, c)) doubled (at most 1),
/// X ~ Binomial(b + c, ½).
fn mcnemar_exact_p(b: usize, c: usize) -> f64 {
    let total = b + c;
    if total == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // ln C(total, i) · ½^total, summed in order.
    let mut ln_term = total as f64 * 0.5f64.ln();
    let mut tail = 0.0;
    for i in 0..=k {
        tail += ln_term.exp();
        ln_term += ((total - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_outcomes_differ_by_nothing() {
        let pairs: Vec<(bool, bool)> = (0..50).map(|i| (i % 3 == 0, i % 3 == 0)).collect();
        let p = compare(&pairs).expect("photos");
        assert_eq!((p.ours_only, p.peer_only), (0, 0));
        assert_eq!(p.diff, 0.0);
        assert_eq!(p.ci95, (0.0, 0.0));
        assert_eq!(p.mcnemar_p, 1.0);
        assert!(compare(&[]).is_none());
    }

    #[test]
    fn a_clear_lead_has_an_interval_above_zero_and_a_small_p() {
        // 100 photos: 60 both, 25 only ours, 5 only the peer's, 10 neither.
        let mut pairs = vec![(true, true); 60];
        pairs.extend(vec![(true, false); 25]);
        pairs.extend(vec![(false, true); 5]);
        pairs.extend(vec![(false, false); 10]);
        let p = compare(&pairs).expect("photos");
        assert_eq!(
            (p.both, p.ours_only, p.peer_only, p.neither),
            (60, 25, 5, 10)
        );
        assert!((p.diff - 0.20).abs() < 1e-12);
        assert!(p.ci95.0 > 0.05 && p.ci95.0 < p.diff, "{:?}", p.ci95);
        assert!(p.ci95.1 > p.diff && p.ci95.1 < 0.35, "{:?}", p.ci95);
        assert!(p.mcnemar_p < 0.001, "{}", p.mcnemar_p);
        // The other way round: the interval mirrors.
        let flipped: Vec<(bool, bool)> = pairs.iter().map(|&(o, p)| (p, o)).collect();
        let q = compare(&flipped).expect("photos");
        assert!((q.diff + 0.20).abs() < 1e-12);
        assert!(q.ci95.1 < 0.0);
    }

    #[test]
    fn the_exact_test_matches_the_binomial() {
        // Five discordant photos, all one way: 2 × ½⁵.
        assert!((mcnemar_exact_p(5, 0) - 0.0625).abs() < 1e-12);
        assert!((mcnemar_exact_p(0, 5) - 0.0625).abs() < 1e-12);
        // 3 against 3: the whole distribution, capped at 1.
        assert_eq!(mcnemar_exact_p(3, 3), 1.0);
        // 1 against 9: 2 × (1 + 10) / 1024.
        assert!((mcnemar_exact_p(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
    }
}
