//! The limit inputs of the new-container and re-limit forms: every knob, grouped (CPU, memory,
//! IO, processes), each a text field named like the request field (`limits.cpus`) so the
//! server's errors land beside it.
//!
//! The re-limit form sends only what the user changed: a field whose text is still the one it
//! was filled with is left out of the patch (kept), an emptied field or `max` is `null`
//! (removed). Sending the whole form back would turn values the user never touched into
//! pinned limits.

use leptos::prelude::*;
use serde_json::{Map, Value};

use crate::{
    api,
    components::{poll::poll, ui::Field},
    format,
    types::Limits,
};

/// How a knob's text is read.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A number of CPUs, e.g. 0.5.
    Cores,
    /// A whole number.
    Count,
    /// Bytes, e.g. 512M.
    Size,
    /// A CPU or node list, e.g. 0-1,3.
    List,
    /// `io.max` lines separated by `;`.
    Lines,
}

/// One knob: request field, label, placeholder, hint, kind, group, shown outside "more limits".
struct Knob {
    field: &'static str,
    label: &'static str,
    placeholder: &'static str,
    hint: &'static str,
    kind: Kind,
    group: &'static str,
    basic: bool,
}

const fn knob(
    field: &'static str,
    label: &'static str,
    placeholder: &'static str,
    hint: &'static str,
    kind: Kind,
    group: &'static str,
    basic: bool,
) -> Knob {
    Knob {
        field,
        label,
        placeholder,
        hint,
        kind,
        group,
        basic,
    }
}

/// Every knob of `wire::Limits`, in form order.
const KNOBS: [Knob; 12] = [
    knob(
        "cpus",
        "CPUs",
        "unlimited",
        "Cores of CPU time, e.g. 0.5",
        Kind::Cores,
        "CPU",
        true,
    ),
    knob(
        "cpu_weight",
        "CPU weight",
        "100",
        "1 to 10000",
        Kind::Count,
        "CPU",
        false,
    ),
    knob(
        "cpuset_cpus",
        "CPU set",
        "all",
        "e.g. 0-1,3",
        Kind::List,
        "CPU",
        false,
    ),
    knob(
        "cpuset_mems",
        "Memory nodes",
        "all",
        "e.g. 0",
        Kind::List,
        "CPU",
        false,
    ),
    knob(
        "memory_max",
        "Memory max",
        "unlimited",
        "Hard limit, e.g. 512M, 1.5G",
        Kind::Size,
        "Memory",
        true,
    ),
    knob(
        "memory_high",
        "Memory high",
        "none",
        "Throttle above this (cgroup v2)",
        Kind::Size,
        "Memory",
        false,
    ),
    knob(
        "memory_low",
        "Memory low",
        "none",
        "Protected from reclaim, best effort",
        Kind::Size,
        "Memory",
        false,
    ),
    knob(
        "memory_min",
        "Memory min",
        "none",
        "Never reclaimed (cgroup v2)",
        Kind::Size,
        "Memory",
        false,
    ),
    knob(
        "swap_max",
        "Swap",
        "unlimited",
        "On top of the memory limit",
        Kind::Size,
        "Memory",
        false,
    ),
    knob(
        "io_weight",
        "IO weight",
        "100",
        "1 to 10000",
        Kind::Count,
        "IO",
        false,
    ),
    knob(
        "io_max",
        "Device limits",
        "none",
        "MAJ:MIN rbps=10485760 wiops=100; devices separated by ;",
        Kind::Lines,
        "IO",
        false,
    ),
    knob(
        "pids_max",
        "Processes max",
        "default",
        "Processes and threads",
        Kind::Count,
        "Processes",
        true,
    ),
];

const GROUPS: [&str; 4] = ["CPU", "Memory", "IO", "Processes"];

/// The request field names of the knobs (`limits.cpus`, …), for `FormError`'s known list.
pub const LIMIT_FIELDS: [&str; 12] = [
    "limits.cpus",
    "limits.cpu_weight",
    "limits.cpuset_cpus",
    "limits.cpuset_mems",
    "limits.memory_max",
    "limits.memory_high",
    "limits.memory_low",
    "limits.memory_min",
    "limits.swap_max",
    "limits.io_weight",
    "limits.io_max",
    "limits.pids_max",
];

/// The form's text of each knob, and the text it was filled with.
#[derive(Clone, Copy)]
pub struct LimitFields {
    values: [RwSignal<String>; 12],
    initial: StoredValue<[String; 12]>,
}

/// The text a knob of `l` is shown as (empty: no limit).
fn text_of(l: &Limits, field: &str) -> String {
    let v = serde_json::to_value(l).unwrap_or(Value::Null);
    match (
        &v[field],
        KNOBS.iter().find(|k| k.field == field).map(|k| k.kind),
    ) {
        (Value::Null, _) => String::new(),
        (Value::Number(n), Some(Kind::Size)) => {
            n.as_u64().map(format::size_text).unwrap_or_default()
        }
        (Value::Number(n), _) => n.to_string(),
        (Value::String(s), _) => s.clone(),
        (Value::Array(a), _) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; "),
        (other, _) => other.to_string(),
    }
}

/// The JSON value of a knob's (non-empty, not `max`) text.
fn value_of(kind: Kind, t: &str) -> Result<Value, String> {
    match kind {
        Kind::Cores => t
            .parse::<f64>()
            .map(Value::from)
            .map_err(|_| format!("{t:?} is not a number of CPUs, e.g. 0.5, or max")),
        Kind::Count => t
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| format!("{t:?} is not a whole number, or max")),
        Kind::Size => format::parse_size(t).map(Value::from),
        Kind::List => Ok(Value::from(t)),
        Kind::Lines => Ok(Value::from(
            t.split(';')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>(),
        )),
    }
}

