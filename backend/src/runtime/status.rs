//! A container's state as a type: the five states a record can be in and the transitions
//! between them. `Record`'s state is private; [`super::manager::Record::transition`] is the only
//! way to change it, and it checks the step against [`Status::can_become`]. The wire and the
//! database keep the lowercase names ([`Status::as_str`]).

use std::{fmt, str::FromStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The record exists, its resources are being made (a crash here is swept at start).
    Creating,
    /// Whole, never started.
    Created,
    Running,
    /// Frozen (cgroup freezer).
    Paused,
    /// Its process ended (or was never started for good: a failed start).
    Exited,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Creating,
        Status::Created,
        Status::Running,
        Status::Paused,
        Status::Exited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited => "exited",
        }
    }

    /// Running or paused: it has processes (and a monitor).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }

    /// [`Status::is_live`] of a state by its name (the wire's and the table's spelling).
    pub fn live_str(name: &str) -> bool {
        name.parse().is_ok_and(Status::is_live)
    }

    /// Whether a container goes from `self` to `to` (staying is always allowed):
    /// creating → created; created → running (started) or exited (the start failed);
    /// running ↔ paused; running or paused → exited; exited → running (started again, or the
    /// monitor's restart policy seen after the fact).
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        self == to
            || matches!(
                (self, to),
                (Creating, Created)
                    | (Created, Running | Exited)
                    | (Running, Paused | Exited)
                    | (Paused, Running | Exited)
                    | (Exited, Running)
            )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("{s:?} is no container state"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("removed".parse::<Status>().is_err());
    }

    #[test]
    fn the_transition_table() {
        use Status::*;
        let allowed = [
            (Creating, Created),
            (Created, Running),
            (Created, Exited),
            (Running, Paused),
            (Running, Exited),
            (Paused, Running),
            (Paused, Exited),
            (Exited, Running),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                let want = from == to || allowed.contains(&(from, to));
                assert_eq!(from.can_become(to), want, "{from} → {to}");
            }
        }
        assert!(Running.is_live() && Paused.is_live());
        assert!(!Created.is_live() && !Exited.is_live() && !Creating.is_live());
    }
}
