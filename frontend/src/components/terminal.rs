//! An interactive terminal in the page: xterm.js (embedded by `cargo xtask`, loaded by
//! index.html as `window.Terminal` and `window.FitAddon`) bound through wasm-bindgen, talking
//! the `wire::term` protocol over the WebSocket of `/exec` (a new process) or `/attach` (the
//! container's own terminal).
//!
//! The terminal fills its box and follows its size (a `ResizeObserver` refits it; each new size
//! goes to the server as a resize message); keystrokes and pastes go out as stdin frames; output
//! frames are written as bytes (xterm decodes UTF-8 across frames). The session ends with the
//! server's exit or error message, or when the socket closes; leaving the page closes the socket
//! (which ends an exec's process) and disposes the terminal.
//!
//! Copy and paste: selecting copies on Ctrl+C (or Ctrl+Shift+C) while there is a selection, and
//! Ctrl+V / Ctrl+Shift+V / the context menu paste — those keys are left to the browser, whose
//! copy and paste events xterm.js handles (a paste is sent as one stdin frame, bracketed when the
//! program asked for it).

use std::{cell::Cell, rc::Rc};

use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue, closure::Closure, prelude::wasm_bindgen};
use web_sys::{CloseEvent, Event, KeyboardEvent, MessageEvent, ResizeObserver, WebSocket};
use wire::term::{ClientMessage, STDERR, STDIN, STDOUT, SUBPROTOCOL, ServerMessage};

use crate::api;

#[wasm_bindgen]
extern "C" {
    /// xterm.js's `Terminal` (UMD global).
    #[wasm_bindgen(js_name = Terminal)]
    #[derive(Clone)]
    type XTerm;
    #[wasm_bindgen(constructor, js_class = "Terminal", catch)]
    fn new(options: &JsValue) -> Result<XTerm, JsValue>;
    #[wasm_bindgen(method, js_class = "Terminal")]
    fn open(this: &XTerm, parent: &web_sys::HtmlElement);
    #[wasm_bindgen(method, js_class = "Terminal", js_name = write)]
    fn write_bytes(this: &XTerm, data: &js_sys::Uint8Array);
    #[wasm_bindgen(method, js_class = "Terminal", js_name = write)]
    fn write_str(this: &XTerm, data: &str);
    #[wasm_bindgen(method, js_class = "Terminal", js_name = onData)]
    fn on_data(this: &XTerm, f: &Closure<dyn FnMut(String)>) -> JsValue;
    #[wasm_bindgen(method, js_class = "Terminal", js_name = onResize)]
    fn on_resize(this: &XTerm, f: &Closure<dyn FnMut(JsValue)>) -> JsValue;
    #[wasm_bindgen(method, js_class = "Terminal", js_name = attachCustomKeyEventHandler)]
    fn attach_custom_key_event_handler(this: &XTerm, f: &Closure<dyn FnMut(KeyboardEvent) -> bool>);
    #[wasm_bindgen(method, js_class = "Terminal", js_name = hasSelection)]
    fn has_selection(this: &XTerm) -> bool;
    #[wasm_bindgen(method, js_class = "Terminal", js_name = loadAddon)]
    fn load_addon(this: &XTerm, addon: &Fit);
    #[wasm_bindgen(method, js_class = "Terminal")]
    fn focus(this: &XTerm);
    #[wasm_bindgen(method, js_class = "Terminal")]
    fn dispose(this: &XTerm);
    #[wasm_bindgen(method, getter, js_class = "Terminal")]
    fn cols(this: &XTerm) -> u16;
    #[wasm_bindgen(method, getter, js_class = "Terminal")]
    fn rows(this: &XTerm) -> u16;

    /// `@xterm/addon-fit`'s `FitAddon` (UMD global `FitAddon.FitAddon`).
    #[wasm_bindgen(js_namespace = FitAddon, js_name = FitAddon)]
    type Fit;
    #[wasm_bindgen(constructor, js_namespace = FitAddon, js_class = "FitAddon", catch)]
    fn new() -> Result<Fit, JsValue>;
    #[wasm_bindgen(method, js_class = "FitAddon")]
    fn fit(this: &Fit);
}

/// What the terminal connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermMode {
    /// A new shell (`/bin/sh`) inside the container (`/exec`).
    Exec,
    /// The container's own terminal (`/attach`; the container was created with a tty).
    Attach,
}

/// Where a session stands, for the status line.
#[derive(Clone, Debug, PartialEq)]
pub enum TermStatus {
    Connecting,
    Running,
    /// Over: the process's exit, or the connection's end, in words.
    Ended(String),
    /// Refused or broken: the server's message.
    Failed(String),
}

