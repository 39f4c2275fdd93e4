//! The default seccomp profile: deny by default with EPERM, modelled on Docker's default
//! profile (moby `profiles/seccomp/default.json`) for a container holding Docker's 14
//! capabilities. Foreign architectures are killed by the arch check seccompiler puts first.
//!
//! Blocked (not in the allowlist): keyctl/add_key/request_key, bpf, unshare/setns, clone with
//! namespace flags, mount/umount2/pivot_root/fsopen..., ptrace/process_vm_*, kexec/reboot/module
//! loading, open_by_handle_at, perf_event_open, userfaultfd, io_uring_*, swapon/swapoff, clock and
//! time setting, acct/quotactl, socket(AF_VSOCK/AF_ALG), personality except the safe values.
//! `clone3` returns ENOSYS (a second filter) so libc falls back to `clone`, whose flags the
//! first filter can inspect.
//!
//! Argument checks compare the low 32 bits only (`SeccompCmpArgLen::Dword`), because that is
//! all the kernel reads of these arguments: `socket`'s domain is an `int`, `personality`'s
//! persona an `unsigned int`, and `clone` takes `lower_32_bits(clone_flags)` (kernel/fork.c).
//! The upper half of the register is whatever the caller left there, and the filter sees it: a
//! 64-bit `!= AF_VSOCK` let `socket(0x1_0000_0028, …)` through as a working AF_VSOCK socket.
//! (libseccomp, hence Docker's profile, compares 64 bits: libseccomp issue #383.) Every
//! namespace flag lives in the low 32 bits, so high bits cannot smuggle one past `clone`'s mask.
//! The x32 ABI (numbers with bit 30 set) matches no allowed number and gets EPERM; i386
//! (`int 0x80`) fails the architecture check and kills the process.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Errors building the profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile: {0}")]
    Build(#[from] seccompiler::BackendError),
    #[error("seccomp profile: {0}")]
    Compile(#[from] seccompiler::Error),
    #[error("no seccomp profile for this architecture")]
    Arch,
}

#[cfg(target_arch = "x86_64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

/// Syscalls allowed unconditionally (Docker's unconditional list, plus those Docker allows for
/// CAP_SYS_CHROOT, which we keep).
#[cfg(target_arch = "x86_64")]
const ALLOW: &[i64] = &[
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_access,
    libc::SYS_adjtimex,
    libc::SYS_alarm,
    libc::SYS_arch_prctl,
    libc::SYS_bind,
    libc::SYS_brk,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_chdir,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_chroot,
    libc::SYS_clock_getres,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_connect,
    libc::SYS_copy_file_range,
    libc::SYS_creat,
    libc::SYS_dup,
    libc::SYS_dup2,
    libc::SYS_dup3,
    libc::SYS_epoll_create,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_epoll_wait,
    libc::SYS_eventfd,
    libc::SYS_eventfd2,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fadvise64,
    libc::SYS_fallocate,
    libc::SYS_fanotify_mark,
    libc::SYS_fchdir,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_fcntl,
    libc::SYS_fdatasync,
    libc::SYS_fgetxattr,
    libc::SYS_flistxattr,
    libc::SYS_flock,
    libc::SYS_fork,
    libc::SYS_fremovexattr,
    libc::SYS_fsetxattr,
    libc::SYS_fstat,
    libc::SYS_fstatfs,
    libc::SYS_fsync,
    libc::SYS_ftruncate,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_futimesat,
    libc::SYS_getcpu,
    libc::SYS_getcwd,
    libc::SYS_getdents,
    libc::SYS_getdents64,
    libc::SYS_getegid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getgroups,
    libc::SYS_getitimer,
    libc::SYS_getpeername,
    libc::SYS_getpgid,
    libc::SYS_getpgrp,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_getpriority,
    libc::SYS_getrandom,
    libc::SYS_getresgid,
    libc::SYS_getresuid,
    libc::SYS_getrlimit,
    libc::SYS_get_robust_list,
    libc::SYS_getrusage,
    libc::SYS_getsid,
    libc::SYS_getsockname,
    libc::SYS_getsockopt,
    libc::SYS_get_thread_area,
    libc::SYS_gettid,
    libc::SYS_gettimeofday,
    libc::SYS_getuid,
    libc::SYS_getxattr,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_init,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_rm_watch,
    libc::SYS_io_cancel,
    libc::SYS_ioctl,
    libc::SYS_io_destroy,
    libc::SYS_io_getevents,
    libc::SYS_ioprio_get,
    libc::SYS_ioprio_set,
    libc::SYS_io_setup,
    libc::SYS_io_submit,
    libc::SYS_kill,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_restrict_self,
    libc::SYS_lchown,
    libc::SYS_lgetxattr,
    libc::SYS_link,
    libc::SYS_linkat,
    libc::SYS_listen,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_lremovexattr,
    libc::SYS_lseek,
    libc::SYS_lsetxattr,
    libc::SYS_lstat,
    libc::SYS_madvise,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    libc::SYS_memfd_secret,
    libc::SYS_mincore,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_mknod,
    libc::SYS_mknodat,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_mlockall,
    libc::SYS_mmap,
    libc::SYS_modify_ldt,
    libc::SYS_mprotect,
    libc::SYS_mq_getsetattr,
    libc::SYS_mq_notify,
    libc::SYS_mq_open,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_unlink,
    libc::SYS_mremap,
    libc::SYS_msgctl,
    libc::SYS_msgget,
    libc::SYS_msgrcv,
    libc::SYS_msgsnd,
    libc::SYS_msync,
    libc::SYS_munlock,
    libc::SYS_munlockall,
    libc::SYS_munmap,
    libc::SYS_name_to_handle_at,
    libc::SYS_nanosleep,
    libc::SYS_newfstatat,
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_pause,
    libc::SYS_pidfd_getfd,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pipe,
    libc::SYS_pipe2,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_pkey_mprotect,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_prctl,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_prlimit64,
    libc::SYS_process_mrelease,
    libc::SYS_pselect6,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_pwritev2,
    libc::SYS_read,
    libc::SYS_readahead,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_readv,
    libc::SYS_recvfrom,
    libc::SYS_recvmmsg,
    libc::SYS_recvmsg,
    libc::SYS_remap_file_pages,
    libc::SYS_removexattr,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_restart_syscall,
    libc::SYS_rmdir,
    libc::SYS_rseq,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_getattr,
    libc::SYS_sched_getparam,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_setattr,
    libc::SYS_sched_setparam,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_yield,
    libc::SYS_seccomp,
    libc::SYS_select,
    libc::SYS_semctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_sendfile,
    libc::SYS_sendmmsg,
    libc::SYS_sendmsg,
    libc::SYS_sendto,
    libc::SYS_setfsgid,
    libc::SYS_setfsuid,
    libc::SYS_setgid,
    libc::SYS_setgroups,
    libc::SYS_setitimer,
    libc::SYS_setpgid,
    libc::SYS_setpriority,
    libc::SYS_setregid,
    libc::SYS_setresgid,
    libc::SYS_setresuid,
    libc::SYS_setreuid,
    libc::SYS_setrlimit,
    libc::SYS_set_robust_list,
    libc::SYS_setsid,
    libc::SYS_setsockopt,
    libc::SYS_set_thread_area,
    libc::SYS_set_tid_address,
    libc::SYS_setuid,
    libc::SYS_setxattr,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_shmdt,
    libc::SYS_shmget,
    libc::SYS_shutdown,
    libc::SYS_sigaltstack,
    libc::SYS_signalfd,
    libc::SYS_signalfd4,
    libc::SYS_socketpair,
    libc::SYS_splice,
    libc::SYS_stat,
    libc::SYS_statfs,
    libc::SYS_statx,
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    libc::SYS_sync,
    libc::SYS_sync_file_range,
    libc::SYS_syncfs,
    libc::SYS_sysinfo,
    libc::SYS_tee,
    libc::SYS_tgkill,
    libc::SYS_time,
    libc::SYS_timer_create,
    libc::SYS_timer_delete,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_gettime,
    libc::SYS_timer_settime,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_gettime,
    libc::SYS_timerfd_settime,
    libc::SYS_times,
    libc::SYS_tkill,
    libc::SYS_truncate,
    libc::SYS_umask,
    libc::SYS_uname,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_utime,
    libc::SYS_utimensat,
    libc::SYS_utimes,
    libc::SYS_vfork,
    libc::SYS_vmsplice,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_write,
    libc::SYS_writev,
    // Missing from the libc crate's table (x86_64 numbers):
    // map_shadow_stack, futex_wake, futex_wait, futex_requeue, mseal.
    // io_pgetevents (333), cachestat, fchmodat2,
    333,
    451,
    452,
    453,
    454,
    455,
    456,
    462,
];

#[cfg(target_arch = "x86_64")]
const SYS_CLONE3: i64 = libc::SYS_clone3;

/// Namespace flags `clone` must not carry (Docker's mask 0x7E020000). (CLONE_NEWTIME, 0x80, is
/// part of `clone`'s exit-signal byte; only `clone3` and `unshare` take it, and both are refused.)
const CLONE_NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

/// personality(2) values Docker allows: PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26,
/// and the query 0xffffffff.
const SAFE_PERSONALITIES: &[u32] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const AF_ALG: u32 = 38;
const AF_VSOCK: u32 = 40;

/// A condition on the low 32 bits of argument `arg`, the part of an `int` argument the kernel
/// reads. `value` is a `u32`, so no check can be written against bits the kernel ignores.
fn low32(arg: u8, op: SeccompCmpOp, value: u32) -> Result<SeccompCondition, SeccompError> {
    if let SeccompCmpOp::MaskedEq(mask) = op {
        debug_assert!(mask <= u64::from(u32::MAX), "a 32-bit mask");
    }
    Ok(SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        op,
        u64::from(value),
    )?)
}

