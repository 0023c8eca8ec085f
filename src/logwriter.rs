//! Log output of the daemons: stderr through a buffer that a small thread
//! flushes every 50 ms (and on exit or panic), so a busy frontend's access
//! log costs a copy per request and a write system call per interval, not
//! one per line. A line waits at most that long to appear.

use std::io::{BufWriter, Stderr, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const EVERY: Duration = Duration::from_millis(50);

/// A handle on the buffer; cheap to clone (one per log line).
#[derive(Clone)]
pub struct Buffered(Arc<Mutex<BufWriter<Stderr>>>);

/// Flushes what is left when dropped.
pub struct Flush(Buffered);

impl Drop for Flush {
    fn drop(&mut self) {
        let _ = self.0.lock().flush();
    }
}

impl Buffered {
    /// The buffer, its flusher thread, and the guard that flushes at exit.
    pub fn start() -> (Buffered, Flush) {
        let b = Buffered(Arc::new(Mutex::new(BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ))));
        let flusher = b.clone();
        let _ = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || loop {
                std::thread::sleep(EVERY);
                let _ = flusher.lock().flush();
            });
        let on_panic = b.clone();
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = on_panic.lock().flush();
            default_hook(info);
        }));
        (b.clone(), Flush(b))
    }

    fn lock(&self) -> MutexGuard<'_, BufWriter<Stderr>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Write for Buffered {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.lock().write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // The flusher thread does it; a line is one write_all.
        Ok(())
    }
}
