//! The streams and durable consumers the roles create, as configuration to compare with what
//! the broker holds: `/readyz` checks the streams, `gatehouse doctor` the consumers too, and
//! names every difference (drift).
//!
//! The stream configurations are the ones the roles create ([`crate::broker`]'s `*_config`
//! functions). A consumer's expectation is read from the [`Durable`] its role declares and
//! creates the consumer from (from the same settings and defaults the role reads): what
//! matters for delivery, its stream, filter subjects, explicit acks, `max_deliver` and
//! `ack_wait`.

use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use gatehouse_projections::consumer::{Durable, DEFAULT_ACK_WAIT};
use gatehouse_projections::{catalog, runtime, CatalogSettings, ProjectorSettings};

use crate::broker;
use crate::catalog::indexer::IndexerSettings;
use crate::settings::Settings;
use crate::worker::WorkerSettings;

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

impl ExpectedConsumer {
    /// What the doctor checks of `durable`, as `role` declares it.
    pub fn of(role: &'static str, durable: &Durable) -> Self {
        ExpectedConsumer {
            role,
            stream: durable.stream.clone(),
            name: durable.name().to_owned(),
            filters: durable.filters(),
            ack_wait: durable.config.ack_wait,
            max_deliver: durable.config.max_deliver,
        }
    }
}

/// Every durable consumer the roles of `gatehouse up` create: the declarations each role
/// creates its consumers from.
pub fn consumers(settings: &Settings, roles: &RoleSettings) -> Vec<ExpectedConsumer> {
    let ns = settings.namespace.as_str();
    let projector = ProjectorSettings {
        ack_wait: roles.projector_ack_wait,
        ..ProjectorSettings::new(ns)
    };
    let worker = WorkerSettings {
        ack_wait: roles.worker_ack_wait,
        ..WorkerSettings::default()
    };
    let indexer = IndexerSettings {
        max_deliver: roles.indexer_max_deliver,
        ..IndexerSettings::default()
    };
    let mut all: Vec<(&'static str, Durable)> = gatehouse_projections::read_models()
        .iter()
        .map(|model| ("projector", runtime::durable(model.as_ref(), &projector)))
        .collect();
    all.push((
        "projector",
        catalog::durable(&CatalogSettings::new(projector)),
    ));
    all.extend(crate::worker::durables(ns, &worker).map(|d| ("worker", d)));
    all.extend([
        ("notifier", broker::promotions_durable(ns, "notifier")),
        ("releaser", broker::promotions_durable(ns, "releaser")),
        ("indexer", crate::catalog::indexer::durable(ns, &indexer)),
    ]);
    all.extend(crate::category::categoriser::durables(ns).map(|d| ("categoriser", d)));
    all.extend([
        ("flag-monitor", crate::flag::monitor::durable(ns)),
        // External subscribers bind to it; the notifier creates it.
        ("notifier", crate::notifier::subscriber_durable(ns)),
    ]);
    all.iter()
        .map(|(role, durable)| ExpectedConsumer::of(role, durable))
        .collect()
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
    use gatehouse_events::subjects;

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
    fn each_role_is_expected_to_have_the_consumers_it_declares() {
        let all = consumers(&settings(), &roles());
        let others: Vec<(&str, &str, &str)> = all
            .iter()
            .filter(|c| c.role != "projector")
            .map(|c| (c.role, c.stream.as_str(), c.name.as_str()))
            .collect();
        assert_eq!(
            others,
            [
                ("worker", "GATEHOUSE_EVENTS", "gatehouse_scheduler"),
                ("worker", "GATEHOUSE_JOBS", "gatehouse_workers"),
                ("worker", "GATEHOUSE_CATALOG", "gatehouse_live"),
                ("notifier", "GATEHOUSE_EVENTS", "gatehouse_notifier"),
                ("releaser", "GATEHOUSE_EVENTS", "gatehouse_releaser"),
                ("indexer", "GATEHOUSE_EVENTS", "gatehouse_indexer"),
                ("categoriser", "GATEHOUSE_CATALOG", "gatehouse_categoriser"),
                (
                    "categoriser",
                    "GATEHOUSE_EVENTS",
                    "gatehouse_categoriser_rules"
                ),
                (
                    "flag-monitor",
                    "GATEHOUSE_OUTCOMES",
                    "gatehouse_flag_monitor"
                ),
                (
                    "notifier",
                    "GATEHOUSE_NOTIFY",
                    subjects::SUBSCRIBER_CONSUMER
                ),
            ]
        );
        // A projector per read model and the catalog's.
        let projectors = all.iter().filter(|c| c.role == "projector").count();
        assert_eq!(projectors, gatehouse_projections::read_models().len() + 1);
        let indexer = &all[all.len() - 5];
        assert_eq!(
            (indexer.max_deliver, indexer.ack_wait),
            (5, DEFAULT_ACK_WAIT)
        );
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
