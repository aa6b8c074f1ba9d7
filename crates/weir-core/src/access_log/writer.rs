//! The access-log writer thread: it wakes on a short period (or early, when the queue passes
//! its mark), formats everything queued and writes it in a few large writes.
//!
//! Sleeping on a timer rather than in a blocking receive is what keeps the data path free of
//! system calls: a worker queuing a record never has a sleeping thread to wake.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;
use weir_config::LogFormat;

use super::format::LineFormatter;
use super::queue::Queue;

/// How long the writer sleeps between rounds when the queue stays below its mark. Lines reach
/// the file at most this late.
pub(super) const WAKE_EVERY: Duration = Duration::from_millis(20);

/// Formatted bytes gathered before a write.
const WRITE_AT: usize = 64 * 1024;

/// At most one warning of each kind per this period.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// Runs the writer until the queue is closed and emptied.
pub(super) fn run(queue: Arc<Queue>, out: Box<dyn Write + Send>, format: LogFormat) {
    let mut writer = Writer {
        out,
        buf: Vec::with_capacity(WRITE_AT + 1024),
        write_errors: Warning::default(),
    };
    let mut formatter = LineFormatter::new(format);
    let mut drop_warning = Warning::default();
    let mut drops_reported = 0;
    let mut batch = Vec::new();
    loop {
        let closed = queue.take(&mut batch);
        // Records are freed here too, on this thread rather than the data path's.
        for record in batch.drain(..) {
            formatter.write(&record, &mut writer.buf);
            if writer.buf.len() >= WRITE_AT {
                writer.write_out();
            }
        }
        writer.write_out();
        writer.flush();
        let dropped = queue.dropped();
        if dropped > drops_reported && (closed || drop_warning.due()) {
            warn!(
                dropped = dropped - drops_reported,
                total = dropped,
                "access log: the writer fell behind; records dropped"
            );
            drops_reported = dropped;
        }
        if closed {
            return;
        }
        std::thread::park_timeout(WAKE_EVERY);
    }
}

struct Writer {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
    write_errors: Warning,
}

impl Writer {
    fn write_out(&mut self) {
        if !self.buf.is_empty() {
            let written = self.out.write_all(&self.buf);
            self.buf.clear();
            self.check(written);
        }
    }

    fn flush(&mut self) {
        let flushed = self.out.flush();
        self.check(flushed);
    }

    fn check(&mut self, result: std::io::Result<()>) {
        if let Err(err) = result
            && self.write_errors.due()
        {
            warn!(%err, "access log: cannot write; lines lost");
        }
    }
}

/// Rate-limits one kind of warning.
#[derive(Default)]
struct Warning {
    last: Option<Instant>,
}

impl Warning {
    /// Whether a warning may be logged now (and if so, notes that it was).
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}
