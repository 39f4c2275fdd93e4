//! Drives a command through a real pseudo-terminal, as a person at a terminal would: its
//! stdin, stdout and stderr are the terminal, which is its controlling terminal (so resizing
//! it sends SIGWINCH), and what it prints is collected for [`PtyCommand::wait_for`].
#![allow(unsafe_code)]

use std::{
    io::{Read, Write},
    os::fd::{AsRawFd, OwnedFd},
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A command on its own terminal; killed on drop.
pub struct PtyCommand {
    child: Child,
    master: std::fs::File,
    screen: Arc<Mutex<Vec<u8>>>,
}

fn winsize(rows: u16, cols: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl PtyCommand {
    /// Starts `cmd` on a new `rows` × `cols` terminal.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Self {
        let pty = nix::pty::openpty(Some(&winsize(rows, cols)), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let fd = slave.as_raw_fd();
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        // SAFETY: between fork and exec only async-signal-safe calls (setsid, ioctl).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let _ = fd;
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on a terminal");
        drop(cmd);
        let master = std::fs::File::from(pty.master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup master");
        let s = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().expect("screen").extend_from_slice(&buf[..n]);
            }
        });
        Self {
            child,
            master,
            screen,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types `s`.
    pub fn type_str(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).expect("type");
    }

    /// Everything printed so far, lossily as text.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen")).into_owned()
    }

    /// Waits until the output since `from` (a byte offset of [`PtyCommand::screen`]) contains
    /// `needle`; the offset just past it, or a panic naming what was printed.
    pub fn wait_for(&self, from: usize, needle: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if let Some(i) = screen.get(from..).and_then(|s| s.find(needle)) {
                return from + i + needle.len();
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} did not appear within {within:?}; the terminal shows:\n{}",
                screen.get(from..).unwrap_or(&screen)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resizes the terminal (the kernel sends SIGWINCH to its foreground process group).
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which outlives the call.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0, "resize the terminal");
    }

    /// Waits for the command's exit code (panics after `within`).
    pub fn wait(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "the command did not exit within {within:?}; the terminal shows:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PtyCommand {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
