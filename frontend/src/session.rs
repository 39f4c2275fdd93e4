//! Who is signed in, shared by every page through a context.

use leptos::prelude::*;

use crate::api;

/// The signed-in user (`None` when signed out) and whether the daemon has been asked yet.
#[derive(Clone, Copy)]
pub struct Session {
    pub me: RwSignal<Option<wire::Me>>,
    pub checked: RwSignal<bool>,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.me
            .with(|m| m.as_ref().is_some_and(|m| m.role == wire::Role::Admin))
    }

    /// Admins and operators may change containers (operators: of their teams).
    pub fn can_operate(&self) -> bool {
        self.me
            .with(|m| m.as_ref().is_some_and(|m| m.role != wire::Role::Viewer))
    }

    /// Takes the answer of a login or setup.
    pub fn signed_in(&self, r: wire::LoginResponse) {
        api::set_csrf(Some(r.csrf_token.clone()));
        self.me.set(Some(wire::Me {
            name: r.user.name,
            role: r.user.role,
            teams: r.user.teams,
            via: "session".into(),
            csrf_token: Some(r.csrf_token),
        }));
        self.checked.set(true);
    }

    /// Asks the daemon who we are (after a reload).
    pub async fn probe(&self) {
        match api::get::<wire::Me>("/api/v1/me").await {
            Ok(me) => {
                api::set_csrf(me.csrf_token.clone());
                self.me.set(Some(me));
            }
            Err(_) => self.me.set(None),
        }
        self.checked.set(true);
    }

    /// Ends the session on the server, then forgets it here.
    pub async fn sign_out(&self) {
        let _ = api::send_text("POST", "/api/v1/logout", None).await;
        api::set_csrf(None);
        self.me.set(None);
    }
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}
