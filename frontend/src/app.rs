//! The app shell: header, navigation and the routed pages.

use leptos::prelude::*;

#[component]
pub fn App() -> impl IntoView {
    view! {
        <header class="topbar">
            <span class="brand" id="brand">"Corral"</span>
        </header>
        <main id="app-main">
            <p data-testid="app-ready">"Dashboard loaded."</p>
        </main>
    }
}
