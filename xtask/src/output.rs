//! Everything printed: where it goes (stdout for people, stderr when stdout carries the
//! `--json` document), the one decision about color, and commands shown as typed.

use std::{io::IsTerminal, time::Instant};

use serde_json::{Value, json};

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

/// Runs a command's body; with `--json` its report, with `ok`, `seconds` and any `error`,
/// is printed as one document on stdout, whatever happened.
pub fn reporting(
    command: &str,
    json_out: bool,
    body: impl FnOnce(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let started = Instant::now();
    let mut report = json!({ "command": command });
    let result = body(&mut report);
    if json_out {
        report["ok"] = json!(result.is_ok());
        report["seconds"] = json!(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            report["error"] = json!(e);
        }
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
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
