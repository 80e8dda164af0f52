//! Rule-by-rule differences between two rules documents (rules are matched by id).

use std::collections::HashMap;

use gatehouse_events::policy::{Change, PolicyDiff, RuleChange};
use gatehouse_events::rules::{Rule, RulesDocument};

/// What changed from `from` (version `from_v`) to `to` (version `to_v`).
pub fn diff(
    policy_id: &str,
    from_v: u32,
    from: &RulesDocument,
    to_v: u32,
    to: &RulesDocument,
) -> PolicyDiff {
    let old: HashMap<&str, (u32, &Rule)> = from
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), (i as u32, r)))
        .collect();
    let new_ids: std::collections::HashSet<&str> = to.rules.iter().map(|r| r.id.as_str()).collect();
    let mut rules = Vec::new();
    let mut unchanged = Vec::new();
    for (i, rule) in to.rules.iter().enumerate() {
        let position = i as u32;
        match old.get(rule.id.as_str()) {
            None => rules.push(RuleChange::Added {
                position,
                rule: rule.clone(),
            }),
            Some(&(from_position, before)) => {
                match rule_change(before, from_position, rule, position) {
                    Some(change) => rules.push(change),
                    None => unchanged.push(rule.id.clone()),
                }
            }
        }
    }
    for (i, rule) in from.rules.iter().enumerate() {
        if !new_ids.contains(rule.id.as_str()) {
            rules.push(RuleChange::Removed {
                position: i as u32,
                rule: rule.clone(),
            });
        }
    }
    PolicyDiff {
        policy_id: policy_id.to_owned(),
        from: from_v,
        to: to_v,
        rules,
        unchanged,
        default_decision: changed(&from.default_decision, &to.default_decision),
        default_reason: changed(&from.default_reason, &to.default_reason),
        score: changed(&from.score, &to.score),
    }
}

fn rule_change(
    before: &Rule,
    from_position: u32,
    after: &Rule,
    to_position: u32,
) -> Option<RuleChange> {
    let condition = changed(&before.condition, &after.condition);
    let decision = changed(&before.decision, &after.decision);
    let reason = changed(&before.reason, &after.reason);
    if condition.is_some() || decision.is_some() || reason.is_some() {
        let id = after.id.clone();
        Some(RuleChange::Modified {
            id,
            from_position,
            to_position,
            condition,
            decision,
            reason,
        })
    } else if from_position != to_position {
        Some(RuleChange::Moved {
            id: after.id.clone(),
            from_position,
            to_position,
        })
    } else {
        None
    }
}

fn changed<T: PartialEq + Clone>(from: &T, to: &T) -> Option<Change<T>> {
    (from != to).then(|| Change {
        from: from.clone(),
        to: to.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_events::rules::Decision;

    fn rule(id: &str, condition: &str, decision: Decision) -> Rule {
        Rule {
            id: id.into(),
            condition: condition.into(),
            decision,
            reason: format!("{id} reason"),
        }
    }

    fn doc(rules: Vec<Rule>) -> RulesDocument {
        RulesDocument {
            rules,
            default_decision: Decision::Allow,
            default_reason: "default".into(),
            score: "1.0".into(),
        }
    }

    #[test]
    fn identical_documents_have_an_empty_diff() {
        let d = doc(vec![rule("a", "x > 1", Decision::Deny)]);
        let diff = diff("p", 1, &d, 2, &d);
        assert!(diff.is_empty());
        assert_eq!(diff.unchanged, vec!["a".to_owned()]);
    }

    #[test]
    fn added_removed_modified_and_moved_rules_are_each_reported() {
        let from = doc(vec![
            rule("a", "x > 1", Decision::Deny),
            rule("b", "x > 2", Decision::Deny),
            rule("c", "x > 3", Decision::Deny),
        ]);
        let to = doc(vec![
            rule("b", "x > 2", Decision::Deny),
            rule("a", "x > 1", Decision::Quarantine),
            rule("d", "x > 4", Decision::Deny),
        ]);
        let diff = diff("p", 1, &from, 2, &to);
        assert_eq!(diff.rules.len(), 4);
        assert!(
            matches!(&diff.rules[0], RuleChange::Moved { id, from_position: 1, to_position: 0 } if id == "b")
        );
        assert!(
            matches!(&diff.rules[1], RuleChange::Modified { id, decision: Some(_), condition: None, .. } if id == "a")
        );
        assert!(
            matches!(&diff.rules[2], RuleChange::Added { position: 2, rule } if rule.id == "d")
        );
        assert!(
            matches!(&diff.rules[3], RuleChange::Removed { position: 2, rule } if rule.id == "c")
        );
    }

    #[test]
    fn default_decision_and_score_changes_are_reported() {
        let from = doc(vec![]);
        let mut to = doc(vec![]);
        to.default_decision = Decision::Deny;
        to.score = "2.0".into();
        let diff = diff("p", 1, &from, 2, &to);
        assert_eq!(
            diff.default_decision,
            Some(Change {
                from: Decision::Allow,
                to: Decision::Deny
            })
        );
        assert_eq!(diff.score.unwrap().to, "2.0");
        assert!(diff.default_reason.is_none());
    }
}