/// The two BPF programs to install, in order: the allowlist (EPERM otherwise) and the clone3
/// filter (ENOSYS). The kernel runs both and the most restrictive answer wins.
#[cfg(target_arch = "x86_64")]
pub fn default_programs() -> Result<Vec<BpfProgram>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in ALLOW {
        rules.insert(nr, vec![]);
    }
    // clone without namespace flags (flags are argument 0 on x86_64; the kernel reads their
    // low 32 bits).
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![low32(
            0,
            SeccompCmpOp::MaskedEq(u64::from(CLONE_NS_FLAGS)),
            0,
        )?])?],
    );
    // clone3 passes the allowlist here; the second filter answers ENOSYS.
    rules.insert(SYS_CLONE3, vec![]);
    rules.insert(
        libc::SYS_personality,
        SAFE_PERSONALITIES
            .iter()
            .map(|&v| SeccompRule::new(vec![low32(0, SeccompCmpOp::Eq, v)?]).map_err(Into::into))
            .collect::<Result<Vec<_>, SeccompError>>()?,
    );
    rules.insert(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![
            low32(0, SeccompCmpOp::Ne, AF_VSOCK)?,
            low32(0, SeccompCmpOp::Ne, AF_ALG)?,
        ])?],
    );
    let allow = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        ARCH,
    )?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(SYS_CLONE3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        ARCH,
    )?;
    Ok(vec![allow.try_into()?, clone3.try_into()?])
}

