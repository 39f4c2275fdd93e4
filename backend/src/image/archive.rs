//! The members of an image archive (`docker save` tarball or OCI layout), read as regular
//! files only.
//!
//! A tarball is unpacked into a scratch directory that holds nothing but directories and
//! regular files: a symlink or hard link member is recorded as an alias of the member it
//! names (it must name one inside the archive; docker save links repeated layers that way),
//! and any other kind of member (device, fifo, sparse file) is refused. Sizes are capped as
//! they are written and each file is hashed while it is written, so a blob's digest is known
//! before it is read again.
//!
//! A member is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` and `O_NOFOLLOW`
//! under the archive's directory and must be a regular file: nothing is read through a
//! symlink, from a device or from outside the archive, also when the archive is a directory
//! of the host (an OCI layout).

use std::{
    collections::HashMap,
    fs,
    io::{self, Read, Write},
    os::{
        fd::OwnedFd,
        unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt},
    },
    path::{Component, Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{OFlag, OpenHow, ResolveFlag, openat2},
};
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::{ImageError, Limits, hex, invalid, io_err, too_large, unpack::sanitize};

/// How many links a member name may pass through before it is refused.
const MAX_LINK_HOPS: usize = 16;

/// An image archive's members: an unpacked tarball (removed on drop) or a directory.
pub struct Members {
    /// The file the user named, for messages.
    source: PathBuf,
    /// The directory holding the members.
    dir: PathBuf,
    /// `dir`, opened once: every member is opened beneath it.
    root: OwnedFd,
    /// Link members: name → the member name it points at (inside the archive).
    aliases: HashMap<PathBuf, PathBuf>,
    /// `sha256:<hex>` and size of each regular member of an unpacked tarball.
    digests: HashMap<PathBuf, (String, u64)>,
    /// Whether `dir` is ours (a scratch directory) and removed on drop.
    scratch: bool,
}

