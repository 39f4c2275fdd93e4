//! Wire types of team pools (`/api/v1/teams/{name}`, `/api/v1/teams/{name}/limits`).

use std::fmt;

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, Visitor},
};

use crate::Limits;

/// One limit in a [`LimitsPatch`]: absent leaves it as it is, `null` or `"max"` removes it (no
/// limit: the kernel's `max`, the default weight, the parent's cpus), a value sets it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Setting<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Setting<T> {
    pub fn is_keep(&self) -> bool {
        matches!(self, Setting::Keep)
    }

    /// The value after this setting is applied to `current`.
    pub fn merge(self, current: Option<T>) -> Option<T> {
        match self {
            Setting::Keep => current,
            Setting::Clear => None,
            Setting::Set(v) => Some(v),
        }
    }
}

impl<T: Serialize> Serialize for Setting<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Setting::Set(v) => v.serialize(s),
            Setting::Keep | Setting::Clear => s.serialize_none(),
        }
    }
}

/// A value or `"max"`/`null`; `what` names the value in errors.
struct SettingVisitor<T> {
    what: &'static str,
    _t: std::marker::PhantomData<T>,
}

/// The value kinds a [`Setting`] holds: numbers (whole floats count as integers) and lists.
trait FromWire: Sized {
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

impl FromWire for u64 {
    fn from_u64(v: u64) -> Option<Self> {
        Some(v)
    }
    fn from_f64(v: f64) -> Option<Self> {
        // 2^64: every whole float below it fits.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v)).then_some(v as u64)
    }
}

impl FromWire for f64 {
    #[allow(clippy::cast_precision_loss)]
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl FromWire for String {
    fn from_str(v: &str) -> Option<Self> {
        Some(v.to_owned())
    }
}

impl<'de, T: FromWire> Visitor<'de> for SettingVisitor<T> {
    type Value = Setting<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, \"max\" or null", self.what)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Setting::Clear)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Setting::Clear)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        T::from_u64(v)
            .map(Setting::Set)
            .ok_or_else(|| E::invalid_type(de::Unexpected::Unsigned(v), &self))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(u) => self.visit_u64(u),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        T::from_f64(v)
            .map(Setting::Set)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Float(v), &self))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v == "max" {
            return Ok(Setting::Clear);
        }
        T::from_str(v)
            .map(Setting::Set)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

fn setting<'de, D: Deserializer<'de>, T: FromWire>(
    d: D,
    what: &'static str,
) -> Result<Setting<T>, D::Error> {
    d.deserialize_option(SettingVisitor {
        what,
        _t: std::marker::PhantomData,
    })
}

fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Setting<u64>, D::Error> {
    setting(d, "a non-negative integer")
}

fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Setting<f64>, D::Error> {
    setting(d, "a number")
}

fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Setting<String>, D::Error> {
    setting(d, "a list like 0-2,4")
}

fn lines<'de, D: Deserializer<'de>>(d: D) -> Result<Setting<Vec<String>>, D::Error> {
    struct Lines;
    impl<'de> Visitor<'de> for Lines {
        type Value = Setting<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of io.max lines, \"max\" or null")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(Setting::Clear)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Setting::Clear)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v == "max" {
                Ok(Setting::Clear)
            } else {
                Err(E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut v = Vec::new();
            while let Some(line) = seq.next_element::<String>()? {
                v.push(line);
            }
            Ok(if v.is_empty() {
                Setting::Clear
            } else {
                Setting::Set(v)
            })
        }
    }
    d.deserialize_option(Lines)
}

