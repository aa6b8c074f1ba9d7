//! The access log: one line per connection or request, JSON or `key=value` text, to stdout,
//! stderr or a file.
//!
//! The data path only moves each finished [`Record`] into a bounded queue; one writer thread
//! wakes every few milliseconds, formats whatever is queued and writes it in large writes.
//! Queuing costs a short lock and a move: no formatting, no allocation, no system call. A
//! writer that falls behind (a stuck disk, a full pipe) lets the queue fill up; records beyond
//! it are dropped and counted, and the writer warns about them. When the log is off nothing is
//! queued, and the data path skips what it only builds for the log.

mod format;
mod queue;
mod writer;

#[cfg(test)]
pub(crate) mod fixtures;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use weir_config::{AccessLogTarget, LogFormat};

pub use format::format_record;
use queue::{Pushed, Queue};

use crate::end::Record;

/// Records the queue holds before it drops any: about half a second of a busy listener's
/// records (each one a few hundred bytes), enough to ride out a slow write.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// Something that receives end records. The data path calls [`RecordSink::record`] once per
/// connection or request, on its task: implementations must not block.
pub trait RecordSink: Send + Sync + 'static {
    /// Takes one finished record.
    fn record(&self, record: Record);

    /// Whether records are wanted at all; when not, the data path skips building the parts
    /// of a record that cost allocations (paths, hosts).
    fn wants_records(&self) -> bool {
        true
    }
}

/// Where records go: nowhere, or a background writer.
pub struct AccessLog {
    active: Option<Active>,
}

/// A running writer and the queue it empties.
struct Active {
    queue: Arc<Queue>,
    writer: JoinHandle<()>,
}

impl AccessLog {
    /// Opens the configured target. A file is opened (append, create) before this returns,
    /// so a bad path is reported at start, not on the first connection.
    pub fn open(target: &AccessLogTarget, format: LogFormat) -> io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => return Ok(AccessLog { active: None }),
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::Stderr => Box::new(io::stderr()),
            AccessLogTarget::File(path) => Box::new(open_append(path)?),
        };
        AccessLog::spawn(out, format, QUEUE_CAPACITY)
    }

    /// Starts a writer to `out` behind a queue of `capacity` records.
    fn spawn(
        out: Box<dyn Write + Send>,
        format: LogFormat,
        capacity: usize,
    ) -> io::Result<AccessLog> {
        // Wake the writer early well before the queue is full, so a burst is written rather
        // than dropped; below the mark it comes on its own within `writer::WAKE_EVERY`.
        let queue = Arc::new(Queue::new(capacity, capacity / 4));
        let writer = std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn({
                let queue = queue.clone();
                move || writer::run(queue, out, format)
            })?;
        Ok(AccessLog {
            active: Some(Active { queue, writer }),
        })
    }

    /// Records dropped so far because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.active
            .as_ref()
            .map_or(0, |active| active.queue.dropped())
    }

    /// Stops the writer after it has written every queued record.
    pub fn close(mut self) {
        if let Some(active) = self.active.take() {
            active.stop();
            let _ = active.writer.join();
        }
    }
}

impl Active {
    /// Closes the queue and wakes the writer for its last round.
    fn stop(&self) {
        self.queue.close();
        self.writer.thread().unpark();
    }
}

impl Drop for AccessLog {
    /// Dropped without [`AccessLog::close`]: the writer still writes what is queued, but
    /// nothing waits for it.
    fn drop(&mut self) {
        if let Some(active) = &self.active {
            active.stop();
        }
    }
}

impl RecordSink for AccessLog {
    fn wants_records(&self) -> bool {
        self.active.is_some()
    }

    fn record(&self, record: Record) {
        let Some(active) = &self.active else { return };
        if active.queue.push(record) == Pushed::QueuedWake {
            active.writer.thread().unpark();
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| io::Error::new(err.kind(), format!("access log {}: {err}", path.display())))
}

/// A sink that forwards records to an in-process channel (tests, `weir demo`).
pub struct ChannelSink(pub tokio::sync::mpsc::UnboundedSender<Record>);

impl RecordSink for ChannelSink {
    fn record(&self, record: Record) {
        let _ = self.0.send(record);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Mutex, mpsc};

    use super::*;
    use crate::access_log::fixtures::{conn_record, http_record};

    /// A `Write` the test controls: it keeps what it is given, and can hold the writer
    /// inside its first write until released.
    struct Capture {
        bytes: Arc<Mutex<Vec<u8>>>,
        hold_first: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    }

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some((entered, release)) = self.hold_first.take() {
                let _ = entered.send(());
                let _ = release.recv();
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn text(bytes: &Mutex<Vec<u8>>) -> String {
        String::from_utf8(bytes.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn close_writes_every_queued_record() {
        const RECORDS: usize = 10_000;
        const { assert!(QUEUE_CAPACITY >= RECORDS, "so none can be dropped") };
        let path = std::env::temp_dir().join(format!("weir-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = AccessLog::open(&AccessLogTarget::File(path.clone()), LogFormat::Json).unwrap();
        for i in 0..RECORDS {
            let mut record = conn_record();
            record.bytes_in = i as u64;
            log.record(Record::Tcp(record));
        }
        log.close();

        let written = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), RECORDS);
        for (i, line) in lines.iter().enumerate() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["bytes_in"], i as u64, "lines in the order recorded");
        }
    }

    #[test]
    fn a_stuck_writer_costs_records_not_memory() {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let out = Capture {
            bytes: bytes.clone(),
            hold_first: Some((entered_tx, release_rx)),
        };
        let log = AccessLog::spawn(Box::new(out), LogFormat::Json, 8).unwrap();

        log.record(Record::Tcp(conn_record()));
        entered.recv().unwrap(); // the writer is stuck writing that first record
        for _ in 0..8 + 5 {
            log.record(Record::Tcp(conn_record()));
        }
        assert_eq!(log.dropped(), 5, "the queue holds 8; the rest are dropped");

        release.send(()).unwrap();
        log.close();
        assert_eq!(text(&bytes).lines().count(), 1 + 8);
    }

    #[test]
    fn the_writer_writes_the_configured_format() {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let out = Capture {
            bytes: bytes.clone(),
            hold_first: None,
        };
        let log = AccessLog::spawn(Box::new(out), LogFormat::Text, 8).unwrap();
        log.record(Record::Http(http_record()));
        log.record(Record::Tcp(conn_record()));
        log.close();
        let expected = [
            format_record(&Record::Http(http_record()), LogFormat::Text),
            format_record(&Record::Tcp(conn_record()), LogFormat::Text),
        ]
        .concat();
        assert_eq!(text(&bytes), String::from_utf8(expected).unwrap());
    }

    #[test]
    fn an_off_log_wants_nothing_and_takes_nothing() {
        let log = AccessLog::open(&AccessLogTarget::Off, LogFormat::Json).unwrap();
        assert!(!log.wants_records());
        log.record(Record::Tcp(conn_record()));
        assert_eq!(log.dropped(), 0);
        log.close();
    }
}
