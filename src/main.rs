//! The `zeroku` binary: a thin dispatcher. Daemons (`up`, `master`,
//! `worker`) run a crate's `run`; everything else is the operator CLI, a
//! client of the master's API (`ZEROKU_URL`, `ZEROKU_TOKEN`, `-a APP`).
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod logwriter;
mod output;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the frontend allocates per request
/// (hyper's heads, header maps, handler messages), and glibc's malloc and
/// free were 7% of its CPU behind the proxy (bench/frontend.sh under perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    // Held until exit: dropping it flushes the daemons' log.
    let _log = init_tracing(args.command.is_daemon());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if matches!(args.command, cli::Command::Frontend { .. })
        && std::env::var_os("TOKIO_WORKER_THREADS").is_none()
    {
        // The edge shares its node with the handlers and upstreams it feeds:
        // half the cores. Measured with bench/frontend.sh on 2 cores, one
        // worker thread instead of two took the proxy from 0.61x to 0.84x
        // nginx's throughput (fewer cross-thread wake-ups).
        // TOKIO_WORKER_THREADS overrides.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores / 2 <= 1 {
            // One thread: tokio's current-thread scheduler, which skips the
            // multi-thread one's work-stealing queues and wake-up atomics.
            builder = tokio::runtime::Builder::new_current_thread();
        } else {
            builder.worker_threads(cores / 2);
        }
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(commands::dispatch(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `ZEROKU_LOG` is the filter (default `info` for daemons, `warn` for the
/// CLI); `ZEROKU_LOG_FORMAT=json` switches to JSON lines.
fn init_tracing(daemon: bool) -> Option<logwriter::Flush> {
    use tracing_subscriber::EnvFilter;
    let default = if daemon { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("ZEROKU_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    // Colour only on a terminal: escape codes in log files cost time (the
    // access log writes a line per request) and clutter the files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal());
    let json = std::env::var("ZEROKU_LOG_FORMAT").as_deref() == Ok("json");
    if !daemon {
        // The CLI may exit without unwinding: straight to stderr.
        let builder = builder.with_writer(std::io::stderr);
        if json {
            builder.json().init();
        } else {
            builder.init();
        }
        return None;
    }
    let (out, flush) = logwriter::Buffered::start();
    let builder = builder.with_writer(move || out.clone());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    Some(flush)
}
