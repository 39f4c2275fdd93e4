//! The team page's budget: where the team stands (`budget` of `GET /api/v1/teams/{name}`) for
//! everyone who may see the team, and for admins the budget form with its ladder editor
//! (`PUT|DELETE /api/v1/teams/{name}/budget`, `wire::Budget`). Until the daemon has the budget
//! API these answer 404: the panel says "no budget" and the form shows the refusal.

use leptos::prelude::*;
use wire::{Budget, BudgetPeriod, LadderStep, StepAction, TeamBudget};

use crate::{
    api,
    components::{
        poll::poll,
        ui::{ConfirmButton, Field, FormError, field_errors, polled_view},
    },
    format,
};

/// Form fields the server may name in an error (ladder rows are `ladder[i]…`).
const KNOWN: &[&str] = &[
    "period",
    "money",
    "cpu_core_hours",
    "memory_gib_hours",
    "webhook",
    "ladder",
];

/// What a step does, in a few words: `cpus 0.5`, `memory.high 256 MiB`, `freeze`.
pub fn action_text(a: &StepAction) -> String {
    match a {
        StepAction::Warn => "warn".into(),
        StepAction::CpuWeight { cpu_weight } => format!("CPU weight {cpu_weight}"),
        StepAction::Cpus { cpus } => format!("cpus {}", format::cores(*cpus)),
        StepAction::MemoryHigh { memory_high } => {
            format!("memory.high {}", format::bytes_u(*memory_high))
        }
        StepAction::Freeze => "freeze".into(),
    }
}

/// The badge for the highest step in force: class and text; none below the first step.
pub fn step_badge(b: &TeamBudget) -> Option<(&'static str, String)> {
    let step = b.ladder.get(b.step?)?;
    Some(match &step.action {
        StepAction::Warn => (
            "badge warn",
            format!("budget warning: {:.0} % used", b.percent),
        ),
        StepAction::CpuWeight { cpu_weight } => (
            "badge bad",
            format!("over budget: CPU weight lowered to {cpu_weight}"),
        ),
        StepAction::Cpus { cpus } => (
            "badge bad",
            format!("over budget: cpus capped at {}", format::cores(*cpus)),
        ),
        StepAction::MemoryHigh { memory_high } => (
            "badge bad",
            format!(
                "over budget: memory.high at {}",
                format::bytes_u(*memory_high)
            ),
        ),
        StepAction::Freeze => ("badge bad", "over budget: frozen".into()),
    })
}

/// An RFC 3339 instant in the browser's time, or the text itself when it does not parse.
fn instant(rfc3339: &str) -> String {
    let ms = js_sys::Date::parse(rfc3339);
    if ms.is_finite() {
        format::datetime_ms(ms)
    } else {
        rfc3339.to_owned()
    }
}

fn period_text(p: BudgetPeriod) -> &'static str {
    match p {
        BudgetPeriod::Day => "day",
        BudgetPeriod::Week => "week",
        BudgetPeriod::Month => "month",
    }
}

/// One dimension's row: used of budget, and its own percentage.
fn dimension(label: &'static str, used: f64, budget: Option<f64>, unit: String) -> impl IntoView {
    budget.map(|b| {
        let pct = if b > 0.0 { used / b * 100.0 } else { 0.0 };
        view! {
            <tr data-dimension=label>
                <td>{label}</td>
                <td class="num">{format!("{used:.3} / {b:.3} {unit}")}</td>
                <td class="num">{format!("{pct:.0} %")}</td>
            </tr>
        }
    })
}

/// A percent bar, amber from 80 % and red from 100 %.
#[component]
fn PercentBar(percent: f64) -> impl IntoView {
    let width = percent.clamp(0.0, 100.0);
    let (warn, over) = ((80.0..100.0).contains(&percent), percent >= 100.0);
    view! {
        <div class="meter budget-meter" class:warn=warn class:over=over
            role="meter" aria-label="budget used" aria-valuemin="0" aria-valuemax="100"
            aria-valuenow=format!("{percent:.1}") data-testid="budget-percent">
            <div class="used" style=format!("width:{width:.2}%")></div>
        </div>
    }
}