fn is_max(t: &str) -> bool {
    t.eq_ignore_ascii_case("max")
}

impl LimitFields {
    /// The fields filled with `l` (the container's stored limits, or none for a new one).
    pub fn new(l: &Limits) -> Self {
        let initial: [String; 12] = std::array::from_fn(|i| text_of(l, KNOBS[i].field));
        LimitFields {
            values: std::array::from_fn(|i| RwSignal::new(initial[i].clone())),
            initial: StoredValue::new(initial),
        }
    }

    fn text(&self, i: usize) -> String {
        self.values[i].get_untracked().trim().to_owned()
    }

    /// Each field's JSON value: `None` skips it; errors name the request field, like the
    /// server's.
    fn collect(
        &self,
        pick: impl Fn(usize, &str) -> Option<Option<Value>>,
    ) -> Result<Map<String, Value>, Vec<(String, String)>> {
        let mut out = Map::new();
        let mut errors = Vec::new();
        for (i, k) in KNOBS.iter().enumerate() {
            let t = self.text(i);
            let v = match pick(i, &t) {
                None => continue,
                Some(Some(v)) => Ok(v),
                Some(None) => value_of(k.kind, &t),
            };
            match v {
                Ok(v) => {
                    out.insert(k.field.to_owned(), v);
                }
                Err(e) => errors.push((format!("limits.{}", k.field), e)),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// The limits of a new container: empty fields (and `max`) are no limit.
    pub fn parse(&self) -> Result<Limits, Vec<(String, String)>> {
        let map = self.collect(|_, t| (!t.is_empty() && !is_max(t)).then_some(None))?;
        decode(map)
    }

    /// The re-limit patch: only the fields whose text changed; emptied or `max` is `null`.
    pub fn patch(&self) -> Result<wire::LimitsPatch, Vec<(String, String)>> {
        let initial = self.initial.get_value();
        let map = self.collect(|i, t| {
            if t == initial[i].trim() {
                None
            } else if t.is_empty() || is_max(t) {
                Some(Some(Value::Null))
            } else {
                Some(None)
            }
        })?;
        decode(map)
    }
}

/// The fields as `T`, read from their JSON text: the same string deserializer as every answer
/// of the daemon (`from_value` compiled a second one for `Limits` and `LimitsPatch`: 15 KiB
/// of WASM, 4 KiB gzip).
fn decode<T: serde::de::DeserializeOwned>(
    map: Map<String, Value>,
) -> Result<T, Vec<(String, String)>> {
    serde_json::from_str(&Value::Object(map).to_string()).map_err(|e| {
        // The message `from_value` gave: without the position in a text nobody typed.
        let text = e.to_string();
        let at = format!(" at line {} column {}", e.line(), e.column());
        let text = text.strip_suffix(&at).map_or(text.clone(), str::to_owned);
        vec![("limits".to_owned(), text)]
    })
}

/// The limit inputs, grouped. With `more`, only the basic knobs show; the rest sit in a
/// collapsed "More limits" section (the new-container form).
#[component]
pub fn LimitInputs(
    f: LimitFields,
    errors: RwSignal<Vec<(String, String)>>,
    #[prop(optional)] more: bool,
) -> impl IntoView {
    // Knobs this host cannot set say so (the form stays whole: the server refuses them with
    // the reason, and the stored value of another host's container is still shown).
    let host = poll(0, || api::get::<wire::HostInfo>("/api/v1/host"));
    let missing = move |field: &str| -> Option<String> {
        // The engine names CPU bandwidth `cpu_max`.
        let name = if field == "cpus" { "cpu_max" } else { field };
        host.data.with(|h| {
            h.as_ref()?
                .knobs
                .iter()
                .find(|k| k.name == name && !k.available)
                .map(|k| k.note.clone().unwrap_or_else(|| "not on this host".into()))
        })
    };
    let field = move |i: usize| {
        move || {
            let k = &KNOBS[i];
            let (placeholder, hint) = match missing(k.field) {
                Some(note) => (
                    "not on this host".to_owned(),
                    format!("Unavailable: {note}"),
                ),
                None => (k.placeholder.to_owned(), k.hint.to_owned()),
            };
            view! {
                <Field label=k.label name=format!("limits.{}", k.field) value=f.values[i] errors=errors
                    placeholder=placeholder hint=hint />
            }
        }
    };
    let group = move |g: &'static str, pick: fn(&Knob) -> bool| {
        let idx: Vec<usize> = (0..KNOBS.len())
            .filter(|&i| KNOBS[i].group == g && pick(&KNOBS[i]))
            .collect();
        (!idx.is_empty()).then(|| {
            view! {
                <div class="limit-group" data-group=g>
                    <h3 class="small muted">{g}</h3>
                    <div class="form-grid">{idx.into_iter().map(field).collect_view()}</div>
                </div>
            }
        })
    };
    if more {
        view! {
            <div class="form-grid">{(0..KNOBS.len()).filter(|&i| KNOBS[i].basic).map(field).collect_view()}</div>
            <details data-testid="more-limits">
                <summary>"More limits"</summary>
                {GROUPS.iter().map(|g| group(g, |k| !k.basic)).collect_view()}
            </details>
        }
        .into_any()
    } else {
        view! { <div>{GROUPS.iter().map(|g| group(g, |_| true)).collect_view()}</div> }.into_any()
    }
}
