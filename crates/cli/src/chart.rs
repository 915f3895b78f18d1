//! The SVG chart of a report, one picture per mode, each a scatter of
//! two figures per adapter (a filled and a hollow marker joined by a line)
//! on a log-scale y axis:
//!
//! - plain: backup and restore GB/s against effective ratio, batched on one thread;
//! - async: backup and restore GB/s against the ticker's p99 lateness under
//!   that load, batched at the deepest depth;
//! - working set: hot and cold restore GB/s against the RAM budget (a
//!   tiered stack's, one point per budget run) or, for a backend alone, the
//!   RAM it used;
//! - region: fault latency p50 and p99 against the RAM used.
//!
//! Each adapter has a colour and is named in the legend, not beside its
//! points, so that no label can cover a point or another label; backends
//! are circles, baselines squares.

use std::fmt::Write as _;

use crate::report::{Mode, Op, Report, Row};

const W: f64 = 980.0;
const H: f64 = 600.0;
/// The plot area: left, top, right, bottom edges.
const PLOT: (f64, f64, f64, f64) = (80.0, 60.0, 700.0, 530.0);
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

/// One adapter's two points at one x.
struct Series {
    name: String,
    baseline: bool,
    x: f64,
    filled: f64,
    hollow: f64,
}

/// What a mode's picture shows.
struct Picture {
    title: String,
    x_label: &'static str,
    x_log: bool,
    y_label: &'static str,
    /// What the filled and the hollow marker are.
    markers: &'static str,
    series: Vec<Series>,
}

/// An axis: the data range padded, mapped onto `from..to` pixels; on a
/// log axis `lo` and `hi` are decimal logarithms.
struct Axis {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
    log: bool,
}

impl Axis {
    /// The axis over `values`: a linear one padded by 5%, a log one by a
    /// tenth of a decade; fitted to the data, not to 0.
    fn fit(values: impl Iterator<Item = f64>, log: bool, from: f64, to: f64) -> Axis {
        let (lo, hi) = bounds(values);
        let (lo, hi) = if log {
            (lo.max(1e-3).log10() - 0.1, hi.max(1e-3).log10() + 0.1)
        } else {
            let pad = ((hi - lo) * 0.05).max(0.05);
            (lo - pad, hi + pad)
        };
        Axis { lo, hi, from, to, log }
    }

    fn at(&self, v: f64) -> f64 {
        let v = if self.log { v.max(1e-3).log10() } else { v };
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }

    /// Where the grid lines go, in data values.
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            return ticks(10f64.powf(self.lo), 10f64.powf(self.hi));
        }
        let step = nice_step((self.hi - self.lo) / 6.0);
        let mut out = Vec::new();
        let mut v = (self.lo / step).ceil() * step;
        while v <= self.hi {
            out.push(v);
            v += step;
        }
        out
    }
}

/// The chart of `report`: the picture of its mode.
pub fn svg(report: &Report) -> String {
    let picture = match report.mode {
        Mode::Plain | Mode::Redis => plain(report),
        Mode::Async => asynchronous(report),
        Mode::WorkingSet => working_set(report),
        Mode::Region => region(report),
    };
    draw(&picture)
}

fn draw(p: &Picture) -> String {
    let x = Axis::fit(p.series.iter().map(|s| s.x), p.x_log, PLOT.0, PLOT.2);
    let y = Axis::fit(p.series.iter().flat_map(|s| [s.filled, s.hollow]), true, PLOT.3, PLOT.1);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"30\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n",
        W / 2.0,
        escape(&p.title)
    );
    axes(&mut out, &x, &y, p);
    for (k, s) in p.series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let (px, pf, ph) = (x.at(s.x), y.at(s.filled), y.at(s.hollow));
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" y1=\"{pf:.1}\" x2=\"{px:.1}\" y2=\"{ph:.1}\" stroke=\"{colour}\" stroke-width=\"1.5\"/>"
        );
        out.push_str(&marker(px, pf, s.baseline, colour, true));
        out.push_str(&marker(px, ph, s.baseline, colour, false));
    }
    legend(&mut out, p);
    out.push_str("</svg>\n");
    out
}