/// An optional [`LimitsPatch`] that must be a JSON object (serde would also read a struct from
/// an array, fields by position).
pub(crate) fn opt_patch_object<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<LimitsPatch>, D::Error> {
    struct Obj;
    impl<'de> Visitor<'de> for Obj {
        type Value = Option<LimitsPatch>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of limits or null")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            LimitsPatch::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_option(Obj)
}

/// `PATCH /api/v1/teams/{name}/limits`: the fields of [`Limits`], same names, units and ranges.
/// An absent field is left as it is; `null` or `"max"` removes the limit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    /// CPUs worth of time per period, 0.01..=1024.
    #[serde(
        default,
        deserialize_with = "number",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, minimum = 0.01, maximum = 1024.0))]
    pub cpus: Setting<f64>,
    /// CPUs the team may run on, e.g. `0-1,3`.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$"))]
    pub cpuset_cpus: Setting<String>,
    /// Memory nodes the team may allocate from, e.g. `0`.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$"))]
    pub cpuset_mems: Setting<String>,
    /// Relative CPU weight, 1..=10000 (default 100).
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 1, maximum = 10000))]
    pub cpu_weight: Setting<u64>,
    /// Hard memory limit in bytes (at least 1 MiB).
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 1048576))]
    pub memory_max: Setting<u64>,
    /// Memory throttling threshold in bytes (at least 1 MiB).
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 1048576))]
    pub memory_high: Setting<u64>,
    /// Best-effort memory protection in bytes.
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 0))]
    pub memory_low: Setting<u64>,
    /// Hard memory protection in bytes (`memory.min`; cgroup v2 only).
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 0))]
    pub memory_min: Setting<u64>,
    /// Swap in bytes.
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 0))]
    pub swap_max: Setting<u64>,
    /// Most processes and threads at once, 1..=4194304.
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 1, maximum = 4194304))]
    pub pids_max: Setting<u64>,
    /// Relative IO weight, 1..=10000 (default 100).
    #[serde(
        default,
        deserialize_with = "count",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 1, maximum = 10000))]
    pub io_weight: Setting<u64>,
    /// `io.max` lines, `MAJ:MIN [rbps=N] [wbps=N] [riops=N] [wiops=N]`: the devices listed
    /// replace the team's; `null` or `[]` removes every device limit.
    #[serde(
        default,
        deserialize_with = "lines",
        skip_serializing_if = "Setting::is_keep"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<crate::formats::IoMaxLine>>))]
    pub io_max: Setting<Vec<String>>,
}

impl LimitsPatch {
    /// `current` with this patch applied.
    pub fn merge(self, current: &Limits) -> Limits {
        let c = current.clone();
        let io_max = match self.io_max {
            Setting::Keep => c.io_max,
            Setting::Clear => Vec::new(),
            Setting::Set(v) => v,
        };
        Limits {
            cpus: self.cpus.merge(c.cpus),
            cpuset_cpus: self.cpuset_cpus.merge(c.cpuset_cpus),
            cpu_weight: self.cpu_weight.merge(c.cpu_weight),
            memory_max: self.memory_max.merge(c.memory_max),
            memory_high: self.memory_high.merge(c.memory_high),
            pids_max: self.pids_max.merge(c.pids_max),
            cpuset_mems: self.cpuset_mems.merge(c.cpuset_mems),
            memory_low: self.memory_low.merge(c.memory_low),
            memory_min: self.memory_min.merge(c.memory_min),
            swap_max: self.swap_max.merge(c.swap_max),
            io_weight: self.io_weight.merge(c.io_weight),
            io_max,
        }
    }

    /// True when the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == LimitsPatch::default()
    }
}

/// Usage of a team's cgroup now (all its containers together).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamUsage {
    /// Cores in use over the last metering tick (1.0 = one full core); absent until the
    /// sampler has read the team twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    /// CPU time used since the team's cgroup was created, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usage_usec: Option<u64>,
    /// Memory in use, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Processes and threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

/// The period a budget counts over, in UTC; usage restarts from zero at its boundary (a day at
/// 00:00, a week on Monday 00:00, a month on its first day 00:00).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Week,
    #[default]
    Month,
}

/// What one step of a budget ladder does to the team's cgroup. Steps are cumulative: every step
/// whose threshold the usage reached is in force together, each at most as loose as the admin's
/// own ceiling (a step never raises a limit).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepAction {
    /// An event, an audit row, a badge and the webhook; no limit changes.
    Warn,
    /// Lower the team's CPU weight (1-10000; the default weight is 100).
    CpuWeight { cpu_weight: u64 },
    /// Cap the team at this many cores (0.01 up to the host's CPUs).
    Cpus { cpus: f64 },
    /// Put memory.high on the team (bytes, at least 4 MiB): the kernel reclaims and slows the
    /// team down above it; nothing is killed.
    MemoryHigh { memory_high: u64 },
    /// Freeze every process of the team (thawed when the step is lifted).
    Freeze,
}

/// One rung: at `at_percent` of the budget (1-1000), `action` lands. Read through
/// [`RawStep`]: serde cannot combine `deny_unknown_fields` with `flatten` (it refused every
/// step), and unknown fields must still be refused.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawStep")]
pub struct LadderStep {
    pub at_percent: u32,
    #[serde(flatten)]
    pub action: StepAction,
}

/// The flat JSON form of a [`LadderStep`]: every field any action has, unknown ones refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at_percent: u32,
    action: String,
    #[serde(default)]
    cpu_weight: Option<u64>,
    #[serde(default)]
    cpus: Option<f64>,
    #[serde(default)]
    memory_high: Option<u64>,
}