/// Where the team stands against its budget (read-only; everyone who sees the team).
#[component]
pub fn BudgetPanel(budget: Option<TeamBudget>) -> impl IntoView {
    let Some(b) = budget else {
        return view! {
            <section class="card" data-testid="team-budget">
                <h2>"Budget"</h2>
                <p class="empty-state" data-testid="no-budget">"No budget."</p>
            </section>
        }
        .into_any();
    };
    let badge = step_badge(&b).map(|(class, text)| {
        view! { <span class=class data-testid="budget-badge">{text}</span> }
    });
    let step = b
        .step
        .and_then(|i| b.ladder.get(i))
        .map_or("none".to_owned(), |s| {
            format!("at {} %: {}", s.at_percent, action_text(&s.action))
        });
    let period = period_text(b.budget.period);
    view! {
        <section class="card" data-testid="team-budget">
            <h2>"Budget " <span class="muted small">{format!("per {period}")}</span> " " {badge}</h2>
            <PercentBar percent=b.percent />
            <p class="small"><b data-testid="budget-percent-text">{format!("{:.1} %", b.percent)}</b>" of the budget used (the highest of the dimensions set)"</p>
            <table class="table"><tbody>
                {dimension("Money", b.used_money, b.budget.money, b.currency.clone())}
                {dimension("CPU", b.used_cpu_core_hours, b.budget.cpu_core_hours, "core·h".into())}
                {dimension("Memory", b.used_memory_gib_hours, b.budget.memory_gib_hours, "GiB·h".into())}
            </tbody></table>
            <dl class="facts">
                {b.fleet.clone().map(|f| view! {
                    <div><dt>"Other hosts"</dt><dd data-testid="budget-fleet">{format!(
                        "{:.2} {}, {:.4} core·h, {:.4} GiB·h of it on {} other host{} (shared ledger)",
                        f.used_money, b.currency, f.used_cpu_core_hours, f.used_memory_gib_hours,
                        f.hosts, if f.hosts == 1 { "" } else { "s" })}</dd></div>
                })}
                <div><dt>"Step in force"</dt><dd data-testid="budget-step">{step}</dd></div>
                <div><dt>"Period"</dt><dd>{format!("{} – {}", instant(&b.period_start), instant(&b.next_reset))}</dd></div>
                <div><dt>"Next reset"</dt><dd data-testid="budget-reset">{instant(&b.next_reset)}</dd></div>
                <div><dt>"Frozen"</dt><dd>{if b.frozen { "yes" } else { "no" }}</dd></div>
            </dl>
            <p class="muted small">{format!("Computed by the daemon at {} from the hourly ledger (as the bill).", instant(&b.evaluated_at))}</p>
        </section>
    }
    .into_any()
}

/// One row of the ladder editor (text as typed; parsed when sent).
#[derive(Clone, Copy)]
struct Row {
    id: usize,
    at: RwSignal<String>,
    action: RwSignal<String>,
    value: RwSignal<String>,
}

/// The wire name of an action (the select's value) and its value as text.
fn action_parts(a: &StepAction) -> (&'static str, String) {
    match a {
        StepAction::Warn => ("warn", String::new()),
        StepAction::CpuWeight { cpu_weight } => ("cpu_weight", cpu_weight.to_string()),
        StepAction::Cpus { cpus } => ("cpus", cpus.to_string()),
        StepAction::MemoryHigh { memory_high } => ("memory_high", format::size_text(*memory_high)),
        StepAction::Freeze => ("freeze", String::new()),
    }
}

/// Whether an action takes a value.
fn takes_value(action: &str) -> bool {
    matches!(action, "cpu_weight" | "cpus" | "memory_high")
}

/// A ladder row as the wire's step; the error names the row's field (`ladder[i].cpus`).
fn parse_row(
    i: usize,
    at: &str,
    action: &str,
    value: &str,
) -> Result<LadderStep, (String, String)> {
    let at_percent = at.trim().parse::<u32>().map_err(|_| {
        (
            format!("ladder[{i}].at_percent"),
            format!("{at:?} is not a whole percent"),
        )
    })?;
    let v = value.trim();
    let bad = |m: String| (format!("ladder[{i}].{action}"), m);
    let action = match action {
        "warn" => StepAction::Warn,
        "freeze" => StepAction::Freeze,
        "cpu_weight" => StepAction::CpuWeight {
            cpu_weight: v
                .parse()
                .map_err(|_| bad(format!("{v:?} is not a weight (1–10000)")))?,
        },
        "cpus" => StepAction::Cpus {
            cpus: v
                .parse()
                .map_err(|_| bad(format!("{v:?} is not a number of CPUs, e.g. 0.5")))?,
        },
        "memory_high" => StepAction::MemoryHigh {
            memory_high: format::parse_size(v).map_err(bad)?,
        },
        other => return Err(bad(format!("unknown action {other:?}"))),
    };
    Ok(LadderStep { at_percent, action })
}

