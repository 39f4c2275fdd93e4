//! cgroup file I/O: never creates files, every error names the file (and the data written).

use std::{
    fs::{self, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
    time::Duration,
};

use super::CgroupError;

/// Reads a whole cgroup file.
pub fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a cgroup file, `None` when it does not exist (a controller or kernel feature missing)
/// or the kernel refuses to produce it (e.g. PSI disabled at boot answers EOPNOTSUPP).
pub fn read_opt(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Reads a file holding one number (`max` gives `None`).
pub fn read_u64(path: &Path) -> Option<u64> {
    read_opt(path)?.trim().parse().ok()
}

/// Writes `value` to an existing cgroup file in one `write(2)`. An empty value is written as a
/// newline (a zero-length write would not reach the kernel).
pub fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let err = |source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut f = OpenOptions::new().write(true).open(path).map_err(err)?;
    let data = if value.is_empty() { "\n" } else { value };
    f.write_all(data.as_bytes()).map_err(err)
}

/// Writes, retrying a few times on EINVAL (a pid moving between cgroups, as runc does for
/// `cgroup.procs`) and EINTR.
pub fn write_retry(path: &Path, value: &str) -> Result<(), CgroupError> {
    let mut last = None;
    for attempt in 0..5u64 {
        match write(path, value) {
            Ok(()) => return Ok(()),
            Err(CgroupError::Write { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::EINVAL) | Some(libc::EINTR)
                ) =>
            {
                last = Some(source);
                std::thread::sleep(Duration::from_millis(1 + attempt * 2));
            }
            Err(e) => return Err(e),
        }
    }
    Err(CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source: last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)),
    })
}

/// Creates a directory (the kernel fills it with the controllers' files); an existing one is fine.
pub fn mkdir(path: &Path) -> Result<bool, CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes an empty cgroup directory, retrying EBUSY for up to ~2 s (the kernel needs a moment
/// after the last task exits, as runc notes); a missing one is fine.
pub fn rmdir(path: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && waited < Duration::from_secs(2) => {
                std::thread::sleep(delay);
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

/// The sub-directories (child cgroups) of a cgroup directory; none when it does not exist.
pub fn children(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Parses a flat-keyed file (`key value` per line) and returns the value of `key`.
pub fn flat_get(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_never_creates_and_names_the_file() {
        let dir = std::env::temp_dir().join(format!("corral-fs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let e = write(&dir.join("cpu.max"), "50000 100000").unwrap_err();
        assert!(!dir.join("cpu.max").exists());
        let msg = e.to_string();
        assert!(
            msg.contains("cpu.max") && msg.contains("50000 100000"),
            "{msg}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flat_keys() {
        let t = "usage_usec 120\nuser_usec 100\nsystem_usec 20\n";
        assert_eq!(flat_get(t, "user_usec"), Some(100));
        assert_eq!(flat_get(t, "usage"), None);
    }
}
