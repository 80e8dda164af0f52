//! The figures of the `activation` scenario: per worker-process count the run's rate, time to
//! success, peak RSS and CPU; the two limits.

use crate::figures::{Spec, Target};

/// What a run should reach, in items per second and as a share of the COPY limit.
const RATE: Target = Target::AtLeast { value: 100_000.0 };
const VERSUS_COPY: Target = Target::RatioAtLeast { ratio: 0.5 };
const RSS: Target = Target::AtMost { value: 256.0 };

/// The figures of runs with `$w` worker processes (`$what` says so).
macro_rules! runs {
    ($w:literal, $what:literal) => {
        [
            Spec::plain(
                concat!($w, ".rate"),
                "items/s",
                concat!("catalog items evaluated per second, ", $what),
            )
            .versus("copy.rate")
            .target(RATE)
            .target(VERSUS_COPY),
            Spec::plain(
                concat!($w, ".seconds"),
                "s",
                concat!("Prepare sent → run succeeded, ", $what),
            ),
            Spec::plain(
                concat!($w, ".prepare_ms"),
                "ms",
                "the Prepare command (freezing the snapshot)",
            ),
            Spec::plain(
                concat!($w, ".rss_mib"),
                "MiB",
                "peak RSS of the largest worker process",
            )
            .target(RSS),
            Spec::plain(
                concat!($w, ".cpu_us_workers"),
                "µs/item",
                "CPU of the worker processes",
            ),
            Spec::plain(
                concat!($w, ".cpu_us_postgres"),
                "µs/item",
                "CPU of Postgres",
            ),
            Spec::plain(
                concat!($w, ".cpu_us_gatehouse"),
                "µs/item",
                "CPU of this process (gateway, relay, projectors)",
            ),
            Spec::plain(concat!($w, ".busy_cores"), "cores", "machine CPU busy"),
            Spec::plain(
                concat!($w, ".other_cores"),
                "cores",
                "CPU busy elsewhere (noise)",
            ),
            Spec::plain(
                concat!($w, ".steal_cores"),
                "cores",
                "CPU taken by the hypervisor (noise)",
            ),
        ]
    };
}

const ONE: [Spec; 10] = runs!("w1", "1 worker process");
const TWO: [Spec; 10] = runs!("w2", "2 worker processes");

/// Every figure of the scenario.
pub const SPECS: &[Spec] = &[
    ONE[0],
    TWO[0],
    Spec::plain(
        "eval.rate",
        "items/s",
        "limit (CPU): in-process evaluation of the same rules over the same items, all cores",
    ),
    Spec::plain(
        "copy.rate",
        "rows/s",
        "limit (I/O): binary COPY of the result rows into an eval_results twin",
    ),
    ONE[3],
    TWO[3],
    ONE[1],
    TWO[1],
    ONE[2],
    TWO[2],
    ONE[4],
    ONE[5],
    ONE[6],
    ONE[7],
    ONE[8],
    ONE[9],
    TWO[4],
    TWO[5],
    TWO[6],
    TWO[7],
    TWO[8],
    TWO[9],
    Spec::plain(
        "load.rate",
        "items/s",
        "loading the catalog (binary COPY, once)",
    ),
];
