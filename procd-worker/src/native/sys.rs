//! The only `unsafe` of the native runtime: thin, safe wrappers around the
//! few libc calls std does not offer (euid, process-group kill, non-blocking
//! waitpid, and the `pre_exec` hook that starts a new session).
//!
//! Must not hold any policy: callers decide *whom* to signal or reap.
#![allow(unsafe_code)]

use crate::runtime::Exit;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The effective uid of the worker.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions, cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Sends `sig` to the process group `pgid` (`kill(-pgid, sig)`).
///
/// Refuses `pgid <= 1`: `kill(-1, ..)` would signal every process we may
/// signal, and `kill(0, ..)` our own group.
pub fn kill_group(pgid: u32, sig: libc::c_int) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "refusing to signal pid <= 1")
        })?;
    // SAFETY: kill only reads its two integer arguments; pgid > 1 so the
    // negation names exactly one process group.
    let rc = unsafe { libc::kill(-pgid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reaps `pid` if it is an exited child of this process, without blocking.
///
/// `Ok(None)`: still running. `Err` with `ECHILD`: not our child.
pub fn waitpid_nohang(pid: u32) -> io::Result<Option<Exit>> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid pid"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid, writable c_int for the duration of the
    // call; WNOHANG makes the call non-blocking; pid > 0 names one child.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc == 0 {
        return Ok(None);
    }
    if libc::WIFEXITED(status) {
        Ok(Some(Exit::Code(libc::WEXITSTATUS(status))))
    } else if libc::WIFSIGNALED(status) {
        Ok(Some(Exit::Signal(libc::WTERMSIG(status))))
    } else {
        Ok(Some(Exit::Unknown))
    }
}

/// Makes the child of `cmd` the leader of a new session (and so of a new
/// process group whose id is its pid), and marks every inherited descriptor
/// above stderr close-on-exec so no worker socket leaks into the app.
pub fn new_session_on_spawn(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe functions may be called. It calls only the raw
    // `setsid` and `close_range` system calls (no allocation, no locks), and
    // touches no memory of the parent. CLOSE_RANGE_CLOEXEC (not closing)
    // keeps std's own exec-status pipe working; if the kernel lacks
    // close_range the error is ignored (std opens its files CLOEXEC anyway).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            let first: libc::c_uint = 3;
            let _ = libc::syscall(
                libc::SYS_close_range,
                first,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
}
