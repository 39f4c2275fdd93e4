//! The app shell: sign-in and setup outside it; inside, the navigation and the routed pages.

use leptos::prelude::*;
use leptos_router::{
    Lazy, LazyRoute,
    components::{A, Outlet, ParentRoute, Route, Router, Routes},
    hooks::use_navigate,
    path,
};

use crate::{
    pages,
    session::{Session, use_session},
};

#[component]
pub fn App() -> impl IntoView {
    let session = Session {
        me: RwSignal::new(None),
        checked: RwSignal::new(false),
    };
    provide_context(session);
    leptos::task::spawn_local(async move { session.probe().await });
    theme::apply(theme::stored());
    view! {
        <Router>
            <Routes fallback=|| view! { <Shell><NotFound /></Shell> }>
                <Route path=path!("/login") view=pages::login::Login />
                <Route path=path!("/setup") view=pages::login::Setup />
                <ParentRoute path=path!("") view=|| view! { <Shell><Outlet /></Shell> }>
                    <Route path=path!("/") view={Lazy::<OverviewPage>::new()} />
                    <Route path=path!("/containers") view={Lazy::<ContainersPage>::new()} />
                    <Route path=path!("/containers/new") view={Lazy::<NewContainerPage>::new()} />
                    <Route path=path!("/containers/:name") view={Lazy::<ContainerPage>::new()} />
                    <Route path=path!("/images") view={Lazy::<ImagesPage>::new()} />
                    <Route path=path!("/account") view={Lazy::<AccountPage>::new()} />
                    <Route path=path!("/billing") view={Lazy::<BillingPage>::new()} />
                    <Route path=path!("/fleet") view={Lazy::<FleetPage>::new()} />
                    <Route path=path!("/teams/:name") view={Lazy::<TeamPage>::new()} />
                    <Route path=path!("/cgroups") view={Lazy::<CgroupsPage>::new()} />
                    <Route path=path!("/audit") view={Lazy::<AuditPage>::new()} />
                    <Route path=path!("/users") view={Lazy::<UsersPage>::new()} />
                </ParentRoute>
            </Routes>
        </Router>
    }
}

/// The signed-in pages are lazy routes, in three WASM modules that `cargo xtask ui` splits off
/// the main one: the overview (the landing page), the container pages, and the rest. Each is
/// fetched the first time one of its pages is shown, so the first download is the shell,
/// sign-in and what the pages share. Three groups, not one module per page: the split puts code
/// used by several modules into a chunk per combination of users, and twelve modules made 270
/// chunks — a hundred requests for one page.
#[derive(Clone, Copy)]
enum ContainerView {
    List,
    New,
    Detail,
}

#[derive(Clone, Copy)]
enum AdminView {
    Images,
    Account,
    Billing,
    Fleet,
    Team,
    Cgroups,
    Audit,
    Users,
}

#[leptos::lazy]
fn overview_module() -> AnyView {
    pages::overview::Overview().into_any()
}

#[leptos::lazy]
fn container_module(view: ContainerView) -> AnyView {
    match view {
        ContainerView::List => pages::containers::Containers().into_any(),
        ContainerView::New => pages::containers::NewContainer().into_any(),
        ContainerView::Detail => pages::container::ContainerDetail().into_any(),
    }
}

#[leptos::lazy]
fn admin_module(view: AdminView) -> AnyView {
    match view {
        AdminView::Images => pages::images::Images().into_any(),
        AdminView::Account => pages::account::Account().into_any(),
        AdminView::Billing => pages::billing::Billing().into_any(),
        AdminView::Fleet => pages::fleet::Fleet().into_any(),
        AdminView::Team => pages::team::TeamDetail().into_any(),
        AdminView::Cgroups => pages::cgroups::Cgroups().into_any(),
        AdminView::Audit => pages::audit::Audit().into_any(),
        AdminView::Users => pages::users::Users().into_any(),
    }
}

