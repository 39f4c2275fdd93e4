//! Named network namespaces, as `ip netns add` makes them: a file under the netns directory
//! (`/run/netns` by default, so `ip netns` lists them) with the namespace bind-mounted on it.
//! The namespace outlives every process in it, so a container's init can be restarted into the
//! same, already configured network, and the daemon can restart without losing it.
//!
//! Process model: unshare and setns act on the calling *thread*. They never run on a tokio
//! worker or blocking-pool thread (those are reused); each operation gets a fresh std thread that
//! ends when the operation does, taking its namespace membership with it.

use std::{
    fs,
    future::Future,
    io,
    path::{Path, PathBuf},
};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns, unshare},
};

use super::NetworkError;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NetworkError + '_ {
    move |source| NetworkError::Io {
        path: path.to_owned(),
        source,
    }
}

fn ns_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(nix::Error) -> NetworkError + 'a {
    move |source| NetworkError::Netns {
        path: path.to_owned(),
        op,
        source,
    }
}

/// Runs `f` on a fresh thread and hands its result back without blocking the runtime.
async fn on_own_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("corral-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|source| NetworkError::Io {
            path: PathBuf::from("/proc/self/task"),
            source,
        })?;
    rx.await.map_err(|_| NetworkError::ThreadPanicked)?
}

/// Makes `dir` a shared bind mount of itself (as iproute2 does), so that unmounting a namespace
/// file propagates to mount namespaces cloned later, and the namespace really goes away.
fn ensure_shared_dir(dir: &Path) -> Result<(), NetworkError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let first =
        mount::<Path, Path, str, str>(None, dir, None, MsFlags::MS_SHARED | MsFlags::MS_REC, None);
    if first.is_ok() {
        return Ok(());
    }
    // Not a mount point yet: bind it onto itself, then mark it shared.
    mount::<Path, Path, str, str>(
        Some(dir),
        dir,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(ns_err(dir, "bind-mount the netns directory"))?;
    mount::<Path, Path, str, str>(None, dir, None, MsFlags::MS_SHARED | MsFlags::MS_REC, None)
        .map_err(ns_err(dir, "make the netns directory shared"))
}

/// Creates a network namespace bound at `path` (loopback is still down).
pub async fn create(path: PathBuf) -> Result<(), NetworkError> {
    on_own_thread(move || {
        if let Some(dir) = path.parent() {
            ensure_shared_dir(dir)?;
        }
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let made = unshare(CloneFlags::CLONE_NEWNET)
            .map_err(ns_err(&path, "unshare"))
            .and_then(|()| {
                mount::<str, Path, str, str>(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None,
                    MsFlags::MS_BIND,
                    None,
                )
                .map_err(ns_err(&path, "bind-mount"))
            });
        if made.is_err() {
            let _ = fs::remove_file(&path);
        }
        made
    })
    .await
}

/// Unmounts and removes a namespace file; a missing one is not an error.
pub fn remove(path: &Path) -> Result<(), NetworkError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(ns_err(path, "unmount")(e)),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Runs an async netlink job inside the namespace at `path`: a fresh thread joins it, runs a
/// current-thread runtime with a netlink connection opened there, and ends.
pub async fn run_in<T, Fut>(
    path: PathBuf,
    job: impl FnOnce(rtnetlink::Handle) -> Fut + Send + 'static,
) -> Result<T, NetworkError>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, NetworkError>>,
{
    on_own_thread(move || {
        let file = fs::File::open(&path).map_err(io_err(&path))?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(ns_err(&path, "setns"))?;
        drop(file);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_err(&path))?;
        rt.block_on(async move {
            let handle = super::link::connect()?;
            job(handle).await
        })
    })
    .await
}

/// Runs a blocking closure inside the namespace at `path` on a fresh thread (tests use it to
/// listen or connect from inside).
pub async fn run_blocking_in<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetworkError> {
    on_own_thread(move || {
        let file = fs::File::open(&path).map_err(io_err(&path))?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(ns_err(&path, "setns"))?;
        Ok(f())
    })
    .await
}
