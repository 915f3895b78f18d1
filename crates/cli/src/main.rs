//! `pagebackup`: compare backup backends on built-in or captured memory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pagebackup_cli::adapters::{Adapter, Backend, Error, PerPage, RawCodec, codec_baseline};
use pagebackup_cli::capture::capture;
use pagebackup_cli::corpus::{Corpus, classify};
use pagebackup_cli::measure::{Mode, run};
use pagebackup_cli::report::{CorpusInfo, Machine, Report};
use pagebackup_cli::zram::KernelZram;

#[derive(Parser)]
#[command(
    name = "pagebackup",
    version,
    about = "Compare page backup backends on the same pages"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every backend and the baselines over a corpus and compare them.
    Bench(BenchArgs),
    /// Write a live process's private anonymous memory to a page file.
    Capture {
        /// The process.
        #[arg(long)]
        pid: u32,
        /// The page file to write.
        #[arg(long)]
        out: PathBuf,
        /// Stop after this many pages.
        #[arg(long)]
        max_pages: Option<u64>,
    },
    /// Describe a page file: its size and its pages by kind.
    Stat {
        /// The page file.
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A backend spec, as `pagebackup::open` takes it (repeatable; default:
    /// every backend of this build with its default options).
    #[arg(long = "backend", value_name = "SPEC")]
    backends: Vec<String>,
    /// Pages in the built-in corpus.
    #[arg(long, default_value_t = 16384)]
    pages: usize,
    /// A page file to run on instead of the built-in corpus.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Pages per call in the batched runs.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Threads of the multi-threaded run (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Rounds of each run; the best is kept.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also measure the kernel's zram through /dev/zram0 (root; refused if in use).
    #[arg(long)]
    kernel_zram: bool,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput against effective ratio as SVG.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Replay a skewed restore pattern over this many pages instead (the
    /// corpus repeated), for the backends given with --backend.
    #[arg(long)]
    working_set: Option<usize>,
    /// The skew: percent of pages that are hot / percent of restores they take.
    #[arg(long, default_value = "20/80")]
    hot: String,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Bench(args) => bench(args),
        Command::Capture { pid, out, max_pages } => capture_to(pid, &out, max_pages),
        Command::Stat { file } => stat(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pagebackup: {e}");
            ExitCode::FAILURE
        }
    }
}

fn adapters(args: &BenchArgs, pages: usize) -> Result<Vec<Box<dyn Adapter>>, Error> {
    let specs: Vec<String> = if args.backends.is_empty() {
        pagebackup::available_backends()
            .into_iter()
            .filter(|&b| b != "memory")
            .map(String::from)
            .collect()
    } else {
        args.backends.clone()
    };
    let mut all: Vec<Box<dyn Adapter>> = vec![
        Box::new(Backend::memcpy()),
        Box::new(PerPage::memfd(pages)?),
        Box::new(PerPage::file(pages, false)?),
    ];
    match PerPage::file(pages, true) {
        Ok(uring) => all.push(Box::new(uring)),
        Err(e) => eprintln!("pagebackup: baseline:uring-file left out: {e}"),
    }
    let mut codecs: Vec<String> = vec!["baseline:lz4_flex".into(), "baseline:zstd-1".into()];
    codecs.extend(
        specs
            .iter()
            .filter(|s| s.starts_with("compressed"))
            .map(|s| codec_baseline(s)),
    );
    codecs.dedup();
    for codec in codecs.iter().collect::<std::collections::BTreeSet<_>>() {
        all.push(match codec.strip_prefix("baseline:zstd-") {
            Some(level) => Box::new(RawCodec::zstd(
                level.parse().map_err(|_| format!("bad zstd level in {codec}"))?,
            )),
            None => Box::new(RawCodec::lz4()),
        });
    }
    if args.kernel_zram {
        all.push(Box::new(KernelZram::open(pages, "lz4")?));
    }
    for spec in &specs {
        all.push(Box::new(
            Backend::open(spec).map_err(|e| format!("--backend {spec}: {e}"))?,
        ));
    }
    Ok(all)
}

fn bench(args: BenchArgs) -> Result<(), Error> {
    if args.batch == 0 || args.pages == 0 || args.rounds == 0 {
        return Err("--batch, --pages and --rounds must be at least 1".into());
    }
    let corpus = match &args.corpus {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::built_in(args.pages),
    };
    let n = corpus.pages.len();
    if let Some(working_set) = args.working_set {
        let skew = pagebackup_cli::skewed::Skew::parse(working_set, &args.hot, working_set * 4)?;
        let runs = pagebackup_cli::skewed::bench(&args.backends, &corpus.pages, skew, args.rounds)?;
        println!("{}", pagebackup_cli::skewed::table(&skew, &runs));
        return Ok(());
    }
    let adapters = adapters(&args, n)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |t| t.get()))
        .max(1);
    let mut modes = vec![
        Mode {
            batch: args.batch,
            threads: 1,
        },
        Mode { batch: 1, threads: 1 },
    ];
    if threads > 1 {
        modes.push(Mode {
            batch: args.batch,
            threads,
        });
    }
    let total = (adapters.len() * modes.len() * args.rounds * n * 3) as u64;
    let progress = ProgressBar::with_draw_target(
        Some(total),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    progress.set_style(ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}").expect("a valid template"));
    let mut runs = Vec::new();
    for adapter in &adapters {
        for &mode in &modes {
            progress.set_message(format!(
                "{} (batch {}, {} threads)",
                adapter.name(),
                mode.batch,
                mode.threads
            ));
            runs.push(run(&**adapter, &corpus.pages, mode, args.rounds, &|k| progress.inc(k))?);
        }
    }
    progress.finish_and_clear();
    let info = CorpusInfo {
        source: corpus.source.clone(),
        pages: n,
        page_classes: corpus.classes.clone(),
    };
    let report = Report::new(Machine::this(), info, &runs, |name, op| {
        adapters.iter().find(|a| a.name() == name).and_then(|a| a.baseline(op))
    });
    let m = &report.machine;
    println!(
        "{} pages ({} MiB) from {}; {} cores, {}, {} GiB; every restored page verified\n",
        n,
        (n * 4096) >> 20,
        corpus.source,
        m.cores,
        m.kernel,
        m.memory_bytes >> 30
    );
    println!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report.svg()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn capture_to(pid: u32, out: &Path, max_pages: Option<u64>) -> Result<(), Error> {
    let file = std::fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let report = capture(pid, &mut writer, max_pages).inspect_err(|_| {
        let _ = std::fs::remove_file(out);
    })?;
    std::io::Write::flush(&mut writer)?;
    println!(
        "captured {} pages from {} regions of process {pid} into {}",
        report.pages,
        report.regions,
        out.display()
    );
    for (region, reason, pages) in &report.skipped {
        println!("  skipped {region} ({pages} pages): {reason}");
    }
    Ok(())
}

fn stat(file: &Path) -> Result<(), Error> {
    let corpus = Corpus::from_file(file)?;
    println!(
        "{}: {} pages ({} MiB)",
        file.display(),
        corpus.pages.len(),
        (corpus.pages.len() * 4096) >> 20
    );
    for (kind, count) in classify(&corpus.pages) {
        println!("  {kind}: {count}");
    }
    Ok(())
}
