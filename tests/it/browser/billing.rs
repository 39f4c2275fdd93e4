//! The billing page (issue 14 part 4): a month with no rate card says so and links admins to
//! the form (viewers are told an admin sets it, and get a read-only form); per-container and per-label lines with totals and a `key=value` filter; the rate
//! card's effective date, its versions, and a new version from a chosen hour saved from the
//! page. Screenshots `billing-unset`, `billing-lines`, `billing-rate-card`.

use backend::metering::{
    Usage, calendar,
    sampler::wall_ms,
    store::{Batch, LedgerOwner, commit},
};
use tests::{ADMIN, ADMIN_PASSWORD, Daemon, browser::Browser, call};

/// Rows of a table body.
async fn rows(b: &Browser, table: &str, n: u64) {
    b.wait_js(
        &format!("document.querySelectorAll('[data-testid={table}] tbody tr').length"),
        20,
        |v| v.as_u64() == Some(n),
    )
    .await;
}

/// Scrolls the element into view (screenshots are of the viewport).
async fn scroll_to(b: &Browser, css: &str) {
    b.wait_js(
        &format!("(() => {{ document.querySelector('{css}').scrollIntoView(); return true; }})()"),
        10,
        |v| v == &serde_json::Value::Bool(true),
    )
    .await;
}

