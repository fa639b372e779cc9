//! The master's log: structured lines on stderr, or in a file that SIGUSR1
//! reopens (so `logrotate` can move it away), or, under systemd, records
//! in the journal with their fields.
//!
//! Every line carries its fields (`service`, `pid`…) after the message, as
//! `tracing`'s formatter writes them. `RUST_LOG`-style filters come from
//! `WARDEN_LOG`; the default is `info`. A panic is logged too
//! ([`log_panics`]), so that a daemonized master's end is in its log.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The log file, when logging to one.
static LOG_FILE: OnceLock<Arc<LogFile>> = OnceLock::new();

/// A log file that can be reopened at its path.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }
}

/// A writer for one log line, into the current file.
struct FileWriter(Arc<LogFile>);

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut file = self
            .0
            .file
            .lock()
            .map_err(|_| io::Error::other("the log file lock was poisoned"))?;
        file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct FileMaker(Arc<LogFile>);

impl<'a> MakeWriter<'a> for FileMaker {
    type Writer = FileWriter;

    fn make_writer(&'a self) -> FileWriter {
        FileWriter(Arc::clone(&self.0))
    }
}

/// What `WARDEN_LOG` adds unless it names them itself: the plugin
/// runtime's internals stay at warn, so `WARDEN_LOG=debug` shows warden's
/// own debug lines rather than the compiler's.
const QUIET_INTERNALS: [&str; 4] = ["wasmtime", "cranelift", "wasmtime_wasi", "wit_parser"];

/// The filter `WARDEN_LOG` (default `info`) asks for.
fn filter() -> EnvFilter {
    let asked = std::env::var("WARDEN_LOG").unwrap_or_else(|_| "info".to_owned());
    let mut directives = asked.clone();
    for target in QUIET_INTERNALS {
        if !asked.contains(target) {
            directives.push_str(&format!(",{target}=warn"));
        }
    }
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The message, then its fields as `key=value`.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `message` and each
    /// field by its name, for a log shipper.
    Json,
}

/// Sends the log to `file`, or to stderr when `None`, in `format`. Call
/// once. Colours only on a terminal: a file, a pipe or the journal gets
/// plain text.
pub fn init(file: Option<&Path>, format: Format) -> io::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_target(false);
    if format == Format::Json {
        let json = builder.json().flatten_event(true).with_current_span(false);
        match file {
            Some(path) => json.with_writer(FileMaker(open_log(path)?)).init(),
            None => json.with_writer(io::stderr).init(),
        }
        return Ok(());
    }
    if file.is_none() && stderr_is_journal() && Path::new(JOURNAL_SOCKET).exists() {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        tracing_subscriber::registry()
            .with(filter())
            .with(JournalLayer {
                socket: PathBuf::from(JOURNAL_SOCKET),
            })
            .init();
        return Ok(());
    }
    match file {
        Some(path) => builder
            .with_ansi(false)
            .with_writer(FileMaker(open_log(path)?))
            .init(),
        None if stderr_is_journal() => builder
            .with_ansi(false)
            .without_time()
            .event_format(Prioritised(
                tracing_subscriber::fmt::format()
                    .with_target(false)
                    .without_time(),
            ))
            .with_writer(io::stderr)
            .init(),
        None => builder
            .with_ansi(io::stderr().is_terminal())
            .with_writer(io::stderr)
            .init(),
    }
    Ok(())
}

/// Opens the log file at `path`, kept for SIGUSR1 to reopen.
fn open_log(path: &Path) -> io::Result<Arc<LogFile>> {
    let log = Arc::new(LogFile {
        path: path.to_path_buf(),
        file: Mutex::new(LogFile::open(path)?),
    });
    let _ = LOG_FILE.set(Arc::clone(&log));
    Ok(log)
}

/// Whether stderr is the journal's stream: `JOURNAL_STREAM` names its
/// device and inode, as systemd sets it for a service.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(io::stderr()) else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", stat.st_dev, stat.st_ino)
}

/// Each line starts with its syslog priority (`<3>` for an error …
/// `<7>` for debug), which the journal reads off a stream as the line's
/// priority, so `journalctl -u warden -p err` finds warden's errors; the
/// journal adds the time itself.
struct Prioritised<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritised<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(context, writer, event)
    }
}

/// Where journald takes records in its native protocol.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The priority syslog and the journal give a line at `level`.
fn priority(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        tracing::Level::DEBUG | tracing::Level::TRACE => 7,
    }
}

/// Sends each event to the journal as a record of its native protocol:
/// its `PRIORITY`, `SYSLOG_IDENTIFIER=warden`, each of its fields by its
/// name in capitals (so `journalctl -u warden SERVICE=imap-login -p err`
/// finds a service's errors, and `PID=` a process's lines), and the
/// `MESSAGE`: the message and its fields, as the text log writes them.
/// Should the journal refuse a record (too large, or gone), its message
/// goes to stderr instead, with its priority, so no line is lost.
struct JournalLayer {
    socket: PathBuf,
}

/// The message and fields of an event.
#[derive(Default)]
struct JournalFields {
    message: String,
    /// Each field but the message: its journal name and its value.
    fields: Vec<(String, String)>,
    /// The fields as the text log shows them: ` name=value`, a string
    /// quoted.
    shown: String,
}

