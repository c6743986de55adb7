//! Logging set-up, request ids and redaction.
//!
//! Every request gets a span with a request id. The span records the method and the path but never the
//! query string (it may hold `?token=`, docs/src/upstream/authentik.md §2.7) nor any header, so no token, secret or signature
//! can reach a log line.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::configuration::LogFormat;

/// Installs the global subscriber. `DEBUG=True` turns on debug logs for the bridge itself; `RUST_LOG`, when
/// set, wins. HTTP libraries stay at `warn` unless `RUST_LOG` says otherwise, and so do the `quiet` log
/// targets (a command that prints the same words itself).
pub fn init_subscriber<W>(debug: bool, format: LogFormat, writer: W, quiet: &[&str])
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let default = if debug {
        "info,authentik_bridge=debug,actix_web=info"
    } else {
        "info,actix_server=warn,h2=warn,hyper=warn,reqwest=warn,rustls=warn"
    };
    let default = quiet
        .iter()
        .fold(default.to_string(), |d, target| format!("{d},{target}=off"));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour codes only on a terminal: journald, files and log shippers get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The root span of every request: method, path (without the query string), request id and status.
pub struct RedactedRootSpan;

impl RootSpanBuilder for RedactedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().copied();
        let request_id = request_id.map(|r| r.to_string()).unwrap_or_default();
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.path(),
            request_id = %request_id,
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(resp) => resp.response().status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        span.record("status", status);
    }
}

/// The progress bar `reconcile` draws on a terminal, if any. Log lines go to stderr around it
/// ([`StderrAroundProgress`]), so neither garbles the other.
static ACTIVE_BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Sets or clears the bar log lines must be written around.
pub fn set_active_bar(bar: Option<indicatif::ProgressBar>) {
    *ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// A log writer for stderr that hides the active progress bar while a line is written.
#[derive(Clone, Copy, Default)]
pub struct StderrAroundProgress;

/// One log line, written out when the subscriber drops it.
pub struct BufferedLine(Vec<u8>);

impl std::io::Write for BufferedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for BufferedLine {
    fn drop(&mut self) {
        use std::io::Write as _;
        let line = std::mem::take(&mut self.0);
        let write = || {
            let _ = std::io::stderr().write_all(&line);
        };
        let bar = ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

impl<'a> MakeWriter<'a> for StderrAroundProgress {
    type Writer = BufferedLine;
    fn make_writer(&'a self) -> Self::Writer {
        BufferedLine(Vec::new())
    }
}
