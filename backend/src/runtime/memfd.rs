//! The CVE-2019-5736 defence: every process of ours that enters a container's namespaces runs
//! from a sealed memfd copy of the corral binary, so a container that opens `/proc/PID/exe` of
//! such a process reaches the sealed copy (no write can change it), never the file on disk.
//! Together with `PR_SET_DUMPABLE 0` until exec, a container cannot reach our memory either.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
    sync::OnceLock,
};

use nix::{
    fcntl::{FcntlArg, SealFlag, fcntl},
    sys::memfd::{MFdFlags, memfd_create},
};

/// Makes a sealed (no write, grow, shrink or further seals) memfd copy of `/proc/self/exe`.
pub fn sealed_copy_of_self() -> io::Result<OwnedFd> {
    let fd = memfd_create(
        "corral",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(io::Error::from)?;
    let mut src = File::open("/proc/self/exe")?;
    let mut dst = File::from(fd);
    io::copy(&mut src, &mut dst)?;
    let fd = OwnedFd::from(dst);
    fcntl(
        &fd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SEAL
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE,
        ),
    )
    .map_err(io::Error::from)?;
    Ok(fd)
}

/// The program path the daemon spawns monitors and exec helpers from: `/proc/self/fd/N` of one
/// sealed copy made on first use and kept for the daemon's life. The child opens it through its
/// own (inherited) fd table during exec, before close-on-exec fds are closed.
pub fn helper_program() -> io::Result<PathBuf> {
    static COPY: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = COPY.get() {
        return Ok(PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())));
    }
    let fd = sealed_copy_of_self()?;
    let fd = COPY.get_or_init(|| fd);
    Ok(PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
}

/// Whether this process runs from a memfd.
pub fn running_from_memfd() -> bool {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().starts_with("/memfd:"))
        .unwrap_or(false)
}

/// Re-executes this process from a sealed copy unless it already runs from a memfd. Only for
/// single-threaded helpers (`__shim`, `__exec`) started some other way than by the daemon.
pub fn ensure_sealed() -> io::Result<()> {
    if running_from_memfd() {
        return Ok(());
    }
    let fd = sealed_copy_of_self()?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()))
        .collect::<Result<_, _>>()
        .map_err(io::Error::other)?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv)
        })
        .collect::<Result<_, _>>()
        .map_err(io::Error::other)?;
    let err = nix::unistd::fexecve(&fd, &args, &env).unwrap_err();
    Err(io::Error::from(err))
}
