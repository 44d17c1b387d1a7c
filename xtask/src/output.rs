//! Everything printed: where it goes (stdout for people, stderr when stdout carries the
//! `--json` document), the one decision about color, and commands shown as typed.

use std::{io::IsTerminal, time::Instant};

pub const BOLD: &str = "1";
pub const RED: &str = "31";
pub const GREEN: &str = "32";
pub const YELLOW: &str = "33";

#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Color only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).
pub fn color(stream: Stream) -> bool {
    let terminal = match stream {
        Stream::Stdout => std::io::stdout().is_terminal(),
        Stream::Stderr => std::io::stderr().is_terminal(),
    };
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` in the SGR color `code` when `color`, else as it is.
pub fn paint(text: &str, code: &str, color: bool) -> String {
    if color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
}

/// Where messages go: stdout for people; stderr when stdout carries `--json`.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub json: bool,
    pub dry_run: bool,
}

impl Output {
    pub fn say(&self, line: impl AsRef<str>) {
        if self.json {
            eprintln!("{}", line.as_ref());
        } else {
            println!("{}", line.as_ref());
        }
    }

    pub fn warn(&self, line: impl AsRef<str>) {
        eprintln!("{} {}", paint("warning:", YELLOW, color(Stream::Stderr)), line.as_ref());
    }
}

/// What `--json` prints around a command's own typed report: which command, whether it
/// succeeded, how long it took, and its error.
#[derive(serde::Serialize)]
struct Envelope<'a, R> {
    command: &'a str,
    ok: bool,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(flatten)]
    report: &'a R,
}

/// Runs a command's body, which fills its typed report; with `--json` the report, with
/// `ok`, `seconds` and any `error`, is printed as one document on stdout, whatever happened.
pub fn reporting<R: serde::Serialize + Default>(
    command: &str,
    json_out: bool,
    body: impl FnOnce(&mut R) -> Result<(), String>,
) -> Result<(), String> {
    let started = Instant::now();
    let mut report = R::default();
    let result = body(&mut report);
    if json_out {
        let envelope = Envelope {
            command,
            ok: result.is_ok(),
            seconds: started.elapsed().as_secs_f64(),
            error: result.as_ref().err().map(String::as_str),
            report: &report,
        };
        println!("{}", serde_json::to_string_pretty(&envelope).expect("reports serialize"));
    }
    result
}

/// Quotes an argument for display, so a printed command can be pasted into a shell.
pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c)) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A command as a user would type it.
pub fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(program.to_string())
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How much a source brought in: counted in-process, estimated from what was pinned or
/// listed, or not measured at all (never a number made up).
#[derive(Clone, Debug, PartialEq)]
pub enum Amount {
    Measured(u64),
    Estimated(u64),
    NotMeasured,
}

/// A meter as `--json` reports it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Downloaded {
    pub sources: Vec<SourceAmount>,
    pub total_bytes: u64,
    pub measured_bytes: u64,
    pub estimated_bytes: u64,
    /// No source went unmeasured.
    pub complete: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SourceAmount {
    pub source: String,
    /// `None`: not measured.
    pub bytes: Option<u64>,
    /// "measured", "estimated" or "not measured".
    pub how: &'static str,
}

/// What a command downloaded, per source, printed at its end and put in `--json`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meter {
    rows: Vec<(String, Amount)>,
}

/// Bytes as people read them: "0 B", "4.8 kB", "63.2 MB".
pub fn bytes_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

impl Meter {
    fn add(&mut self, source: &str, amount: Amount) {
        match self.rows.iter_mut().find(|(s, _)| s == source) {
            Some((_, have)) => {
                *have = match (&*have, amount) {
                    (Amount::Measured(a), Amount::Measured(b)) => Amount::Measured(a + b),
                    (
                        Amount::Measured(a) | Amount::Estimated(a),
                        Amount::Measured(b) | Amount::Estimated(b),
                    ) => Amount::Estimated(a + b),
                    _ => Amount::NotMeasured,
                }
            }
            None => self.rows.push((source.to_string(), amount)),
        }
    }

    pub fn measured(&mut self, source: &str, bytes: u64) {
        self.add(source, Amount::Measured(bytes));
    }

    pub fn estimated(&mut self, source: &str, bytes: u64) {
        self.add(source, Amount::Estimated(bytes));
    }

    pub fn not_measured(&mut self, source: &str) {
        self.add(source, Amount::NotMeasured);
    }

    /// What image builds' RUN steps received, per source, as `docker/meter.sh` measured it
    /// (`None`: the step could not read its counters).
    pub fn image_builds(&mut self, downloads: impl IntoIterator<Item = (String, Option<u64>)>) {
        for (source, bytes) in downloads {
            let source = format!("{source} (image builds)");
            match bytes {
                Some(bytes) => self.measured(&source, bytes),
                None => self.not_measured(&source),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows that brought something in (or may have, unmeasured).
    fn nonzero(&self) -> impl Iterator<Item = &(String, Amount)> {
        self.rows.iter().filter(|(_, a)| !matches!(a, Amount::Measured(0) | Amount::Estimated(0)))
    }

    /// One line per source, then the total; only the total when nothing came in.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let (mut measured, mut estimated, mut unmeasured) = (0, 0, 0);
        for (source, amount) in self.nonzero() {
            lines.push(match amount {
                Amount::Measured(b) => {
                    measured += b;
                    format!("downloaded: {source}: {} (measured)", bytes_text(*b))
                }
                Amount::Estimated(b) => {
                    estimated += b;
                    format!("downloaded: {source}: {} (estimated)", bytes_text(*b))
                }
                Amount::NotMeasured => {
                    unmeasured += 1;
                    format!("downloaded: {source}: not measured")
                }
            });
        }
        let mut total = format!("downloaded: total {}", bytes_text(measured + estimated));
        if estimated > 0 {
            total += &format!(" ({} measured, {} estimated)", bytes_text(measured), bytes_text(estimated));
        }
        if unmeasured > 0 {
            total += &format!(", plus {unmeasured} source(s) not measured (above)");
        }
        lines.push(total);
        lines
    }

    /// What `--json` reports as `downloaded`.
    pub fn to_json(&self) -> Downloaded {
        let sources: Vec<SourceAmount> = self
            .nonzero()
            .map(|(source, amount)| {
                let (bytes, how) = match amount {
                    Amount::Measured(b) => (Some(*b), "measured"),
                    Amount::Estimated(b) => (Some(*b), "estimated"),
                    Amount::NotMeasured => (None, "not measured"),
                };
                SourceAmount { source: source.clone(), bytes, how }
            })
            .collect();
        let sum = |how: &str| sources.iter().filter(|s| s.how == how).filter_map(|s| s.bytes).sum::<u64>();
        Downloaded {
            total_bytes: sum("measured") + sum("estimated"),
            measured_bytes: sum("measured"),
            estimated_bytes: sum("estimated"),
            complete: !sources.iter().any(|s| s.bytes.is_none()),
            sources,
        }
    }

    /// Prints the lines; what goes into the report as `downloaded`.
    pub fn report(&self, out: Output) -> Downloaded {
        for line in self.lines() {
            out.say(line);
        }
        self.to_json()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The one way sizes are printed, everywhere: doctor, stats, history, prune, the meter.
    #[test]
    fn bytes_read_as_people_read_them() {
        assert_eq!(bytes_text(166), "166 B");
        assert_eq!(bytes_text(4_794), "4.8 kB");
        assert_eq!(bytes_text(63_201_294), "63.2 MB");
        assert_eq!(bytes_text(1_861_000_000), "1.86 GB");
    }

    #[test]
    fn nothing_downloaded_is_one_line() {
        let mut meter = Meter::default();
        assert_eq!(meter.lines(), ["downloaded: total 0 B"]);
        meter.measured("voices", 0);
        assert_eq!(meter.lines(), ["downloaded: total 0 B"]);
        assert_eq!(serde_json::to_value(meter.to_json()).unwrap()["total_bytes"], 0);
        assert_eq!(serde_json::to_value(meter.to_json()).unwrap()["sources"], json!([]));
    }

    #[test]
    fn each_source_then_a_total_that_says_what_is_estimated_and_unmeasured() {
        let mut meter = Meter::default();
        meter.measured("voices", 63_000_000);
        meter.measured("voices", 4_800);
        meter.estimated("registry pull backend", 1_000_000);
        meter.not_measured("pip");
        assert_eq!(
            meter.lines(),
            [
                "downloaded: voices: 63.0 MB (measured)",
                "downloaded: registry pull backend: 1.0 MB (estimated)",
                "downloaded: pip: not measured",
                "downloaded: total 64.0 MB (63.0 MB measured, 1.0 MB estimated), plus 1 source(s) not measured (above)",
            ]
        );
        let json = serde_json::to_value(meter.to_json()).unwrap();
        assert_eq!(json["measured_bytes"], 63_004_800);
        assert_eq!(json["estimated_bytes"], 1_000_000);
        assert_eq!(json["complete"], false);
        assert_eq!(json["sources"][2], json!({ "source": "pip", "bytes": null, "how": "not measured" }));
    }
}
