//! Safe tar extraction for image layers: no absolute paths, no `..`, nothing written through a
//! symlink, hard links only to files inside the layer; OCI whiteouts become overlayfs
//! whiteouts.
#![allow(unsafe_code)]

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

use tar::EntryType;

/// Why a layer was refused or could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry {0:?} has an absolute path or `..`")]
    Traversal(String),
    #[error("entry {0:?} would be written through a symlink")]
    SymlinkEscape(String),
    #[error("hard link {0:?} points outside the layer")]
    LinkEscape(String),
    #[error(
        "whiteout {0:?} names no entry: a whiteout is `.wh.NAME` with NAME not empty, `.` or `..`"
    )]
    BadWhiteout(String),
    #[error("cannot unpack {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// The prefix of a whiteout: `.wh.NAME` hides NAME of the layers below.
const WHITEOUT: &str = ".wh.";
/// An opaque whiteout: its directory hides the contents of the same directory below.
const OPAQUE: &str = ".wh..wh..opq";

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError {
    let path = path.display().to_string();
    move |source| UnpackError::Io { path, source }
}

/// The relative path of an entry, refusing absolute paths and `..`. `None` for the root.
pub fn sanitize(p: &Path) -> Result<Option<PathBuf>, UnpackError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::Traversal(p.display().to_string()));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Creates the parents of `rel` under `root` as real directories; refuses a symlink (or any
/// non-directory) on the way.
fn ensure_parents(root: &Path, rel: &Path) -> Result<(), UnpackError> {
    let mut cur = root.to_owned();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Err(UnpackError::SymlinkEscape(rel.display().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(io_err(&cur))?;
            }
            Err(e) => return Err(io_err(&cur)(e)),
        }
    }
    Ok(())
}

/// Removes whatever is at `path` (a directory only when `dirs_too`).
fn clear(path: &Path, dirs_too: bool) -> Result<(), UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => {
            if dirs_too {
                fs::remove_dir_all(path).map_err(io_err(path))?;
            }
        }
        Ok(_) => fs::remove_file(path).map_err(io_err(path))?,
        Err(_) => {}
    }
    Ok(())
}

fn cpath(p: &Path) -> Result<CString, UnpackError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| UnpackError::Traversal(p.display().to_string()))
}

