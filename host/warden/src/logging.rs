//! The master's log: structured lines on stderr, or in a file that SIGUSR1
//! reopens (so `logrotate` can move it away).
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
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            tracing::Level::DEBUG | tracing::Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(context, writer, event)
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
