//! The streams and durable consumers the roles create, as configuration to compare with what
//! the broker holds: `/readyz` checks the streams, `gatehouse doctor` the consumers too, and
//! names every difference (drift).
//!
//! The stream configurations are the ones the roles create ([`crate::broker`]'s `*_config`
//! functions). A consumer's expectation lists what its role sets that matters for delivery:
//! its stream, filter subjects, explicit acks, `max_deliver` and `ack_wait` (from the same
//! settings and defaults the role reads).

use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use gatehouse_events::{artifact, category, policy, subjects};
use gatehouse_projections::consumer::{DEFAULT_ACK_WAIT, UNLIMITED_DELIVERIES};

use crate::settings::Settings;

/// Every stream the system needs, as its roles create it.
pub fn streams(settings: &Settings) -> Vec<stream::Config> {
    let ns = &settings.namespace;
    vec![
        crate::broker::events_stream_config(settings),
        gatehouse_projections::dead_letter::stream_config(ns),
        crate::broker::notify_stream_config(settings),
        gatehouse_projections::catalog::stream_config(ns),
        crate::broker::jobs_stream_config(settings),
        crate::broker::outcomes_stream_config(settings),
    ]
}

/// How `actual` differs from `expected` in what the roles set, one line per difference.
pub fn stream_drift(expected: &stream::Config, actual: &stream::Config) -> Vec<String> {
    let mut drift = Vec::new();
    let mut differ = |what: &str, want: String, got: String| {
        if want != got {
            drift.push(format!("{what} is {got}, expected {want}"));
        }
    };
    let sorted = |subjects: &[String]| {
        let mut s = subjects.to_vec();
        s.sort();
        s.join(",")
    };
    differ(
        "subjects",
        sorted(&expected.subjects),
        sorted(&actual.subjects),
    );
    differ(
        "retention",
        format!("{:?}", expected.retention),
        format!("{:?}", actual.retention),
    );
    differ(
        "storage",
        format!("{:?}", expected.storage),
        format!("{:?}", actual.storage),
    );
    differ(
        "max_age",
        format!("{:?}", expected.max_age),
        format!("{:?}", actual.max_age),
    );
    // Zero asks for the server's default, which the server then reports.
    if !expected.duplicate_window.is_zero() {
        differ(
            "duplicate_window",
            format!("{:?}", expected.duplicate_window),
            format!("{:?}", actual.duplicate_window),
        );
    }
    for (what, want, got) in [
        ("allow_direct", expected.allow_direct, actual.allow_direct),
        ("deny_delete", expected.deny_delete, actual.deny_delete),
        ("deny_purge", expected.deny_purge, actual.deny_purge),
    ] {
        differ(what, want.to_string(), got.to_string());
    }
    drift
}

/// What the doctor expects of the settings the roles read besides [`Settings`].
#[derive(Debug, Clone)]
pub struct RoleSettings {
    /// The projectors' ack wait (`ProjectorSettings::ack_wait`).
    pub projector_ack_wait: Duration,
    /// The workers' ack wait (`GATEHOUSE_WORKER_*`, [`crate::worker::WorkerSettings`]).
    pub worker_ack_wait: Duration,
    /// The indexer's deliveries (`GATEHOUSE_INDEXER_MAX_DELIVER`).
    pub indexer_max_deliver: i64,
}

impl RoleSettings {
    /// What the roles read from this environment.
    pub fn from_env() -> Result<Self, crate::settings::SettingsError> {
        Ok(RoleSettings {
            projector_ack_wait: DEFAULT_ACK_WAIT,
            worker_ack_wait: crate::worker::WorkerSettings::from_env()?.ack_wait,
            indexer_max_deliver: crate::catalog::indexer::IndexerSettings::from_env()?.max_deliver,
        })
    }
}

/// One durable consumer as its role creates it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedConsumer {
    /// The role that creates it (`gatehouse <role>`, or part of `gatehouse up`).
    pub role: &'static str,
    pub stream: String,
    pub name: String,
    /// Sorted.
    pub filters: Vec<String>,
    pub ack_wait: Duration,
    pub max_deliver: i64,
}

