//! `--plot`: the results as an SVG bar chart.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::cleanup::leftovers;
use super::report::{Report, Row};
use super::text::{rate_text, us_text};
use super::{Context, Result};

/// The chart's file: opened before the run (so a bad path fails at once),
/// truncated and written at the end; a file this run created is removed
/// if the chart is never written into it.
pub(super) struct PlotFile {
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) created: bool,
    pub(super) written: bool,
}

impl PlotFile {
    /// Creates the file; only SVG is written.
    pub(super) fn create(path: &Path) -> Result<PlotFile> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if ext.as_deref() != Some("svg") {
            return Err(format!(
                "--plot {}: the chart is written as SVG; give a file name ending in .svg",
                path.display()
            ));
        }
        // Registered under the lock, so a signal cannot come between.
        let created = !path.exists();
        leftovers(|l| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .ctx(format!("--plot {}", path.display()))?;
            if created {
                l.files.push(path.to_path_buf());
            }
            Ok(PlotFile {
                path: path.to_path_buf(),
                file,
                created,
                written: false,
            })
        })
    }

    pub(super) fn write(&mut self, svg: &str) -> Result {
        self.file
            .set_len(0)
            .and_then(|()| self.file.write_all(svg.as_bytes()))
            .and_then(|()| self.file.flush())
            .ctx(self.path.display())?;
        self.written = true;
        Ok(())
    }
}

impl Drop for PlotFile {
    fn drop(&mut self) {
        if self.created && !self.written {
            let _ = std::fs::remove_file(&self.path);
        }
        leftovers(|l| l.files.retain(|f| f != &self.path));
    }
}

/// Escapes text for SVG.
pub(super) fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn family_color(family: &str) -> &'static str {
    match family {
        "floor" => "#7f7f7f",
        "mpkit" => "#1f77b4",
        "os" => "#2ca02c",
        _ => "#ff7f0e",
    }
}

/// A tick label for a power of ten.
pub(super) fn decade_text(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{}G", v / 1e9),
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}

impl Report {
    /// A bar chart: one panel per figure, a bar per row, logarithmic
    /// scales, longer is faster everywhere (the round trips as round trips
    /// per second, labelled with their µs).
    pub(super) fn svg(&self) -> String {
        const WIDTH: f64 = 980.0;
        const LABEL: f64 = 250.0;
        const PLOT: f64 = 600.0;
        const BAR: f64 = 16.0;
        const GAP: f64 = 5.0;
        type Value = fn(&Row) -> Option<(f64, String)>;
        let panels: [(&str, Value); 3] = [
            ("64 B messages per second, one way", |r| {
                r.msgs_per_sec_64b
                    .map(|v| (v, format!("{}/s", rate_text(v))))
            }),
            ("4 KiB messages per second, one way", |r| {
                r.msgs_per_sec_4kib
                    .map(|v| (v, format!("{}/s", rate_text(v))))
            }),
            (
                "64 B round trips per second (label: median round trip)",
                |r| r.roundtrip_us_median.map(|us| (1e6 / us, us_text(us))),
            ),
        ];
        let rows = &self.rows;
        let panel_height = 34.0 + rows.len() as f64 * (BAR + GAP) + 22.0;
        let top = 92.0;
        let footer = top + panel_height * panels.len() as f64 + 10.0;
        // The ratings under the chart, without the rule's explanation.
        let mut ratings = self.rating_lines();
        ratings.pop();
        let height = footer + 16.0 * ratings.len() as f64 + 8.0;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             viewBox=\"0 0 {WIDTH} {height}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"20\" y=\"28\" font-size=\"18\" font-weight=\"bold\">mpkit bench: messages between two processes (longer is faster, log scale)</text>\n\
             <text x=\"20\" y=\"48\" fill=\"#444\">{}</text>\n",
            xml(&self.header())
        );
        let legend = [
            ("floor", "spin-polled ring (floor)"),
            ("mpkit", "mpkit"),
            ("os", "kernel objects via mpkit"),
            ("python", "Python multiprocessing"),
        ];
        let mut x = 20.0;
        for (family, text) in legend {
            s.push_str(&format!(
                "<rect x=\"{x}\" y=\"62\" width=\"12\" height=\"12\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"72\">{}</text>\n",
                family_color(family),
                x + 17.0,
                xml(text)
            ));
            x += 30.0 + text.len() as f64 * 7.0;
        }
        for (p, (title, value)) in panels.iter().enumerate() {
            let y0 = top + p as f64 * panel_height;
            s.push_str(&format!(
                "<text x=\"20\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
                y0 + 16.0,
                xml(title)
            ));
            let values: Vec<Option<(f64, String)>> = rows.iter().map(value).collect();
            let present: Vec<f64> = values.iter().flatten().map(|(v, _)| *v).collect();
            let (lo, hi) = if present.is_empty() {
                (1.0, 10.0)
            } else {
                let min = present.iter().copied().fold(f64::INFINITY, f64::min);
                let max = present.iter().copied().fold(0.0, f64::max);
                let lo = 10f64.powf(min.log10().floor());
                let hi = 10f64.powf(max.log10().ceil()).max(lo * 10.0);
                (lo, hi)
            };
            let scale =
                |v: f64| LABEL + PLOT * (v.max(lo).log10() - lo.log10()) / (hi / lo).log10();
            let bars_top = y0 + 28.0;
            let bars_bottom = bars_top + rows.len() as f64 * (BAR + GAP);
            // Decade grid lines and their labels.
            let mut tick = lo;
            while tick <= hi * 1.001 {
                let x = scale(tick);
                s.push_str(&format!(
                    "<line x1=\"{x:.1}\" y1=\"{bars_top}\" x2=\"{x:.1}\" y2=\"{bars_bottom}\" stroke=\"#ddd\"/>\
                     <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\" font-size=\"11\">{}</text>\n",
                    bars_bottom + 14.0,
                    decade_text(tick)
                ));
                tick *= 10.0;
            }
            for (i, (row, v)) in rows.iter().zip(&values).enumerate() {
                let y = bars_top + i as f64 * (BAR + GAP);
                s.push_str(&format!(
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                    LABEL - 8.0,
                    y + BAR - 4.0,
                    xml(row.mechanism)
                ));
                match v {
                    Some((v, label)) => {
                        let end = scale(*v);
                        s.push_str(&format!(
                            "<rect x=\"{LABEL}\" y=\"{y}\" width=\"{:.1}\" height=\"{BAR}\" fill=\"{}\"/>\
                             <text x=\"{:.1}\" y=\"{}\" fill=\"#222\">{}</text>\n",
                            (end - LABEL).max(1.0),
                            family_color(row.family),
                            end + 5.0,
                            y + BAR - 4.0,
                            xml(label)
                        ));
                    }
                    None => s.push_str(&format!(
                        "<text x=\"{}\" y=\"{}\" fill=\"#b00\">failed</text>\n",
                        LABEL + 4.0,
                        y + BAR - 4.0
                    )),
                }
            }
        }
        for (i, line) in ratings.iter().enumerate() {
            s.push_str(&format!(
                "<text x=\"20\" y=\"{}\" fill=\"#444\">{}</text>\n",
                footer + 16.0 * i as f64,
                xml(&line.split_whitespace().collect::<Vec<_>>().join(" "))
            ));
        }
        s.push_str("</svg>\n");
        s
    }
}