/// One route type per page: its view is its module's function, awaited.
macro_rules! lazy_pages {
    ($($route:ident => $module:expr;)*) => {$(
        struct $route;

        impl LazyRoute for $route {
            fn data() -> Self {
                Self
            }

            async fn view(_this: Self) -> AnyView {
                $module.await
            }
        }
    )*};
}

lazy_pages! {
    OverviewPage => overview_module();
    ContainersPage => container_module(ContainerView::List);
    NewContainerPage => container_module(ContainerView::New);
    ContainerPage => container_module(ContainerView::Detail);
    ImagesPage => admin_module(AdminView::Images);
    AccountPage => admin_module(AdminView::Account);
    BillingPage => admin_module(AdminView::Billing);
    FleetPage => admin_module(AdminView::Fleet);
    TeamPage => admin_module(AdminView::Team);
    CgroupsPage => admin_module(AdminView::Cgroups);
    AuditPage => admin_module(AdminView::Audit);
    UsersPage => admin_module(AdminView::Users);
}

#[component]
fn NotFound() -> impl IntoView {
    view! {
        <div class="page-head"><h1>"Page not found"</h1></div>
        <p>"There is nothing at this address. " <A href="/">"Go to the overview"</A></p>
    }
}

/// Icons: one 24×24 path each, drawn with `currentColor`.
fn icon(d: &'static str) -> impl IntoView {
    view! {
        <svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><path d=d /></svg>
    }
}

const I_OVERVIEW: &str = "M3 13h8V3H3zm0 8h8v-6H3zm10 0h8V11h-8zm0-18v6h8V3z";
const I_CONTAINERS: &str = "M21 16.5V7.5L12 2.5 3 7.5v9l9 5zM12 4.8l6.5 3.6L12 12 5.5 8.4zM5 10.1l6 3.3v6.2l-6-3.3zm8 9.5v-6.2l6-3.3v6.2z";
const I_IMAGES: &str =
    "M4 3h16v4H4zm0 7h16v4H4zm0 7h16v4H4zm2-12h2v0H6zm0 0h2M6 4.5h2v1H6zm0 7h2v1H6zm0 7h2v1H6z";
const I_BILLING: &str = "M4 4h16v16H4zm2 2v12h12V6zm2 8h2v2H8zm0-4h2v2H8zm4 4h4v2h-4zm0-4h4v2h-4z";
const I_FLEET: &str = "M2 4h9v7H2zm11 0h9v7h-9zM2 13h9v7H2zm11 0h9v7h-9z";
const I_TREE: &str = "M3 3h6v6H7v3h4v-1h6v6h-6v-3H7v5h4v-1h6v6h-6v-3H5V9H3z";
const I_AUDIT: &str = "M6 2h9l5 5v15H6zm8 1.5V8h4.5zM8 12h10v2H8zm0 4h10v2H8zm0-8h5v2H8z";
const I_USERS: &str = "M9 11a4 4 0 1 1 0-8 4 4 0 0 1 0 8zm-7 9c0-3.3 3.1-6 7-6s7 2.7 7 6zm15-9a3 3 0 1 1 0-6 3 3 0 0 1 0 6zm1.5 9c0-2.2-.9-4.1-2.5-5.4 3 .2 6 2 6 5.4z";

