//! Order statistics: percentiles of one repetition's latency samples, and the median and
//! spread of one figure over the repetitions.

use std::time::Duration;

use serde::Serialize;

/// The `p`-th percentile (0–100) of `sorted` by nearest rank: the smallest sample with at
/// least `p` % of the samples at or below it. `None` when there are no samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let sorted = sorted(values);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// `values` sorted ascending (NaNs last).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Median, minimum and maximum of one figure over the repetitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let sorted = sorted(values);
        Some(Spread {
            median: median(&sorted)?,
            min: *sorted.first()?,
            max: *sorted.last()?,
        })
    }
}

/// Latency percentiles of one repetition, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latencies {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latencies {
    /// The percentiles of `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Latencies> {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Self::of_ms(&ms)
    }

    /// The percentiles of samples already in milliseconds.
    pub fn of_ms(ms: &[f64]) -> Option<Latencies> {
        let sorted = sorted(ms);
        Some(Latencies {
            samples: sorted.len(),
            p50: percentile(&sorted, 50.0)?,
            p99: percentile(&sorted, 99.0)?,
            max: *sorted.last()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn nothing_has_no_median_and_no_percentile() {
        assert_eq!(median(&[]), None);
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn a_percentile_is_the_nearest_rank() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50.0));
        assert_eq!(percentile(&hundred, 99.0), Some(99.0));
        assert_eq!(percentile(&hundred, 100.0), Some(100.0));
        assert_eq!(percentile(&hundred, 0.0), Some(1.0));
    }

    #[test]
    fn the_p99_of_few_samples_is_their_maximum() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 99.0), Some(3.0));
    }

    #[test]
    fn a_spread_names_median_min_and_max() {
        let s = Spread::of(&[7.0, 3.0, 5.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (5.0, 3.0, 7.0));
    }

    #[test]
    fn latencies_are_reported_in_milliseconds() {
        let samples: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        let l = Latencies::of(&samples).unwrap();
        assert_eq!((l.samples, l.p50, l.p99, l.max), (200, 100.0, 198.0, 200.0));
    }
}