/// Every durable consumer the roles of `gatehouse up` create.
pub fn consumers(settings: &Settings, roles: &RoleSettings) -> Vec<ExpectedConsumer> {
    let ns = settings.namespace.as_str();
    let events = subjects::events_stream(ns);
    let catalog = subjects::catalog_stream(ns);
    let worker_ack = roles.worker_ack_wait.max(Duration::from_secs(1));
    let one = |role, stream: &str, suffix: &str, filters: Vec<String>, ack_wait, max_deliver| {
        let mut filters = filters;
        filters.sort();
        ExpectedConsumer {
            role,
            stream: stream.to_owned(),
            name: subjects::projector_consumer(ns, suffix),
            filters,
            ack_wait,
            max_deliver,
        }
    };
    let promoted = || {
        vec![subjects::event(
            ns,
            policy::AGGREGATE,
            "*",
            "PolicyPromoted",
        )]
    };
    let mut all: Vec<ExpectedConsumer> = gatehouse_projections::read_models()
        .iter()
        .map(|model| {
            let filters = model.filter_subjects(ns);
            let ack = roles.projector_ack_wait;
            one(
                "projector",
                &events,
                model.name(),
                filters,
                ack,
                UNLIMITED_DELIVERIES,
            )
        })
        .collect();
    let run_events = ["RunPrepared", "RunResumed"]
        .map(|t| subjects::event(ns, policy::AGGREGATE, "*", t))
        .to_vec();
    let unlimited = UNLIMITED_DELIVERIES;
    all.extend([
        one(
            "projector",
            &catalog,
            gatehouse_projections::catalog::NAME,
            vec![subjects::all_catalog_items(ns)],
            roles.projector_ack_wait,
            unlimited,
        ),
        one(
            "worker",
            &events,
            "scheduler",
            run_events,
            worker_ack,
            unlimited,
        ),
        one(
            "worker",
            &subjects::jobs_stream(ns),
            "workers",
            vec![subjects::evaluation_jobs(ns)],
            worker_ack,
            unlimited,
        ),
        one(
            "worker",
            &catalog,
            "live",
            vec![subjects::all_catalog_items(ns)],
            worker_ack,
            unlimited,
        ),
        one(
            "notifier",
            &events,
            "notifier",
            promoted(),
            DEFAULT_ACK_WAIT,
            unlimited,
        ),
        one(
            "releaser",
            &events,
            "releaser",
            promoted(),
            DEFAULT_ACK_WAIT,
            unlimited,
        ),
        one(
            "indexer",
            &events,
            crate::catalog::indexer::CONSUMER,
            vec![subjects::aggregate_events(ns, artifact::AGGREGATE)],
            DEFAULT_ACK_WAIT,
            roles.indexer_max_deliver,
        ),
        one(
            "categoriser",
            &catalog,
            "categoriser",
            vec![subjects::all_catalog_items(ns)],
            DEFAULT_ACK_WAIT,
            unlimited,
        ),
        one(
            "categoriser",
            &events,
            "categoriser_rules",
            vec![subjects::aggregate_events(ns, category::AGGREGATE)],
            DEFAULT_ACK_WAIT,
            unlimited,
        ),
        one(
            "flag-monitor",
            &subjects::outcomes_stream(ns),
            "flag_monitor",
            vec![subjects::all_outcomes(ns)],
            DEFAULT_ACK_WAIT,
            unlimited,
        ),
    ]);
    // External subscribers bind to it; the notifier creates it, under a fixed name.
    all.push(ExpectedConsumer {
        role: "notifier",
        stream: subjects::notify_stream(ns),
        name: subjects::SUBSCRIBER_CONSUMER.to_owned(),
        filters: vec![subjects::policy_promoted(ns)],
        ack_wait: Duration::from_secs(30),
        max_deliver: unlimited,
    });
    all
}

/// How `actual` differs from `expected`, one line per difference.
pub fn consumer_drift(expected: &ExpectedConsumer, actual: &consumer::Config) -> Vec<String> {
    let mut filters = actual.filter_subjects.clone();
    if !actual.filter_subject.is_empty() {
        filters.push(actual.filter_subject.clone());
    }
    filters.sort();
    let mut drift = Vec::new();
    if filters != expected.filters {
        drift.push(format!(
            "filter is {}, expected {}",
            show(&filters),
            show(&expected.filters)
        ));
    }
    if actual.ack_wait != expected.ack_wait {
        drift.push(format!(
            "ack_wait is {:?}, expected {:?}",
            actual.ack_wait, expected.ack_wait
        ));
    }
    if actual.max_deliver != expected.max_deliver {
        drift.push(format!(
            "max_deliver is {}, expected {}",
            actual.max_deliver, expected.max_deliver
        ));
    }
    if actual.ack_policy != consumer::AckPolicy::Explicit {
        drift.push(format!(
            "ack_policy is {:?}, expected Explicit",
            actual.ack_policy
        ));
    }
    drift
}

fn show(filters: &[String]) -> String {
    if filters.is_empty() {
        "(none: every subject)".into()
    } else {
        filters.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::new("postgres://x", "nats://x", "gatehouse")
    }

    fn roles() -> RoleSettings {
        RoleSettings {
            projector_ack_wait: DEFAULT_ACK_WAIT,
            worker_ack_wait: DEFAULT_ACK_WAIT,
            indexer_max_deliver: 5,
        }
    }

    #[test]
    fn every_stream_of_the_namespace_is_expected() {
        let names: Vec<String> = streams(&settings()).into_iter().map(|c| c.name).collect();
        assert_eq!(names, subjects::namespace_streams("gatehouse").to_vec());
    }

    #[test]
    fn consumer_names_are_unique_per_stream() {
        let all = consumers(&settings(), &roles());
        let mut keys: Vec<_> = all.iter().map(|c| (&c.stream, &c.name)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), all.len());
    }

    #[test]
    fn a_changed_ack_wait_and_filter_are_named() {
        let expected = consumers(&settings(), &roles())
            .into_iter()
            .find(|c| c.name == "gatehouse_indexer")
            .expect("the indexer's consumer");
        let actual = consumer::Config {
            filter_subject: "gatehouse.events.>".into(),
            ack_wait: Duration::from_secs(99),
            max_deliver: 5,
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        };
        let drift = consumer_drift(&expected, &actual);
        assert_eq!(drift.len(), 2, "{drift:?}");
        assert!(
            drift[0].starts_with("filter is gatehouse.events.>"),
            "{drift:?}"
        );
        assert_eq!(drift[1], "ack_wait is 99s, expected 10s");
    }

    #[test]
    fn a_stream_that_lost_its_protection_is_named() {
        let expected = crate::broker::events_stream_config(&settings());
        let mut actual = expected.clone();
        actual.deny_delete = false;
        assert_eq!(
            stream_drift(&expected, &actual),
            ["deny_delete is false, expected true"]
        );
    }
}