impl TermStatus {
    fn is_over(&self) -> bool {
        matches!(self, TermStatus::Ended(_) | TermStatus::Failed(_))
    }
}

/// xterm.js options: the dashboard's monospace font, a scrollback, a blinking cursor.
const OPTIONS: &str = r##"{"cursorBlink":true,"fontSize":13,"scrollback":5000,
"fontFamily":"ui-monospace, \"SF Mono\", \"Cascadia Mono\", Menlo, Consolas, \"DejaVu Sans Mono\", monospace",
"theme":{"background":"#0b0f14","foreground":"#d6dde6"}}"##;

/// A terminal session in a card: the screen, a status line, and "New session" once it is over
/// (each session is a fresh terminal and socket). `container` is the container's name.
#[component]
pub fn Terminal(container: String, mode: TermMode) -> impl IntoView {
    let status = RwSignal::new(TermStatus::Connecting);
    let generation = RwSignal::new(0u32);
    let path = format!(
        "/api/v1/containers/{}/{}",
        api::enc(&container),
        match mode {
            TermMode::Exec => "exec",
            TermMode::Attach => "attach",
        }
    );
    view! {
        <div class="term-box">
            {move || {
                let _ = generation.get();
                view! { <Screen path=path.clone() mode=mode status=status /> }
            }}
            <div class="term-status">
                <span data-testid="term-status" role="status" class=move || match status.get() {
                    TermStatus::Running => "yes",
                    TermStatus::Failed(_) => "no",
                    _ => "muted",
                }>
                    {move || match status.get() {
                        TermStatus::Connecting => "connecting…".to_owned(),
                        TermStatus::Running => match mode {
                            TermMode::Exec => "connected: /bin/sh in the container".to_owned(),
                            TermMode::Attach => "attached to the container's terminal".to_owned(),
                        },
                        TermStatus::Ended(s) | TermStatus::Failed(s) => s,
                    }}
                </span>
                <Show when=move || status.with(TermStatus::is_over)>
                    <button class="btn small" data-testid="term-restart"
                        on:click=move |_| {
                            status.set(TermStatus::Connecting);
                            generation.update(|g| *g = g.wrapping_add(1));
                        }>
                        {match mode { TermMode::Exec => "New session", TermMode::Attach => "Reconnect" }}
                    </button>
                </Show>
            </div>
        </div>
    }
}

/// One session: creates the terminal and socket once the element is in the page, drops both
/// with the view.
#[component]
fn Screen(path: String, mode: TermMode, status: RwSignal<TermStatus>) -> impl IntoView {
    let host = NodeRef::<leptos::html::Div>::new();
    let conn = StoredValue::new_local(None::<Conn>);
    Effect::new(move |_| {
        let Some(el) = host.get() else { return };
        if conn.with_value(Option::is_some) {
            return;
        }
        match Conn::open(&el, &path, mode, status) {
            Ok(c) => conn.set_value(Some(c)),
            Err(e) => status.set(TermStatus::Failed(e)),
        }
    });
    on_cleanup(move || {
        // Dropping it closes the socket and disposes the terminal.
        let _ = conn.try_update_value(Option::take);
    });
    view! { <div class="term" node_ref=host data-testid="terminal"></div> }
}

/// The live parts of a session; dropping it ends the session.
struct Conn {
    term: XTerm,
    ws: WebSocket,
    observer: ResizeObserver,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_data: Closure<dyn FnMut(String)>,
    _on_resize: Closure<dyn FnMut(JsValue)>,
    _on_key: Closure<dyn FnMut(KeyboardEvent) -> bool>,
    _on_observe: Closure<dyn FnMut()>,
}

