//! Evaluation: one flag, one unit, one context → `{enabled, value, reason, bucket}`.
//!
//! Precedence (first that applies decides):
//! 1. the environment override `GATEHOUSE_EMERGENCY_STOP` names the flag (or `all`) → off;
//! 2. safe mode (`global.safe_mode`) is on → off;
//! 3. the flag's emergency stop holds → off;
//! 4. (the flag is archived → off; a flag the evaluator does not know → off, value `null`);
//! 5. the unit is in `exclude` → off;
//! 6. the unit is in `include` → on;
//! 7. the strategy: `percentage` (bucket), `whitelist` (off: not included), `rule` (the CEL rule
//!    holds, then the bucket), `category` (the context's `category` is one of `categories`, then
//!    its `priority` orders it: [`bucket::category_position`]).
//!
//! "Off" answers the flag's off value, "on" its on value. The unit is the context attribute the
//! rollout's `stickiness` names (stringified), else the request's `unit`; without one, a
//! strategy that buckets answers off (`no_unit`). `include`/`exclude` compare with that unit.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use gatehouse_events::flag::{Evaluation, FlagState, Reason, Strategy};
use gatehouse_rules::{CompiledExpression, Item, RuleError};
use serde_json::{Map, Value};

use crate::bucket::{self, Murmur3};
use crate::env::EmergencyOverride;
use crate::native::NativeRule;

/// The context attribute the `category` strategy reads the unit's category from.
pub const CATEGORY: &str = "category";
/// The context attribute the `category` strategy reads the unit's priority (0–100) from.
pub const PRIORITY: &str = "priority";

/// A flag ready to evaluate: its state, its compiled rule, and what an evaluation would
/// otherwise work out again each time (the `"<group>:"` hash state, `include`/`exclude` as
/// sets). Made when the flag changes; the state is read-only so the two never disagree.
#[derive(Clone)]
pub struct CompiledFlag {
    state: FlagState,
    rule: Option<Arc<CompiledExpression>>,
    /// The rule in native code, when it has a native form (it then answers for `rule`).
    native: Option<Arc<NativeRule>>,
    /// The key and the values every answer shares.
    key: Arc<str>,
    on_value: Arc<Value>,
    off_value: Arc<Value>,
    /// The bucketing hash after `"<group>:"`.
    prefix: Murmur3,
    include: UnitSet,
    exclude: UnitSet,
}

/// Units compared by equality, looked up by hash (a fast, non-cryptographic one: the keys are
/// the flag's own `include`/`exclude`, set by its editors).
type UnitSet = HashSet<Box<str>, foldhash::fast::RandomState>;

fn unit_set(units: &[String]) -> UnitSet {
    units.iter().map(|u| Box::from(u.as_str())).collect()
}

impl std::fmt::Debug for CompiledFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledFlag")
            .field("state", &self.state)
            .field("rule", &self.rule.is_some())
            .finish()
    }
}

/// Compiles a rollout rule as `set_rollout` checks it (`rule_attributes` are its variables).
pub fn compile_rule(
    rule: &str,
    attributes: &gatehouse_events::rules::AttributeSchema,
) -> Result<CompiledExpression, Vec<RuleError>> {
    CompiledExpression::compile(rule, attributes)
}

impl CompiledFlag {
    /// Compiles the flag's rule, if its strategy has one. A stored rule that no longer compiles
    /// (never, unless the CEL environment changed) leaves the rule strategy off.
    pub fn new(state: FlagState) -> Self {
        let rollout = &state.rollout;
        let rule = match (&rollout.strategy, &rollout.rule) {
            (Strategy::Rule, Some(rule)) => compile_rule(rule, &rollout.rule_attributes)
                .ok()
                .map(Arc::new),
            _ => None,
        };
        let native = rule
            .as_ref()
            .and_then(|r| NativeRule::compile(r.expression(), &rollout.rule_attributes))
            .map(Arc::new);
        let group = rollout.group.as_deref().unwrap_or(&state.flag);
        CompiledFlag {
            native,
            prefix: bucket::group_prefix(group),
            key: Arc::from(state.flag.as_str()),
            on_value: Arc::new(state.on_value.clone()),
            off_value: Arc::new(state.off_value.clone()),
            include: unit_set(&rollout.include),
            exclude: unit_set(&rollout.exclude),
            rule,
            state,
        }
    }

    /// The flag's state, as folded from its events.
    pub fn state(&self) -> &FlagState {
        &self.state
    }

