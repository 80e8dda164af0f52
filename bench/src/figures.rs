//! Figures: what a scenario measures, declared up front ([`Spec`]: unit, the limit it is
//! compared with, its target), filled with one value per repetition ([`Figures::push`]), and
//! summarized ([`Figure`]: median and spread, ratio to the limit's median, verdict).

use std::collections::BTreeMap;

use serde::Serialize;

use super::machine::CpuUse;
use super::stats::Spread;

/// One figure a scenario reports.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Stable name, e.g. `create.rate` (also the JSON key).
    pub name: &'static str,
    /// e.g. `cmd/s`, `ms`, `events/s`.
    pub unit: &'static str,
    /// One line on what is measured.
    pub about: &'static str,
    /// The figure (same run) this one is compared with.
    pub limit: Option<&'static str>,
    /// What it should reach: up to two targets, all to be met.
    pub targets: [Option<Target>; 2],
}

impl Spec {
    /// A figure without limit or target.
    pub const fn plain(name: &'static str, unit: &'static str, about: &'static str) -> Spec {
        Spec {
            name,
            unit,
            about,
            limit: None,
            targets: [None, None],
        }
    }

    /// A figure compared with `limit`.
    pub const fn versus(mut self, limit: &'static str) -> Spec {
        self.limit = Some(limit);
        self
    }

    /// A figure with a target (a second call adds a second one, both to be met).
    pub const fn target(mut self, target: Target) -> Spec {
        if self.targets[0].is_none() {
            self.targets[0] = Some(target);
        } else {
            self.targets[1] = Some(target);
        }
        self
    }
}

/// What a figure should reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// median / limit's median ≥ `ratio`.
    RatioAtLeast { ratio: f64 },
    /// median ≤ `value` (in the figure's unit).
    AtMost { value: f64 },
    /// median ≥ `value` (in the figure's unit).
    AtLeast { value: f64 },
}

impl Target {
    fn describe(&self, unit: &str) -> String {
        match self {
            Target::RatioAtLeast { ratio } => format!("≥ {ratio}× limit"),
            Target::AtMost { value } => format!("≤ {value} {unit}"),
            Target::AtLeast { value } => format!("≥ {value} {unit}"),
        }
    }

    /// Whether `median` (and its `ratio` to the limit) meets the target; `None`: not measured.
    fn met(&self, median: Option<f64>, ratio: Option<f64>) -> Option<bool> {
        match *self {
            Target::RatioAtLeast { ratio: want } => ratio.map(|r| r >= want),
            Target::AtMost { value } => median.map(|m| m <= value),
            Target::AtLeast { value } => median.map(|m| m >= value),
        }
    }
}

/// A summarized figure, as printed and written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: &'static str,
    pub unit: &'static str,
    pub about: &'static str,
    /// One value per repetition, in order.
    pub values: Vec<f64>,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub limit: Option<&'static str>,
    pub limit_median: Option<f64>,
    /// median / limit's median.
    pub ratio: Option<f64>,
    /// Every target; the verdict is met when all are.
    pub targets: Vec<Target>,
    pub verdict: Verdict,
    /// Why there is no value (not yet measurable, failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// Whether a figure meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    Missed,
    /// No target.
    None,
    /// Not measured (see `unavailable`).
    Unavailable,
}

/// The figures of one run, filled one repetition at a time.
#[derive(Debug)]
pub struct Figures {
    specs: &'static [Spec],
    values: BTreeMap<&'static str, Vec<f64>>,
    unavailable: BTreeMap<&'static str, String>,
}

impl Figures {
    pub fn new(specs: &'static [Spec]) -> Self {
        Figures {
            specs,
            values: BTreeMap::new(),
            unavailable: BTreeMap::new(),
        }
    }

    /// Adds one repetition's value of `name`.
    pub fn push(&mut self, name: &str, value: f64) -> anyhow::Result<()> {
        let name = self.spec(name)?.name;
        self.values.entry(name).or_default().push(value);
        Ok(())
    }

    /// Marks `name` as not measurable, saying why.
    pub fn unavailable(&mut self, name: &str, why: &str) -> anyhow::Result<()> {
        let name = self.spec(name)?.name;
        self.unavailable.insert(name, why.to_owned());
        Ok(())
    }

    /// Records where the CPU went in a phase of `ops` operations, as whichever of these the
    /// scenario declares: `<phase>.busy_cores`, `.other_cores`, `.steal_cores` and
    /// `.cpu_us_<component>` per
    /// operation for `gatehouse` (this process), `workers` (its child processes), `postgres`
    /// and `nats` (an empty `phase` names them without prefix).
    pub fn push_cpu(&mut self, phase: &str, cpu: &CpuUse, ops: u64) -> anyhow::Result<()> {
        let [gatehouse, postgres, nats] = cpu.per_op_us(ops);
        for (name, value) in [
            ("busy_cores", cpu.machine),
            ("other_cores", cpu.others()),
            ("steal_cores", cpu.steal),
            ("cpu_us_gatehouse", gatehouse),
            ("cpu_us_workers", cpu.children_per_op_us(ops)),
            ("cpu_us_postgres", postgres),
            ("cpu_us_nats", nats),
        ] {
            let name = match phase {
                "" => name.to_owned(),
                _ => format!("{phase}.{name}"),
            };
            if self.declares(&name) {
                self.push(&name, value)?;
            }
        }
        Ok(())
    }