impl Drop for Members {
    fn drop(&mut self) {
        if self.scratch {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A member opened for reading: the file and its size.
pub struct Member {
    pub file: fs::File,
    pub size: u64,
    /// The member's name once links are followed (inside the archive).
    pub name: PathBuf,
}

fn kind(t: EntryType) -> &'static str {
    match t {
        EntryType::Char => "a character device",
        EntryType::Block => "a block device",
        EntryType::Fifo => "a fifo",
        EntryType::GNUSparse => "a sparse file",
        _ => "an unsupported kind of entry",
    }
}

fn file_kind(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd, ImageError> {
    nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io_err("open", dir)(e.into()))
}

/// `rel` relative to `base` (a directory inside the archive) with `..` taken lexically;
/// `None` when it climbs out of the archive.
fn lexical_join(base: &Path, rel: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = base
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out.iter().collect())
}

/// A writer that hashes what it writes.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Members {
    /// Unpacks the tar stream `r` (the archive `source`) into `dir`, which must not exist.
    /// Each member may hold at most `limits.max_layer_size` bytes, all of them together at
    /// most `limits.max_import_size`.
    pub fn unpack<R: Read>(
        r: R,
        source: &Path,
        dir: &Path,
        limits: &Limits,
    ) -> Result<Self, ImageError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create", dir))?;
        let mut m = Members {
            source: source.to_owned(),
            dir: dir.to_owned(),
            root: open_dir(dir)?,
            aliases: HashMap::new(),
            digests: HashMap::new(),
            scratch: true,
        };
        let bad = |msg: String| invalid(source, msg);
        // An error of no system call is the archive's (a malformed header, a short or
        // corrupt stream): the file is not a tarball, a 400 rather than a failed read.
        let read_err = |e: io::Error| match e.raw_os_error() {
            None => invalid(source, format!("not a readable tar archive: {e}")),
            Some(_) => io_err("read", source)(e),
        };
        let mut ar = tar::Archive::new(r);
        let mut total = 0u64;
        for entry in ar.entries().map_err(read_err)? {
            let mut e = entry.map_err(read_err)?;
            let raw = e.path().map_err(read_err)?.into_owned();
            let shown = raw.display().to_string();
            let rel = match sanitize(&raw) {
                Ok(Some(rel)) => rel,
                Ok(None) => continue,
                Err(_) => {
                    return Err(bad(format!(
                        "member {shown:?} has an absolute path or `..`"
                    )));
                }
            };
            let t = e.header().entry_type();
            if matches!(
                t,
                EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName
            ) {
                continue;
            }
            // Nothing is placed under a link member (it is not on disk) or twice.
            if let Some(a) = rel.ancestors().skip(1).find(|a| m.aliases.contains_key(*a)) {
                return Err(bad(format!(
                    "member {shown:?} lies under the link member {:?}",
                    a.display().to_string()
                )));
            }
            if m.aliases.contains_key(&rel) || m.digests.contains_key(&rel) {
                return Err(bad(format!("member {shown:?} appears twice")));
            }
            let full = dir.join(&rel);
            match t {
                EntryType::Directory => {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&full)
                        .map_err(io_err("create", &full))?;
                }
                EntryType::Regular | EntryType::Continuous => {
                    let size = e.header().size().map_err(read_err)?;
                    if size > limits.max_layer_size {
                        return Err(too_large(
                            source,
                            format!(
                                "member {shown:?} holds {size} bytes, more than --max-layer-size ({})",
                                super::limits::show(limits.max_layer_size)
                            ),
                        ));
                    }
                    total = total.saturating_add(size);
                    if total > limits.max_import_size {
                        return Err(too_large(
                            source,
                            format!(
                                "its members hold more than --max-import-size ({}) by member {shown:?}",
                                super::limits::show(limits.max_import_size)
                            ),
                        ));
                    }
                    if let Some(parent) = full.parent() {
                        fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o700)
                            .create(parent)
                            .map_err(io_err("create", parent))?;
                    }
                    let f = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&full)
                        .map_err(io_err("create", &full))?;
                    let mut w = HashWriter {
                        inner: io::BufWriter::with_capacity(256 << 10, f),
                        hasher: Sha256::new(),
                    };
                    // The entry reads no more than its header's size.
                    let n = io::copy(&mut e, &mut w).map_err(read_err)?;
                    w.flush().map_err(io_err("write", &full))?;
                    let digest = format!("sha256:{}", hex(&w.hasher.finalize()));
                    m.digests.insert(rel, (digest, n));
                }
                EntryType::Symlink | EntryType::Link => {
                    let target = e
                        .link_name()
                        .map_err(read_err)?
                        .map(|l| l.into_owned())
                        .unwrap_or_default();
                    // A symlink is relative to its directory, a hard link to the archive's root.
                    let base = if t == EntryType::Symlink {
                        rel.parent().unwrap_or(Path::new("")).to_owned()
                    } else {
                        PathBuf::new()
                    };
                    let what = if t == EntryType::Symlink {
                        "symlink"
                    } else {
                        "hard link"
                    };
                    let resolved = (!target.is_absolute())
                        .then(|| lexical_join(&base, &target))
                        .flatten()
                        .filter(|p| !p.as_os_str().is_empty())
                        .ok_or_else(|| {
                            bad(format!(
                                "member {shown:?} is a {what} to {:?}, outside the archive: \
                                 members must be regular files",
                                target.display().to_string()
                            ))
                        })?;
                    m.aliases.insert(rel, resolved);
                }
                other => {
                    return Err(bad(format!(
                        "member {shown:?} is {}: an image archive holds only regular files, \
                         directories and links to its own members",
                        kind(other)
                    )));
                }
            }
        }
        Ok(m)
    }

    /// The members of the directory `dir` (an OCI layout on the host), read in place.
    pub fn directory(dir: &Path) -> Result<Self, ImageError> {
        Ok(Members {
            source: dir.to_owned(),
            dir: dir.to_owned(),
            root: open_dir(dir)?,
            aliases: HashMap::new(),
            digests: HashMap::new(),
            scratch: false,
        })
    }

    /// `name` (a path from a manifest) with link members followed; refuses absolute paths,
    /// `..` and names that leave the archive.
    fn resolve(&self, name: &str) -> Result<PathBuf, ImageError> {
        let leaves = || invalid(&self.source, format!("path {name:?} leaves the image"));
        let mut p = lexical_join(Path::new(""), Path::new(name))
            .filter(|_| !Path::new(name).is_absolute())
            .ok_or_else(leaves)?;
        'hops: for _ in 0..MAX_LINK_HOPS {
            for prefix in p.ancestors() {
                if let Some(target) = self.aliases.get(prefix) {
                    let rest = p.strip_prefix(prefix).unwrap_or(Path::new(""));
                    // (`join("")` would add a trailing slash)
                    p = if rest.as_os_str().is_empty() {
                        target.clone()
                    } else {
                        target.join(rest)
                    };
                    continue 'hops;
                }
            }
            return Ok(p);
        }
        Err(invalid(
            &self.source,
            format!("member {name:?} passes through more than {MAX_LINK_HOPS} links"),
        ))
    }

    /// Opens member `name` as a regular file; `None` when there is no such member.
    pub fn open(&self, name: &str) -> Result<Option<Member>, ImageError> {
        let rel = self.resolve(name)?;
        let rel_str = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel.clone()
        };
        let how = |flags: OFlag| {
            OpenHow::new()
                .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
                .resolve(
                    ResolveFlag::RESOLVE_BENEATH
                        | ResolveFlag::RESOLVE_NO_SYMLINKS
                        | ResolveFlag::RESOLVE_NO_MAGICLINKS,
                )
        };
        let refuse = |why: String| invalid(&self.source, format!("member {name:?} {why}"));
        let path_fd = match openat2(&self.root, &rel_str, how(OFlag::O_PATH)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => {
                return Err(refuse(
                    "is a symlink or lies under one: members must be regular files".into(),
                ));
            }
            Err(Errno::EXDEV) => return Err(refuse("leaves the image".into())),
            Err(e) => return Err(io_err("open", &self.dir.join(&rel))(e.into())),
        };
        // An O_PATH descriptor opens nothing: a fifo does not block, a device is not touched.
        let meta = fs::File::from(path_fd)
            .metadata()
            .map_err(io_err("stat", &self.dir.join(&rel)))?;
        if !meta.file_type().is_file() {
            return Err(refuse(format!(
                "is {}: members must be regular files",
                file_kind(&meta)
            )));
        }
        let fd = openat2(
            &self.root,
            &rel_str,
            how(OFlag::O_RDONLY | OFlag::O_NONBLOCK),
        )
        .map_err(|e| io_err("open", &self.dir.join(&rel))(e.into()))?;
        let file = fs::File::from(fd);
        let again = file
            .metadata()
            .map_err(io_err("stat", &self.dir.join(&rel)))?;
        if (again.dev(), again.ino()) != (meta.dev(), meta.ino()) || !again.file_type().is_file() {
            return Err(refuse("changed while it was opened".into()));
        }
        Ok(Some(Member {
            file,
            size: again.len(),
            name: rel,
        }))
    }

    /// Opens member `name`, which must exist.
    pub fn open_required(&self, name: &str) -> Result<Member, ImageError> {
        self.open(name)?
            .ok_or_else(|| invalid(&self.source, format!("member {name:?} is missing")))
    }

    /// Reads the small member `name` (a manifest, index or config), at most `cap` bytes.
    pub fn read_small(&self, name: &str, cap: u64) -> Result<Option<Vec<u8>>, ImageError> {
        let Some(m) = self.open(name)? else {
            return Ok(None);
        };
        let over = || {
            too_large(
                &self.source,
                format!(
                    "member {name:?} is larger than {}, the limit for image metadata",
                    super::limits::show(cap)
                ),
            )
        };
        if m.size > cap {
            return Err(over());
        }
        let mut data = Vec::with_capacity(usize::try_from(m.size).unwrap_or(0));
        m.file
            .take(cap + 1)
            .read_to_end(&mut data)
            .map_err(io_err("read", &self.dir.join(&m.name)))?;
        if data.len() as u64 > cap {
            return Err(over());
        }
        Ok(Some(data))
    }

    /// The digest of member `name` as it was unpacked (tarballs only).
    pub fn digest(&self, name: &Path) -> Option<&str> {
        self.digests.get(name).map(|(d, _)| d.as_str())
    }

    /// The archive the user named.
    pub fn source(&self) -> &Path {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tar_with(entries: &[(&str, EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, t, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*t);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            if *t == EntryType::Char {
                h.set_device_major(1).unwrap();
                h.set_device_minor(5).unwrap();
            }
            match link {
                Some(l) => b.append_link(&mut h, path, l).unwrap(),
                None => b.append_data(&mut h, path, *data).unwrap(),
            }
        }
        b.into_inner().unwrap()
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corral-members-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn links_inside_the_archive_are_aliases_and_nothing_leaves_it() {
        let d = scratch("alias");
        let t = tar_with(&[
            ("a/layer.tar", EntryType::Regular, b"layer", None),
            (
                "b/layer.tar",
                EntryType::Symlink,
                b"",
                Some("../a/layer.tar"),
            ),
            ("c", EntryType::Symlink, b"", Some("a")),
            ("h", EntryType::Link, b"", Some("a/layer.tar")),
        ]);
        let m = Members::unpack(&t[..], Path::new("x.tar"), &d, &Limits::default()).unwrap();
        for name in ["a/layer.tar", "b/layer.tar", "c/layer.tar", "h", "./b/../h"] {
            let mut s = String::new();
            m.open_required(name)
                .unwrap()
                .file
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "layer", "{name}");
        }
        assert!(m.open("missing").unwrap().is_none());
        assert!(m.open("../etc/passwd").is_err());
        assert!(m.open("/etc/passwd").is_err());
        let e = m.open("a").err().unwrap().to_string();
        assert!(e.contains("directory"), "{e}");
        drop(m);
        assert!(!d.exists(), "scratch removed");
    }

    #[test]
    fn refuses_links_out_devices_and_oversized_members() {
        for (tag, t, want) in [
            (
                "abs",
                tar_with(&[("c.json", EntryType::Symlink, b"", Some("/dev/zero"))]),
                "outside the archive",
            ),
            (
                "up",
                tar_with(&[("c.json", EntryType::Symlink, b"", Some("../../x"))]),
                "outside the archive",
            ),
            (
                "hard",
                tar_with(&[("c.json", EntryType::Link, b"", Some("/etc/shadow"))]),
                "outside the archive",
            ),
            (
                "char",
                tar_with(&[("c.json", EntryType::Char, b"", None)]),
                "character device",
            ),
            (
                "fifo",
                tar_with(&[("c.json", EntryType::Fifo, b"", None)]),
                "fifo",
            ),
            (
                "under",
                tar_with(&[
                    ("d", EntryType::Symlink, b"", Some("e")),
                    ("d/x", EntryType::Regular, b"x", None),
                ]),
                "lies under",
            ),
            (
                "big",
                tar_with(&[("blob", EntryType::Regular, &[0u8; 100], None)]),
                "--max-layer-size",
            ),
        ] {
            let d = scratch(tag);
            let limits = Limits {
                max_layer_size: 64,
                max_import_size: 1 << 20,
                ..Limits::default()
            };
            let e = Members::unpack(&t[..], Path::new("x.tar"), &d, &limits)
                .err()
                .unwrap_or_else(|| panic!("{tag} accepted"))
                .to_string();
            assert!(e.contains(want), "{tag}: {e}");
            let _ = fs::remove_dir_all(&d);
        }
    }

    #[test]
    fn a_directory_is_read_without_following_symlinks() {
        let d = scratch("dir");
        fs::create_dir_all(d.join("blobs")).unwrap();
        fs::write(d.join("blobs/ok"), b"{}").unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("blobs/zero")).unwrap();
        std::os::unix::fs::symlink("ok", d.join("blobs/inner")).unwrap();
        nix::unistd::mkfifo(&d.join("blobs/fifo"), nix::sys::stat::Mode::S_IRUSR).unwrap();
        fs::write(d.join("big"), vec![b' '; 100]).unwrap();
        let m = Members::directory(&d).unwrap();
        assert_eq!(m.read_small("blobs/ok", 10).unwrap().unwrap(), b"{}");
        for (name, want) in [
            ("blobs/zero", "symlink"),
            ("blobs/inner", "symlink"),
            ("blobs/fifo", "fifo"),
            ("big", "larger than"),
        ] {
            let e = m.read_small(name, 10).err().unwrap().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
        drop(m);
        assert!(d.exists(), "a directory of the host is left alone");
        fs::remove_dir_all(&d).unwrap();
    }
}
