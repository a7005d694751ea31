//! The results as text: the aligned table (the default) and `--markdown`.

use super::report::{Grade, RATING_RULE, Report, Row};
use super::rows::SPECS;

/// A section of figures (what, figure, ratio) as aligned text: the title
/// line, a line per figure, then the notes.
pub(super) fn figures_human(title: &str, lines: &[[String; 3]], notes: &[String]) -> String {
    let mut out = format!("\n{title}\n");
    for [what, figure, ratio] in lines {
        let line = format!("  {what:62}  {figure:>10}  {ratio}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for note in notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    out
}

/// The same as a Markdown table whose first column is headed `what`,
/// the notes after it.
pub(super) fn figures_markdown(what: &str, lines: &[[String; 3]], notes: &[String]) -> String {
    let mut out = format!("\n| {what} | time | ratio |\n|---|---:|---|\n");
    for [what, figure, ratio] in lines {
        out.push_str(&format!("| {what} | {figure} | {ratio} |\n"));
    }
    for note in notes {
        out.push_str(&format!("\n{note}\n"));
    }
    out
}

/// A rate with three significant digits and a k or M suffix.
pub(super) fn rate_text(v: f64) -> String {
    let (v, unit) = if v >= 1e6 {
        (v / 1e6, " M")
    } else if v >= 1e3 {
        (v / 1e3, " k")
    } else {
        (v, "")
    };
    format!("{}{unit}", sig3(v))
}

/// About three significant digits (two below 1).
pub(super) fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else if v >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// Microseconds, for people.
pub(super) fn us_text(v: f64) -> String {
    format!("{} µs", sig3(v))
}

/// A ratio as `1.23x`, or `-` when there is none.
pub(super) fn ratio_text(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{}x", sig3(r)),
        None => "-".into(),
    }
}

/// `f(v)`, or `-` when there is no value.
pub(super) fn opt_text(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

/// The cells of a row, in the table's column order.
pub(super) fn cells(r: &Row) -> [String; 9] {
    [
        opt_text(r.msgs_per_sec_64b, rate_text),
        opt_text(r.msgs_per_sec_4kib, rate_text),
        opt_text(r.roundtrip_us_median, us_text),
        ratio_text(r.vs_spin_ring_64b),
        ratio_text(r.vs_spin_ring_4kib),
        ratio_text(r.vs_python_64b),
        ratio_text(r.vs_python_4kib),
        ratio_text(r.vs_python_roundtrip),
        r.python_counterpart
            .map_or_else(String::new, |id| counterpart_name(id).to_string()),
    ]
}

pub(super) fn counterpart_name(id: &str) -> &'static str {
    SPECS
        .iter()
        .find(|s| s.id == id)
        .map_or("", |s| s.mechanism.trim_start_matches("Python "))
}

/// The width of the mechanism column.
pub(super) const NAME: usize = 33;

/// A row of the human table: the name, then the cells right-aligned in
/// their columns (the counterpart's name left-aligned, last).
pub(super) fn human_line(name: &str, cells: &[String; 9]) -> String {
    const WIDTHS: [usize; 8] = [9, 9, 10, 7, 7, 7, 7, 7];
    let mut line = format!("{name:NAME$}");
    for (i, cell) in cells.iter().enumerate() {
        match WIDTHS.get(i) {
            Some(&w) => line.push_str(&format!("  {cell:>w$}")),
            None => line.push_str(&format!("  {cell}")),
        }
    }
    line
}

impl Report {
    pub(super) fn header(&self) -> String {
        let m = &self.machine;
        let mut parts = vec![format!(
            "{} CPU{}",
            m.cpus,
            if m.cpus == 1 { "" } else { "s" }
        )];
        if let Some(cpu) = &m.cpu {
            parts.push(cpu.clone());
        }
        if let Some(k) = &m.kernel {
            parts.push(format!("Linux {k}"));
        }
        parts.push(match &m.python {
            Some(v) => format!("Python {v}"),
            None => "no Python".into(),
        });
        parts.push(match m.placement {
            Some(p) if p.parent_cpu == p.child_cpu => {
                format!("both sides on CPU {}", p.parent_cpu)
            }
            Some(p) => format!("sides on CPUs {} and {}", p.parent_cpu, p.child_cpu),
            None => "CPUs as the scheduler chose".into(),
        });
        format!(
            "mpkit bench, {} in {:.1} s: {}",
            self.mode.name(),
            self.seconds,
            parts.join(", ")
        )
    }

    /// The closing lines: the measured ranking of pipe, queue and shared
    /// memory, mpkit's and Python's.
    pub(super) fn rating_lines(&self) -> Vec<String> {
        let said = |grades: &[Grade; 3]| {
            grades
                .iter()
                .map(|g| format!("{} {} ({}x)", g.mechanism, g.rating, sig3(g.score)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut lines = Vec::new();
        match &self.rating.mpkit {
            Some(g) => lines.push(format!("measured ranking, fastest first, mpkit:  {}", said(g))),
            None => lines.push(
                "measured ranking, mpkit: not ranked (its pipe, queue and shared memory rows were not all measured)"
                    .into(),
            ),
        }
        if let Some(g) = &self.rating.python {
            lines.push(format!(
                "measured ranking, fastest first, Python: {}",
                said(g)
            ));
        }
        let row = |id: &str| self.rows.iter().find(|r| r.id == id).and_then(Row::figures);
        if let (Some(ring), Some(pipe)) = (row("spin_ring"), row("pipe")) {
            lines.push(format!(
                "  shared memory with no lock and no sleep (the spin ring) moves 64 B messages \
                 {}x as fast as the Pipe, 4 KiB ones {}x",
                sig3(ring.0 / pipe.0),
                sig3(ring.1 / pipe.1)
            ));
        }
        lines.push(format!(
            "  (shared memory: Array + Semaphores; {RATING_RULE})"
        ));
        lines
    }

    /// The default output: an aligned table, a blank line between
    /// families of rows.
    pub(super) fn human(&self) -> String {
        let head = [
            "64 B",
            "4 KiB",
            "median",
            "64 B",
            "4 KiB",
            "64 B",
            "4 KiB",
            "r.trip",
            "counterpart",
        ];
        let mut lines = vec![
            format!(
                "{:NAME$}{:^22}{:>12}{:^18}{:^27}",
                "", "throughput (msg/s)", "round trip", "x spin ring", "x Python counterpart"
            ),
            human_line("mechanism", &head.map(String::from)),
        ];
        let mut family = None;
        for row in &self.rows {
            if family.is_some_and(|f| f != row.family) {
                lines.push(String::new());
            }
            family = Some(row.family);
            lines.push(match &row.error {
                Some(e) => format!("{:NAME$}  failed: {e}", row.mechanism),
                None => human_line(row.mechanism, &cells(row)),
            });
        }
        let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        lines.insert(2, "-".repeat(width));
        let mut out = format!("{}\n\n", self.header());
        for line in lines {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push_str(
            "\nmsg/s: messages per second one way (one producer process, one consumer process);\n\
             round trip: 64 B there and back; x: how many times as fast (higher is faster).\n",
        );
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out.push('\n');
        for line in self.rating_lines() {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// `--markdown`: a Markdown table with the same columns.
    pub(super) fn markdown(&self) -> String {
        let mut out = format!("{}\n\n", self.header());
        out.push_str(
            "| mechanism | 64 B msg/s | 4 KiB msg/s | round trip (median) \
             | x spin ring, 64 B | x spin ring, 4 KiB \
             | x Python, 64 B | x Python, 4 KiB | x Python, round trip | Python counterpart |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for row in &self.rows {
            let cells: Vec<String> = match &row.error {
                Some(e) => {
                    let mut c = vec![format!("failed: {}", e.replace('|', "\\|"))];
                    c.resize(9, String::new());
                    c
                }
                None => cells(row).to_vec(),
            };
            out.push_str(&format!("| {} | {} |\n", row.mechanism, cells.join(" | ")));
        }
        out.push_str(
            "\nmsg/s: messages per second one way (one producer process, one consumer process); \
             round trip: 64 B there and back; x: how many times as fast (higher is faster).\n",
        );
        for note in &self.notes {
            out.push_str(&format!("\nNote: {note}\n"));
        }
        out.push('\n');
        for line in self.rating_lines() {
            out.push_str(&format!("{}  \n", line.trim_start()));
        }
        out
    }
}
