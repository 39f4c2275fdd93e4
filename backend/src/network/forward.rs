//! IP forwarding (`net.ipv4.ip_forward`, and `net.ipv6.conf.all.forwarding` with `--subnet6`):
//! turned on for the bridge, and at teardown put back to the value it had before Corral first
//! turned it on — never simply to 0, which would cut off whatever else on the host needs it.
//!
//! The value found is recorded in a file under the run directory (`/run/corral/<table>.ip_forward`)
//! before the first write, and only when no record exists yet: a daemon restarted after a stop
//! or a kill -9 still knows the host's own value (it finds forwarding on, but the record says
//! what it was). `/run` is a tmpfs, so a reboot — which resets the sysctl — clears the record
//! too. Restoring writes the recorded value and removes the record. Blocking.

use std::path::{Path, PathBuf};

use super::NetworkError;

/// One forwarding switch and where its original value is recorded.
#[derive(Debug, Clone)]
pub struct Forwarding {
    pub knob: PathBuf,
    pub record: PathBuf,
}

/// IPv4 forwarding of the daemon's network namespace.
pub const IPV4: &str = "/proc/sys/net/ipv4/ip_forward";
/// IPv6 forwarding (all interfaces).
pub const IPV6: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NetworkError + '_ {
    move |source| NetworkError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Forwarding {
    /// IPv4 forwarding, recorded as `<run_dir>/<table>.ip_forward`.
    pub fn ipv4(run_dir: &Path, table: &str) -> Self {
        Self {
            knob: IPV4.into(),
            record: run_dir.join(format!("{table}.ip_forward")),
        }
    }

    /// IPv6 forwarding, recorded as `<run_dir>/<table>.ipv6_forwarding`.
    pub fn ipv6(run_dir: &Path, table: &str) -> Self {
        Self {
            knob: IPV6.into(),
            record: run_dir.join(format!("{table}.ipv6_forwarding")),
        }
    }

    /// Records the current value unless a record exists, then turns forwarding on.
    pub fn enable(&self) -> Result<(), NetworkError> {
        let now = std::fs::read_to_string(&self.knob).map_err(io(&self.knob))?;
        let now = now.trim();
        if !self.record.exists() {
            if let Some(dir) = self.record.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            // tmp → rename: a crash never leaves a half-written record.
            let tmp = self.record.with_extension("tmp");
            std::fs::write(&tmp, now).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &self.record).map_err(io(&self.record))?;
        }
        if now != "1" {
            std::fs::write(&self.knob, "1").map_err(io(&self.knob))?;
        }
        Ok(())
    }

    /// The value recorded before we first turned forwarding on, if a record exists.
    pub fn recorded(&self) -> Option<String> {
        let v = std::fs::read_to_string(&self.record).ok()?;
        let v = v.trim();
        (v == "0" || v == "1").then(|| v.to_owned())
    }

    /// Puts back the recorded value and removes the record; nothing to do without one.
    pub fn restore(&self) -> Result<(), NetworkError> {
        let Ok(text) = std::fs::read_to_string(&self.record) else {
            return Ok(());
        };
        if let Some(v) = self.recorded() {
            let now = std::fs::read_to_string(&self.knob).unwrap_or_default();
            if now.trim() != v {
                std::fs::write(&self.knob, &v).map_err(io(&self.knob))?;
            }
        } else {
            tracing::warn!(record = %self.record.display(), text, "unreadable forwarding record; leaving forwarding as it is");
        }
        std::fs::remove_file(&self.record).map_err(io(&self.record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_once_and_restores_the_first_value() {
        let dir = std::env::temp_dir().join(format!("corral-fwd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = Forwarding {
            knob: dir.join("knob"),
            record: dir.join("run/t.ip_forward"),
        };
        std::fs::write(&f.knob, "0\n").unwrap();
        f.enable().unwrap();
        assert_eq!(std::fs::read_to_string(&f.knob).unwrap(), "1");
        assert_eq!(f.recorded().as_deref(), Some("0"));
        // A restarted daemon finds forwarding on: the record keeps the host's own value.
        f.enable().unwrap();
        assert_eq!(f.recorded().as_deref(), Some("0"));
        f.restore().unwrap();
        assert_eq!(std::fs::read_to_string(&f.knob).unwrap(), "0");
        assert!(!f.record.exists());
        // On before us: stays on.
        std::fs::write(&f.knob, "1").unwrap();
        f.enable().unwrap();
        f.restore().unwrap();
        assert_eq!(std::fs::read_to_string(&f.knob).unwrap(), "1");
        // No record: restore touches nothing.
        std::fs::write(&f.knob, "0").unwrap();
        f.restore().unwrap();
        assert_eq!(std::fs::read_to_string(&f.knob).unwrap(), "0");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
