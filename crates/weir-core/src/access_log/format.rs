//! Records to lines: JSON (one object per line) or `key=value` text. Runs on the writer
//! thread, reusing its buffers from record to record.

use std::io::Write as _;

use weir_config::LogFormat;

use crate::end::Record;

/// Formats records as lines.
pub(super) struct LineFormatter {
    format: LogFormat,
}

impl LineFormatter {
    /// A formatter for `format`.
    pub(super) fn new(format: LogFormat) -> Self {
        LineFormatter { format }
    }

    /// Appends `record` to `out` as one line with its newline. A record that cannot be
    /// formatted (none today) appends nothing.
    pub(super) fn write(&mut self, record: &Record, out: &mut Vec<u8>) {
        let start = out.len();
        let written = match self.format {
            LogFormat::Json => serde_json::to_writer(&mut *out, record).is_ok(),
            LogFormat::Text => write_text(record, out).is_ok(),
        };
        if written {
            out.push(b'\n');
        } else {
            out.truncate(start);
        }
    }
}

/// The text format: the record's fields as `key=value`, keys in alphabetical order (the order
/// of `serde_json`'s map), strings bare, absent values as `-`. It goes through
/// `serde_json::Value`, which costs an allocation per field — on the writer thread, off the
/// data path.
fn write_text(record: &Record, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let serde_json::Value::Object(map) = serde_json::to_value(record)? else {
        return Ok(());
    };
    for (i, (key, value)) in map.iter().enumerate() {
        let sep = if i == 0 { "" } else { " " };
        let _ = match value {
            serde_json::Value::String(s) => write!(out, "{sep}{key}={s}"),
            serde_json::Value::Null => write!(out, "{sep}{key}=-"),
            other => write!(out, "{sep}{key}={other}"),
        };
    }
    Ok(())
}

/// Formats one record as a line (with its newline).
pub fn format_record(record: &Record, format: LogFormat) -> Vec<u8> {
    let mut line = Vec::new();
    LineFormatter::new(format).write(record, &mut line);
    line
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::access_log::fixtures::{conn_record, http_record, http_record_answered};

    fn line(record: Record, format: LogFormat) -> String {
        String::from_utf8(format_record(&record, format)).unwrap()
    }

    #[test]
    fn json_lines_are_unchanged() {
        assert_eq!(
            line(Record::Tcp(conn_record()), LogFormat::Json),
            r#"{"time":"2026-11-21T06:24:01.005Z","listener":"edge","protocol":"tcp","client":"127.0.0.1:50123","group":"app","server":"s1","server_addr":"10.0.0.2:8080","retries":1,"connect_time":0.00125,"duration":2.500001,"bytes_in":512,"bytes_out":70000,"end_by":"client","end_how":"fin","end_phase":"tunnel","end_reason":null}"#
                .to_owned()
                + "\n"
        );
        assert_eq!(
            line(Record::Http(http_record()), LogFormat::Json),
            r#"{"time":"2000-02-29T12:34:56.789Z","listener":"web","protocol":"https","client":"[::1]:40000","http_version":"HTTP/1.1","tls_version":"TLSv1.3","method":"GET","host":"a.test","path":"/v1/items","status":504,"upstream_status":"-","group":"api","server":"s0","server_addr":"127.0.0.1:9000","retries":0,"request_time":60.0,"upstream_connect_time":0.0,"upstream_header_time":null,"upstream_response_time":null,"bytes_in":3,"bytes_out":0,"end_by":"weir","end_how":"timeout","end_phase":"response","end_reason":"request_timeout"}"#
                .to_owned()
                + "\n"
        );
        assert_eq!(
            line(Record::Http(http_record_answered()), LogFormat::Json),
            r#"{"time":"2000-02-29T12:34:56.789Z","listener":"web","protocol":"https","client":"[::1]:40000","http_version":"HTTP/1.1","tls_version":"TLSv1.3","method":"GET","host":"a.test","path":"/v1/items","status":200,"upstream_status":200,"group":"api","server":"s0","server_addr":"127.0.0.1:9000","retries":0,"request_time":60.0,"upstream_connect_time":0.0,"upstream_header_time":null,"upstream_response_time":1e-6,"bytes_in":3,"bytes_out":0,"end_by":"weir","end_how":"timeout","end_phase":"response","end_reason":null}"#
                .to_owned()
                + "\n"
        );
    }

    #[test]
    fn text_lines_are_unchanged() {
        assert_eq!(
            line(Record::Tcp(conn_record()), LogFormat::Text),
            "bytes_in=512 bytes_out=70000 client=127.0.0.1:50123 connect_time=0.00125 \
             duration=2.500001 end_by=client end_how=fin end_phase=tunnel end_reason=- \
             group=app listener=edge protocol=tcp retries=1 server=s1 \
             server_addr=10.0.0.2:8080 time=2026-11-21T06:24:01.005Z\n"
        );
        assert_eq!(
            line(Record::Http(http_record()), LogFormat::Text),
            "bytes_in=3 bytes_out=0 client=[::1]:40000 end_by=weir end_how=timeout \
             end_phase=response end_reason=request_timeout group=api host=a.test \
             http_version=HTTP/1.1 listener=web method=GET path=/v1/items protocol=https \
             request_time=60.0 retries=0 server=s0 server_addr=127.0.0.1:9000 status=504 \
             time=2000-02-29T12:34:56.789Z tls_version=TLSv1.3 upstream_connect_time=0.0 \
             upstream_header_time=- upstream_response_time=- upstream_status=-\n"
        );
        assert_eq!(
            line(Record::Http(http_record_answered()), LogFormat::Text),
            "bytes_in=3 bytes_out=0 client=[::1]:40000 end_by=weir end_how=timeout \
             end_phase=response end_reason=- group=api host=a.test http_version=HTTP/1.1 \
             listener=web method=GET path=/v1/items protocol=https request_time=60.0 \
             retries=0 server=s0 server_addr=127.0.0.1:9000 status=200 \
             time=2000-02-29T12:34:56.789Z tls_version=TLSv1.3 upstream_connect_time=0.0 \
             upstream_header_time=- upstream_response_time=1e-6 upstream_status=200\n"
        );
    }

    #[test]
    fn one_formatter_writes_many_lines() {
        let mut formatter = LineFormatter::new(LogFormat::Text);
        let mut out = Vec::new();
        formatter.write(&Record::Http(http_record()), &mut out);
        formatter.write(&Record::Tcp(conn_record()), &mut out);
        let expected = line(Record::Http(http_record()), LogFormat::Text)
            + &line(Record::Tcp(conn_record()), LogFormat::Text);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
