//! `warden top`: a live view of the running master over its control
//! socket. Once a refresh it asks the master for every service's state,
//! the selected service's processes and the loaded plugins, works out
//! the rates from the counters, and draws them: full-screen on a
//! terminal, where the keys select and sort; as plain text, one frame a
//! refresh, anywhere else.

pub mod model;
pub mod view;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::control::{self, ClientError, Request, Response};
use model::Model;

/// How `warden top` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The master's control socket.
    pub socket: PathBuf,
    /// How often to refresh.
    pub interval: Duration,
    /// Stop after this many frames; `None` runs until `q` or Ctrl-C.
    pub frames: Option<u64>,
}

/// Why `warden top` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The master did not answer the first request.
    #[error(transparent)]
    Unreachable(#[from] ClientError),
    /// The master answered something else than was asked.
    #[error("the master answered {0} to a status request")]
    Unexpected(String),
    /// The terminal could not be set up or drawn on.
    #[error("cannot draw on the terminal: {0}")]
    Terminal(#[source] std::io::Error),
}

/// Asks the master for everything one frame shows, into `model`. A
/// failure is kept in the model (the view says so and the next refresh
/// tries again) and returned.
fn refresh(options: &Options, model: &mut Model) -> Result<(), TopError> {
    let at = Instant::now();
    let fetched = match control::request(&options.socket, &Request::Status) {
        Ok(Response::Status { services }) => {
            model.services(services, at);
            details(options, model)
        }
        Ok(other) => Err(TopError::Unexpected(format!("{other:?}"))),
        Err(error) => Err(error.into()),
    };
    model.problem = fetched.as_ref().err().map(|error| match error {
        TopError::Unreachable(error) => crate::error_chain(error),
        other => other.to_string(),
    });
    fetched
}

/// Asks the master for the selected service's processes and the
/// plugins, into `model`.
fn details(options: &Options, model: &mut Model) -> Result<(), TopError> {
    if let Some(service) = model.selected().map(str::to_owned) {
        let ps = Request::Ps {
            service: Some(service),
        };
        if let Response::Ps { processes } = control::request(&options.socket, &ps)? {
            model.processes = processes;
        }
    }
    if let Response::Plugins { plugins } = control::request(&options.socket, &Request::Plugins)? {
        model.plugins(plugins);
    }
    Ok(())
}

/// Runs `warden top` until `q`, Ctrl-C or `options.frames` frames: the
/// full-screen view when standard output is a terminal, plain text
/// otherwise. Fails only when the master cannot be reached at the start
/// or the terminal cannot be used; later failures are shown and retried.
pub fn run(options: &Options) -> Result<(), TopError> {
    let mut model = Model::default();
    refresh(options, &mut model)?;
    if std::io::stdout().is_terminal() {
        full_screen(options, &mut model)
    } else {
        plain(options, &mut model);
        Ok(())
    }
}

/// Prints a frame as text each refresh, separated by a blank line.
fn plain(options: &Options, model: &mut Model) {
    let mut shown = 0;
    loop {
        print!("{}", view::text(model));
        shown += 1;
        if options.frames.is_some_and(|frames| shown >= frames) {
            return;
        }
        println!();
        std::thread::sleep(options.interval);
        let _ = refresh(options, model);
    }
}

/// What a key asks for.
enum Key {
    Quit,
    Redraw,
    Ignore,
}

/// Applies a key press to `model`.
fn pressed(model: &mut Model, code: KeyCode, modifiers: KeyModifiers) -> Key {
    match code {
        KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
        KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
        KeyCode::Up | KeyCode::Char('k') => {
            model.move_selection(-1);
            Key::Redraw
        }
        KeyCode::Down | KeyCode::Char('j') => {
            model.move_selection(1);
            Key::Redraw
        }
        KeyCode::Char('s') => {
            model.sort = model.sort.next();
            Key::Redraw
        }
        _ => Key::Ignore,
    }
}

/// The full-screen view: raw mode on the alternate screen, restored
/// however the loop ends.
fn full_screen(options: &Options, model: &mut Model) -> Result<(), TopError> {
    let mut terminal = ratatui::try_init().map_err(TopError::Terminal)?;
    let shown = screen_loop(options, model, &mut terminal);
    ratatui::restore();
    shown
}

fn screen_loop(
    options: &Options,
    model: &mut Model,
    terminal: &mut ratatui::DefaultTerminal,
) -> Result<(), TopError> {
    let mut shown = 0;
    let mut next_refresh = Instant::now() + options.interval;
    loop {
        terminal
            .draw(|frame| view::draw(frame, model))
            .map_err(TopError::Terminal)?;
        shown += 1;
        if options.frames.is_some_and(|frames| shown >= frames) {
            return Ok(());
        }
        // Keys until the next refresh; a key that changes the view
        // redraws at once, with the selected service's details fetched.
        loop {
            let left = next_refresh.saturating_duration_since(Instant::now());
            if !event::poll(left).map_err(TopError::Terminal)? {
                let _ = refresh(options, model);
                next_refresh = Instant::now() + options.interval;
                break;
            }
            match event::read().map_err(TopError::Terminal)? {
                Event::Key(key) if key.kind == KeyEventKind::Press => {
                    match pressed(model, key.code, key.modifiers) {
                        Key::Quit => return Ok(()),
                        Key::Redraw => {
                            let _ = details(options, model);
                            break;
                        }
                        Key::Ignore => {}
                    }
                }
                Event::Resize(..) => break,
                _ => {}
            }
        }
    }
}