/// The rows of `mode` that have `op`.
fn with_op(report: &Report, mode: Mode, op: Op) -> impl Iterator<Item = &Row> {
    report.rows(mode).filter(move |r| r.op == Some(op))
}

fn plain(report: &Report) -> Picture {
    let batch = report.rows(Mode::Plain).filter_map(|r| r.batch).max().unwrap_or(1);
    let main = |r: &&Row| r.threads == Some(1) && r.batch == Some(batch);
    let series = with_op(report, Mode::Plain, Op::Backup)
        .filter(main)
        .filter_map(|b| {
            let restore = with_op(report, Mode::Plain, Op::Restore)
                .filter(main)
                .find(|r| r.backend == b.backend)?;
            Some(Series {
                name: b.backend.clone(),
                baseline: b.is_baseline(),
                x: b.effective_ratio?,
                filled: b.gbps?,
                hollow: restore.gbps?,
            })
        })
        .collect();
    Picture {
        title: format!(
            "Backup and restore throughput against effective ratio ({} pages, batches, one thread)",
            report.corpus.pages
        ),
        x_label: "effective ratio (original bytes / bytes used)",
        x_log: false,
        y_label: "GB/s (log scale)",
        markers: "filled: backup, hollow: restore",
        series,
    }
}

fn asynchronous(report: &Report) -> Picture {
    let depth = report.rows(Mode::Async).filter_map(|r| r.depth).max().unwrap_or(1);
    let series = report
        .rows(Mode::Async)
        .filter(|t| t.ticker_p99_us.is_some() && t.depth.is_none_or(|d| d == depth))
        .filter_map(|t| {
            let op = |op: Op| {
                with_op(report, Mode::Async, op)
                    .find(|r| r.backend == t.backend && r.batch == t.batch && r.depth == Some(depth))
                    .and_then(|r| r.gbps)
            };
            Some(Series {
                name: format!("{} (batch {})", t.backend, t.batch?),
                baseline: t.is_baseline(),
                x: t.ticker_p99_us?,
                filled: op(Op::Backup)?,
                hollow: op(Op::Restore)?,
            })
        })
        .collect();
    Picture {
        title: format!("Async throughput against the runtime's ticker lateness (depth {depth})"),
        x_label: "ticker p99 lateness under the load, µs (log scale)",
        x_log: true,
        y_label: "GB/s (log scale)",
        markers: "filled: backup, hollow: restore",
        series,
    }
}

fn working_set(report: &Report) -> Picture {
    let series = report
        .rows(Mode::WorkingSet)
        .filter_map(|r| {
            Some(Series {
                name: r.backend.clone(),
                baseline: r.is_baseline(),
                x: r.budget_bytes.or(r.ram_bytes)? as f64 / (1 << 20) as f64,
                filled: r.hot_gbps?,
                hollow: r.cold_gbps?,
            })
        })
        .collect();
    Picture {
        title: match &report.skew {
            Some(s) => format!(
                "Restore throughput against RAM budget ({} pages, {}{:.0}% of pages take {:.0}% of restores)",
                s.working_set,
                s.zipf.map_or(String::new(), |z| format!("Zipf {z}: ")),
                s.hot_pages * 100.0,
                s.hot_restores * 100.0
            ),
            None => "Restore throughput against RAM budget".into(),
        },
        x_label: "RAM budget of a tiered stack, or RAM used by a backend alone, MiB",
        x_log: false,
        y_label: "restore GB/s (log scale)",
        markers: "filled: hot pages, hollow: cold pages",
        series,
    }
}

/// The region mode's picture: fault latency against RAM, from the rows'
/// `fault_p50_us`, `fault_p99_us` and `ram_bytes`.
fn region(report: &Report) -> Picture {
    let series = report
        .rows(Mode::Region)
        .filter_map(|r| {
            Some(Series {
                name: match &r.workload {
                    Some(w) => format!("{} ({w})", r.backend),
                    None => r.backend.clone(),
                },
                baseline: r.is_baseline(),
                x: r.ram_bytes? as f64 / (1 << 20) as f64,
                filled: r.fault_p50_us?,
                hollow: r.fault_p99_us?,
            })
        })
        .collect();
    Picture {
        title: "Fault latency against RAM".into(),
        x_label: "RAM used, MiB",
        x_log: false,
        y_label: "µs per fault (log scale)",
        markers: "filled: p50, hollow: p99",
        series,
    }
}