impl TryFrom<RawStep> for LadderStep {
    type Error = String;

    fn try_from(r: RawStep) -> Result<Self, String> {
        let extra = |allowed: &[&str]| -> Result<(), String> {
            for (name, set) in [
                ("cpu_weight", r.cpu_weight.is_some()),
                ("cpus", r.cpus.is_some()),
                ("memory_high", r.memory_high.is_some()),
            ] {
                if set && !allowed.contains(&name) {
                    return Err(format!(
                        "field `{name}` does not go with action `{}`",
                        r.action
                    ));
                }
            }
            Ok(())
        };
        let need = |name: &str| format!("action `{}` needs field `{name}`", r.action);
        let action = match r.action.as_str() {
            "warn" => extra(&[]).map(|()| StepAction::Warn)?,
            "freeze" => extra(&[]).map(|()| StepAction::Freeze)?,
            "cpu_weight" => {
                extra(&["cpu_weight"])?;
                StepAction::CpuWeight {
                    cpu_weight: r.cpu_weight.ok_or_else(|| need("cpu_weight"))?,
                }
            }
            "cpus" => {
                extra(&["cpus"])?;
                StepAction::Cpus {
                    cpus: r.cpus.ok_or_else(|| need("cpus"))?,
                }
            }
            "memory_high" => {
                extra(&["memory_high"])?;
                StepAction::MemoryHigh {
                    memory_high: r.memory_high.ok_or_else(|| need("memory_high"))?,
                }
            }
            other => {
                return Err(format!(
                    "unknown action `{other}`: warn, cpu_weight, cpus, memory_high or freeze"
                ));
            }
        };
        Ok(LadderStep {
            at_percent: r.at_percent,
            action,
        })
    }
}

/// The default ladder: 80 % warn, 100 % CPU weight 10, 110 % 0.5 cores, 125 % memory.high
/// 256 MiB (no freeze).
pub fn default_ladder() -> Vec<LadderStep> {
    vec![
        LadderStep {
            at_percent: 80,
            action: StepAction::Warn,
        },
        LadderStep {
            at_percent: 100,
            action: StepAction::CpuWeight { cpu_weight: 10 },
        },
        LadderStep {
            at_percent: 110,
            action: StepAction::Cpus { cpus: 0.5 },
        },
        LadderStep {
            at_percent: 125,
            action: StepAction::MemoryHigh {
                memory_high: 256 << 20,
            },
        },
    ]
}

/// `PUT /api/v1/teams/{name}/budget` (admins): a team's budget per period. At least one of
/// `money`, `cpu_core_hours` and `memory_gib_hours`; the usage percent is the highest of the
/// ones set. Usage is priced from the same hourly ledger as the bill.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub period: BudgetPeriod,
    /// In the rate card's currency (as the bill), > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub money: Option<f64>,
    /// CPU core-hours used, > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_core_hours: Option<f64>,
    /// Memory GiB-hours used (∫ memory in use dt), > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gib_hours: Option<f64>,
    /// The ladder, thresholds strictly increasing; absent: [`default_ladder`]; `[]`: only
    /// the state is reported, nothing is enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<Vec<LadderStep>>,
    /// `http://` or `https://` URL that gets a `POST` of [`BudgetEvent`] JSON on every step
    /// change (5 s timeout, 3 tries; never delays metering). Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// A team's budget and where it stands (`GET /api/v1/teams/{name}/budget`, and `budget` of
/// `GET /api/v1/teams/{name}`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamBudget {
    pub budget: Budget,
    /// The ladder in force (the default one when the budget sets none).
    pub ladder: Vec<LadderStep>,
    /// The current period, RFC 3339 UTC: `[period_start, next_reset)`.
    pub period_start: String,
    pub next_reset: String,
    /// Used so far in the period (up to the last ledger write, at most a flush interval ago).
    pub used_money: f64,
    pub currency: String,
    pub used_cpu_core_hours: f64,
    pub used_memory_gib_hours: f64,
    /// The highest of the set budgets' percentages.
    pub percent: f64,
    /// With a shared ledger (`corral serve --ledger`): the part of `used_*` that other hosts
    /// of the fleet used (as last shipped), and how many hosts that is. Absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetShare>,
    /// Index into `ladder` of the highest step in force; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// What the steps in force put on the team's cgroup now (absent: nothing), on top of
    /// the admin's ceilings.
    #[serde(default)]
    pub enforced: Limits,
    /// The steps in force freeze the team.
    #[serde(default)]
    pub frozen: bool,
    /// When the state was last computed, RFC 3339 UTC.
    pub evaluated_at: String,
}

