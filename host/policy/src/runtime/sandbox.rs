//! What a plugin's store holds: its WASI context with nothing granted, its
//! memory cap, and its stdout and stderr.
//!
//! WASI is linked asynchronously (see the runtime's module doc), so every
//! host function a plugin reaches is a future; the ones a decision may use
//! — clocks, random, logging, writing to stdout and stderr, reading the
//! granted directory — complete without waiting. stdout and stderr are
//! captured in memory, bounded per call, and written to warden's log after
//! each call, tagged with the plugin, the stream, the hook and the service.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::warden::policy::host::{self, Level};

use super::{Budget, GRANT};

/// The longest log line a plugin can write; longer ones are cut.
pub const MAX_LOG_LINE: usize = 4096;

/// The most a plugin's stdout and stderr keep from one call, each; the rest
/// is counted and dropped, never refused, so a chatty plugin does not trap.
pub const OUTPUT_PER_CALL: usize = 16 * 1024;

/// The most lines of a plugin's stdout and stderr logged for one call,
/// each; a line saying how many more there were follows.
pub const OUTPUT_LINES_PER_CALL: usize = 16;

/// The most fields of one `host.log` line that are logged.
const MAX_LOG_FIELDS: usize = 16;

/// A store's host state.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// Whether a memory growth was refused by the cap.
    pub(crate) memory_cap_hit: bool,
    /// The memory the instance has grown to.
    pub(crate) memory_now: usize,
    /// The plugin's name, for its log lines.
    pub(crate) plugin: String,
    /// When the call running in the store must end: checked at each epoch
    /// tick that comes while it runs.
    pub(crate) until: Instant,
    stdout: Output,
    stderr: Output,
}

impl State {
    /// A fresh state for a plugin named `plugin`, with `budget`'s memory cap
    /// and `grant` (if any) readable at [`GRANT`].
    pub(crate) fn new(
        plugin: &str,
        budget: Budget,
        grant: Option<&std::path::Path>,
    ) -> io::Result<State> {
        let stdout = Output::default();
        let stderr = Output::default();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            // Reads of the granted directory run inline: a plugin reading
            // its blocklist must not be taken for one that waits.
            .allow_blocking_current_thread(true);
        if let Some(dir) = grant {
            wasi.preopened_dir(dir, GRANT, wasmtime_wasi::FsPerms::ReadOnly)
                .map_err(|error| {
                    io::Error::other(format!("cannot grant {}: {error}", dir.display()))
                })?;
        }
        Ok(State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(budget.memory)
                .instances(64)
                .tables(64)
                .memories(16)
                .build(),
            memory_cap_hit: false,
            memory_now: 0,
            plugin: plugin.to_owned(),
            until: Instant::now() + budget.deadline,
            stdout,
            stderr,
        })
    }

    /// Writes what the plugin printed during the call of `hook` for
    /// `service` to the log, at most [`OUTPUT_LINES_PER_CALL`] lines per
    /// stream, each cut at [`MAX_LOG_LINE`] bytes.
    pub(crate) fn flush_output(&self, hook: &str, service: &str) {
        for (stream, output) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (bytes, dropped) = output.take();
            if bytes.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            let mut lines = text.lines();
            for line in lines.by_ref().take(OUTPUT_LINES_PER_CALL) {
                tracing::info!(plugin = self.plugin, stream, hook, service, "{}", cut(line));
            }
            let more = lines.count();
            if more > 0 || dropped > 0 {
                tracing::info!(
                    plugin = self.plugin,
                    stream,
                    hook,
                    service,
                    "… {more} more lines and {dropped} more bytes of this call's {stream} not logged"
                );
            }
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_now = self
                .memory_now
                .saturating_add(desired.saturating_sub(current));
        } else {
            self.memory_cap_hit = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl host::Host for State {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let message = cut(&message);
        let fields: Vec<String> = fields
            .iter()
            .take(MAX_LOG_FIELDS)
            .map(|(key, value)| format!("{}={}", cut(key), cut(value)))
            .collect();
        let fields = fields.join(" ");
        let plugin = self.plugin.as_str();
        match level {
            Level::Debug => tracing::debug!(plugin, fields, "{message}"),
            Level::Info => tracing::info!(plugin, fields, "{message}"),
            Level::Warn => tracing::warn!(plugin, fields, "{message}"),
            Level::Error => tracing::error!(plugin, fields, "{message}"),
        }
    }
}

/// `text` cut to [`MAX_LOG_LINE`] bytes at a character boundary, with a
/// note when it was cut.
pub(crate) fn cut(text: &str) -> String {
    if text.len() <= MAX_LOG_LINE {
        return text.to_owned();
    }
    let mut end = MAX_LOG_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} bytes cut)",
        text.get(..end).unwrap_or_default(),
        text.len() - end
    )
}

/// One of a plugin's output streams, kept in memory: at most
/// [`OUTPUT_PER_CALL`] bytes, and a count of the bytes dropped beyond.
///
/// It is a WASI output stream that is always ready, so a plugin's
/// `println!` or `print()` completes at once, wherever the plugin runs.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Output {
    /// What was written since the last take, and how many bytes were
    /// dropped.
    fn take(&self) -> (Vec<u8>, usize) {
        let mut captured = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let dropped = std::mem::take(&mut captured.dropped);
        (std::mem::take(&mut captured.bytes), dropped)
    }

    fn append(&self, bytes: &[u8]) {
        let mut captured = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = OUTPUT_PER_CALL.saturating_sub(captured.bytes.len());
        let kept = room.min(bytes.len());
        captured
            .bytes
            .extend_from_slice(bytes.get(..kept).unwrap_or_default());
        captured.dropped = captured.dropped.saturating_add(bytes.len() - kept);
    }
}

impl IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Output {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Output {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // As much as a guest may write at once: it is always taken.
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Output {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        assert_eq!(cut("short"), "short");
        let long = "é".repeat(MAX_LOG_LINE);
        let cut = cut(&long);
        assert!(cut.len() < MAX_LOG_LINE + 40);
        assert!(cut.ends_with("bytes cut)"));
    }

    #[test]
    fn output_keeps_a_bounded_amount_and_counts_the_rest() {
        let output = Output::default();
        output.append(&vec![b'x'; OUTPUT_PER_CALL - 10]);
        output.append(&[b'y'; 30]);
        let (bytes, dropped) = output.take();
        assert_eq!(bytes.len(), OUTPUT_PER_CALL);
        assert_eq!(dropped, 20);
        assert_eq!(output.take(), (Vec::new(), 0));
    }
}
