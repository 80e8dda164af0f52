//! Every NATS subject, stream and consumer name Gatehouse uses, built in one place.
//!
//! Each function takes the namespace (default `gatehouse`; tests use `t_<uuid>`), so several
//! independent Gatehouse deployments can share one NATS account.

/// The namespace used when `GATEHOUSE_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "gatehouse";

/// The name the command gateway registers with the NATS services API (`$SRV.INFO.gatehouse`).
pub const SERVICE_NAME: &str = "gatehouse";

/// The queue group every gateway instance joins, so each request reaches exactly one of them.
pub const QUEUE_GROUP: &str = "gatehouse";

/// The durable consumer name external subscribers bind to on the notification stream.
pub const SUBSCRIBER_CONSUMER: &str = "subscriber";

/// Is `ns` usable as a namespace: `[a-z0-9_]`, starting with a letter, at most 40 characters?
pub fn is_valid_namespace(ns: &str) -> bool {
    let mut chars = ns.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && ns.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `<ns>.cmd.<aggregate>.<command>`: where a command is sent (request/reply).
pub fn command(ns: &str, aggregate: &str, command: &str) -> String {
    format!("{ns}.cmd.{aggregate}.{command}")
}

/// `<ns>.cmd`: the service-API group under which command endpoints are registered.
pub fn command_group(ns: &str) -> String {
    format!("{ns}.cmd")
}

/// `<ns>.query.<model>.<query>`: where a read-model query is sent (request/reply).
pub fn query(ns: &str, model: &str, query: &str) -> String {
    format!("{ns}.query.{model}.{query}")
}

/// `<ns>.query`: the service-API group under which query endpoints are registered.
pub fn query_group(ns: &str) -> String {
    format!("{ns}.query")
}

/// `<ns>.events.<aggregate>.<id>.<event_type>`: where the relay publishes one stored event.
pub fn event(ns: &str, aggregate: &str, id: &str, event_type: &str) -> String {
    format!("{ns}.events.{aggregate}.{id}.{event_type}")
}

/// `<ns>.events.>`: every event of the namespace (the events stream's subject).
pub fn all_events(ns: &str) -> String {
    format!("{ns}.events.>")
}

/// `<ns>.events.<aggregate>.>`: every event of one aggregate type.
pub fn aggregate_events(ns: &str, aggregate: &str) -> String {
    format!("{ns}.events.{aggregate}.>")
}

/// `<NS>_EVENTS`: the JetStream stream holding every stored event, in commit order.
pub fn events_stream(ns: &str) -> String {
    format!("{}_EVENTS", ns.to_ascii_uppercase())
}

/// `<ns>.dlq.<consumer>`: where a projector parks a message it cannot apply.
pub fn dead_letter(ns: &str, consumer: &str) -> String {
    format!("{ns}.dlq.{consumer}")
}

/// `<NS>_DLQ`: the dead-letter stream.
pub fn dead_letter_stream(ns: &str) -> String {
    format!("{}_DLQ", ns.to_ascii_uppercase())
}

/// `<ns>.dlq.>`: the dead-letter stream's subject.
pub fn all_dead_letters(ns: &str) -> String {
    format!("{ns}.dlq.>")
}

/// `<ns>_<projector>`: the durable consumer a projector reads the events stream with.
pub fn projector_consumer(ns: &str, projector: &str) -> String {
    format!("{ns}_{projector}")
}

/// `<ns>.notify.policy.promoted`: the durable, public announcement of a promotion.
pub fn policy_promoted(ns: &str) -> String {
    format!("{ns}.notify.policy.promoted")
}

/// `<ns>.live.policy.promoted`: the same announcement on a core (non-persisted) subject.
pub fn policy_promoted_live(ns: &str) -> String {
    format!("{ns}.live.policy.promoted")
}

/// `<NS>_NOTIFY`: the stream holding public notifications (`<ns>.notify.>`).
pub fn notify_stream(ns: &str) -> String {
    format!("{}_NOTIFY", ns.to_ascii_uppercase())
}

/// `<ns>.notify.>`: the notification stream's subject.
pub fn all_notifications(ns: &str) -> String {
    format!("{ns}.notify.>")
}

/// `<ns>.catalog.items.<id>`: where catalog changes for one item are published.
pub fn catalog_item(ns: &str, item_id: &str) -> String {
    format!("{ns}.catalog.items.{item_id}")
}

/// The item token of a catalog subject `<ns>.catalog.items.<id>`, whatever the namespace (a
/// single token); not checked as an item id. `None` for any other subject.
pub fn catalog_item_of(subject: &str) -> Option<&str> {
    let (_ns, rest) = subject.split_once('.')?;
    rest.strip_prefix("catalog.items.")
}

/// `<ns>.catalog.items.>`: every catalog change (the catalog stream's subject).
pub fn all_catalog_items(ns: &str) -> String {
    format!("{ns}.catalog.items.>")
}

/// `<NS>_CATALOG`: the stream of catalog upserts and deletes.
pub fn catalog_stream(ns: &str) -> String {
    format!("{}_CATALOG", ns.to_ascii_uppercase())
}

/// `<ns>.jobs.evaluate`: evaluation batch jobs.
pub fn evaluation_jobs(ns: &str) -> String {
    format!("{ns}.jobs.evaluate")
}

/// `<NS>_JOBS`: the work-queue stream of batch jobs.
pub fn jobs_stream(ns: &str) -> String {
    format!("{}_JOBS", ns.to_ascii_uppercase())
}

/// Every stream of namespace `ns`: what removing a namespace (a test's, a benchmark's) deletes.
pub fn namespace_streams(ns: &str) -> [String; 6] {
    [
        events_stream(ns),
        dead_letter_stream(ns),
        notify_stream(ns),
        catalog_stream(ns),
        jobs_stream(ns),
        outcomes_stream(ns),
    ]
}

/// `<ns>.outcomes.flag.<flag>`: where services report a flag's outcomes.
pub fn flag_outcomes(ns: &str, flag: &str) -> String {
    format!("{ns}.outcomes.flag.{flag}")
}

/// `<ns>.outcomes.>`: the outcomes stream's subject.
pub fn all_outcomes(ns: &str) -> String {
    format!("{ns}.outcomes.>")
}

/// `<NS>_OUTCOMES`: outcomes reported by services (counted by the flag monitor).
pub fn outcomes_stream(ns: &str) -> String {
    format!("{}_OUTCOMES", ns.to_ascii_uppercase())
}

/// `<ns>.jobs.>`: the jobs stream's subject.
pub fn all_jobs(ns: &str) -> String {
    format!("{ns}.jobs.>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_a_stable_contract() {
        assert_eq!(
            command("gatehouse", "policy", "create"),
            "gatehouse.cmd.policy.create"
        );
        assert_eq!(
            query("gatehouse", "audit", "log"),
            "gatehouse.query.audit.log"
        );
        assert_eq!(
            event("gatehouse", "policy", "p1", "PolicyCreated"),
            "gatehouse.events.policy.p1.PolicyCreated"
        );
        assert_eq!(events_stream("gatehouse"), "GATEHOUSE_EVENTS");
        assert_eq!(dead_letter_stream("t_ab"), "T_AB_DLQ");
        assert_eq!(projector_consumer("gatehouse", "audit"), "gatehouse_audit");
        assert_eq!(
            policy_promoted("gatehouse"),
            "gatehouse.notify.policy.promoted"
        );
        assert_eq!(notify_stream("gatehouse"), "GATEHOUSE_NOTIFY");
        assert_eq!(
            catalog_item("gatehouse", "m-1"),
            "gatehouse.catalog.items.m-1"
        );
        assert_eq!(catalog_stream("gatehouse"), "GATEHOUSE_CATALOG");
        assert_eq!(evaluation_jobs("gatehouse"), "gatehouse.jobs.evaluate");
        assert_eq!(jobs_stream("gatehouse"), "GATEHOUSE_JOBS");
    }

    #[test]
    fn flag_subjects_are_a_stable_contract() {
        assert_eq!(
            event("gatehouse", "flag", "ranker.policy", "RolloutSet"),
            "gatehouse.events.flag.ranker.policy.RolloutSet"
        );
        assert_eq!(
            flag_outcomes("gatehouse", "ranker.policy"),
            "gatehouse.outcomes.flag.ranker.policy"
        );
        assert_eq!(all_outcomes("gatehouse"), "gatehouse.outcomes.>");
        assert_eq!(outcomes_stream("gatehouse"), "GATEHOUSE_OUTCOMES");
        assert!(namespace_streams("t").contains(&"T_OUTCOMES".to_owned()));
    }

    #[test]
    fn a_catalog_subject_names_its_item_token() {
        assert_eq!(catalog_item_of("t_1.catalog.items.m-1"), Some("m-1"));
        assert_eq!(catalog_item_of("t_1.catalog.items.m-1.x"), Some("m-1.x"));
        assert_eq!(catalog_item_of("t_1.events.items.m-1"), None);
        assert_eq!(catalog_item_of("catalog.items.m-1"), None);
    }

    #[test]
    fn namespaces_are_lowercase_tokens() {
        assert!(is_valid_namespace("gatehouse"));
        assert!(is_valid_namespace("t_0af3"));
        assert!(!is_valid_namespace("Gate"));
        assert!(!is_valid_namespace("a.b"));
        assert!(!is_valid_namespace(""));
        assert!(!is_valid_namespace("1abc"));
    }
}
