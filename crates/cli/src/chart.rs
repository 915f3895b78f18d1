//! The SVG chart of a report: backup and restore throughput (log scale)
//! against effective ratio, batched on one thread. Each adapter has a colour
//! and is named in the legend, not beside its points, so that no label can
//! cover a point or another label; backends are circles, baselines squares;
//! a filled marker is the backup, a hollow one the restore, joined by a line.

use std::fmt::Write as _;

use crate::report::{Report, ResultRow};

const W: f64 = 980.0;
const H: f64 = 600.0;
/// The plot area: left, top, right, bottom edges.
const PLOT: (f64, f64, f64, f64) = (80.0, 60.0, 700.0, 530.0);
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

/// One adapter's two points.
struct Series<'a> {
    name: &'a str,
    baseline: bool,
    ratio: f64,
    backup: f64,
    restore: f64,
}

/// An axis: the data range padded, mapped onto `from..to` pixels.
struct Axis {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl Axis {
    fn at(&self, v: f64) -> f64 {
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }
}

/// The chart of `report`.
pub fn svg(report: &Report) -> String {
    let series = series(report);
    let ratios = series.iter().map(|s| s.ratio);
    let speeds = series.iter().flat_map(|s| [s.backup, s.restore]);
    let (rlo, rhi) = bounds(ratios);
    let (glo, ghi) = bounds(speeds);
    // Ratios on a linear axis with 5% padding; GB/s on a log axis with a
    // tenth of a decade of padding: fitted to the data, not to 0.
    let pad = ((rhi - rlo) * 0.05).max(0.05);
    let x = Axis {
        lo: rlo - pad,
        hi: rhi + pad,
        from: PLOT.0,
        to: PLOT.2,
    };
    let y = Axis {
        lo: glo.log10() - 0.1,
        hi: ghi.log10() + 0.1,
        from: PLOT.3,
        to: PLOT.1,
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"30\" text-anchor=\"middle\" font-size=\"16\">Backup and restore throughput against effective ratio ({} pages, batches, one thread)</text>\n",
        W / 2.0,
        report.corpus.pages
    );
    axes(&mut out, &x, &y);
    for (k, s) in series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let (px, pb, pr) = (x.at(s.ratio), y.at(s.backup.log10()), y.at(s.restore.log10()));
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" y1=\"{pb:.1}\" x2=\"{px:.1}\" y2=\"{pr:.1}\" stroke=\"{colour}\" stroke-width=\"1.5\"/>"
        );
        out.push_str(&marker(px, pb, s.baseline, colour, true));
        out.push_str(&marker(px, pr, s.baseline, colour, false));
    }
    legend(&mut out, &series);
    out.push_str("</svg>\n");
    out
}

fn series(report: &Report) -> Vec<Series<'_>> {
    let batch = report.results.iter().map(|r| r.batch).max().unwrap_or(1);
    let main = |r: &&ResultRow| r.threads == 1 && r.batch == batch;
    report
        .results
        .iter()
        .filter(main)
        .filter(|r| r.op == "backup")
        .filter_map(|b| {
            let restore = report
                .results
                .iter()
                .filter(main)
                .find(|r| r.op == "restore" && r.backend == b.backend)?;
            Some(Series {
                name: &b.backend,
                baseline: b.role == "baseline",
                ratio: b.effective_ratio?,
                backup: b.gbps?.max(1e-3),
                restore: restore.gbps?.max(1e-3),
            })
        })
        .collect()
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

fn axes(out: &mut String, x: &Axis, y: &Axis) {
    let (l, t, r, b) = PLOT;
    let _ = writeln!(
        out,
        "<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>",
        r - l,
        b - t
    );
    let step = nice_step((x.hi - x.lo) / 6.0);
    let mut v = (x.lo / step).ceil() * step;
    while v <= x.hi {
        let px = x.at(v);
        let _ = writeln!(
            out,
            "<line x1=\"{px:.1}\" y1=\"{t}\" x2=\"{px:.1}\" y2=\"{b}\" stroke=\"#eee\"/>\n<text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            b + 18.0,
            trim(v)
        );
        v += step;
    }
    for v in ticks(10f64.powf(y.lo), 10f64.powf(y.hi)) {
        let py = y.at(v.log10());
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
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">effective ratio (original bytes / bytes used)</text>\n\
         <text x=\"22\" y=\"{}\" transform=\"rotate(-90 22 {})\" text-anchor=\"middle\">GB/s (log scale)</text>",
        (l + r) / 2.0,
        b + 42.0,
        (t + b) / 2.0,
        (t + b) / 2.0
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

fn legend(out: &mut String, series: &[Series<'_>]) {
    let x = PLOT.2 + 30.0;
    let mut y = PLOT.1 + 10.0;
    let _ = writeln!(
        out,
        "<text x=\"{x}\" y=\"{:.1}\">filled: backup, hollow: restore</text>",
        y + 4.0
    );
    y += 20.0;
    for (title, baseline) in [("backends", false), ("baselines", true)] {
        let members: Vec<(usize, &Series<'_>)> = series
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
                escape(s.name)
            );
            y += 20.0;
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
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