impl tracing::field::Visit for JournalFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.add(field, value.to_owned(), &format!("{value:?}"));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let value = format!("{value:?}");
        let shown = value.clone();
        self.add(field, value, &shown);
    }
}

impl JournalFields {
    fn add(&mut self, field: &tracing::field::Field, value: String, shown: &str) {
        if field.name() == "message" {
            self.message = value;
            return;
        }
        self.shown.push_str(&format!(" {}={shown}", field.name()));
        // Journal field names are capitals, digits and `_`, not starting
        // with `_` (the journal's own).
        let name: String = field
            .name()
            .trim_start_matches('_')
            .chars()
            .map(|c| match c {
                'a'..='z' => c.to_ascii_uppercase(),
                'A'..='Z' | '0'..='9' => c,
                _ => '_',
            })
            .collect();
        if !name.is_empty() {
            self.fields.push((name, value));
        }
    }

    /// The message, then each field as `name=value`, as the text log
    /// writes them.
    fn line(&self) -> String {
        format!("{}{}", self.message, self.shown)
    }
}

/// Appends `name=value` to a journal record, in the binary form when the
/// value holds a newline.
fn journal_field(record: &mut Vec<u8>, name: &str, value: &str) {
    record.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        record.push(b'\n');
        record.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        record.push(b'=');
    }
    record.extend_from_slice(value.as_bytes());
    record.push(b'\n');
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = JournalFields::default();
        event.record(&mut fields);
        let priority = priority(*event.metadata().level());
        let line = fields.line();
        let mut record = Vec::with_capacity(line.len() + 128);
        journal_field(&mut record, "PRIORITY", &priority.to_string());
        journal_field(&mut record, "SYSLOG_IDENTIFIER", "warden");
        for (name, value) in &fields.fields {
            journal_field(&mut record, name, value);
        }
        journal_field(&mut record, "MESSAGE", &line);
        let sent = std::os::unix::net::UnixDatagram::unbound()
            .and_then(|socket| socket.send_to(&record, &self.socket));
        if sent.is_err() {
            let _ = writeln!(io::stderr(), "<{priority}>{line}");
        }
    }
}

/// Reopens the log file at its path (SIGUSR1); nothing when logging to stderr.
pub fn reopen() -> io::Result<()> {
    let Some(log) = LOG_FILE.get() else {
        return Ok(());
    };
    let fresh = LogFile::open(&log.path)?;
    let mut file = log
        .file
        .lock()
        .map_err(|_| io::Error::other("the log file lock was poisoned"))?;
    *file = fresh;
    Ok(())
}

/// Makes every panic from now on a line of the log, with its message and
/// where it happened (and a backtrace when `RUST_BACKTRACE` asks for one),
/// before the process goes on to unwind or exit. When the log is a file,
/// the standard report still goes to stderr as well, for a terminal.
pub fn log_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload_as_str()
            .unwrap_or("(the panic carries no message)");
        let location = info
            .location()
            .map_or_else(|| "an unknown place".to_owned(), ToString::to_string);
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let backtrace = std::backtrace::Backtrace::capture();
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => tracing::error!(
                "thread '{thread}' panicked at {location}: {message}; this is a bug in warden\n{backtrace}"
            ),
            _ => tracing::error!(
                "thread '{thread}' panicked at {location}: {message}; this is a bug in warden (RUST_BACKTRACE=1 logs a backtrace)"
            ),
        }
        if LOG_FILE.get().is_some() {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// The fields of a journal record, the binary ones decoded.
    fn fields_of(mut record: &[u8]) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        while let Some(end) = record.iter().position(|&b| b == b'\n' || b == b'=') {
            let (name, rest) = record.split_at(end);
            let name = String::from_utf8_lossy(name).into_owned();
            let (value, rest) = if rest[0] == b'=' {
                let line_end = rest.iter().position(|&b| b == b'\n').expect("a line end");
                (&rest[1..line_end], &rest[line_end + 1..])
            } else {
                let length = u64::from_le_bytes(rest[1..9].try_into().expect("a length"));
                let length = usize::try_from(length).expect("a length that fits");
                (&rest[9..9 + length], &rest[9 + length + 1..])
            };
            fields.push((name, String::from_utf8_lossy(value).into_owned()));
            record = rest;
        }
        fields
    }

    #[test]
    fn a_journal_record_carries_priority_fields_and_the_text_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let journal = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        let subscriber = tracing_subscriber::registry().with(JournalLayer {
            socket: path.clone(),
        });
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(
                service = "imap-login",
                pid = 4242,
                "process exited\nwith status 1"
            );
        });
        let mut buffer = vec![0_u8; 65536];
        let read = journal.recv(&mut buffer).expect("a record");
        let fields = fields_of(&buffer[..read]);
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(field("PRIORITY"), Some("3"), "{fields:?}");
        assert_eq!(field("SYSLOG_IDENTIFIER"), Some("warden"));
        assert_eq!(field("SERVICE"), Some("imap-login"));
        assert_eq!(field("PID"), Some("4242"));
        assert_eq!(
            field("MESSAGE"),
            Some("process exited\nwith status 1 service=\"imap-login\" pid=4242")
        );

        // A journal that is gone: the line goes to stderr, and nothing
        // panics.
        drop(journal);
        let subscriber = tracing_subscriber::registry().with(JournalLayer { socket: path });
        tracing::subscriber::with_default(subscriber, || tracing::warn!("still logged"));
    }
}
