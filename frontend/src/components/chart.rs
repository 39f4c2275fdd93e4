//! Hand-drawn SVG charts: a time-series line chart with axes, units, limit lines, annotations
//! and hover/keyboard read-out; a sparkline; a usage meter. No chart library: a few KiB of WASM.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::{format, types::History};

/// Y units of the CPU charts (for [`LineChart`]'s `unit`).
pub fn unit_cores(v: f64) -> String {
    format!("{} cores", format::cores(v))
}

/// Y units of the memory charts.
pub fn unit_bytes(v: f64) -> String {
    format::bytes(v)
}

/// Drawing width and height of the line chart's viewBox (it scales to its box).
const W: f64 = 480.0;
const H: f64 = 190.0;
const PAD_L: f64 = 66.0;
const PAD_R: f64 = 12.0;
const PAD_T: f64 = 10.0;
const PAD_B: f64 = 24.0;

/// One line of a chart: x in Unix ms, y in the chart's unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    /// A colour class from the stylesheet: `s1` … `s4`.
    pub class: &'static str,
    pub points: Vec<(f64, f64)>,
    /// Fill the area under the line.
    pub area: bool,
}

/// A horizontal reference line (a limit), e.g. the CPU quota.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    pub name: String,
    pub value: f64,
    /// `limit` (solid red) or `soft` (dashed amber).
    pub class: &'static str,
}

/// A vertical annotation (a limit change: who and when).
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub at: f64,
    pub label: String,
}

/// Everything one chart draws.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChartData {
    pub series: Vec<Series>,
    pub levels: Vec<Level>,
    pub marks: Vec<Mark>,
    /// The x range shown (Unix ms).
    pub from: f64,
    pub to: f64,
    /// One x label per day from `from` (a midnight) on, as dates: for per-day series, whose
    /// five even steps would fall inside the same day and repeat its date.
    pub day_ticks: bool,
}

const DAY_MS: f64 = 86_400_000.0;

/// Where the x labels go: five even steps, or with `day_ticks` one per day (every n-th day
/// when more than seven would crowd the axis), never past `to`.
fn x_ticks(d: &ChartData, span: f64) -> Vec<f64> {
    if !d.day_ticks {
        return (0..=4)
            .map(|i| d.from + span * f64::from(i) / 4.0)
            .collect();
    }
    let days = (span / DAY_MS).floor().clamp(0.0, 62.0) as usize;
    let step = days / 7 + 1;
    (0..=days)
        .step_by(step)
        .map(|i| d.from + i as f64 * DAY_MS)
        .filter(|&t| t <= d.to)
        .collect()
}

/// 1, 2, 2.5, 5 × 10^k at or above `v`.
fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * base * 1.000_001 {
            return m * base;
        }
    }
    10.0 * base
}

