//! The host's container network (`GET /api/v1/network`), the dashboard's `corral network`:
//! the bridge, its subnet, NAT and layer-2 filter, and (admins) each container's address and
//! published ports, named and linked from the container list.

use std::collections::HashMap;

use leptos::prelude::*;
use leptos_router::components::A;

use crate::{
    api,
    components::{poll::poll, ui::polled_view},
};

#[component]
pub fn NetworkCard() -> impl IntoView {
    let net = poll(10_000, || async {
        let info = api::get::<wire::NetworkInfo>("/api/v1/network").await?;
        // Endpoints name containers by id; the list gives their names (only for admins, who
        // are the ones that get endpoints).
        let names: HashMap<String, String> = if info.endpoints.is_empty() {
            HashMap::new()
        } else {
            api::get::<Vec<wire::Container>>("/api/v1/containers?all=true")
                .await?
                .into_iter()
                .map(|c| (c.id, c.name))
                .collect()
        };
        Ok((info, names))
    });
    view! {
        <section class="card" data-testid="network-card">
            <h2>"Network"</h2>
            {polled_view(net, "the network", |(n, names): (wire::NetworkInfo, HashMap<String, String>)| {
                let nat = match (n.nat, n.nat_backend) {
                    (true, Some(b)) => format!("on ({b})"),
                    (true, None) => "on".to_owned(),
                    (false, _) => "not installed yet (the first bridged container installs it)".to_owned(),
                };
                view! {
                    <dl class="facts">
                        <dt>"Bridge"</dt><dd data-testid="net-bridge">{n.bridge}</dd>
                        <dt>"Subnet"</dt><dd data-testid="net-subnet">{n.subnet.unwrap_or_else(|| "chosen when the first bridged container starts".into())}</dd>
                        <dt>"Outbound NAT"</dt><dd>{nat}</dd>
                        <dt>"Ports kept apart by"</dt><dd>{n.l2_filter.unwrap_or_else(|| "—".into())}</dd>
                    </dl>
                    {if n.endpoints.is_empty() {
                        view! { <p class="sub">"No container has a network of its own (addresses are listed for admins)."</p> }.into_any()
                    } else {
                        view! {
                            <div class="table-wrap"><table class="table" data-testid="net-endpoints">
                                <thead><tr><th>"Container"</th><th>"Mode"</th><th>"Address"</th><th>"Published ports"</th></tr></thead>
                                <tbody>
                                    {n.endpoints.into_iter().map(|e| {
                                        let name = names.get(&e.container).cloned();
                                        let short: String = e.container.chars().take(12).collect();
                                        view! {
                                            <tr>
                                                <td>{match name {
                                                    Some(name) => view! { <A href=format!("/containers/{}", api::enc(&name))>{name}</A> }.into_any(),
                                                    None => view! { <code>{short}</code> }.into_any(),
                                                }}</td>
                                                <td>{e.mode}</td>
                                                <td><code>{e.address.unwrap_or_else(|| "—".into())}</code></td>
                                                <td>{if e.ports.is_empty() { "—".to_owned() } else { e.ports.join(", ") }}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table></div>
                        }.into_any()
                    }}
                }
            })}
        </section>
    }
}