    /// Is `name` one of the declared figures?
    pub fn declares(&self, name: &str) -> bool {
        self.specs.iter().any(|s| s.name == name)
    }

    /// The values of `name` so far.
    pub fn values(&self, name: &str) -> &[f64] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    fn spec(&self, name: &str) -> anyhow::Result<&'static Spec> {
        self.specs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| anyhow::anyhow!("bench bug: figure `{name}` is not declared"))
    }

    /// Every declared figure, summarized, in declaration order.
    pub fn summarize(&self) -> Vec<Figure> {
        self.specs.iter().map(|spec| self.figure(spec)).collect()
    }

    fn figure(&self, spec: &Spec) -> Figure {
        let values = self.values(spec.name).to_vec();
        let spread = Spread::of(&values);
        let limit_median = spec
            .limit
            .and_then(|l| Spread::of(self.values(l)))
            .map(|s| s.median);
        let median = spread.map(|s| s.median);
        let ratio = match (median, limit_median) {
            (Some(m), Some(l)) if l != 0.0 => Some(m / l),
            _ => None,
        };
        let unavailable = self
            .unavailable
            .get(spec.name)
            .cloned()
            .or_else(|| spread.is_none().then(|| "no value was measured".to_owned()));
        let targets: Vec<Target> = spec.targets.iter().flatten().copied().collect();
        let checks: Option<Vec<bool>> = targets.iter().map(|t| t.met(median, ratio)).collect();
        let verdict = match checks {
            _ if unavailable.is_some() => Verdict::Unavailable,
            _ if targets.is_empty() => Verdict::None,
            Some(checks) => met(checks.iter().all(|&ok| ok)),
            None => Verdict::Unavailable,
        };
        Figure {
            name: spec.name,
            unit: spec.unit,
            about: spec.about,
            values,
            median,
            min: spread.map(|s| s.min),
            max: spread.map(|s| s.max),
            limit: spec.limit,
            limit_median,
            ratio,
            targets,
            verdict,
            unavailable,
        }
    }
}

fn met(ok: bool) -> Verdict {
    if ok {
        Verdict::Met
    } else {
        Verdict::Missed
    }
}

impl Figure {
    /// The targets as a person reads them, e.g. `≥ 0.7× limit`.
    pub fn target_text(&self) -> String {
        if self.targets.is_empty() {
            return "-".to_owned();
        }
        let texts: Vec<String> = self.targets.iter().map(|t| t.describe(self.unit)).collect();
        texts.join(" and ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[Spec] = &[
        Spec::plain("ours", "cmd/s", "ours")
            .versus("raw")
            .target(Target::RatioAtLeast { ratio: 0.7 }),
        Spec::plain("raw", "cmd/s", "the limit"),
        Spec::plain("p99", "ms", "latency").target(Target::AtMost { value: 50.0 }),
        Spec::plain("later", "ms", "not yet"),
    ];

    fn filled() -> Figures {
        let mut f = Figures::new(SPECS);
        for (ours, raw, p99) in [
            (80.0, 100.0, 40.0),
            (70.0, 100.0, 60.0),
            (90.0, 100.0, 45.0),
        ] {
            f.push("ours", ours).unwrap();
            f.push("raw", raw).unwrap();
            f.push("p99", p99).unwrap();
        }
        f.unavailable("later", "needs issue 3").unwrap();
        f
    }

    #[test]
    fn the_ratio_compares_the_medians() {
        let ours = &filled().summarize()[0];
        assert_eq!(ours.ratio, Some(0.8));
        assert_eq!(ours.verdict, Verdict::Met);
        assert_eq!((ours.min, ours.max), (Some(70.0), Some(90.0)));
    }

    #[test]
    fn an_absolute_target_is_checked_against_the_median() {
        assert_eq!(filled().summarize()[2].verdict, Verdict::Met);
    }

    #[test]
    fn every_target_of_a_figure_must_be_met() {
        const BOTH: &[Spec] = &[
            Spec::plain("ours", "items/s", "ours")
                .versus("raw")
                .target(Target::RatioAtLeast { ratio: 0.5 })
                .target(Target::AtLeast { value: 100.0 }),
            Spec::plain("raw", "items/s", "the limit"),
        ];
        let verdict = |ours: f64, raw: f64| {
            let mut f = Figures::new(BOTH);
            f.push("ours", ours).unwrap();
            f.push("raw", raw).unwrap();
            f.summarize()[0].verdict
        };
        assert_eq!(verdict(120.0, 200.0), Verdict::Met);
        assert_eq!(verdict(90.0, 100.0), Verdict::Missed);
        assert_eq!(verdict(120.0, 300.0), Verdict::Missed);
        let mut f = Figures::new(BOTH);
        f.push("ours", 120.0).unwrap();
        let ours = &f.summarize()[0];
        assert_eq!(ours.verdict, Verdict::Unavailable, "no limit, no ratio");
        assert_eq!(ours.target_text(), "≥ 0.5× limit and ≥ 100 items/s");
    }

    #[test]
    fn an_unmeasurable_figure_says_why() {
        let later = &filled().summarize()[3];
        assert_eq!(later.verdict, Verdict::Unavailable);
        assert_eq!(later.unavailable.as_deref(), Some("needs issue 3"));
    }

    #[test]
    fn an_undeclared_figure_is_refused() {
        assert!(Figures::new(SPECS).push("nope", 1.0).is_err());
    }
}