#[cfg(not(target_arch = "x86_64"))]
pub fn default_programs() -> Result<Vec<BpfProgram>, SeccompError> {
    Err(SeccompError::Arch)
}

/// Installs the programs on the calling thread (sets no_new_privs first, as seccompiler does).
pub fn install(programs: &[BpfProgram]) -> Result<(), SeccompError> {
    for p in programs {
        seccompiler::apply_filter(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use seccompiler::sock_filter;

    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;

    /// Runs one classic-BPF seccomp program on a `struct seccomp_data` (nr, arch,
    /// instruction_pointer, args[6]) the way the kernel does, for the instructions seccompiler
    /// emits; panics on any other.
    fn run(prog: &[sock_filter], data: &[u8; 64]) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = &prog[pc];
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { i.jt } else { i.jf });
            match i.code {
                0x20 => {
                    let k = i.k as usize;
                    a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                0x54 => a &= i.k,
                0x05 => pc += i.k as usize,
                0x15 => pc += jump(a == i.k),
                0x25 => pc += jump(a > i.k),
                0x35 => pc += jump(a >= i.k),
                0x45 => pc += jump(a & i.k != 0),
                0x06 => return i.k,
                other => panic!("unexpected BPF instruction {other:#x}"),
            }
        }
    }

    /// The kernel's answer to a syscall under all of `programs` (installed in order): each runs,
    /// the last installed first, and the lowest action (as a signed number) wins.
    fn verdict(programs: &[BpfProgram], arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut ret = RET_ALLOW;
        for p in programs.iter().rev() {
            let cur = run(p, &data);
            if ((cur & 0xffff_0000) as i32) < ((ret & 0xffff_0000) as i32) {
                ret = cur;
            }
        }
        ret
    }

    fn eperm() -> u32 {
        RET_ERRNO | libc::EPERM as u32
    }

    /// High bits a caller can leave in a register the kernel reads as 32 bits.
    const HIGH: [u64; 3] = [0, 1 << 32, 0xffff_ffff_0000_0000];

    #[test]
    fn int_arguments_are_compared_as_32_bits() {
        let p = default_programs().unwrap();
        let x = |nr, a0: u64, a1: u64| verdict(&p, AUDIT_ARCH_X86_64, nr, [a0, a1, 0, 0, 0, 0]);
        for hi in HIGH {
            // socket: the refused families stay refused whatever the upper half holds; the
            // others stay allowed (the kernel sees the low 32 bits).
            for fam in [AF_VSOCK, AF_ALG] {
                assert_eq!(
                    x(libc::SYS_socket, hi | u64::from(fam), 1),
                    eperm(),
                    "{hi:#x}|{fam}"
                );
            }
            for fam in [
                libc::AF_UNIX,
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_NETLINK,
                39,
                41,
            ] {
                assert_eq!(
                    x(libc::SYS_socket, hi | fam as u64, 1),
                    RET_ALLOW,
                    "{hi:#x}|{fam}"
                );
            }
            // clone: no namespace flag gets through, with or without high bits; a fork does.
            for bit in 0..32 {
                let flag = 1u64 << bit;
                let want = if u64::from(CLONE_NS_FLAGS) & flag != 0 {
                    eperm()
                } else {
                    RET_ALLOW
                };
                let flags = hi | flag | libc::SIGCHLD as u64;
                assert_eq!(x(libc::SYS_clone, flags, 0), want, "clone {flags:#x}");
            }
            assert_eq!(x(libc::SYS_clone, hi | CLONE_NS_FLAGS as u64, 0), eperm());
            // personality: the safe values (and the query) only.
            for &v in SAFE_PERSONALITIES {
                assert_eq!(x(libc::SYS_personality, hi | u64::from(v), 0), RET_ALLOW);
            }
            for v in [
                libc::ADDR_NO_RANDOMIZE,
                libc::READ_IMPLIES_EXEC,
                libc::ADDR_COMPAT_LAYOUT,
                libc::MMAP_PAGE_ZERO,
                libc::ADDR_LIMIT_3GB,
                0x0041_0000,
                0xffff_fffe_u32 as i32,
            ] {
                assert_eq!(
                    x(libc::SYS_personality, hi | v as u64, 0),
                    eperm(),
                    "{v:#x}"
                );
            }
        }
    }

    #[test]
    fn clone3_says_enosys_and_foreign_abis_are_refused() {
        let p = default_programs().unwrap();
        assert_eq!(
            verdict(&p, AUDIT_ARCH_X86_64, SYS_CLONE3, [0; 6]),
            RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(
            verdict(&p, AUDIT_ARCH_X86_64, libc::SYS_getpid, [0; 6]),
            RET_ALLOW
        );
        // x32: the same arch, numbers with bit 30 set; none is allowed.
        for nr in [
            libc::SYS_getpid,
            libc::SYS_socket,
            libc::SYS_clone,
            519,
            546,
        ] {
            assert_eq!(
                verdict(&p, AUDIT_ARCH_X86_64, nr | 0x4000_0000, [0; 6]),
                eperm(),
                "x32 {nr}"
            );
        }
        // i386 through int 0x80: killed.
        assert_eq!(verdict(&p, AUDIT_ARCH_I386, 20, [0; 6]), RET_KILL_PROCESS);
    }

    /// Every syscall the profile refuses, whatever the arguments: the filter's own answer, also
    /// for the calls whose kernel code checks a capability first (where a container sees EPERM
    /// with or without the filter).
    #[test]
    fn every_blocked_syscall_gets_eperm_from_the_filter() {
        let p = default_programs().unwrap();
        for nr in BLOCKED {
            for hi in HIGH {
                for args in [[0; 6], [hi | 0xffff_ffff; 6], [hi | 1; 6]] {
                    assert_eq!(
                        verdict(&p, AUDIT_ARCH_X86_64, *nr, args),
                        eperm(),
                        "syscall {nr} {args:x?}"
                    );
                }
            }
        }
    }

    /// The calls the profile must refuse (Docker's list for a container without CAP_SYS_ADMIN
    /// and friends, plus io_uring).
    const BLOCKED: &[i64] = &[
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_open_by_handle_at,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_settimeofday,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_quotactl_fd,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_syslog,
        libc::SYS_iopl,
        libc::SYS_ioperm,
    ];

    #[test]
    fn profile_compiles_and_blocks_the_dangerous_calls() {
        let progs = default_programs().unwrap();
        assert_eq!(progs.len(), 2);
        for nr in BLOCKED {
            assert!(!ALLOW.contains(nr), "syscall {nr} must not be allowed");
        }
    }
}
