//! The figures of the `decide` scenario: per phase the rate, latencies, errors, and CPU.

use crate::figures::{Spec, Target};

const THROUGHPUT: Target = Target::RatioAtLeast { ratio: 0.7 };
const P99: Target = Target::AtMost { value: 25.0 };

/// Latency p50/p99/max and errors of phase `$p` (`$what` names it).
macro_rules! latencies {
    ($p:literal, $what:literal) => {
        [
            Spec::plain(
                concat!($p, ".p50_ms"),
                "ms",
                concat!($what, ", latency p50"),
            ),
            Spec::plain(
                concat!($p, ".p99_ms"),
                "ms",
                concat!($what, ", latency p99"),
            ),
            Spec::plain(
                concat!($p, ".max_ms"),
                "ms",
                concat!($what, ", latency max"),
            ),
            Spec::plain(concat!($p, ".errors"), "count", concat!($what, ", failed")),
        ]
    };
}

/// Machine CPU and CPU per decision of each component in phase `$p`.
macro_rules! cpu {
    ($p:literal) => {
        [
            Spec::plain(concat!($p, ".busy_cores"), "cores", "machine CPU busy"),
            Spec::plain(
                concat!($p, ".cpu_us_gatehouse"),
                "µs/op",
                "CPU of this process",
            ),
            Spec::plain(concat!($p, ".cpu_us_postgres"), "µs/op", "CPU of Postgres"),
            Spec::plain(concat!($p, ".cpu_us_nats"), "µs/op", "CPU of nats-server"),
            Spec::plain(
                concat!($p, ".other_cores"),
                "cores",
                "CPU busy elsewhere (noise)",
            ),
            Spec::plain(
                concat!($p, ".steal_cores"),
                "cores",
                "CPU taken by the hypervisor (noise)",
            ),
        ]
    };
}

const DECIDE: [Spec; 4] = latencies!("decide", "decision.evaluate as a host (svc)");
const INTERNAL: [Spec; 4] =
    latencies!("internal", "decision.evaluate, own account (no role check)");
const ALONE: [Spec; 4] = latencies!(
    "gateway_only",
    "decision.evaluate, relay/projectors stopped"
);
const RAW: [Spec; 4] = latencies!("raw", "raw Postgres insert");
const DECIDE_CPU: [Spec; 6] = cpu!("decide");
const INTERNAL_CPU: [Spec; 6] = cpu!("internal");
const ALONE_CPU: [Spec; 6] = cpu!("gateway_only");
const RAW_CPU: [Spec; 6] = cpu!("raw");

/// Every figure of the scenario, in the order of the table.
pub const SPECS: &[Spec] = &[
    Spec::plain(
        "decide.rate",
        "dec/s",
        "publish decisions, persisted, as a host",
    )
    .versus("raw.rate")
    .target(THROUGHPUT),
    Spec::plain("internal.rate", "dec/s", "the same without the role check").versus("raw.rate"),
    Spec::plain(
        "gateway_only.rate",
        "dec/s",
        "as a host, relay/projectors stopped",
    )
    .versus("raw.rate"),
    Spec::plain(
        "raw.rate",
        "ins/s",
        "limit: one raw Postgres insert per decision",
    ),
    DECIDE[0].versus("raw.p50_ms"),
    DECIDE[1].versus("raw.p99_ms").target(P99),
    DECIDE[2],
    DECIDE[3],
    INTERNAL[0],
    INTERNAL[1],
    INTERNAL[2],
    INTERNAL[3],
    ALONE[0],
    ALONE[1],
    ALONE[2],
    ALONE[3],
    RAW[0],
    RAW[1],
    RAW[2],
    RAW[3],
    DECIDE_CPU[0],
    DECIDE_CPU[4],
    DECIDE_CPU[1],
    DECIDE_CPU[2],
    DECIDE_CPU[3],
    DECIDE_CPU[5],
    INTERNAL_CPU[0],
    INTERNAL_CPU[4],
    INTERNAL_CPU[1],
    INTERNAL_CPU[2],
    INTERNAL_CPU[3],
    ALONE_CPU[0],
    ALONE_CPU[4],
    ALONE_CPU[1],
    ALONE_CPU[2],
    ALONE_CPU[3],
    RAW_CPU[0],
    RAW_CPU[4],
    RAW_CPU[1],
    RAW_CPU[2],
    RAW_CPU[3],
];
