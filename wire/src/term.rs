//! The interactive protocol of `GET /api/v1/containers/{name}/exec` and `/attach` (WebSocket).
//!
//! - **Binary frames** carry bytes; the first byte names the channel ([`STDIN`] from the
//!   client, [`STDOUT`] or [`STDERR`] from the server), the rest is the data. With a terminal
//!   (`tty`) everything the process writes arrives on [`STDOUT`].
//! - **Text frames** carry one JSON [`ClientMessage`] or [`ServerMessage`].
//!
//! Exec: the client's first message is [`ClientMessage::Start`]; the server answers
//! [`ServerMessage::Started`], then output, then exactly one [`ServerMessage::Exit`] (or
//! [`ServerMessage::Error`]) and closes. Attach needs no start: output flows at once, and
//! `Exit` comes when the container's process ends. A client that closes the socket ends an
//! exec (its process gets SIGHUP, then SIGKILL, like a closed terminal) and only detaches
//! from an attach.
//!
//! Browsers authenticate with the session cookie and offer the subprotocols [`SUBPROTOCOL`]
//! and `corral-csrf.<csrf_token>` (a page cannot set headers on a WebSocket); other clients
//! use a bearer token or the unix socket.

use serde::{Deserialize, Serialize};

/// Channel byte of bytes for the process's standard input (client → server).
pub const STDIN: u8 = 0;
/// Channel byte of the process's standard output (server → client).
pub const STDOUT: u8 = 1;
/// Channel byte of the process's standard error (server → client; none with a terminal).
pub const STDERR: u8 = 2;

/// The subprotocol the server selects.
pub const SUBPROTOCOL: &str = "corral.term.v1";
/// Prefix of the subprotocol that carries a browser session's CSRF token.
pub const CSRF_SUBPROTOCOL_PREFIX: &str = "corral-csrf.";

/// Docker's default detach sequence: Ctrl-P, Ctrl-Q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// A control message from the client (text frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Exec only, first: what to run and how.
    Start {
        command: Vec<String>,
        #[serde(default)]
        env: Vec<String>,
        /// A pseudo-terminal for the process (stdout and stderr merged, raw bytes).
        #[serde(default)]
        tty: bool,
        /// Forward the client's stdin frames (without it the process's stdin is /dev/null).
        #[serde(default)]
        stdin: bool,
        /// Initial window size (with `tty`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rows: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cols: Option<u16>,
        /// Seconds after which the process is killed (1..=86400); none by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<u64>,
    },
    /// The terminal's new size.
    Resize { rows: u16, cols: u16 },
    /// The client's stdin ended (`echo hi | corral exec -i web cat`).
    Eof,
}

/// A control message from the server (text frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    /// The process runs (exec), or the attach is connected; `tty` says whether output is a
    /// terminal's.
    Started { tty: bool },
    /// The process ended with this code (128 + N for signal N; 137 when Corral killed it).
    Exit {
        code: i32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        timed_out: bool,
    },
    /// The request was refused or failed; the socket closes after it.
    Error { error: crate::ApiError },
}

/// A binary frame: `channel` byte, then `data`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    v
}

/// Watches a stdin stream for the detach sequence: bytes of a partial match are held back
/// while it is being typed and passed on when it turns out to be something else.
#[derive(Debug, Clone, Default)]
pub struct DetachMatcher {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachMatcher {
    /// `keys` from [`parse_detach_keys`]; empty never detaches.
    pub fn new(keys: Vec<u8>) -> Self {
        DetachMatcher { keys, matched: 0 }
    }

    /// The bytes of `input` to pass on, and whether the sequence was completed (the bytes
    /// after it are dropped, as the session ends there).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let keys = &self.keys;
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if !keys.is_empty() && b == keys[self.matched] {
                self.matched += 1;
                if self.matched == keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&keys[..self.matched]);
            self.matched = 0;
            if !keys.is_empty() && b == keys[0] {
                self.matched = 1;
                continue;
            }
            out.push(b);
        }
        (out, false)
    }
}

/// Parses Docker's `--detach-keys` spelling: comma-separated `ctrl-<c>` (a-z, @, [, \, ], ^, _)
/// or single characters; e.g. `ctrl-p,ctrl-q` → `[0x10, 0x11]`. An empty string turns
/// detaching off (`Ok(vec![])`).
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, String> {
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    spec.split(',')
        .map(|k| {
            if let Some(c) = k.strip_prefix("ctrl-") {
                let b = match c.as_bytes() {
                    [b] => b.to_ascii_lowercase(),
                    _ => return Err(format!("{k:?}: ctrl- takes one character")),
                };
                match b {
                    b'a'..=b'z' => Ok(b - b'a' + 1),
                    b'@' => Ok(0),
                    b'[' => Ok(27),
                    b'\\' => Ok(28),
                    b']' => Ok(29),
                    b'^' => Ok(30),
                    b'_' => Ok(31),
                    _ => Err(format!(
                        "{k:?}: allowed are ctrl-a..ctrl-z, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_"
                    )),
                }
            } else {
                match k.as_bytes() {
                    [b] if b.is_ascii() && !b.is_ascii_control() => Ok(*b),
                    _ => Err(format!(
                        "{k:?}: a key is one printable character or ctrl-<c>, separated by commas"
                    )),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detach_sequence_is_held_back_and_passed_on_when_it_breaks() {
        let mut m = DetachMatcher::new(vec![0x10, 0x11]);
        assert_eq!(m.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(m.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(m.feed(b"x\x10\x10"), (b"x\x10".to_vec(), false));
        assert_eq!(m.feed(b"\x11tail"), (Vec::new(), true));
        let mut off = DetachMatcher::new(Vec::new());
        assert_eq!(off.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }

    #[test]
    fn detach_keys_follow_docker() {
        assert_eq!(parse_detach_keys(DEFAULT_DETACH_KEYS), Ok(vec![0x10, 0x11]));
        assert_eq!(parse_detach_keys("ctrl-a,x"), Ok(vec![1, b'x']));
        assert_eq!(parse_detach_keys(""), Ok(vec![]));
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("ab").is_err());
        assert!(parse_detach_keys("ctrl-1").is_err());
    }

    #[test]
    fn messages_are_tagged_json() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"start","command":["sh"],"tty":true,"rows":24,"cols":80}"#,
        )
        .unwrap();
        assert!(matches!(
            m,
            ClientMessage::Start {
                tty: true,
                stdin: false,
                rows: Some(24),
                ..
            }
        ));
        let r: ClientMessage =
            serde_json::from_str(r#"{"type":"resize","rows":50,"cols":132}"#).unwrap();
        assert_eq!(
            r,
            ClientMessage::Resize {
                rows: 50,
                cols: 132
            }
        );
        assert_eq!(
            serde_json::to_string(&ServerMessage::Exit {
                code: 3,
                timed_out: false
            })
            .unwrap(),
            r#"{"type":"exit","code":3}"#
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"nope"}"#).is_err());
        assert_eq!(frame(STDOUT, b"hi"), vec![1, b'h', b'i']);
    }
}