/// Other hosts' share of a team's budget usage.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetShare {
    pub hosts: u32,
    pub used_money: f64,
    pub used_cpu_core_hours: f64,
    pub used_memory_gib_hours: f64,
}

/// A step change of a team's budget ladder (`event: budget` on the event stream, the webhook's
/// body, and `GET /api/v1/teams/{name}/budget/steps`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetEvent {
    pub team: String,
    /// `warn`, `escalated`, `lifted` (usage fell: period reset, budget raised or cleared).
    pub action: String,
    /// Highest step in force before and after (index into the ladder; absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_step: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_step: Option<usize>,
    pub percent: f64,
    /// One line: why, e.g. "112 % of 0.01 CPU core-hours this month: cpus 0.5".
    pub reason: String,
    /// Unix ms.
    pub ts: i64,
}

/// `GET /api/v1/teams/{name}`: a team, its pooled ceilings as the kernel enforces them, and its
/// usage now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamDetail {
    pub name: String,
    pub description: String,
    /// Member names (sorted).
    pub members: Vec<String>,
    /// Names of the team's containers (sorted).
    #[serde(default)]
    pub containers: Vec<String>,
    /// The team cgroup's limits read back from the kernel (absent field: no limit).
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub usage: TeamUsage,
    /// `null`: the team has no budget.
    #[serde(default)]
    pub budget: Option<TeamBudget>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_steps_round_trip_and_refuse_unknown_fields() {
        let l: Vec<LadderStep> = serde_json::from_str(
            r#"[{"at_percent": 80, "action": "warn"}, {"at_percent": 110, "action": "cpus", "cpus": 0.5},
                {"at_percent": 125, "action": "memory_high", "memory_high": 67108864}]"#,
        )
        .unwrap();
        assert_eq!(l[1].action, StepAction::Cpus { cpus: 0.5 });
        let json = serde_json::to_string(&default_ladder()).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<LadderStep>>(&json).unwrap(),
            default_ladder()
        );
        for bad in [
            r#"{"at_percent": 80, "action": "warn", "x": 1}"#,
            r#"{"at_percent": 80, "action": "cpus"}"#,
            r#"{"at_percent": 80, "action": "nap"}"#,
            r#"{"action": "warn"}"#,
        ] {
            assert!(serde_json::from_str::<LadderStep>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patch_keep_clear_set() {
        let p: LimitsPatch = serde_json::from_str(
            r#"{"cpus": 1.5, "memory_max": "max", "pids_max": null, "cpu_weight": 200.0, "cpuset_cpus": "0", "io_max": "max"}"#,
        )
        .unwrap();
        assert_eq!(p.cpus, Setting::Set(1.5));
        assert_eq!(p.memory_max, Setting::Clear);
        assert_eq!(p.pids_max, Setting::Clear);
        assert_eq!(p.cpu_weight, Setting::Set(200));
        assert_eq!(p.memory_high, Setting::Keep);
        assert_eq!(p.io_max, Setting::Clear);
        let base = Limits {
            memory_max: Some(1 << 30),
            memory_high: Some(1 << 29),
            pids_max: Some(10),
            ..Limits::default()
        };
        let m = p.merge(&base);
        assert_eq!(m.memory_max, None);
        assert_eq!(m.memory_high, Some(1 << 29));
        assert_eq!(m.pids_max, None);
        assert_eq!(m.cpus, Some(1.5));
        for bad in [
            r#"{"pids_max": 1.5}"#,
            r#"{"pids_max": -1}"#,
            r#"{"pids_max": "lots"}"#,
            r#"{"cpus": "1"}"#,
            r#"{"cpu": 1}"#,
        ] {
            assert!(serde_json::from_str::<LimitsPatch>(bad).is_err(), "{bad}");
        }
        let u: crate::TeamUpdate = serde_json::from_str(r#"{"limits": {"cpus": "max"}}"#).unwrap();
        assert_eq!(u.limits.unwrap().cpus, Setting::Clear);
        for bad in [r#"{"limits": [null, null]}"#, r#"{"limits": 1}"#] {
            assert!(
                serde_json::from_str::<crate::TeamUpdate>(bad).is_err(),
                "{bad}"
            );
        }
        let json = serde_json::to_string(&LimitsPatch {
            cpus: Setting::Clear,
            pids_max: Setting::Set(5),
            ..LimitsPatch::default()
        })
        .unwrap();
        assert_eq!(json, r#"{"cpus":null,"pids_max":5}"#);
    }
}
