//! Progress on stderr for long reads: a bar redrawn in place on a terminal
//! (`\r[#####     ] 1,200/2,000 source items`), plain lines now and then otherwise (logs, CI).

use std::io::Write;
use std::time::{Duration, Instant};

const WIDTH: usize = 24;
/// How often a terminal bar is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);
/// How often a plain line is written at most.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// Where progress goes.
pub struct Progress<'a> {
    out: &'a mut dyn Write,
    tty: bool,
    last: Option<Instant>,
    /// A bar is on the line (a terminal) and must be ended before other output.
    open: bool,
}

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("tty", &self.tty).finish()
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The bar's text: `[#####     ] 1,200/2,000 source items`, or `1,200 POS stock levels` when
/// the total is not known.
pub fn bar(what: &str, done: u64, total: Option<u64>) -> String {
    match total {
        Some(total) if total > 0 => {
            let filled = usize::try_from(done.min(total) * WIDTH as u64 / total).unwrap_or(WIDTH);
            format!(
                "[{}{}] {}/{} {what}",
                "#".repeat(filled),
                " ".repeat(WIDTH - filled),
                thousands(done),
                thousands(total)
            )
        }
        _ => format!("{} {what}", thousands(done)),
    }
}

impl<'a> Progress<'a> {
    /// `tty`: draw a bar in place (stderr is a terminal); else write plain lines.
    pub fn new(out: &'a mut dyn Write, tty: bool) -> Self {
        Self {
            out,
            tty,
            last: None,
            open: false,
        }
    }

    /// Report `done` of `total` (throttled; the first report always shows).
    pub fn update(&mut self, what: &str, done: u64, total: Option<u64>) {
        let due = self
            .last
            .is_none_or(|at| at.elapsed() >= if self.tty { REDRAW } else { LINE_EVERY });
        if !due {
            return;
        }
        self.last = Some(Instant::now());
        self.draw(what, done, total);
    }

    /// The step is finished: its final figure, then a new line.
    pub fn finish(&mut self, what: &str, done: u64, total: Option<u64>) {
        self.draw(what, done, total);
        if self.open {
            let _ = writeln!(self.out);
            self.open = false;
        }
        self.last = None;
        let _ = self.out.flush();
    }

    /// A sentence between steps (a warning), not overwritten by the bar.
    pub fn note(&mut self, text: &str) {
        if self.open {
            let _ = writeln!(self.out);
            self.open = false;
        }
        let _ = writeln!(self.out, "{text}");
    }

    fn draw(&mut self, what: &str, done: u64, total: Option<u64>) {
        let text = bar(what, done, total);
        if self.tty {
            // Pad so a shorter line wipes a longer one.
            let _ = write!(self.out, "\r{text:<70}");
            self.open = true;
        } else {
            let _ = writeln!(self.out, "reading: {text}");
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_have_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_200), "1,200");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_bar_fills_with_the_share_done() {
        assert_eq!(
            bar("source items", 1_200, Some(2_000)),
            "[##############          ] 1,200/2,000 source items"
        );
        assert_eq!(bar("POS stock levels", 40, None), "40 POS stock levels");
        assert!(bar("x", 5, Some(5)).starts_with(&format!("[{}]", "#".repeat(WIDTH))));
    }

    #[test]
    fn a_terminal_gets_one_line_redrawn_and_a_log_gets_plain_lines() {
        let mut buf = Vec::new();
        let mut p = Progress::new(&mut buf, true);
        p.update("items", 1, Some(2));
        p.update("items", 2, Some(2)); // throttled
        p.finish("items", 2, Some(2));
        let text = String::from_utf8(buf).unwrap_or_default();
        assert!(text.starts_with("\r[############"), "{text:?}");
        assert_eq!(text.matches('\r').count(), 2, "{text:?}");
        assert!(text.ends_with('\n'));

        let mut buf = Vec::new();
        let mut p = Progress::new(&mut buf, false);
        p.update("items", 1, Some(2));
        p.finish("items", 2, Some(2));
        let text = String::from_utf8(buf).unwrap_or_default();
        assert!(!text.contains('\r'));
        assert_eq!(text.lines().count(), 2, "{text:?}");
    }
}