/// An amount field: empty is "not budgeted".
fn parse_amount(field: &str, text: &str) -> Result<Option<f64>, (String, String)> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<f64>()
        .map(Some)
        .map_err(|_| (field.to_owned(), format!("{t:?} is not a number")))
}

fn amount_text(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The admins' budget form with its ladder editor, filled once from the stored budget (the
/// page's polling never resets what is being typed).
#[component]
pub fn BudgetForm(name: String, on_saved: Callback<()>) -> impl IntoView {
    let team_path = format!("/api/v1/teams/{}", api::enc(&name));
    let budget_path = format!("{team_path}/budget");
    let current = poll(0, move || {
        let p = team_path.clone();
        async move { api::get::<wire::TeamDetail>(&p).await.map(|t| t.budget) }
    });
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let saved = RwSignal::new(None::<&'static str>);
    let save = Action::new_local({
        let p = budget_path.clone();
        move |body: &Budget| {
            let (p, body) = (p.clone(), body.clone());
            async move { api::put::<_, serde_json::Value>(&p, &body).await.map(drop) }
        }
    });
    let remove = Action::new_local(move |_: &()| {
        let p = budget_path.clone();
        async move { api::delete(&p).await }
    });
    let outcome = move |r: Option<Result<(), api::ApiFailure>>, done: &'static str| match r {
        Some(Ok(())) => {
            errors.set(vec![]);
            saved.set(Some(done));
            current.refresh();
            on_saved.run(());
        }
        Some(Err(e)) => {
            saved.set(None);
            errors.set(field_errors(&e));
        }
        None => {}
    };
    Effect::new(move |_| outcome(save.value().get(), "Budget saved"));
    Effect::new(move |_| outcome(remove.value().get(), "Budget removed"));
    view! {
        <section class="card" data-testid="team-budget-form">
            <h2>"Set budget"</h2>
            {polled_view(current, "the current budget", move |b: Option<TeamBudget>| {
                let has = b.is_some();
                let (budget, ladder) = match b {
                    Some(b) => (b.budget, b.ladder),
                    None => (Budget::default(), wire::default_ladder()),
                };
                view! {
                    <Form budget=budget ladder=ladder errors=errors saved=saved pending=save.pending()
                        on_submit=Callback::new(move |b: Budget| { saved.set(None); save.dispatch(b); }) />
                    <Show when=move || has>
                        <div class="btn-row">
                            <ConfirmButton label="Remove budget" confirm="Remove the team's budget? Its steps are lifted."
                                testid="remove-budget" on_confirm=Callback::new(move |_| { remove.dispatch(()); }) />
                        </div>
                    </Show>
                }
            })}
        </section>
    }
}

/// The form proper: amounts, period, webhook and the ladder rows.
#[component]
fn Form(
    budget: Budget,
    ladder: Vec<LadderStep>,
    errors: RwSignal<Vec<(String, String)>>,
    saved: RwSignal<Option<&'static str>>,
    pending: Memo<bool>,
    on_submit: Callback<Budget>,
) -> impl IntoView {
    let period = RwSignal::new(period_text(budget.period).to_owned());
    let money = RwSignal::new(amount_text(budget.money));
    let cpu = RwSignal::new(amount_text(budget.cpu_core_hours));
    let mem = RwSignal::new(amount_text(budget.memory_gib_hours));
    let webhook = RwSignal::new(budget.webhook.clone().unwrap_or_default());
    let next_id = StoredValue::new(0usize);
    let new_row = move |s: &LadderStep| {
        let (action, value) = action_parts(&s.action);
        let id = next_id.get_value();
        next_id.set_value(id + 1);
        Row {
            id,
            at: RwSignal::new(s.at_percent.to_string()),
            action: RwSignal::new(action.to_owned()),
            value: RwSignal::new(value),
        }
    };
    let rows = RwSignal::new(ladder.iter().map(new_row).collect::<Vec<_>>());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let mut errs = Vec::new();
        let mut amount = |field: &str, v: RwSignal<String>| {
            parse_amount(field, &v.get_untracked()).unwrap_or_else(|e| {
                errs.push(e);
                None
            })
        };
        let (money, cpu, mem) = (
            amount("money", money),
            amount("cpu_core_hours", cpu),
            amount("memory_gib_hours", mem),
        );
        let steps: Vec<LadderStep> = rows
            .get_untracked()
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                parse_row(
                    i,
                    &r.at.get_untracked(),
                    &r.action.get_untracked(),
                    &r.value.get_untracked(),
                )
                .map_err(|e| errs.push(e))
                .ok()
            })
            .collect();
        if money.is_none() && cpu.is_none() && mem.is_none() && errs.is_empty() {
            errs.push((
                "money".into(),
                "set at least one of money, CPU core-hours and memory GiB-hours".into(),
            ));
        }
        if !errs.is_empty() {
            errors.set(errs);
            return;
        }
        errors.set(vec![]);
        let hook = webhook.get_untracked();
        on_submit.run(Budget {
            period: match period.get_untracked().as_str() {
                "day" => BudgetPeriod::Day,
                "week" => BudgetPeriod::Week,
                _ => BudgetPeriod::Month,
            },
            money,
            cpu_core_hours: cpu,
            memory_gib_hours: mem,
            ladder: Some(steps),
            webhook: (!hook.trim().is_empty()).then(|| hook.trim().to_owned()),
        });
    };
    view! {
        <form on:submit=submit data-testid="budget-form">
            <p class="muted">"Per period, in UTC; usage is priced from the same ledger as the bill. Set at least one amount: the percent used is the highest of them."</p>
            <div class="form-grid">
                <div class="field">
                    <label for="f-period">"Period"</label>
                    <select id="f-period" name="period" prop:value=move || period.get()
                        on:change=move |ev| period.set(event_target_value(&ev))>
                        <option value="day">"day"</option>
                        <option value="week">"week"</option>
                        <option value="month">"month"</option>
                    </select>
                </div>
                <Field label="Money" name="money" value=money errors=errors hint="in the rate card's currency" />
                <Field label="CPU core-hours" name="cpu_core_hours" value=cpu errors=errors hint="e.g. 100" />
                <Field label="Memory GiB-hours" name="memory_gib_hours" value=mem errors=errors hint="e.g. 500" />
                <Field label="Webhook URL" name="webhook" value=webhook errors=errors hint="http(s)://…, gets each step change" />
            </div>
            <Ladder rows=rows errors=errors new_row=Callback::new(move |s: LadderStep| new_row(&s)) />
            <FormError errors=errors known=KNOWN />
            <div class="btn-row">
                <button class="btn primary" type="submit" data-testid="save-budget" disabled=move || pending.get()>
                    {move || if pending.get() { "Saving…" } else { "Save budget" }}
                </button>
                {move || saved.get().map(|m| view! { <span class="yes" role="status" data-testid="budget-saved">{m}</span> })}
            </div>
        </form>
    }
}