/// The frame of every signed-in page: side navigation, the user, and the page.
#[component]
fn Shell(children: Children) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let menu_open = RwSignal::new(false);
    // Signed out (expired or never): to the sign-in page, remembering where we were.
    Effect::new(move |_| {
        if session.checked.get() && session.me.with(Option::is_none) {
            crate::api::to_sign_in();
        }
    });
    let sign_out = move |_| {
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            session.sign_out().await;
            navigate("/login", Default::default());
        });
    };
    let admin = move || session.is_admin();
    let page = children();
    view! {
        <div class="shell" class:menu-open=move || menu_open.get()>
            <a class="skip" href="#app-main">"Skip to content"</a>
            <aside class="side">
                <div class="brand-row">
                    <span class="brand" id="brand">
                        <svg class="logo" viewBox="0 0 24 24" aria-hidden="true">
                            <path d="M3 8l9-5 9 5v8l-9 5-9-5zm2 1.2v5.6l7 3.9 7-3.9V9.2l-7 3.9z" />
                        </svg>
                        "Corral"
                    </span>
                    <button class="menu-btn" aria-label="Menu" aria-expanded=move || menu_open.get().to_string()
                        on:click=move |_| menu_open.update(|o| *o = !*o)>
                        <svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><path d="M3 6h18v2H3zm0 5h18v2H3zm0 5h18v2H3z" /></svg>
                    </button>
                </div>
                <nav aria-label="main" on:click=move |_| menu_open.set(false)>
                    <A href="/" exact=true>{icon(I_OVERVIEW)}<span>"Overview"</span></A>
                    <A href="/containers">{icon(I_CONTAINERS)}<span>"Containers"</span></A>
                    <A href="/images">{icon(I_IMAGES)}<span>"Images"</span></A>
                    <A href="/billing">{icon(I_BILLING)}<span>"Teams & billing"</span></A>
                    <A href="/fleet">{icon(I_FLEET)}<span>"Fleet"</span></A>
                    <A href="/cgroups">{icon(I_TREE)}<span>"Host cgroups"</span></A>
                    <Show when=admin>
                        <A href="/audit">{icon(I_AUDIT)}<span>"Audit log"</span></A>
                        <A href="/users">{icon(I_USERS)}<span>"Users & tokens"</span></A>
                    </Show>
                </nav>
                <div class="side-foot">
                    {move || session.me.get().map(|m| view! {
                        <A href="/account" attr:class="whoami" attr:data-testid="whoami" attr:title="Your account: change your password">
                            <span class="avatar" aria-hidden="true">{m.name.chars().next().unwrap_or('?').to_uppercase().to_string()}</span>
                            <span class="who"><b>{m.name.clone()}</b><small>{m.role.to_string()}</small></span>
                        </A>
                    })}
                    <div class="foot-actions">
                        <theme::Toggle />
                        <button class="btn ghost small" data-testid="sign-out" on:click=sign_out>"Sign out"</button>
                    </div>
                </div>
            </aside>
            <main id="app-main" tabindex="-1">
                {move || if session.me.with(Option::is_some) {
                    None
                } else {
                    Some(view! { <crate::components::ui::Loading what="your session" /> })
                }}
                <div class="page" class:hidden=move || session.me.with(Option::is_none)>{page}</div>
            </main>
        </div>
    }
}

/// Light, dark, or the system's choice; remembered in `localStorage`.
mod theme {
    use leptos::prelude::*;

    const KEY: &str = "corral-theme";

    pub fn stored() -> String {
        web_sys::window()
            .and_then(|w| w.local_storage().ok().flatten())
            .and_then(|s| s.get_item(KEY).ok().flatten())
            .unwrap_or_default()
    }

    pub fn apply(theme: String) {
        let Some(w) = web_sys::window() else { return };
        if let Some(root) = w.document().and_then(|d| d.document_element()) {
            let _ = if theme.is_empty() {
                root.remove_attribute("data-theme")
            } else {
                root.set_attribute("data-theme", &theme)
            };
        }
        if let Some(s) = w.local_storage().ok().flatten() {
            let _ = s.set_item(KEY, &theme);
        }
    }

    fn system_dark() -> bool {
        web_sys::window()
            .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
            .is_some_and(|m| m.matches())
    }

    #[component]
    pub fn Toggle() -> impl IntoView {
        let current = RwSignal::new(stored());
        let dark = move || match current.get().as_str() {
            "dark" => true,
            "light" => false,
            _ => system_dark(),
        };
        view! {
            <button class="btn ghost small" data-testid="theme"
                aria-label=move || if dark() { "Switch to light theme" } else { "Switch to dark theme" }
                on:click=move |_| {
                    let next = if dark() { "light" } else { "dark" };
                    current.set(next.to_owned());
                    apply(next.to_owned());
                }>
                {move || if dark() { "☀ Light" } else { "☾ Dark" }}
            </button>
        }
    }
}