/// Unpacks the tar stream `r` into `dest` (which exists). With `whiteouts`, `.wh.NAME` entries
/// become 0/0 character devices and `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
/// directory, the form overlayfs reads.
pub fn unpack_layer<R: io::Read>(r: R, dest: &Path, whiteouts: bool) -> Result<(), UnpackError> {
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let entries = ar.entries().map_err(io_err(dest))?;
    for entry in entries {
        let mut e = entry.map_err(io_err(dest))?;
        let raw = e.path().map_err(io_err(dest))?.into_owned();
        let Some(rel) = sanitize(&raw)? else { continue };
        // aufs bookkeeping (`.wh..wh.plnk/…`, `.wh..wh.aufs`): no file of the image.
        if whiteouts
            && rel
                .iter()
                .any(|c| c.as_bytes().starts_with(b".wh..wh.") && c.as_bytes() != OPAQUE.as_bytes())
        {
            continue;
        }
        ensure_parents(dest, &rel)?;
        let full = dest.join(&rel);
        let name = rel.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
        if whiteouts && name.starts_with(WHITEOUT.as_bytes()) {
            let dir = full.parent().unwrap_or(dest);
            if name == OPAQUE.as_bytes() {
                let c = cpath(dir)?;
                // SAFETY: valid NUL-terminated strings and a 1-byte value buffer.
                let rc = unsafe {
                    libc::lsetxattr(
                        c.as_ptr(),
                        c"trusted.overlay.opaque".as_ptr(),
                        b"y".as_ptr().cast(),
                        1,
                        0,
                    )
                };
                if rc != 0 {
                    return Err(io_err(dir)(io::Error::last_os_error()));
                }
            } else {
                // `.wh..` and `.wh...` would whiteout the directory itself or its parent, and
                // `.wh.` the directory's contents: refused, never turned into a delete.
                let victim = &name[WHITEOUT.len()..];
                if matches!(victim, b"" | b"." | b"..") || victim.contains(&b'/') {
                    return Err(UnpackError::BadWhiteout(rel.display().to_string()));
                }
                let target = dir.join(std::ffi::OsStr::from_bytes(victim));
                clear(&target, true)?;
                let c = cpath(&target)?;
                // SAFETY: mknod with a valid path; a 0/0 char device is overlayfs's whiteout.
                let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
                if rc != 0 {
                    return Err(io_err(&target)(io::Error::last_os_error()));
                }
            }
            continue;
        }
        match e.header().entry_type() {
            EntryType::Directory => {
                if !fs::symlink_metadata(&full)
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
                {
                    clear(&full, false)?;
                }
                e.unpack(&full).map_err(io_err(&full))?;
            }
            EntryType::Link => {
                let link = e
                    .link_name()
                    .map_err(io_err(&full))?
                    .ok_or_else(|| UnpackError::LinkEscape(rel.display().to_string()))?
                    .into_owned();
                let target_rel = sanitize(&link)
                    .map_err(|_| UnpackError::LinkEscape(link.display().to_string()))?
                    .ok_or_else(|| UnpackError::LinkEscape(link.display().to_string()))?;
                ensure_parents(dest, &target_rel)
                    .map_err(|_| UnpackError::LinkEscape(link.display().to_string()))?;
                let target = dest.join(&target_rel);
                match fs::symlink_metadata(&target) {
                    Ok(m) if !m.is_dir() => {}
                    _ => return Err(UnpackError::LinkEscape(link.display().to_string())),
                }
                clear(&full, true)?;
                fs::hard_link(&target, &full).map_err(io_err(&full))?;
            }
            _ => {
                clear(&full, true)?;
                e.unpack(&full).map_err(io_err(&full))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            // Write the raw name so `..` and absolute paths reach the unpacker.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                let ln = &mut h.as_old_mut().linkname;
                ln[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corral-unpack-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn refuses_traversal_absolute_and_symlink_escape() {
        for (tag, t) in [
            (
                "dotdot",
                tar_of(&[("../evil", EntryType::Regular, b"x", None)]),
            ),
            (
                "abs",
                tar_of(&[("/etc/evil", EntryType::Regular, b"x", None)]),
            ),
            (
                "symlink",
                tar_of(&[
                    ("link", EntryType::Symlink, b"", Some("/tmp")),
                    ("link/evil", EntryType::Regular, b"x", None),
                ]),
            ),
            (
                "hardlink",
                tar_of(&[("h", EntryType::Link, b"", Some("../../etc/passwd"))]),
            ),
        ] {
            let d = tmp(tag);
            let r = unpack_layer(&t[..], &d, true);
            assert!(r.is_err(), "{tag} must be refused");
            assert!(!Path::new("/tmp/evil").exists());
            fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let d = tmp("wh");
        let t = tar_of(&[
            ("etc/", EntryType::Directory, b"", None),
            ("etc/.wh.gone", EntryType::Regular, b"", None),
            ("opaque/", EntryType::Directory, b"", None),
            ("opaque/.wh..wh..opq", EntryType::Regular, b"", None),
            ("etc/file", EntryType::Regular, b"data", None),
            ("etc/hard", EntryType::Link, b"", Some("etc/file")),
        ]);
        unpack_layer(&t[..], &d, true).unwrap();
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = fs::symlink_metadata(d.join("etc/gone")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0);
        assert_eq!(fs::read(d.join("etc/hard")).unwrap(), b"data");
        assert_eq!(
            fs::metadata(d.join("etc/hard")).unwrap().ino(),
            fs::metadata(d.join("etc/file")).unwrap().ino()
        );
        let c = cpath(&d.join("opaque")).unwrap();
        let mut v = [0u8; 4];
        // SAFETY: valid path and buffer.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                v.as_mut_ptr().cast(),
                4,
            )
        };
        assert_eq!(n, 1);
        assert_eq!(v[0], b'y');
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn whiteouts_of_the_directory_or_its_parent_are_refused() {
        for (i, bad) in ["keep/.wh..", "keep/.wh...", "keep/.wh.", ".wh..", ".wh..."]
            .iter()
            .enumerate()
        {
            let d = tmp(&format!("badwh{i}"));
            let t = tar_of(&[
                ("keep/", EntryType::Directory, b"", None),
                ("keep/file", EntryType::Regular, b"data", None),
                (bad, EntryType::Regular, b"", None),
            ]);
            let e = unpack_layer(&t[..], &d, true).unwrap_err();
            assert!(
                matches!(&e, UnpackError::BadWhiteout(n) if n == bad.trim_end_matches('/')),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("whiteout"), "{e}");
            assert_eq!(fs::read(d.join("keep/file")).unwrap(), b"data", "{bad}");
            assert!(d.parent().unwrap().exists());
            fs::remove_dir_all(&d).unwrap();
        }
        // aufs bookkeeping is skipped, an ordinary whiteout still works next to it.
        let d = tmp("aufs");
        let t = tar_of(&[
            (".wh..wh.plnk/", EntryType::Directory, b"", None),
            (".wh..wh.plnk/123.456", EntryType::Regular, b"x", None),
            ("etc/.wh..wh.aufs", EntryType::Regular, b"", None),
            ("etc/.wh...x", EntryType::Regular, b"", None),
        ]);
        unpack_layer(&t[..], &d, true).unwrap();
        assert!(!d.join(".wh..wh.plnk").exists());
        use std::os::unix::fs::FileTypeExt;
        let m = fs::symlink_metadata(d.join("etc/..x")).unwrap();
        assert!(m.file_type().is_char_device(), "`.wh...x` hides `..x`");
        fs::remove_dir_all(&d).unwrap();
    }
}
