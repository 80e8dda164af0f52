//! `GATEHOUSE_EMERGENCY_STOP`: flags stopped by the environment, with no Gatehouse needed.
//!
//! `all` (or `*`) stops every flag; otherwise a comma-separated list of flag keys (spaces
//! around keys ignored); unset or empty stops nothing. Read once when an evaluator starts.

use std::collections::BTreeSet;

/// The environment variable.
pub const VARIABLE: &str = "GATEHOUSE_EMERGENCY_STOP";

/// Which flags the environment stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EmergencyOverride {
    #[default]
    None,
    All,
    Flags(BTreeSet<String>),
}

impl EmergencyOverride {
    /// Reads [`VARIABLE`].
    pub fn from_env() -> Self {
        Self::parse(&std::env::var(VARIABLE).unwrap_or_default())
    }

    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        if raw.is_empty() {
            return EmergencyOverride::None;
        }
        if raw.eq_ignore_ascii_case("all") || raw == "*" {
            return EmergencyOverride::All;
        }
        let keys: BTreeSet<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        if keys.is_empty() {
            EmergencyOverride::None
        } else {
            EmergencyOverride::Flags(keys)
        }
    }

    /// Does it stop flag `key`?
    pub fn stops(&self, key: &str) -> bool {
        match self {
            EmergencyOverride::None => false,
            EmergencyOverride::All => true,
            EmergencyOverride::Flags(keys) => keys.contains(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_a_list_or_nothing() {
        assert_eq!(EmergencyOverride::parse(""), EmergencyOverride::None);
        assert_eq!(EmergencyOverride::parse(" all "), EmergencyOverride::All);
        assert_eq!(EmergencyOverride::parse("*"), EmergencyOverride::All);
        let list = EmergencyOverride::parse("a, b.c ,,");
        assert!(list.stops("a") && list.stops("b.c") && !list.stops("c"));
        assert_eq!(EmergencyOverride::parse(" , "), EmergencyOverride::None);
    }
}