#[tokio::test]
async fn billing_page_lines_labels_and_the_rate_card() {
    let daemon = Daemon::start();
    let admin = daemon.admin_token();
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = daemon.url();
    let r = call(
        &daemon,
        &admin,
        "POST",
        "/api/v1/teams",
        Some(serde_json::json!({"name": "bill-a"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // Ledger rows of two labelled containers this hour, as the sampler books them.
    let store =
        backend::store::Store::open(&daemon.state.path().join("state/corral.db")).expect("store");
    let now_ms = wall_ms();
    let mut batch = Batch::default();
    for (id, name, labels, cpu) in [
        (
            "id-web",
            "web",
            r#"{"app":"web","tier":"front"}"#,
            3_600_000_000,
        ),
        ("id-db", "db", r#"{"app":"db"}"#, 1_800_000_000),
    ] {
        let owner = LedgerOwner {
            container_id: id.into(),
            name: name.into(),
            team: "bill-a".into(),
            labels: labels.into(),
        };
        let usage = Usage {
            duration_ns: 1_000_000_000,
            cpu_usec: cpu,
            ..Default::default()
        };
        batch.add_ledger(&owner, now_ms, &usage);
    }
    commit(&mut store.lock(), &batch).expect("seed ledger");

    let r = call(
        &daemon,
        &admin,
        "POST",
        "/api/v1/users",
        Some(
            serde_json::json!({"name": "bill-viewer", "role": "viewer", "teams": ["bill-a"],
            "password": "a long enough password"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    b.client.set_window_size(1280, 2000).await.unwrap();
    // A viewer is told who sets the card, gets no link, and the form is read-only.
    b.sign_in(&base, "bill-viewer", "a long enough password")
        .await;
    b.open(&base, "/billing").await;
    b.wait_text("[data-testid=rates-unset]", "An admin sets it")
        .await;
    rows(&b, "containers-bill", 2).await;
    b.wait_js(
        "[document.querySelector('[data-testid=set-rates-link]'), document.querySelector('[data-testid=save-rates]'), document.querySelector('[data-testid=rate-card] fieldset').disabled]",
        10,
        |v| v == &serde_json::json!([null, null, true]),
    )
    .await;
    b.click("[data-testid=sign-out]").await;
    b.wait_for("[data-testid=sign-in]").await;

    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, "/billing").await;

    // No rate card: the notice says every cost is 0.00 and links to the form.
    b.wait_text("[data-testid=rates-unset]", "No rate card is set")
        .await;
    b.wait_text("[data-testid=rate-card]", "No version saved yet")
        .await;
    rows(&b, "containers-bill", 2).await;
    b.screenshot("billing-unset").await;
    b.click("[data-testid=set-rates-link]").await;
    b.wait_js("document.activeElement.id", 5, |v| v == "f-currency")
        .await;

    // Per-container lines with their total, per-label lines; the label filter narrows both.
    b.wait_text(
        "[data-testid=containers-bill] tr[data-container=web]",
        "1.0000",
    )
    .await;
    b.wait_text("[data-testid=containers-total]", "1.5000")
        .await;
    rows(&b, "labels-bill", 3).await;
    b.wait_text(
        "[data-testid=labels-bill] tr[data-label='app=web']",
        "1.0000",
    )
    .await;
    b.fill("#f-label", "nonsense").await;
    b.click("[data-testid=apply-label]").await;
    b.wait_text("[data-field=label]", "not key=value").await;
    b.fill("#f-label", "app=db").await;
    b.click("[data-testid=apply-label]").await;
    rows(&b, "containers-bill", 1).await;
    b.wait_text("[data-testid=containers-total]", "0.5000")
        .await;
    b.click("[data-testid=clear-label]").await;
    rows(&b, "containers-bill", 2).await;
    // A label's button filters by it.
    b.click("[data-testid=labels-bill] tr[data-label='tier=front'] button")
        .await;
    rows(&b, "containers-bill", 1).await;
    b.wait_for("[data-testid=containers-bill] tr[data-container=web]")
        .await;
    b.wait_js(
        "(() => { window.scrollTo(0, 0); return true; })()",
        5,
        |v| v == &serde_json::Value::Bool(true),
    )
    .await;
    b.screenshot("billing-lines").await;
    b.click("[data-testid=clear-label]").await;
    rows(&b, "containers-bill", 2).await;

    // A new version from a chosen hour: the past is refused beside the field; the next hour
    // is saved and listed as scheduled.
    // Read the clock here, not at the start of the test, and keep 15 minutes clear of the
    // boundary: an hour that turns while the form is filled would make "next" the past.
    let now = wall_ms() / 1000;
    let next = calendar::hour_ceil(now + 15 * 60);
    let at = calendar::format_time(next);
    b.fill("#f-effective_from", "2020-01-01T00:00Z").await;
    b.fill("#f-currency", "EUR").await;
    b.fill("#f-cpu_core_hour_used", "0.04").await;
    b.click("[data-testid=save-rates]").await;
    b.wait_text("[data-field=effective_from]", "hour boundary")
        .await;
    b.fill("#f-effective_from", &format!("{}Z", &at[..16]))
        .await;
    b.fill("#f-currency", "EUR").await;
    b.fill("#f-cpu_core_hour_used", "0.04").await;
    b.click("[data-testid=save-rates]").await;
    b.wait_text("[data-testid=rates-saved]", &at).await;
    b.wait_for(&format!(
        "[data-testid=rate-versions] tr[data-effective='{at}'][data-status=scheduled]"
    ))
    .await;
    let r = call(&daemon, &admin, "GET", "/api/v1/billing/rates", None);
    let cards: wire::billing::RateCards = serde_json::from_str(&r.body).expect("rates");
    let last = cards.versions.last().expect("a version");
    assert_eq!(last.effective_from.as_deref(), Some(at.as_str()));
    assert_eq!(
        (last.currency.as_str(), last.cpu_core_hour_used),
        ("EUR", 0.04)
    );
    // This month now reaches a priced hour: the notice goes (unless that hour is next month).
    if calendar::month_start(next) == calendar::month_start(now) {
        b.wait_js(
            "document.querySelector('[data-testid=rates-unset]') === null",
            20,
            |v| v == &serde_json::Value::Bool(true),
        )
        .await;
    }

    // A version in force since the month began (seeded: the API never prices the past) shows
    // its effective date, prices the lines, and the scheduled one stays listed after it.
    let month_start = calendar::month_start(now);
    store
        .lock()
        .execute(
            "INSERT INTO rate_card (effective_from, currency, cpu_core_hour_used_micros,
               cpu_core_hour_reserved_micros, mem_gib_hour_used_micros,
               mem_gib_hour_reserved_micros, io_gib_micros, created_at_ms)
             VALUES (?1, 'EUR', 20000, 0, 0, 0, 0, 0)",
            [month_start],
        )
        .expect("seed a rate card");
    drop(store);
    b.open(&base, "/billing").await;
    let since = calendar::format_time(month_start);
    b.wait_text("[data-testid=rates-effective]", &since).await;
    b.wait_for(&format!(
        "[data-testid=rate-versions] tr[data-effective='{since}'][data-status='in force']"
    ))
    .await;
    b.wait_for(&format!(
        "[data-testid=rate-versions] tr[data-effective='{at}'][data-status=scheduled]"
    ))
    .await;
    b.wait_text(
        "[data-testid=containers-bill] tr[data-container=web] [data-testid=container-cost]",
        "0.02 EUR",
    )
    .await;
    b.wait_text(
        &format!("[data-testid=rate-versions] tr[data-effective='{at}']"),
        "CPU 0.04 used",
    )
    .await;
    assert!(
        b.client
            .find(fantoccini::Locator::Css("[data-testid=rates-unset]"))
            .await
            .is_err(),
        "a priced month has no notice"
    );
    scroll_to(&b, "[data-testid=rate-card]").await;
    b.screenshot("billing-rate-card").await;
    b.close().await;
}