/// The smallest and largest of `values`, (1, 1) if there are none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .fold(None, |b: Option<(f64, f64)>, v| {
            Some(b.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
        })
        .unwrap_or((1.0, 1.0))
}

/// Ticks at 1, 2 and 5 times a power of ten, within `lo..=hi` (linear values).
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut exp = lo.log10().floor() as i32 - 1;
    while 10f64.powi(exp) <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(exp);
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        exp += 1;
    }
    out
}

fn axes(out: &mut String, x: &Axis, y: &Axis, p: &Picture) {
    let (l, t, r, b) = PLOT;
    let _ = writeln!(
        out,
        "<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>",
        r - l,
        b - t
    );
    for v in x.ticks() {
        let px = x.at(v);
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" y1=\"{t}\" x2=\"{px:.1}\" y2=\"{b}\" stroke=\"#eee\"/>\n<text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            b + 18.0,
            trim(v)
        );
    }
    for v in y.ticks() {
        let py = y.at(v);
        let _ = writeln!(
            out,
            "<line x1=\"{l}\" y1=\"{py:.1}\" x2=\"{r}\" y2=\"{py:.1}\" stroke=\"#eee\"/>\n<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            l - 6.0,
            py + 4.0,
            trim(v)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"22\" y=\"{}\" transform=\"rotate(-90 22 {})\" text-anchor=\"middle\">{}</text>",
        (l + r) / 2.0,
        b + 42.0,
        escape(p.x_label),
        (t + b) / 2.0,
        (t + b) / 2.0,
        escape(p.y_label)
    );
}

/// A step of 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * p)
}

/// `v` with no more digits than it needs.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A circle (backend) or square (baseline), filled (backup) or hollow (restore).
fn marker(x: f64, y: f64, baseline: bool, colour: &str, filled: bool) -> String {
    let fill = if filled { colour } else { "white" };
    if baseline {
        format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{fill}\" stroke=\"{colour}\" stroke-width=\"2\"/>\n",
            x - 5.0,
            y - 5.0
        )
    } else {
        format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5.5\" fill=\"{fill}\" stroke=\"{colour}\" stroke-width=\"2\"/>\n"
        )
    }
}

fn legend(out: &mut String, p: &Picture) {
    let x = PLOT.2 + 30.0;
    let mut y = PLOT.1 + 10.0;
    let _ = writeln!(out, "<text x=\"{x}\" y=\"{:.1}\">{}</text>", y + 4.0, p.markers);
    if p.series.is_empty() {
        let _ = writeln!(out, "<text x=\"{x}\" y=\"{:.1}\">nothing to draw</text>", y + 24.0);
    }
    y += 20.0;
    for (title, baseline) in [("backends", false), ("baselines", true)] {
        let members: Vec<(usize, &Series)> = p
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.baseline == baseline)
            .collect();
        if members.is_empty() {
            continue;
        }
        y += 6.0;
        let _ = writeln!(
            out,
            "<text x=\"{x}\" y=\"{:.1}\" font-weight=\"bold\">{title}</text>",
            y + 4.0
        );
        y += 20.0;
        for (k, s) in members {
            out.push_str(&marker(x + 5.0, y, baseline, PALETTE[k % PALETTE.len()], true));
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{:.1}\">{}</text>",
                x + 16.0,
                y + 4.0,
                escape(&s.name)
            );
            y += 20.0;
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_stay_within_the_range() {
        assert_eq!(ticks(0.8, 12.0), [1.0, 2.0, 5.0, 10.0]);
        assert_eq!(ticks(0.25, 0.6), [0.5]);
        assert_eq!(nice_step(0.37), 0.5);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(trim(2.5), "2.5");
        assert_eq!(trim(10.0), "10");
    }
}