    /// The flag's state, taken back.
    pub fn into_state(self) -> FlagState {
        self.state
    }

    /// The hash of `"<group>:<unit>"` ([`bucket::group_hash`]), continued from the group's.
    fn hash(&self, unit: &str) -> u32 {
        self.prefix.write(unit.as_bytes()).finish()
    }

    fn off(&self, reason: Reason, bucket: Option<u32>) -> Evaluation {
        Evaluation {
            flag: Arc::clone(&self.key),
            enabled: false,
            value: Arc::clone(&self.off_value),
            reason,
            bucket,
        }
    }

    fn on(&self, reason: Reason, bucket: Option<u32>) -> Evaluation {
        Evaluation {
            flag: Arc::clone(&self.key),
            enabled: true,
            value: Arc::clone(&self.on_value),
            reason,
            bucket,
        }
    }

    /// The unit a rollout identifies: the stickiness attribute of `context`, else `unit`.
    pub fn unit_of(&self, unit: Option<&str>, context: &Map<String, Value>) -> Option<String> {
        self.unit_ref(unit, context).map(Cow::into_owned)
    }

    /// [`CompiledFlag::unit_of`], borrowed when it can be.
    fn unit_ref<'a>(
        &self,
        unit: Option<&'a str>,
        context: &'a Map<String, Value>,
    ) -> Option<Cow<'a, str>> {
        match &self.state.rollout.stickiness {
            Some(attribute) => match context.get(attribute) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
                Some(other) => Some(Cow::Owned(other.to_string())),
            },
            None => unit.filter(|u| !u.is_empty()).map(Cow::Borrowed),
        }
    }

    /// Does the rule hold on `context`? A context that does not fit `rule_attributes`, or a rule
    /// that fails or yields no `true`, does not hold (fails closed).
    fn rule_holds(&self, context: &Map<String, Value>) -> bool {
        if let Some(native) = &self.native {
            return native.holds(context);
        }
        let Some(rule) = &self.rule else { return false };
        let Ok(item) = Item::from_map(context, &self.state.rollout.rule_attributes) else {
            return false;
        };
        matches!(rule.evaluate(&item), Ok(cel::Value::Bool(true)))
    }

    /// The `category` strategy: the context's `category` must be one of the rollout's, then the
    /// unit's position by `priority` (0–100, an integer) must be within the percentage.
    fn by_category(&self, unit: Option<&str>, context: &Map<String, Value>) -> Evaluation {
        let rollout = &self.state.rollout;
        let Some(category) = context.get(CATEGORY).and_then(Value::as_str) else {
            return self.off(Reason::Category, None);
        };
        if !rollout.categories.iter().any(|c| c == category) {
            return self.off(Reason::Category, None);
        }
        let Some(priority) = context
            .get(PRIORITY)
            .and_then(Value::as_u64)
            .filter(|p| *p <= 100)
        else {
            return self.off(Reason::Category, None);
        };
        let Some(unit) = unit else {
            return self.off(Reason::NoUnit, None);
        };
        let position = bucket::position_of(self.hash(unit), priority as u8);
        if bucket::category_within(position, rollout.percentage) {
            self.on(Reason::Category, Some(position))
        } else {
            self.off(Reason::Category, Some(position))
        }
    }

    /// The flag's own decision (steps 3–7), without the global switches.
    pub fn decide(&self, unit: Option<&str>, context: &Map<String, Value>) -> Evaluation {
        let state = &self.state;
        if state.emergency_stop.is_some() {
            return self.off(Reason::EmergencyStop, None);
        }
        if state.archived {
            return self.off(Reason::Archived, None);
        }
        let rollout = &state.rollout;
        let unit = self.unit_ref(unit, context);
        if let Some(u) = &unit {
            if self.exclude.contains(u.as_ref()) {
                return self.off(Reason::Excluded, None);
            }
            if self.include.contains(u.as_ref()) {
                return self.on(Reason::Included, None);
            }
        }
        match rollout.strategy {
            Strategy::Whitelist => return self.off(Reason::NotIncluded, None),
            Strategy::Category => return self.by_category(unit.as_deref(), context),
            Strategy::Rule if !self.rule_holds(context) => return self.off(Reason::Rule, None),
            Strategy::Rule | Strategy::Percentage => {}
        }
        let Some(unit) = unit else {
            return self.off(Reason::NoUnit, None);
        };
        let b = bucket::bucket_of(rollout.bucketing, self.hash(&unit));
        if bucket::within(rollout.bucketing, b, rollout.percentage) {
            self.on(Reason::Bucket, Some(b))
        } else {
            self.off(Reason::Bucket, Some(b))
        }
    }
}