/// The ladder editor: rows of threshold, action and value; add, remove, reset to default.
#[component]
fn Ladder(
    rows: RwSignal<Vec<Row>>,
    errors: RwSignal<Vec<(String, String)>>,
    new_row: Callback<LadderStep, Row>,
) -> impl IntoView {
    let ladder_error = move || {
        errors.with(|e| {
            e.iter()
                .find(|(f, _)| f == "ladder")
                .map(|(_, m)| m.clone())
        })
    };
    let each = move || {
        rows.get()
            .into_iter()
            .enumerate()
            .collect::<Vec<(usize, Row)>>()
    };
    view! {
        <fieldset class="ladder" data-testid="ladder-editor">
            <legend>"Ladder"</legend>
            <p class="muted small">"Steps are cumulative: every step whose threshold the usage reached is in force; none raises a limit above the team's ceilings. No rows: the state is reported, nothing is enforced."</p>
            <table class="table">
                <thead><tr><th>"At %"</th><th>"Action"</th><th>"Value"</th><th></th></tr></thead>
                <tbody>
                    <For each=each key=|(i, r)| (*i, r.id) let:item>
                        <LadderRow index=item.0 row=item.1 errors=errors
                            on_remove=Callback::new(move |id: usize| rows.update(|v| v.retain(|r| r.id != id))) />
                    </For>
                </tbody>
            </table>
            <small class="field-error" role="alert" data-field="ladder">{ladder_error}</small>
            <div class="btn-row">
                <button class="btn ghost" type="button" data-testid="ladder-add" on:click=move |_| {
                    let at = rows.with_untracked(|v| v.last().and_then(|r| r.at.get_untracked().trim().parse::<u32>().ok()));
                    let step = LadderStep { at_percent: at.map_or(80, |a| a + 10), action: StepAction::Warn };
                    let row = new_row.run(step);
                    rows.update(|v| v.push(row));
                }>"Add step"</button>
                <button class="btn ghost" type="button" data-testid="ladder-default" on:click=move |_| {
                    let fresh: Vec<Row> = wire::default_ladder().iter().map(|s| new_row.run(s.clone())).collect();
                    rows.set(fresh);
                }>"Reset to default"</button>
            </div>
        </fieldset>
    }
}

