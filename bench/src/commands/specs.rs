//! The figures of the `commands` scenario: per phase the rate, latencies, errors, and CPU.

use crate::figures::{Spec, Target};

const THROUGHPUT: Target = Target::RatioAtLeast { ratio: 0.7 };

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

/// Machine CPU and CPU per command of each component in phase `$p`.
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

const CREATE: [Spec; 4] = latencies!("create", "policy.create");
const DRAFT: [Spec; 4] = latencies!("draft", "policy.draft");
const ALONE: [Spec; 4] = latencies!("gateway_only", "policy.create, no relay/projectors");
const RAW: [Spec; 4] = latencies!("raw", "raw Postgres append");
const ECHO: [Spec; 4] = latencies!("echo", "NATS request/reply");
const CREATE_CPU: [Spec; 6] = cpu!("create");
const DRAFT_CPU: [Spec; 6] = cpu!("draft");
const ALONE_CPU: [Spec; 6] = cpu!("gateway_only");
const RAW_CPU: [Spec; 6] = cpu!("raw");
const ECHO_CPU: [Spec; 6] = cpu!("echo");
const DRAIN_CPU: [Spec; 6] = cpu!("drain");

const BACKLOG: &str = "relay + projectors catching up after the phase";

/// Every figure of the scenario, in the order of the table.
pub const SPECS: &[Spec] = &[
    Spec::plain("create.rate", "cmd/s", "policy.create through the gateway")
        .versus("raw.rate")
        .target(THROUGHPUT),
    Spec::plain("draft.rate", "cmd/s", "policy.draft through the gateway")
        .versus("raw.rate")
        .target(THROUGHPUT),
    Spec::plain("raw.rate", "cmd/s", "limit: raw tokio-postgres append loop"),
    Spec::plain(
        "gateway_only.rate",
        "cmd/s",
        "policy.create, relay/projectors stopped",
    )
    .versus("raw.rate"),
    Spec::plain(
        "drain.rate",
        "events/s",
        "relay + projectors working off that backlog",
    ),
    Spec::plain("echo.rate", "req/s", "NATS request/reply, no-op responder"),
    CREATE[0].versus("raw.p50_ms"),
    CREATE[1].versus("raw.p99_ms"),
    CREATE[2],
    CREATE[3],
    Spec::plain("create.backlog_s", "s", BACKLOG),
    DRAFT[0].versus("raw.p50_ms"),
    DRAFT[1].versus("raw.p99_ms"),
    DRAFT[2],
    DRAFT[3],
    Spec::plain("draft.backlog_s", "s", BACKLOG),
    Spec::plain(
        "draft.events_per_policy",
        "events",
        "policy stream length at the end",
    ),
    Spec::plain(
        "draft.validate_us",
        "µs",
        "CEL validation of the rules (one thread)",
    ),
    Spec::plain(
        "draft.load_us",
        "µs",
        "loading one such policy (one thread)",
    ),
    ALONE[0].versus("raw.p50_ms"),
    ALONE[1].versus("raw.p99_ms"),
    ALONE[3],
    RAW[0],
    RAW[1],
    RAW[2],
    RAW[3],
    ECHO[0],
    ECHO[1],
    ECHO[3],
    CREATE_CPU[0],
    CREATE_CPU[4],
    CREATE_CPU[1],
    CREATE_CPU[2],
    CREATE_CPU[3],
    CREATE_CPU[5],
    DRAFT_CPU[0],
    DRAFT_CPU[4],
    DRAFT_CPU[1],
    DRAFT_CPU[2],
    DRAFT_CPU[3],
    DRAFT_CPU[5],
    ALONE_CPU[0],
    ALONE_CPU[4],
    ALONE_CPU[1],
    ALONE_CPU[2],
    ALONE_CPU[3],
    ALONE_CPU[5],
    DRAIN_CPU[0],
    DRAIN_CPU[4],
    DRAIN_CPU[1],
    DRAIN_CPU[2],
    DRAIN_CPU[3],
    DRAIN_CPU[5],
    RAW_CPU[0],
    RAW_CPU[4],
    RAW_CPU[1],
    RAW_CPU[2],
    ECHO_CPU[0],
    ECHO_CPU[4],
    ECHO_CPU[1],
    ECHO_CPU[3],
    ECHO_CPU[5],
];
