//! The container page's Terminal tab (issue 15), in Chromium against a real daemon and kernel:
//! xterm.js over the `/exec` WebSocket runs `/bin/sh` in a busybox container; typed
//! `echo $((6*7))` prints 42 on the screen; a paste arrives as input; a smaller window gives
//! the shell a smaller terminal (`stty size`); keystroke echo latency is measured (printed);
//! `exit 3` ends the session with its code on the status line. Screenshots `terminal` and
//! `terminal-exited`.

use std::time::Duration;

use tests::{ADMIN, ADMIN_PASSWORD, Daemon, browser::Browser, containers::Reaper};

/// The terminal's visible lines (xterm.js's DOM renderer: one element per row).
const SCREEN_JS: &str = "Array.from(document.querySelectorAll('[data-testid=terminal] .xterm-rows > div'))\
     .map(d => d.textContent.replace(/\\u00a0/g, ' ').trimEnd())";

/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";

async fn screen(b: &Browser) -> Vec<String> {
    let v = b
        .client
        .execute(&format!("return {SCREEN_JS};"), vec![])
        .await
        .expect("read the terminal's screen");
    serde_json::from_value(v).unwrap_or_default()
}

/// Waits until a screen line, trimmed, satisfies `check`; returns that line.
async fn wait_line(b: &Browser, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let lines = screen(b).await;
        if let Some(l) = lines.iter().find(|l| check(l.trim())) {
            return l.trim().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the terminal never showed {what}; screen:\n{}",
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn type_keys(b: &Browser, keys: &str) {
    b.wait_for("[data-testid=terminal] .xterm-helper-textarea")
        .await
        .send_keys(keys)
        .await
        .expect("type into the terminal");
}

/// `stty size` in the shell: (rows, cols), read from the line after the newest command.
async fn stty_size(b: &Browser, marker: &str) -> (u32, u32) {
    type_keys(b, &format!("echo {marker}; stty size{ENTER}")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let lines = screen(b).await;
        let at = lines.iter().rposition(|l| l.trim() == marker);
        let size = at.and_then(|i| lines.get(i + 1)).and_then(|l| {
            let mut w = l.split_whitespace().map(str::parse::<u32>);
            match (w.next(), w.next(), w.next()) {
                (Some(Ok(r)), Some(Ok(c)), None) => Some((r, c)),
                _ => None,
            }
        });
        if let Some(s) = size {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `stty size` answer after {marker}; screen:\n{}",
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn terminal() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let admin = daemon.admin_token();
    let r = tests::call(
        &daemon,
        &admin,
        "POST",
        "/api/v1/teams",
        Some(serde_json::json!({"name": "shells"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let Some(b) = Browser::start().await else {
        return;
    };
    let rootfs = tests::rootfs::Rootfs::new();
    let root = rootfs.path().display().to_string();
    let name = tests::unique("term").replace('_', "-");
    daemon.corral(&[
        "run", "-d", "--name", &name, "--rootfs", &root, "sleep", "300",
    ]);
    let base = daemon.url();
    b.sign_in(&base, ADMIN, ADMIN_PASSWORD).await;
    b.open(&base, &format!("/containers/{name}")).await;
    b.wait_for(".page-head [data-status=running]").await;
    b.wait_for("[data-testid=terminal-card]").await;
    b.client
        .execute(
            "document.querySelector('[data-testid=terminal-card]').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the terminal");
    b.click("[data-testid=terminal-tab]").await;
    b.wait_text("[data-testid=term-status]", "connected").await;
    // The shell's prompt.
    wait_line(&b, "a prompt", |l| l.ends_with('#')).await;

    type_keys(&b, &format!("echo $((6*7)){ENTER}")).await;
    wait_line(&b, "42", |l| l == "42").await;
    b.client
        .execute(
            "document.querySelector('[data-testid=terminal-card]').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the terminal");
    let shot = b.screenshot("terminal").await;
    eprintln!("screenshot: {}", shot.display());

    // A paste (the browser's paste event, as Ctrl+V or the context menu give it) is input.
    b.client
        .execute(
            "const ta = document.querySelector('[data-testid=terminal] .xterm-helper-textarea');\
             const dt = new DataTransfer(); dt.setData('text/plain', 'echo $((20+3))\\r');\
             ta.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));",
            vec![],
        )
        .await
        .expect("paste");
    wait_line(&b, "23 (the pasted command's output)", |l| l == "23").await;

    // The window shrinks: the terminal refits and the shell's terminal follows.
    let (rows, cols) = stty_size(&b, "size-before").await;
    b.client
        .set_window_size(900, 700)
        .await
        .expect("resize the window");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (rows2, cols2) = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = stty_size(&b, "size-after").await;
        if s.1 < cols || std::time::Instant::now() > deadline {
            break s;
        }
    };
    eprintln!("terminal size: {rows}x{cols} at 1280x900, {rows2}x{cols2} at 900x700");
    assert!(
        cols2 < cols,
        "a narrower window gives fewer columns ({cols} → {cols2})"
    );

    // Echo latency: keydown in the page → the character on screen (after xterm renders),
    // measured in the page so WebDriver's round trips are not counted.
    b.client
        .execute(
            "const ta = document.querySelector('[data-testid=terminal] .xterm-helper-textarea');\
             const rows = document.querySelector('[data-testid=terminal] .xterm-rows');\
             const lat = window.__lat = { down: [], seen: [] };\
             const count = () => (rows.textContent.match(/q/g) || []).length;\
             let base = count();\
             ta.addEventListener('keydown', e => { if (e.key === 'q') lat.down.push(performance.now()); }, true);\
             new MutationObserver(() => { const n = count(); while (base < n) { base++; lat.seen.push(performance.now()); } })\
               .observe(rows, { childList: true, subtree: true, characterData: true });",
            vec![],
        )
        .await
        .expect("install the latency probe");
    const KEYS: usize = 10;
    for i in 1..=KEYS {
        type_keys(&b, "q").await;
        b.wait_js("window.__lat.seen.length", 10, |v| {
            v.as_u64().is_some_and(|n| n as usize >= i)
        })
        .await;
    }
    let lat = b
        .client
        .execute(
            "return window.__lat.seen.map((t, i) => t - window.__lat.down[i]);",
            vec![],
        )
        .await
        .expect("read latencies");
    let lat: Vec<f64> = serde_json::from_value(lat).expect("numbers");
    assert_eq!(lat.len(), KEYS);
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    let max = lat.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "keystroke echo latency over {KEYS} keys: mean {mean:.1} ms, max {max:.1} ms ({})",
        lat.iter()
            .map(|l| format!("{l:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Ctrl+U clears the typed line.
    type_keys(&b, &format!("\u{E009}u\u{E000}exit 3{ENTER}")).await;
    b.wait_text("[data-testid=term-status]", "process exited with code 3")
        .await;
    wait_line(&b, "the exit notice", |l| {
        l.contains("[process exited with code 3]")
    })
    .await;
    b.wait_for("[data-testid=term-restart]").await;
    b.client
        .execute(
            "document.querySelector('[data-testid=term-status]').scrollIntoView({ block: 'end' })",
            vec![],
        )
        .await
        .expect("scroll to the status line");
    b.screenshot("terminal-exited").await;

    daemon.corral(&["rm", "-f", &name]);
    b.close().await;
}