/// A time-series chart. `unit` formats y values (axis and read-out).
#[component]
pub fn LineChart(
    #[prop(into)] data: Signal<ChartData>,
    unit: fn(f64) -> String,
    /// Accessible name and test id of the chart.
    #[prop(into)]
    label: String,
    #[prop(optional, into)] testid: String,
    /// Smallest y maximum (e.g. 1 core), so a flat zero line is not scaled up to noise.
    #[prop(default = 0.0)]
    min_max: f64,
) -> impl IntoView {
    let hover = RwSignal::new(None::<usize>);
    let geometry = Memo::new(move |_| {
        let d = data.get();
        let span = (d.to - d.from).max(1.0);
        let mut top: f64 = min_max;
        for s in &d.series {
            for &(_, y) in &s.points {
                top = top.max(y);
            }
        }
        for l in &d.levels {
            top = top.max(l.value * 1.08);
        }
        let top = nice_ceil(top);
        (d, span, top)
    });
    let sx = move |x: f64, from: f64, span: f64| PAD_L + (x - from) / span * (W - PAD_L - PAD_R);
    let sy = move |y: f64, top: f64| H - PAD_B - y / top * (H - PAD_T - PAD_B);

    let axes = move || {
        let (d, span, top) = geometry.get();
        let yticks = (0..=4).map(|i| {
            let v = top * f64::from(i) / 4.0;
            let y = sy(v, top);
            view! {
                <line class="grid" x1=PAD_L x2=W - PAD_R y1=y y2=y />
                <text class="tick" x=PAD_L - 6.0 y=y + 4.0 text-anchor="end">{unit(v)}</text>
            }
        });
        let ticks = x_ticks(&d, span);
        let last = ticks.len().saturating_sub(1);
        let xticks = ticks.into_iter().enumerate().map(move |(i, t)| {
            let x = sx(t, d.from, span);
            let anchor = if i == 0 {
                "start"
            } else if i == last && x > W - PAD_R - 20.0 {
                "end"
            } else {
                "middle"
            };
            let text = if d.day_ticks {
                format::axis_day(t)
            } else {
                format::axis_time(t, span)
            };
            view! {
                <text class="tick x" x=x y=H - 6.0 text-anchor=anchor>{text}</text>
            }
        });
        view! { {yticks.collect_view()} {xticks.collect_view()} }
    };

    let lines = move || {
        let (d, span, top) = geometry.get();
        d.series
            .iter()
            .map(|s| {
                let pts: Vec<String> = s
                    .points
                    .iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", sx(x, d.from, span), sy(y, top)))
                    .collect();
                let line = pts.join(" ");
                let area = (s.area && pts.len() > 1).then(|| {
                    let first = s.points.first().map_or(0.0, |p| sx(p.0, d.from, span));
                    let last = s.points.last().map_or(0.0, |p| sx(p.0, d.from, span));
                    let base = sy(0.0, top);
                    format!(
                        "M{first:.1},{base:.1} L{} L{last:.1},{base:.1} Z",
                        pts.join(" L")
                    )
                });
                view! {
                    <g class=format!("series {}", s.class)>
                        {area.map(|a| view! { <path class="area" d=a /> })}
                        <polyline class="line" points=line />
                    </g>
                }
            })
            .collect_view()
    };

    let levels = move || {
        let (d, _, top) = geometry.get();
        d.levels
            .iter()
            .map(|l| {
                let y = sy(l.value, top);
                view! {
                    <g class=format!("level {}", l.class) data-value=l.value.to_string()>
                        <line x1=PAD_L x2=W - PAD_R y1=y y2=y />
                        <text x=W - PAD_R - 4.0 y=y - 4.0 text-anchor="end">
                            {format!("{} {}", l.name, unit(l.value))}
                        </text>
                    </g>
                }
            })
            .collect_view()
    };

    let marks = move || {
        let (d, span, _) = geometry.get();
        d.marks
            .iter()
            .filter(|m| m.at >= d.from && m.at <= d.to)
            .map(|m| {
                let x = sx(m.at, d.from, span);
                view! {
                    <g class="mark">
                        <line x1=x x2=x y1=PAD_T y2=H - PAD_B />
                        <circle cx=x cy=PAD_T + 3.0 r=3.5 />
                        <title>{m.label.clone()}</title>
                    </g>
                }
            })
            .collect_view()
    };

    // The x positions hover can snap to: the first series' points.
    let snap_count =
        move || geometry.with(|(d, _, _)| d.series.first().map_or(0, |s| s.points.len()));
    let on_move = move |ev: web_sys::MouseEvent| {
        let Some(target) = ev
            .current_target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        else {
            return;
        };
        let rect = target.get_bounding_client_rect();
        if rect.width() <= 0.0 {
            return;
        }
        let vx = (f64::from(ev.client_x()) - rect.left()) / rect.width() * W;
        let (d, span, _) = geometry.get_untracked();
        let Some(s) = d.series.first() else { return };
        let best = s
            .points
            .iter()
            .enumerate()
            .min_by(|a, b| {
                let da = (sx(a.1.0, d.from, span) - vx).abs();
                let db = (sx(b.1.0, d.from, span) - vx).abs();
                da.total_cmp(&db)
            })
            .map(|(i, _)| i);
        hover.set(best);
    };
    let on_key = move |ev: web_sys::KeyboardEvent| {
        let n = snap_count();
        if n == 0 {
            return;
        }
        let cur = hover.get_untracked();
        let next = match ev.key().as_str() {
            "ArrowLeft" => Some(cur.map_or(n - 1, |i| i.saturating_sub(1))),
            "ArrowRight" => Some(cur.map_or(n - 1, |i| (i + 1).min(n - 1))),
            "Home" => Some(0),
            "End" => Some(n - 1),
            "Escape" => None,
            _ => return,
        };
        ev.prevent_default();
        hover.set(next);
    };

    let readout = move || {
        let i = hover.get()?;
        let (d, span, top) = geometry.get();
        let first = d.series.first()?;
        let &(x, _) = first.points.get(i)?;
        let px = sx(x, d.from, span);
        let rows: Vec<(String, &'static str, String)> = d
            .series
            .iter()
            .filter_map(|s| {
                let p = s
                    .points
                    .iter()
                    .min_by(|a, b| (a.0 - x).abs().total_cmp(&(b.0 - x).abs()))?;
                Some((s.name.clone(), s.class, unit(p.1)))
            })
            .collect();
        let box_w = 170.0;
        let box_h = 20.0 + 16.0 * rows.len() as f64;
        let bx = if px + box_w + 10.0 > W - PAD_R {
            px - box_w - 8.0
        } else {
            px + 8.0
        };
        let dots = d
            .series
            .iter()
            .filter_map(|s| {
                let p = s
                    .points
                    .iter()
                    .min_by(|a, b| (a.0 - x).abs().total_cmp(&(b.0 - x).abs()))?;
                Some(view! {
                    <circle class=format!("dot {}", s.class) cx=px cy=sy(p.1, top) r=3.5 />
                })
            })
            .collect_view();
        Some(view! {
            <g class="readout" pointer-events="none">
                <line class="cursor" x1=px x2=px y1=PAD_T y2=H - PAD_B />
                {dots}
                <rect class="tip" x=bx y=PAD_T rx=4 width=box_w height=box_h />
                <text class="tip-title" x=bx + 8.0 y=PAD_T + 14.0>{format::datetime_ms(x)}</text>
                {rows.into_iter().enumerate().map(|(k, (name, class, v))| {
                    let y = PAD_T + 30.0 + 16.0 * k as f64;
                    view! {
                        <rect class=format!("key {class}") x=bx + 8.0 y=y - 8.0 width=8 height=8 />
                        <text class="tip-row" x=bx + 20.0 y=y>{format!("{name}: {v}")}</text>
                    }
                }).collect_view()}
            </g>
        })
    };

    let empty = move || geometry.with(|(d, _, _)| d.series.iter().all(|s| s.points.is_empty()));
    let last_value = move || {
        geometry.with(|(d, _, _)| {
            d.series
                .first()
                .and_then(|s| s.points.last())
                .map_or(String::new(), |p| p.1.to_string())
        })
    };
    let level_values = move || {
        geometry.with(|(d, _, _)| {
            d.levels
                .iter()
                .map(|l| l.value.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
    };
    let legend = move || {
        geometry.with(|(d, _, _)| {
            d.series
                .iter()
                .map(|s| {
                    view! { <span class=format!("key-item {}", s.class)><i></i>{s.name.clone()}</span> }
                })
                .collect_view()
        })
    };

    view! {
        <figure class="chart" data-testid=testid data-last=last_value data-levels=level_values
            data-points=move || snap_count().to_string()>
            <figcaption>
                <span class="chart-title">{label.clone()}</span>
                <span class="legend">{legend}</span>
            </figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label=label.clone() tabindex="0"
                on:mousemove=on_move on:mouseleave=move |_| hover.set(None) on:keydown=on_key
                on:blur=move |_| hover.set(None)>
                {axes}
                {levels}
                {lines}
                {marks}
                <Show when=empty>
                    <text class="empty" x=W / 2.0 y=H / 2.0 text-anchor="middle">"No samples in this range yet"</text>
                </Show>
                {readout}
            </svg>
        </figure>
    }
}

/// A small line without axes (e.g. memory in a table row); `max` fixes the scale.
#[component]
pub fn Sparkline(
    #[prop(into)] values: Signal<Vec<f64>>,
    #[prop(optional)] max: Option<f64>,
    #[prop(optional, into)] title: String,
) -> impl IntoView {
    const SW: f64 = 96.0;
    const SH: f64 = 24.0;
    let shape = move || {
        let v = values.get();
        let top = max
            .unwrap_or_else(|| v.iter().copied().fold(0.0, f64::max))
            .max(f64::MIN_POSITIVE);
        let n = v.len().max(2) - 1;
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(i, y)| {
                format!(
                    "{:.1},{:.1}",
                    i as f64 / n as f64 * SW,
                    SH - 1.0 - (y / top).clamp(0.0, 1.0) * (SH - 2.0)
                )
            })
            .collect();
        let area = if pts.len() > 1 {
            format!(
                "M0,{SH} L{} L{:.1},{SH} Z",
                pts.join(" L"),
                (v.len() - 1) as f64 / n as f64 * SW
            )
        } else {
            String::new()
        };
        (pts.join(" "), area)
    };
    view! {
        <svg class="spark" viewBox=format!("0 0 {SW} {SH}") width=SW height=SH role="img" aria-label=title.clone()>
            <title>{title.clone()}</title>
            <path class="area" d=move || shape().1 />
            <polyline class="line" points=move || shape().0 />
        </svg>
    }
}

/// A horizontal meter: `used` (solid) and `allocated` (hatched) against `total`.
#[component]
pub fn Meter(
    #[prop(into)] used: Signal<f64>,
    #[prop(into)] allocated: Signal<f64>,
    #[prop(into)] total: Signal<f64>,
    #[prop(into)] label: String,
) -> impl IntoView {
    let pct = move |v: f64| {
        let t = total.get();
        if t <= 0.0 {
            0.0
        } else {
            (v / t * 100.0).clamp(0.0, 100.0)
        }
    };
    view! {
        <div class="meter" role="meter" aria-label=label aria-valuemin="0"
            aria-valuemax=move || total.get().to_string() aria-valuenow=move || used.get().to_string()>
            <div class="alloc" style=move || format!("width:{:.2}%", pct(allocated.get()))></div>
            <div class="used" style=move || format!("width:{:.2}%", pct(used.get()))></div>
        </div>
    }
}

/// CPU used (cores) and throttled (share of the step) of a history: the CPU chart of a
/// container and of a team.
pub fn cpu_series(h: &History) -> Vec<Series> {
    let s = h.step_secs.max(1) as f64;
    vec![
        Series {
            name: "used".into(),
            class: "s1",
            area: true,
            points: h
                .points
                .iter()
                .map(|p| (p.ts as f64, p.cpu_cores))
                .collect(),
        },
        Series {
            name: "throttled".into(),
            class: "s2",
            area: false,
            points: h
                .points
                .iter()
                .map(|p| (p.ts as f64, p.throttled_seconds / s))
                .collect(),
        },
    ]
}

/// Memory average and peak of a history: the memory chart of a container and of a team.
pub fn memory_series(h: &History) -> Vec<Series> {
    vec![
        Series {
            name: "average".into(),
            class: "s3",
            area: true,
            points: h
                .points
                .iter()
                .map(|p| (p.ts as f64, p.mem_avg_bytes as f64))
                .collect(),
        },
        Series {
            name: "peak".into(),
            class: "s4",
            area: false,
            points: h
                .points
                .iter()
                .map(|p| (p.ts as f64, p.mem_peak_bytes as f64))
                .collect(),
        },
    ]
}
