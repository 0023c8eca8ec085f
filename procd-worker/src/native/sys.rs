//! The only `unsafe` of the native runtime: thin, safe wrappers around the
//! few libc calls std does not offer (euid, process-group kill, non-blocking
//! waitpid, the `pre_exec` hooks that start a new session and take a
//! controlling terminal, and pseudo-terminals).
//!
//! Must not hold any policy: callers decide *whom* to signal or reap.
#![allow(unsafe_code)]

use crate::runtime::Exit;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

/// Sends `sig` to process `pid` alone (refuses `pid <= 1`, as [`kill_group`]).
pub fn kill_pid(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "refusing to signal pid <= 1")
        })?;
    // SAFETY: kill only reads its two integer arguments; pid > 1 names one process.
    let rc = unsafe { libc::kill(pid, sig) };
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

/// A new pseudo-terminal of `cols` x `rows`: (master, slave), both
/// close-on-exec (the child gets the slave as its stdio, which `dup2`
/// clears the flag on).
pub fn openpty(cols: u16, rows: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the out-pointers are valid c_ints for the call; name and
    // termios are null (allowed), `size` is a valid winsize read only.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both are open descriptors we now own.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on a descriptor we own, with integer arguments.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok((master, slave))
}

/// Sets the window size of the terminal `fd` (the kernel sends SIGWINCH
/// to its foreground process group).
pub fn set_winsize(fd: &impl AsRawFd, cols: u16, rows: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer given.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Makes the child's stdin (a terminal) its controlling terminal. Must be
/// registered after [`new_session_on_spawn`] (a session leader may take
/// one).
pub fn controlling_tty_on_spawn(cmd: &mut Command) {
    // SAFETY: runs in the forked child before exec and calls only the
    // async-signal-safe ioctl system call on descriptor 0.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl with integer arguments on a descriptor the caller owns.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK)
        }
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Registers `file` (non-blocking) with tokio's reactor.
pub fn async_fd(file: std::fs::File) -> io::Result<tokio::io::unix::AsyncFd<std::fs::File>> {
    // SAFETY: the File owns its descriptor, which stays open and the same
    // until the File is dropped with the AsyncFd that owns it.
    unsafe { tokio::io::unix::AsyncFd::register(file).map_err(io::Error::from) }
}