/// One ladder row with its error (the server's or the client's, named `ladder[i]…`).
#[component]
fn LadderRow(
    index: usize,
    row: Row,
    errors: RwSignal<Vec<(String, String)>>,
    on_remove: Callback<usize>,
) -> impl IntoView {
    let prefix = format!("ladder[{index}]");
    let error = Memo::new(move |_| {
        errors.with(|e| {
            e.iter()
                .find(|(f, _)| {
                    f.strip_prefix(&prefix)
                        .is_some_and(|r| r.is_empty() || r.starts_with('.'))
                })
                .map(|(_, m)| m.clone())
        })
    });
    let no_value = move || !takes_value(&row.action.get());
    view! {
        <tr data-testid="ladder-row" class:invalid=move || error.with(Option::is_some)>
            <td><input class="narrow" name=format!("ladder[{index}].at_percent") aria-label="at percent" inputmode="numeric"
                prop:value=move || row.at.get() on:input=move |ev| row.at.set(event_target_value(&ev)) /></td>
            <td><select name=format!("ladder[{index}].action") aria-label="action" prop:value=move || row.action.get()
                on:change=move |ev| row.action.set(event_target_value(&ev))>
                <option value="warn">"warn"</option>
                <option value="cpu_weight">"CPU weight"</option>
                <option value="cpus">"cpus"</option>
                <option value="memory_high">"memory high"</option>
                <option value="freeze">"freeze"</option>
            </select></td>
            <td><input class="narrow" name=format!("ladder[{index}].value") aria-label="value" disabled=no_value
                placeholder=move || match row.action.get().as_str() { "cpus" => "e.g. 0.5", "cpu_weight" => "1–10000", "memory_high" => "e.g. 256M", _ => "–" }
                prop:value=move || row.value.get() on:input=move |ev| row.value.set(event_target_value(&ev)) />
                <small class="field-error" role="alert" data-field=format!("ladder[{index}]")>{move || error.get()}</small></td>
            <td><button class="btn ghost" type="button" aria-label="remove step" data-testid="ladder-remove"
                on:click=move |_| on_remove.run(row.id)>"✕"</button></td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_rows_round_trip_the_default_ladder() {
        for (i, step) in wire::default_ladder().iter().enumerate() {
            let (action, value) = action_parts(&step.action);
            let at = step.at_percent.to_string();
            assert_eq!(parse_row(i, &at, action, &value).as_ref(), Ok(step));
        }
    }

    #[test]
    fn bad_rows_name_their_field() {
        assert_eq!(
            parse_row(2, "soon", "warn", "").unwrap_err().0,
            "ladder[2].at_percent"
        );
        assert_eq!(
            parse_row(1, "110", "cpus", "half").unwrap_err().0,
            "ladder[1].cpus"
        );
        assert_eq!(
            parse_row(0, "125", "memory_high", "lots").unwrap_err().0,
            "ladder[0].memory_high"
        );
        assert_eq!(
            parse_row(3, "150", "freeze", "ignored"),
            Ok(LadderStep {
                at_percent: 150,
                action: StepAction::Freeze
            })
        );
        assert_eq!(parse_amount("money", " "), Ok(None));
        assert_eq!(parse_amount("money", "2.5"), Ok(Some(2.5)));
        assert_eq!(parse_amount("money", "x").unwrap_err().0, "money");
    }

    #[test]
    fn the_badge_names_the_highest_step_in_force() {
        let mut b = TeamBudget {
            budget: Budget::default(),
            ladder: wire::default_ladder(),
            period_start: "2026-12-01T00:00:00Z".into(),
            next_reset: "2027-01-01T00:00:00Z".into(),
            used_money: 0.0,
            currency: "USD".into(),
            used_cpu_core_hours: 0.0,
            used_memory_gib_hours: 0.0,
            percent: 85.0,
            fleet: None,
            step: None,
            enforced: wire::Limits::default(),
            frozen: false,
            evaluated_at: "2026-12-03T00:00:00Z".into(),
        };
        assert_eq!(step_badge(&b), None);
        b.step = Some(0);
        assert_eq!(
            step_badge(&b),
            Some(("badge warn", "budget warning: 85 % used".into()))
        );
        b.step = Some(2);
        assert_eq!(
            step_badge(&b),
            Some(("badge bad", "over budget: cpus capped at 0.50".into()))
        );
        b.step = Some(9);
        assert_eq!(step_badge(&b), None, "an index off the ladder");
    }
}
