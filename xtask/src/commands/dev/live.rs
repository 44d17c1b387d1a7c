//! The live view of `dev` on a terminal: a row per service (whether it answers, its image
//! and why it was last built, its last reload, its port), what the last round downloaded,
//! its error, and the logs of every service below, prefixed and colored; `f` follows one
//! service, `r` rebuilds, `q` quits. ratatui over crossterm, drawn on `/dev/tty`: while it
//! runs, the process's own stdout and stderr (dev-fast's lines, the engine's build output,
//! which the engine's children inherit) are a pipe whose lines go to the log pane.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    os::fd::{AsFd, OwnedFd},
    sync::mpsc::Sender,
    time::{Duration, Instant},
};

use ratatui::{
    Frame, Terminal,
    backend::CrosstermBackend,
    crossterm::{
        event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Cell, Paragraph, Row as TableRow, Table, Wrap},
};

use super::{State, Wake};
use crate::{ErrorContext, output::bytes_text};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Quit,
    Rebuild,
    Follow,
}

pub struct Screen {
    terminal: Terminal<CrosstermBackend<File>>,
    /// The terminal's stdout and stderr, given back when the view ends.
    saved: (OwnedFd, OwnedFd),
    drawn: Option<Instant>,
}

/// Redraws closer together than this are skipped (a build prints hundreds of lines); the
/// loop wakes at least twice a second, so the screen is never staler than that.
const FRAME: Duration = Duration::from_millis(50);

impl Screen {
    pub fn start(tx: Sender<Wake>) -> Result<Screen, String> {
        let tty = File::options().read(true).write(true).open("/dev/tty").context("opening the terminal")?;
        let saved = (
            std::io::stdout().as_fd().try_clone_to_owned().context("keeping stdout")?,
            std::io::stderr().as_fd().try_clone_to_owned().context("keeping stderr")?,
        );
        let (reader, writer) = std::io::pipe().context("making the log pipe")?;
        nix::unistd::dup2_stdout(&writer).context("sending stdout to the log pane")?;
        nix::unistd::dup2_stderr(&writer).context("sending stderr to the log pane")?;
        drop(writer);
        let lines = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if lines.send(Wake::Log("xtask", line)).is_err() {
                    return;
                }
            }
        });
        enable_raw_mode().context("putting the terminal in raw mode")?;
        let mut out = tty.try_clone().context("opening the terminal")?;
        execute!(out, EnterAlternateScreen).context("entering the alternate screen")?;
        let terminal = Terminal::new(CrosstermBackend::new(tty)).context("starting the live view")?;
        std::thread::spawn(move || {
            while let Ok(event) = event::read() {
                let TermEvent::Key(key) = event else { continue };
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                let key = match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
                    _ if ctrl_c => Key::Quit,
                    KeyCode::Char('r') => Key::Rebuild,
                    KeyCode::Char('f') => Key::Follow,
                    _ => continue,
                };
                if tx.send(Wake::Key(key)).is_err() {
                    return;
                }
            }
        });
        Ok(Screen { terminal, saved, drawn: None })
    }

    pub fn draw(&mut self, state: &State) {
        if self.drawn.is_some_and(|at| at.elapsed() < FRAME) {
            return;
        }
        self.drawn = Some(Instant::now());
        let _ = self.terminal.draw(|frame| render(frame, state));
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(self.terminal.backend_mut(), LeaveAlternateScreen);
        let _ = self.terminal.show_cursor();
        let _ = nix::unistd::dup2_stdout(&self.saved.0);
        let _ = nix::unistd::dup2_stderr(&self.saved.1);
    }
}

/// The raw terminal sends no SIGINT: quitting during a round interrupts its engine calls
/// as a Ctrl-C of dev-fast would (our process group; the log followers have their own).
pub fn interrupt_round() {
    let _ = nix::sys::signal::killpg(nix::unistd::getpgrp(), nix::sys::signal::Signal::SIGINT);
}

const PALETTE: [Color; 5] = [Color::Cyan, Color::Magenta, Color::Yellow, Color::Green, Color::Blue];

fn color_of(state: &State, service: &str) -> Color {
    match state.services.iter().position(|r| r.key == service) {
        Some(i) => PALETTE[i % PALETTE.len()],
        None => Color::Gray,
    }
}

fn render(frame: &mut Frame, state: &State) {
    let error_lines = state.error.as_ref().map_or(0, |e| e.lines().count().min(6) as u16 + 2);
    let rows = state.services.len() as u16 + 1;
    let [head, table, downloaded, error, logs, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(rows),
        Constraint::Length(1),
        Constraint::Length(error_lines),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let doing = state.busy.clone().unwrap_or_else(|| "watching the checkout".into());
    let head_line = Line::from(vec![
        Span::styled("Jarv1s dev", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  round {}  ·  {doing}", state.round)),
    ]);
    frame.render_widget(Paragraph::new(head_line), head);

    let header = TableRow::new(["service", "state", "image", "last reload", "port"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let body = state.services.iter().map(|row| {
        let (answers, style) = match row.answers {
            Some(true) => ("serving", Style::new().fg(Color::Green)),
            Some(false) => ("not answering", Style::new().fg(Color::Red)),
            None => ("…", Style::new()),
        };
        TableRow::new([
            Cell::from(Span::styled(row.key, Style::new().fg(color_of(state, row.key)))),
            Cell::from(Span::styled(answers, style)),
            Cell::from(row.image.clone()),
            Cell::from(row.reload.map_or("-".into(), |s| format!("{s:.2} s"))),
            Cell::from(row.port.to_string()),
        ])
    });
    let widths = [
        Constraint::Length(9),
        Constraint::Length(14),
        Constraint::Fill(1),
        Constraint::Length(12),
        Constraint::Length(6),
    ];
    frame.render_widget(Table::new(body, widths).header(header), table);

    let bytes = match &state.downloaded {
        Some(d) if d.sources.is_empty() => "last round downloaded: 0 B".to_string(),
        Some(d) => format!(
            "last round downloaded: {} ({})",
            bytes_text(d.total_bytes),
            d.sources
                .iter()
                .map(|s| format!("{} {}", s.source, s.bytes.map_or("not measured".into(), bytes_text)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "last round downloaded: -".to_string(),
    };
    frame.render_widget(Paragraph::new(bytes), downloaded);

    if let Some(e) = &state.error {
        let text: Vec<Line> = e.lines().take(6).map(|l| Line::from(l.to_string())).collect();
        let block = Block::bordered().title("the last round failed; the running containers keep serving");
        frame.render_widget(
            Paragraph::new(text).style(Style::new().fg(Color::Red)).block(block).wrap(Wrap { trim: false }),
            error,
        );
    }

    let shown = logs.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = state
        .logs
        .iter()
        .filter(|(service, _)| state.follow.is_none_or(|f| f == *service))
        .rev()
        .take(shown)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|(service, line)| {
            Line::from(vec![
                Span::styled(format!("{service:<8} | "), Style::new().fg(color_of(state, service))),
                Span::raw(line.clone()),
            ])
        })
        .collect();
    let title = format!("logs: {}", state.follow.unwrap_or("all services"));
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), logs);

    let help = format!(
        "q quit (the stack keeps running)  ·  r rebuild  ·  f follow: {}",
        match state.follow {
            None => "all",
            Some(key) => key,
        }
    );
    frame.render_widget(Paragraph::new(help).style(Style::new().fg(Color::DarkGray)), keys);
}