/// The switches above every flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Switches {
    /// `GATEHOUSE_EMERGENCY_STOP` as the evaluator read it.
    pub environment: EmergencyOverride,
    /// `global.safe_mode`.
    pub safe_mode: bool,
}

/// Evaluates flag `key` (`flag`: its compiled state, `None` if unknown) for `unit` in `context`.
pub fn evaluate(
    key: &str,
    flag: Option<&CompiledFlag>,
    switches: &Switches,
    unit: Option<&str>,
    context: &Map<String, Value>,
) -> Evaluation {
    evaluate_with(
        key,
        flag,
        &switches.environment,
        switches.safe_mode,
        unit,
        context,
    )
}

/// [`evaluate`] with the switches given one by one (no copy of the override).
pub fn evaluate_with(
    key: &str,
    flag: Option<&CompiledFlag>,
    environment: &EmergencyOverride,
    safe_mode: bool,
    unit: Option<&str>,
    context: &Map<String, Value>,
) -> Evaluation {
    let global = if environment.stops(key) {
        Some(Reason::EnvironmentOverride)
    } else if safe_mode {
        Some(Reason::SafeMode)
    } else {
        None
    };
    match (flag, global) {
        (Some(flag), Some(reason)) => flag.off(reason, None),
        (Some(flag), None) => flag.decide(unit, context),
        (None, reason) => Evaluation {
            flag: Arc::from(key),
            enabled: false,
            value: Arc::new(Value::Null),
            reason: reason.unwrap_or(Reason::UnknownFlag),
            bucket: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_events::flag::{Bucketing, FlagType, Rollout};
    use proptest::prelude::*;
    use serde_json::json;

    fn flag(rollout: Rollout) -> CompiledFlag {
        CompiledFlag::new(state(rollout))
    }

    fn state(rollout: Rollout) -> FlagState {
        let at = chrono::DateTime::from_timestamp(0, 0).unwrap();
        FlagState {
            flag: "f".into(),
            description: String::new(),
            flag_type: FlagType::Json,
            schema: None,
            on_value: json!({"v": "on"}),
            off_value: json!({"v": "off"}),
            rollout,
            emergency_stop: None,
            archived: false,
            sequence: 1,
            created_at: at,
            updated_at: at,
            updated_by: "t".into(),
        }
    }

    fn mode() -> impl proptest::strategy::Strategy<Value = Bucketing> {
        prop_oneof![Just(Bucketing::Default), Just(Bucketing::Unleash)]
    }

    proptest! {
        /// Raising the percentage only adds units.
        #[test]
        fn raising_the_percentage_only_adds_units(
            unit in ".{0,24}", group in "[a-z.]{0,12}", mode in mode(),
            a in 0u32..=10_000, b in 0u32..=10_000,
        ) {
            let (low, high) = (f64::from(a.min(b)) / 100.0, f64::from(a.max(b)) / 100.0);
            let bucket = crate::bucket::bucket(mode, &group, &unit);
            prop_assert!(!crate::bucket::within(mode, bucket, low) || crate::bucket::within(mode, bucket, high));
            let at = |p: f64| {
                let f = flag(Rollout { percentage: p, bucketing: mode, group: Some(group.clone()), ..Rollout::default() });
                f.decide(Some(&unit), &Map::new()).enabled
            };
            prop_assert!(!at(low) || at(high));
        }

        /// A `category` rollout: raising the percentage only adds units, and a unit is never on
        /// while one of a higher priority in the chosen categories is off.
        #[test]
        fn the_category_strategy_is_monotonic_and_in_priority_order(
            unit in "[a-z0-9]{1,12}", other in "[a-z0-9]{1,12}",
            p in 0u64..=100, q in 0u64..=100,
            a in 0u32..=10_000, b in 0u32..=10_000,
        ) {
            let (low, high) = (f64::from(a.min(b)) / 100.0, f64::from(a.max(b)) / 100.0);
            let on = |percentage: f64, unit: &str, priority: u64| {
                let f = flag(Rollout {
                    percentage,
                    strategy: gatehouse_events::flag::Strategy::Category,
                    categories: vec!["large".into()],
                    ..Rollout::default()
                });
                let ctx = json!({"category": "large", "priority": priority});
                f.decide(Some(unit), ctx.as_object().unwrap()).enabled
            };
            prop_assert!(!on(low, &unit, p) || on(high, &unit, p));
            if p > q {
                prop_assert!(!on(low, &other, q) || on(low, &unit, p));
            }
            prop_assert!(!on(0.0, &unit, p) && on(100.0, &unit, p));
        }

        /// The first switch that applies decides, in the documented order.
        #[test]
        fn precedence_is_environment_safe_mode_stop_exclude_include_strategy(
            env in any::<bool>(), safe in any::<bool>(), stop in any::<bool>(),
            excluded in any::<bool>(), included in any::<bool>(), percentage in prop_oneof![Just(0.0), Just(100.0)],
        ) {
            let mut rollout = Rollout { percentage, ..Rollout::default() };
            if excluded { rollout.exclude.push("u".into()); }
            if included { rollout.include.push("u".into()); }
            let mut s = state(rollout);
            if stop { s.emergency_stop = Some("why".into()); }
            let f = CompiledFlag::new(s);
            let switches = Switches {
                environment: if env { EmergencyOverride::parse("f") } else { EmergencyOverride::None },
                safe_mode: safe,
            };
            let got = evaluate("f", Some(&f), &switches, Some("u"), &Map::new());
            let (reason, enabled) = if env { (Reason::EnvironmentOverride, false) }
                else if safe { (Reason::SafeMode, false) }
                else if stop { (Reason::EmergencyStop, false) }
                else if excluded { (Reason::Excluded, false) }
                else if included { (Reason::Included, true) }
                else { (Reason::Bucket, percentage == 100.0) };
            prop_assert_eq!(got.reason, reason);
            prop_assert_eq!(got.enabled, enabled);
            prop_assert_eq!(&*got.value, &if enabled { json!({"v": "on"}) } else { json!({"v": "off"}) });
        }
    }

    #[test]
    fn the_category_strategy_needs_a_chosen_category_and_orders_by_priority() {
        let f = flag(Rollout {
            percentage: 10.0,
            strategy: gatehouse_events::flag::Strategy::Category,
            categories: vec!["small".into(), "test".into()],
            ..Rollout::default()
        });
        let ctx = |c: &str, p: u64| {
            json!({"category": c, "priority": p})
                .as_object()
                .unwrap()
                .clone()
        };
        assert!(f.decide(Some("u"), &ctx("test", 100)).enabled);
        assert!(!f.decide(Some("u"), &ctx("test", 80)).enabled);
        assert!(!f.decide(Some("u"), &ctx("enterprise", 100)).enabled);
        assert_eq!(
            f.decide(Some("u"), &ctx("enterprise", 100)).reason,
            Reason::Category
        );
        assert_eq!(f.decide(Some("u"), &Map::new()).reason, Reason::Category);
        assert!(!f.decide(Some("u"), &ctx("small", 101)).enabled);
        assert_eq!(f.decide(None, &ctx("small", 100)).reason, Reason::NoUnit);
    }

    #[test]
    fn the_rule_strategy_needs_the_rule_then_the_bucket() {
        let attributes = serde_json::from_value(json!({"plan": "string"})).unwrap();
        let f = flag(Rollout {
            percentage: 100.0,
            strategy: gatehouse_events::flag::Strategy::Rule,
            rule: Some(r#"plan == "pro""#.into()),
            rule_attributes: attributes,
            ..Rollout::default()
        });
        let ctx = |plan: &str| json!({"plan": plan}).as_object().unwrap().clone();
        assert!(f.decide(Some("u"), &ctx("pro")).enabled);
        assert_eq!(f.decide(Some("u"), &ctx("free")).reason, Reason::Rule);
        assert_eq!(f.decide(Some("u"), &Map::new()).reason, Reason::Rule);
        assert_eq!(f.decide(None, &ctx("pro")).reason, Reason::NoUnit);
    }

    #[test]
    fn stickiness_reads_the_unit_from_the_context() {
        let f = flag(Rollout {
            percentage: 100.0,
            stickiness: Some("tenant".into()),
            ..Rollout::default()
        });
        let ctx = json!({"tenant": "t1"}).as_object().unwrap().clone();
        assert!(f.decide(None, &ctx).enabled);
        assert_eq!(f.decide(Some("u"), &Map::new()).reason, Reason::NoUnit);
        let unknown = evaluate("nope", None, &Switches::default(), Some("u"), &Map::new());
        assert_eq!(
            (unknown.enabled, unknown.reason, &*unknown.value),
            (false, Reason::UnknownFlag, &Value::Null)
        );
    }
}
