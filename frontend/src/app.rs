//! The app shell: top bar, navigation and the routed pages.

use leptos::prelude::*;
use leptos_router::{
    components::{A, Route, Router, Routes},
    path,
};

use crate::pages;

#[component]
pub fn App() -> impl IntoView {
    view! {
        <Router>
            <header class="topbar">
                <span class="brand" id="brand">"Corral"</span>
                <nav aria-label="main">
                    <A href="/">"Overview"</A>
                </nav>
            </header>
            <main id="app-main">
                <Routes fallback=|| view! { <p>"Page not found."</p> }>
                    <Route path=path!("/") view=pages::overview::Overview />
                </Routes>
            </main>
        </Router>
    }
}
