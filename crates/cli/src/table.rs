//! Tables for the terminal (plain text, aligned) and for documents (Markdown).

/// How a table is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Plain text in aligned columns, for a terminal.
    Text,
    /// A Markdown table.
    Md,
}

/// A table: headers, each with whether its column is numeric (right-aligned),
/// and rows of cells.
pub struct Table {
    headers: Vec<(&'static str, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these `(header, right-aligned)` columns. Each header
    /// has its meaning in [`crate::glossary::COLUMNS`] (checked in debug
    /// builds), so that `bench --explain` covers every column.
    pub fn new(headers: &[(&'static str, bool)]) -> Table {
        debug_assert!(
            headers.iter().all(|(h, _)| crate::glossary::meaning(h).is_some()),
            "a column without its meaning in glossary::COLUMNS: {headers:?}"
        );
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    /// The table as text or Markdown, one line per row, each ending in a newline.
    pub fn render(&self, format: Format) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain([self.headers[c].0.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&self.headers)
                .zip(&widths)
                .map(|((cell, &(_, right)), &w)| {
                    if right {
                        format!("{cell:>w$}")
                    } else {
                        format!("{cell:<w$}")
                    }
                })
                .collect();
            match format {
                Format::Text => padded.join("  ").trim_end().to_string(),
                Format::Md => format!("| {} |", padded.join(" | ")),
            }
        };
        let mut out = vec![line(self.headers.iter().map(|h| h.0).collect())];
        out.push(match format {
            Format::Text => widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>().join("  "),
            Format::Md => {
                let rules: Vec<String> = self
                    .headers
                    .iter()
                    .zip(&widths)
                    .map(|(&(_, right), &w)| {
                        if right {
                            format!("{}:", "-".repeat(w.max(2) - 1))
                        } else {
                            "-".repeat(w.max(1))
                        }
                    })
                    .collect();
                format!("| {} |", rules.join(" | "))
            }
        });
        out.extend(self.rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
        out.into_iter().map(|l| l + "\n").collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&[("backend", false), ("GB/s", true)]);
        t.row(vec!["shmem".into(), "3.10".into()]);
        t.row(vec!["compressed".into(), "12.25".into()]);
        t
    }

    #[test]
    fn text_is_aligned_without_markup() {
        assert_eq!(
            sample().render(Format::Text),
            "backend      GB/s\n\
             ----------  -----\n\
             shmem        3.10\n\
             compressed  12.25\n"
        );
    }

    #[test]
    fn markdown_right_aligns_numbers() {
        assert_eq!(
            sample().render(Format::Md),
            "| backend    |  GB/s |\n\
             | ---------- | ----: |\n\
             | shmem      |  3.10 |\n\
             | compressed | 12.25 |\n"
        );
    }
}