fn js_text(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Sends a control message as a text frame (when the socket is open).
fn send_json(ws: &WebSocket, m: &ClientMessage) {
    if ws.ready_state() == WebSocket::OPEN
        && let Ok(text) = serde_json::to_string(m)
    {
        let _ = ws.send_with_str(&text);
    }
}

impl Conn {
    fn open(
        el: &web_sys::HtmlDivElement,
        path: &str,
        mode: TermMode,
        status: RwSignal<TermStatus>,
    ) -> Result<Conn, String> {
        let options = js_sys::JSON::parse(OPTIONS).map_err(|e| js_text(&e))?;
        let term = XTerm::new(&options)
            .map_err(|e| format!("the terminal emulator did not load: {}", js_text(&e)))?;
        let fit = Fit::new()
            .map_err(|e| format!("the terminal's fit addon did not load: {}", js_text(&e)))?;
        term.load_addon(&fit);
        term.open(el);
        fit.fit();
        let ws = match api::open_socket(path, SUBPROTOCOL) {
            Ok(ws) => ws,
            Err(e) => {
                term.dispose();
                return Err(e.to_string());
            }
        };
        // Set once the server said the session is over (exit or error), so the close that
        // follows is not reported as a lost connection.
        let over = Rc::new(Cell::new(false));
        let opened = Rc::new(Cell::new(false));

        let on_open = {
            let (ws, term, opened) = (ws.clone(), term.clone(), opened.clone());
            Closure::<dyn FnMut(Event)>::new(move |_| {
                opened.set(true);
                let (rows, cols) = (term.rows(), term.cols());
                match mode {
                    TermMode::Exec => send_json(
                        &ws,
                        &ClientMessage::Start {
                            command: vec!["/bin/sh".into()],
                            env: vec![],
                            tty: true,
                            stdin: true,
                            rows: Some(rows),
                            cols: Some(cols),
                            timeout: None,
                        },
                    ),
                    TermMode::Attach => send_json(&ws, &ClientMessage::Resize { rows, cols }),
                }
                term.focus();
            })
        };
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));

        let on_message = {
            let (term, over) = (term.clone(), over.clone());
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                let data = e.data();
                if let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                    let bytes = js_sys::Uint8Array::new(buf);
                    if bytes.length() > 1 && matches!(bytes.get_index(0), STDOUT | STDERR) {
                        term.write_bytes(&bytes.subarray(1, bytes.length()));
                    }
                    return;
                }
                let Some(text) = data.as_string() else { return };
                match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(ServerMessage::Started { .. }) => {
                        let _ = status.try_set(TermStatus::Running);
                    }
                    Ok(ServerMessage::Exit { code, timed_out }) => {
                        over.set(true);
                        let why = if timed_out { " (timed out)" } else { "" };
                        term.write_str(&format!(
                            "\r\n\x1b[2m[process exited with code {code}{why}]\x1b[0m\r\n"
                        ));
                        let _ = status.try_set(TermStatus::Ended(format!(
                            "process exited with code {code}{why}"
                        )));
                    }
                    Ok(ServerMessage::Error { error }) => {
                        over.set(true);
                        term.write_str(&format!("\r\n\x1b[31m{}\x1b[0m\r\n", error.message));
                        let _ = status.try_set(TermStatus::Failed(error.message));
                    }
                    Err(_) => {}
                }
            })
        };
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));

        let on_close = {
            let (over, opened) = (over.clone(), opened.clone());
            Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
                if over.get() {
                    return;
                }
                over.set(true);
                let s = if !opened.get() {
                    // The handshake's HTTP status is not visible to a page.
                    TermStatus::Failed(
                        "could not open the terminal: the daemon refused or is unreachable".into(),
                    )
                } else if mode == TermMode::Attach && e.code() == 1000 {
                    TermStatus::Ended("detached".into())
                } else {
                    TermStatus::Ended(format!("the connection closed (code {})", e.code()))
                };
                let _ = status.try_set(s);
            })
        };
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));

        // Keystrokes and pastes: one stdin frame each.
        let on_data = {
            let (ws, over) = (ws.clone(), over.clone());
            Closure::<dyn FnMut(String)>::new(move |s: String| {
                if !over.get() && ws.ready_state() == WebSocket::OPEN {
                    let _ = ws.send_with_u8_array(&wire::term::frame(STDIN, s.as_bytes()));
                }
            })
        };
        let _ = term.on_data(&on_data);

        let on_resize = {
            let (ws, term) = (ws.clone(), term.clone());
            Closure::<dyn FnMut(JsValue)>::new(move |_| {
                send_json(
                    &ws,
                    &ClientMessage::Resize {
                        rows: term.rows(),
                        cols: term.cols(),
                    },
                );
            })
        };
        let _ = term.on_resize(&on_resize);

        // Copy with a selection and paste are the browser's (xterm.js handles its events).
        let on_key = {
            let term = term.clone();
            Closure::<dyn FnMut(KeyboardEvent) -> bool>::new(move |e: KeyboardEvent| {
                if e.type_() != "keydown" || !e.ctrl_key() || e.alt_key() {
                    return true;
                }
                let key = e.key().to_ascii_lowercase();
                let browser = (key == "c" && (e.shift_key() || term.has_selection())) || key == "v";
                !browser
            })
        };
        term.attach_custom_key_event_handler(&on_key);

        let on_observe = Closure::<dyn FnMut()>::new(move || fit.fit());
        let observer =
            ResizeObserver::new(on_observe.as_ref().unchecked_ref()).map_err(|e| js_text(&e))?;
        observer.observe(el);

        Ok(Conn {
            term,
            ws,
            observer,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_data: on_data,
            _on_resize: on_resize,
            _on_key: on_key,
            _on_observe: on_observe,
        })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.observer.disconnect();
        // Unhook first: the closures are dropped with `self`.
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
        self.term.dispose();
    }
}
