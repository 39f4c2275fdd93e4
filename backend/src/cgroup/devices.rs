//! The device allowlist of every container cgroup: which device nodes a container may create
//! (mknod) and open (read, write). Without it, root in a container with CAP_MKNOD can create
//! `b 7:0` and read the host's disk.
//!
//! The same [`ALLOWED`] list is enforced two ways, whichever the host has (both on hybrid hosts):
//! - cgroup v1: `devices.deny a`, then one `devices.allow` line per rule;
//! - cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program, assembled here from the list (a dozen
//!   instructions a rule, as runc and crun do), loaded with `bpf(BPF_PROG_LOAD)` and attached
//!   to the container's cgroup2 directory with `bpf(BPF_PROG_ATTACH)`.
//!
//! Attached without `BPF_F_ALLOW_MULTI`, so attaching again (a restart) replaces the program
//! instead of stacking copies; programs of ancestors attached with `BPF_F_ALLOW_MULTI` (systemd)
//! still run too, so the host's own policy is never widened.

#![allow(unsafe_code)]

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

use super::{CgroupError, fs};

/// `c` or `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
}

/// Access bits, as the kernel's `BPF_DEVCG_ACC_*` (and v1's `m`, `r`, `w`).
pub const MKNOD: u32 = 1;
pub const READ: u32 = 2;
pub const WRITE: u32 = 4;
const RWM: u32 = MKNOD | READ | WRITE;

/// One allowed device (or a whole major with `minor: None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: DeviceKind,
    pub major: u32,
    pub minor: Option<u32>,
    pub access: u32,
    /// What it is, for `corral info`.
    pub name: &'static str,
}

/// What a container may use: runc's default set minus the wildcard mknod and tun. Anything
/// else — every block device, /dev/mem, /dev/kmsg, … — can be neither created nor opened.
pub const ALLOWED: &[DeviceRule] = &[
    rule(1, Some(3), "/dev/null"),
    rule(1, Some(5), "/dev/zero"),
    rule(1, Some(7), "/dev/full"),
    rule(1, Some(8), "/dev/random"),
    rule(1, Some(9), "/dev/urandom"),
    rule(5, Some(0), "/dev/tty"),
    rule(5, Some(2), "/dev/ptmx"),
    rule(136, None, "/dev/pts/*"),
];

const fn rule(major: u32, minor: Option<u32>, name: &'static str) -> DeviceRule {
    DeviceRule {
        kind: DeviceKind::Char,
        major,
        minor,
        access: RWM,
        name,
    }
}

impl DeviceRule {
    /// The v1 `devices.allow` line, e.g. `c 1:3 rwm` or `c 136:* rwm`.
    pub fn v1_line(&self) -> String {
        let kind = match self.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let minor = self.minor.map_or_else(|| "*".to_owned(), |m| m.to_string());
        let mut access = String::new();
        for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        format!("{kind} {}:{minor} {access}", self.major)
    }
}

/// How the allowlist is enforced on this host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Enforcement {
    /// A v1 `devices` hierarchy is mounted.
    pub v1: bool,
    /// cgroup2 is mounted and the kernel loads our device program.
    pub bpf: bool,
}

impl Enforcement {
    /// The mechanisms in force, for `corral info` (`none` means only nodev mounts protect).
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.bpf {
            out.push("cgroup2 BPF_CGROUP_DEVICE program".to_owned());
        }
        if self.v1 {
            out.push("cgroup v1 devices.deny/devices.allow".to_owned());
        }
        out
    }
}

/// Decides the enforcement: v1 where the `devices` hierarchy is mounted, BPF where there is a
/// cgroup2 mount and the kernel accepts the program.
pub fn probe(has_v1_devices: bool, has_v2: bool) -> Enforcement {
    Enforcement {
        v1: has_v1_devices,
        bpf: has_v2 && load(ALLOWED).is_ok(),
    }
}

