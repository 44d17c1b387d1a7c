//! The one progress bar of a download.

use std::time::{Duration, Instant};

/// A one-line progress bar on stderr, redrawn at most ten times a second; nothing at all
/// when stderr is not a terminal (logs and CI get one line per file from the caller).
pub struct Progress {
    show: bool,
    label: String,
    done: u64,
    total: Option<u64>,
    started: Instant,
    drawn: Option<Instant>,
    start: u64,
}

impl Progress {
    pub fn new(show: bool, label: &str, start: u64, total: Option<u64>) -> Progress {
        Progress {
            show,
            label: label.into(),
            done: start,
            total,
            started: Instant::now(),
            drawn: None,
            start,
        }
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        if self.show && self.drawn.is_none_or(|t| t.elapsed() >= Duration::from_millis(100)) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.drawn = Some(Instant::now());
        let mb = |b: u64| b as f64 / 1e6;
        let rate = mb(self.done - self.start) / self.started.elapsed().as_secs_f64().max(0.001);
        let line = match self.total {
            Some(total) if total > 0 => {
                let frac = (self.done as f64 / total as f64).min(1.0);
                let filled = (frac * 30.0) as usize;
                format!(
                    "  {} [{}{}] {:>3.0}% {:.1}/{:.1} MB {:.1} MB/s",
                    self.label,
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    frac * 100.0,
                    mb(self.done),
                    mb(total),
                    rate
                )
            }
            _ => format!("  {} {:.1} MB {:.1} MB/s", self.label, mb(self.done), rate),
        };
        eprint!("\r{line}\x1b[K");
    }

    pub fn finish(&mut self) {
        if self.show && self.drawn.is_some() {
            self.draw();
            eprintln!();
        }
    }
}
