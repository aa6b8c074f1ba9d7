//! The access log: one line per connection, JSON or `key=value` text, to stdout, stderr or a
//! file.
//!
//! Records are formatted on the connection's task and handed to one writer thread over a
//! channel, so a slow disk never stalls the data path. When the log is off nothing is
//! formatted at all.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use weir_config::{AccessLogTarget, LogFormat};

use crate::end::Record;

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
    format: LogFormat,
    tx: Option<mpsc::Sender<Vec<u8>>>,
    writer: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Opens the configured target. A file is opened (append, create) before this returns,
    /// so a bad path is reported at start, not on the first connection.
    pub fn open(target: &AccessLogTarget, format: LogFormat) -> io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => {
                return Ok(AccessLog {
                    format,
                    tx: None,
                    writer: None,
                });
            }
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::Stderr => Box::new(io::stderr()),
            AccessLogTarget::File(path) => Box::new(open_append(path)?),
        };
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let writer = std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(AccessLog {
            format,
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    /// Stops the writer after it has written every queued record.
    pub fn close(mut self) {
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl RecordSink for AccessLog {
    fn wants_records(&self) -> bool {
        self.tx.is_some()
    }

    fn record(&self, record: Record) {
        let Some(tx) = &self.tx else { return };
        let line = format_record(&record, self.format);
        let _ = tx.send(line);
    }
}

/// Formats one record as a line (with its newline).
pub fn format_record(record: &Record, format: LogFormat) -> Vec<u8> {
    let mut line = match format {
        LogFormat::Json => serde_json::to_vec(record).unwrap_or_default(),
        LogFormat::Text => text_line(record).into_bytes(),
    };
    line.push(b'\n');
    line
}

fn text_line(record: &Record) -> String {
    let value = serde_json::to_value(record).unwrap_or_default();
    let mut out = String::new();
    if let serde_json::Value::Object(map) = value {
        for (key, value) in map {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&key);
            out.push('=');
            match value {
                serde_json::Value::String(s) => out.push_str(&s),
                serde_json::Value::Null => out.push('-'),
                other => out.push_str(&other.to_string()),
            }
        }
    }
    out
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| io::Error::new(err.kind(), format!("access log {}: {err}", path.display())))
}

/// The writer thread: batches whatever is queued, flushes when the queue runs dry.
fn write_lines(rx: mpsc::Receiver<Vec<u8>>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(&line);
        while let Ok(line) = rx.try_recv() {
            let _ = out.write_all(&line);
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// A sink that forwards records to an in-process channel (tests, `weir demo`).
pub struct ChannelSink(pub tokio::sync::mpsc::UnboundedSender<Record>);

impl RecordSink for ChannelSink {
    fn record(&self, record: Record) {
        let _ = self.0.send(record);
    }
}