/// Writes the v1 allowlist into a container's `devices` directory: deny all, then allow.
pub fn apply_v1(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    fs::write(&dir.join("devices.deny"), "a")?;
    for r in rules {
        fs::write(&dir.join("devices.allow"), &r.v1_line())?;
    }
    Ok(())
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`, replacing a
/// program an earlier start attached.
pub fn apply_bpf(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let err = |what: &str, source: std::io::Error| CgroupError::Devices {
        path: dir.to_owned(),
        what: what.to_owned(),
        source,
    };
    let prog = load(rules).map_err(|(e, log)| err(&format!("load device program{log}"), e))?;
    let cg = std::fs::File::open(dir).map_err(|e| err("open cgroup", e))?;
    attach(&cg, &prog).map_err(|e| err("attach device program", e))
}

// --- the program -------------------------------------------------------------------------

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Opcodes (class | op | source), from linux/bpf_common.h and linux/bpf.h.
pub const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
pub const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
pub const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
pub const AND64_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
pub const RSH64_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
pub const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
pub const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// The device program for `rules`. Input (`struct bpf_cgroup_dev_ctx`): `access_type` at 0
/// (access bits << 16 | type: 1 block, 2 char), `major` at 4, `minor` at 8. Returns 1 (allow)
/// when a rule matches the type, the major, the minor (unless the rule has none) and every
/// requested access bit; 0 (deny) otherwise.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    // r2 = access bits, r3 = type, r4 = major, r5 = minor.
    let mut p = vec![
        ins(LDX_W, 2, 1, 0, 0),
        ins(MOV64_X, 3, 2, 0, 0),
        ins(AND64_K, 3, 0, 0, 0xffff),
        ins(RSH64_K, 2, 0, 0, 16),
        ins(LDX_W, 4, 1, 4, 0),
        ins(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules {
        let kind = match r.kind {
            DeviceKind::Block => 1,
            DeviceKind::Char => 2,
        };
        // The rule's tests, each jumping past the rule on a mismatch (offsets fixed below).
        let mut body = vec![
            ins(JNE_K, 3, 0, 0, kind),
            ins(JNE_K, 4, 0, 0, r.major as i32),
        ];
        if let Some(minor) = r.minor {
            body.push(ins(JNE_K, 5, 0, 0, minor as i32));
        }
        let denied_bits = !r.access & RWM;
        if denied_bits != 0 {
            // r6 = the requested bits this rule does not allow; any → no match.
            body.push(ins(MOV64_X, 6, 2, 0, 0));
            body.push(ins(AND64_K, 6, 0, 0, denied_bits as i32));
            body.push(ins(JNE_K, 6, 0, 0, 0));
        }
        body.push(ins(MOV64_K, 0, 0, 0, 1));
        body.push(ins(EXIT, 0, 0, 0, 0));
        let len = body.len();
        for (i, insn) in body.iter_mut().enumerate() {
            if insn.code == JNE_K {
                insn.off = (len - i - 1) as i16;
            }
        }
        p.extend(body);
    }
    p.push(ins(MOV64_K, 0, 0, 0, 0));
    p.push(ins(EXIT, 0, 0, 0, 0));
    p
}

// --- the bpf(2) calls --------------------------------------------------------------------

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly laid out `#[repr(C)]` prefix of `union bpf_attr` for
    // `cmd`, and its size is passed with it; the kernel reads at most that many bytes and
    // writes nothing back for these commands.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads the program; on failure the verifier's log (if any) comes with the error.
fn load(rules: &[DeviceRule]) -> Result<OwnedFd, (std::io::Error, String)> {
    let code: Vec<u8> = program(rules).iter().flat_map(Insn::bytes).collect();
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"corral_device");
    let try_load = |log: &mut Vec<u8>| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: (code.len() / 8) as u32,
            insns: code.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: BPF_CGROUP_DEVICE,
        };
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    match try_load(&mut Vec::new()) {
        // SAFETY: a non-negative return of BPF_PROG_LOAD is a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            // Once more with the verifier's log, to say why.
            let mut log = vec![0u8; 4096];
            let _ = try_load(&mut log);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let detail = if text.is_empty() {
                String::new()
            } else {
                format!(" (verifier: {text})")
            };
            Err((e, detail))
        }
    }
}

fn attach(cgroup: &impl AsRawFd, prog: &impl AsRawFd) -> std::io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the instructions [`program`] emits, to test its meaning.
    fn run(p: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            pc += 1;
            let (d, s) = (usize::from(i.dst), usize::from(i.src));
            match i.code {
                LDX_W => {
                    assert_eq!(s, 1, "loads only from the context");
                    r[d] = u64::from(ctx[(i.off / 4) as usize]);
                }
                MOV64_X => r[d] = r[s],
                MOV64_K => r[d] = i.imm as i64 as u64,
                AND64_K => r[d] &= i.imm as i64 as u64,
                RSH64_K => r[d] >>= i.imm,
                JNE_K => {
                    if r[d] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_allows_exactly_the_list() {
        let p = program(ALLOWED);
        let (c, b) = (2, 1);
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 2),
            (136, 0),
        ] {
            for access in [MKNOD, READ, WRITE, READ | WRITE, RWM] {
                assert_eq!(run(&p, c, access, major, minor), 1, "c {major}:{minor}");
            }
        }
        assert_eq!(run(&p, c, READ, 136, 77), 1, "any pts");
        // Block devices, other chars, and the right numbers with the wrong type.
        for (kind, major, minor) in [
            (b, 7, 0),
            (b, 8, 0),
            (b, 254, 0),
            (b, 1, 3),
            (c, 1, 1),
            (c, 1, 2),
            (c, 1, 11),
            (c, 4, 0),
            (c, 5, 1),
            (c, 10, 200),
            (c, 137, 0),
        ] {
            for access in [MKNOD, READ, WRITE, RWM] {
                assert_eq!(
                    run(&p, kind, access, major, minor),
                    0,
                    "{kind} {major}:{minor}"
                );
            }
        }
    }

    #[test]
    fn access_bits_are_honoured() {
        let ro = [DeviceRule {
            kind: DeviceKind::Char,
            major: 1,
            minor: Some(3),
            access: READ,
            name: "null (read only)",
        }];
        let p = program(&ro);
        assert_eq!(run(&p, 2, READ, 1, 3), 1);
        assert_eq!(run(&p, 2, WRITE, 1, 3), 0);
        assert_eq!(run(&p, 2, MKNOD, 1, 3), 0);
        assert_eq!(run(&p, 2, READ | WRITE, 1, 3), 0);
        assert_eq!(ro[0].v1_line(), "c 1:3 r");
    }

    #[test]
    fn v1_lines() {
        let lines: Vec<String> = ALLOWED.iter().map(DeviceRule::v1_line).collect();
        assert_eq!(lines[0], "c 1:3 rwm");
        assert_eq!(lines[7], "c 136:* rwm");
    }

    #[test]
    fn instructions_encode_little_endian() {
        let i = ins(JNE_K, 4, 0, 3, 136);
        assert_eq!(i.bytes(), [0x55, 0x04, 3, 0, 136, 0, 0, 0]);
        assert_eq!(ins(LDX_W, 2, 1, 8, 0).bytes()[1], 0x12);
    }
}
