//! `pagebackup`: compare backup backends on built-in or captured memory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pagebackup::raw::params::parse_size;
use pagebackup::region::bench::Workload;
use pagebackup_cli::adapters::{ALL_BASELINES, Adapter, Backend, Error, REDIS_PER_PAGE, baseline};
use pagebackup_cli::capture::capture;
use pagebackup_cli::corpus::{Corpus, classify};
use pagebackup_cli::measure;
use pagebackup_cli::output::NewFile;
use pagebackup_cli::redis_bench::{self, RedisPerPage};
use pagebackup_cli::report::{CorpusInfo, Machine, Mode, Report, Skew, Skipped, Timing, shown};
use pagebackup_cli::table::Format;
use pagebackup_cli::zram::KernelZram;
use pagebackup_cli::{async_bench, chart, glossary, region_bench, render, skewed, stop};

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
    Bench(Box<BenchArgs>),
    /// Write a live process's private anonymous memory to a page file.
    Capture {
        /// The process.
        #[arg(long)]
        pid: u32,
        /// The page file to write (mode 0600): a new file, or with --force a
        /// regular file to replace once the capture has succeeded.
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists (only a regular file, only on success).
        #[arg(long)]
        force: bool,
        /// Stop after this many pages.
        #[arg(long)]
        max_pages: Option<u64>,
    },
    /// List the backends of this build, each with the parameters its spec
    /// takes (`NAME:key=value,...`) and their defaults.
    Backends,
    /// Describe a page file: its size and its pages by kind.
    Stat {
        /// The page file.
        file: PathBuf,
    },
    /// The kernel's side of `bench --region --kernel-swap`, run by the bench
    /// in a child: one workload over plain memory in a memory cgroup.
    #[command(hide = true)]
    KernelWorkload {
        /// The v1 memory cgroup to join.
        #[arg(long)]
        cgroup: PathBuf,
        /// random, hot, seq or scan.
        #[arg(long)]
        workload: String,
        /// Bytes of memory.
        #[arg(long)]
        len: usize,
        /// Accesses (random, hot).
        #[arg(long)]
        accesses: u64,
        /// Threads (random, hot).
        #[arg(long)]
        threads: usize,
        /// Pages in the built-in corpus.
        #[arg(long, default_value_t = 16384)]
        pages: usize,
        /// A page file to fill the memory from instead.
        #[arg(long)]
        corpus: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A backend spec, as `pagebackup::open` takes it (repeatable; default:
    /// every backend of this build with its default options, tiered as
    /// compressed lz4 over zstd, redis if a server answers at
    /// redis://127.0.0.1:6379; a backend that cannot run is skipped with
    /// the reason). `pagebackup backends` lists the parameters.
    #[arg(long = "backend", value_name = "SPEC")]
    backends: Vec<String>,
    /// Which baselines to run: those the backends are compared with
    /// (fitting, the default), or all. Plain mode only.
    #[arg(long, value_enum)]
    baselines: Option<Baselines>,
    /// Print the full table (every adapter, mode and operation) after the summary.
    #[arg(long)]
    full: bool,
    /// Say what each column of the tables means, and run nothing.
    #[arg(long)]
    explain: bool,
    /// How to print the summary and the table.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Pages in the built-in corpus (a corpus file is used whole: cut it,
    /// or capture with --max-pages, for fewer pages).
    #[arg(long, default_value_t = 16384, conflicts_with = "corpus")]
    pages: usize,
    /// A page file to run on instead of the built-in corpus.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Back up the corpus this many times over, so that the store holds
    /// more than memory (or a memory cgroup's page cache) would, while the
    /// bench itself holds only the corpus and one restore buffer as long
    /// as it. Restores wrap around that buffer, so only the last pass over
    /// each place is checked against its original. Plain mode only;
    /// baselines are sized to all the pages.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Run the region mode instead: the random, hot, seq and scan workloads
    /// over an offload region for each backend (default: compressed:algo=lz4).
    #[arg(long)]
    region: bool,
    /// MiB of the region (default 1024; --region only).
    #[arg(long)]
    region_mib: Option<usize>,
    /// MiB the region keeps resident (default 256; --region only).
    #[arg(long)]
    budget_mib: Option<usize>,
    /// Accesses of the random and hot workloads (default 500000 and
    /// 2000000; --region only).
    #[arg(long)]
    accesses: Option<u64>,
    /// Also run the workloads under the kernel's swap: a memory cgroup of
    /// the budget, swap on /dev/zram0 (lz4), set up and torn down here
    /// (root; skipped with the reason where it cannot). --region only.
    #[arg(long)]
    kernel_swap: bool,
    /// Pages per call in the batched runs (default 64; not with --working-set).
    #[arg(long)]
    batch: Option<usize>,
    /// Threads of the multi-threaded run (default: the machine's cores);
    /// in the region mode, threads of random and hot (default 1). Plain and
    /// region modes only.
    #[arg(long)]
    threads: Option<usize>,
    /// Rounds of each run; the best is kept.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also measure the kernel's zram through /dev/zram0 (root; refused if
    /// in use). Plain mode only.
    #[arg(long)]
    kernel_zram: bool,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the mode's chart as SVG: throughput against effective ratio
    /// (plain), against the runtime's lateness (async), against RAM (working set).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Run the async benchmark instead: every backend through `open_async`.
    #[arg(long = "async")]
    async_api: bool,
    /// Operations in flight in the async benchmark (default 64; --async only).
    #[arg(long)]
    depth: Option<usize>,
    /// Replay a skewed restore pattern over this many pages instead (the
    /// corpus repeated), for the backends given with --backend.
    #[arg(long)]
    working_set: Option<usize>,
    /// The skew: percent of pages that are hot / percent of restores they
    /// take (default 20/80; --working-set only).
    #[arg(long)]
    hot: Option<String>,
    /// Restores follow a Zipf law of this exponent over the pages (such as
    /// 0.99) instead of two classes; the hot pages are the most popular 20%
    /// (--working-set only; not with --hot).
    #[arg(long)]
    zipf: Option<f64>,
    /// Passes of the restore sequence before the measured one, so that a
    /// tiered stack's policy has settled (default 1; --working-set only).
    #[arg(long, value_name = "PASSES")]
    warmup: Option<usize>,
    /// Restores in each pass, the measured one and each warm-up pass
    /// (default four per page of the working set; --working-set only).
    #[arg(long)]
    restores: Option<usize>,
    /// Run each tiered stack at each of these budgets of its first tier
    /// (such as 1MiB,4MiB,16MiB), for the chart of throughput against
    /// budget (--working-set only).
    #[arg(long, value_delimiter = ',', value_name = "SIZE,...")]
    budgets: Vec<String>,
}

/// The baselines a bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Baselines {
    /// Only those the chosen backends are compared with.
    Fitting,
    /// Every baseline.
    All,
}

fn main() -> ExitCode {
    stop::install();
    let result = match Cli::parse().command {
        Command::Bench(args) => bench(*args),
        Command::Capture {
            pid,
            out,
            force,
            max_pages,
        } => capture_to(pid, &out, force, max_pages),
        Command::Backends => {
            print!("{}", backends());
            Ok(())
        }
        Command::Stat { file } => stat(&file),
        Command::KernelWorkload {
            cgroup,
            workload,
            len,
            accesses,
            threads,
            pages,
            corpus,
        } => kernel_workload(&cgroup, &workload, len, accesses, threads, corpus.as_deref(), pages),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Whatever failed, a password in a spec it quotes stays hidden.
            eprintln!("pagebackup: {}", shown(&pagebackup_cli::adapters::report(&*e)));
            ExitCode::from(stop::exit_status(&e))
        }
    }
}

/// The backends asked for, after the baselines they are compared with (all
/// of them with `--baselines all`) and the kernel's zram if asked for. By
/// default ([`default_specs`]), a backend that cannot be opened here is
/// left out and said so in `skipped`; one named with `--backend` is an error.
fn adapters(
    args: &BenchArgs,
    specs: &[String],
    pages: usize,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Box<dyn Adapter>>, Error> {
    let mut backends = Vec::new();
    for spec in specs {
        match Backend::open(spec) {
            Ok(backend) => {
                if let Some(notice) = backend.notice(pages) {
                    eprintln!("pagebackup: {notice}");
                }
                backends.push(backend)
            }
            Err(e) if args.backends.is_empty() => skipped.push(Skipped {
                backend: shown(spec),
                reason: format!("cannot open it here: {}", shown(&pagebackup_cli::adapters::report(&*e))),
            }),
            Err(e) => {
                return Err(format!(
                    "--backend {}: {}",
                    shown(spec),
                    shown(&pagebackup_cli::adapters::report(&*e))
                )
                .into());
            }
        }
    }
    let mut needed: Vec<&str> = Vec::new();
    for name in backends.iter().flat_map(Backend::baselines) {
        if !needed.contains(&name) {
            needed.push(name);
        }
    }
    // In the order of ALL_BASELINES, the codecs of other levels after them.
    let mut names: Vec<&str> = ALL_BASELINES
        .into_iter()
        .filter(|b| args.baselines == Some(Baselines::All) || needed.contains(b))
        .collect();
    names.extend(needed.iter().filter(|b| !ALL_BASELINES.contains(b)));
    let mut all: Vec<Box<dyn Adapter>> = Vec::new();
    for name in names.into_iter().filter(|&n| n != REDIS_PER_PAGE) {
        match baseline(name, pages) {
            Ok(adapter) => all.push(adapter),
            // A baseline only --baselines all asked for may be missing here (io_uring).
            Err(e) if !needed.contains(&name) => {
                eprintln!("pagebackup: {name} left out: {}", pagebackup_cli::adapters::report(&*e))
            }
            Err(e) => return Err(format!("{name}: {}", pagebackup_cli::adapters::report(&*e)).into()),
        }
    }
    if args.kernel_zram {
        all.push(Box::new(KernelZram::open(pages, "lz4")?));
    }
    // The per-page redis baseline needs the server: the first redis spec's.
    if let Some(redis) = backends.iter().map(|b| b.name()).find(|s| s.starts_with("redis:")) {
        let spec = specs.iter().find(|s| shown(s) == redis).map_or(redis, String::as_str);
        all.push(Box::new(RedisPerPage::for_spec(spec)?));
    }
    all.extend(backends.into_iter().map(|b| Box::new(b) as Box<dyn Adapter>));
    Ok(all)
}

/// The tiered stack the plain bench runs by default: lz4 in front of zstd,
/// the first tier's budget a quarter of the corpus's size, so that pages
/// move down.
fn default_tiered(pages: usize) -> String {
    // A quarter of `pages` pages of 4 KiB, in KiB.
    format!(
        "tiered:tiers=[compressed:algo=lz4|compressed:algo=zstd],budget={}KiB",
        pages.max(64)
    )
}

/// Where the plain bench looks for a redis server by default.
const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// The backends of the plain bench: those asked for, or by default every
/// backend of this build, tiered as [`default_tiered`] and redis at
/// [`DEFAULT_REDIS`] if a server answers there (else a skip with the reason).
fn default_specs(args: &BenchArgs, pages: usize) -> (Vec<String>, Vec<Skipped>) {
    if !args.backends.is_empty() {
        return (args.backends.clone(), Vec::new());
    }
    let mut skipped = Vec::new();
    let specs = pagebackup::available_backends()
        .into_iter()
        .filter_map(|name| match name {
            "tiered" => Some(default_tiered(pages)),
            "redis" => {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 6379));
                match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300)) {
                    Ok(_) => Some(format!("redis:url={DEFAULT_REDIS}")),
                    Err(e) => {
                        skipped.push(Skipped {
                            backend: "redis".into(),
                            reason: format!(
                                "no server at {DEFAULT_REDIS} ({e}); name one with --backend redis:url=redis://HOST:PORT"
                            ),
                        });
                        None
                    }
                }
            }
            other => Some(other.to_string()),
        })
        .collect();
    (specs, skipped)
}

/// The backends of the working-set mode: those asked for, or by default
/// every backend of this build but redis, which needs a server's URL, and
/// tiered, which needs its tiers and budgets.
fn specs(args: &BenchArgs) -> Vec<String> {
    if args.backends.is_empty() {
        pagebackup::available_backends()
            .into_iter()
            .filter(|&b| b != "redis" && b != "tiered")
            .map(String::from)
            .collect()
    } else {
        args.backends.clone()
    }
}

/// Every backend of this build and the parameters its spec takes, from
/// the table its spec parser checks keys against.
fn backends() -> String {
    let mut out = String::from(
        "Backends of this build, as `bench --backend` and `pagebackup::open` take them: NAME or NAME:key=value,...\n",
    );
    for name in pagebackup::available_backends() {
        let params = pagebackup::backend_params(name).unwrap_or_default();
        out += &format!("\n{name}\n");
        if params.is_empty() {
            out += "  (no parameters)\n";
        }
        let cell = |p: &pagebackup::raw::params::ParamDoc| format!("{}={}", p.key, p.syntax);
        let width = params.iter().map(|p| cell(p).chars().count()).max().unwrap_or(0);
        for p in params {
            let key = cell(p);
            let pad = width - key.chars().count();
            out += &format!("  {key}{:pad$}  {} (default: {})\n", "", p.meaning, p.default);
        }
    }
    out
}

/// The mode `args` ask for; a flag that mode cannot honour is a usage
/// error (the process exits with status 2, as for any other usage error).
fn mode(args: &BenchArgs) -> Mode {
    let modes = [
        (args.async_api, "--async", Mode::Async),
        (args.working_set.is_some(), "--working-set", Mode::WorkingSet),
        (args.region, "--region", Mode::Region),
    ];
    let chosen: Vec<_> = modes.iter().filter(|(given, ..)| *given).collect();
    let mode = match chosen[..] {
        [] => Mode::Plain,
        [(_, _, mode)] => *mode,
        [(_, a, _), (_, b, _), ..] => usage(&format!("{a} and {b} are separate modes; run them one at a time")),
    };
    let flags: [(&str, bool, &[Mode]); 15] = [
        ("--baselines", args.baselines.is_some(), &[Mode::Plain]),
        ("--repeat", args.repeat != 1, &[Mode::Plain]),
        ("--threads", args.threads.is_some(), &[Mode::Plain, Mode::Region]),
        ("--kernel-zram", args.kernel_zram, &[Mode::Plain]),
        ("--batch", args.batch.is_some(), &[Mode::Plain, Mode::Async]),
        ("--depth", args.depth.is_some(), &[Mode::Async]),
        ("--hot", args.hot.is_some(), &[Mode::WorkingSet]),
        ("--zipf", args.zipf.is_some(), &[Mode::WorkingSet]),
        ("--budgets", !args.budgets.is_empty(), &[Mode::WorkingSet]),
        ("--warmup", args.warmup.is_some(), &[Mode::WorkingSet]),
        ("--restores", args.restores.is_some(), &[Mode::WorkingSet]),
        ("--region-mib", args.region_mib.is_some(), &[Mode::Region]),
        ("--budget-mib", args.budget_mib.is_some(), &[Mode::Region]),
        ("--accesses", args.accesses.is_some(), &[Mode::Region]),
        ("--kernel-swap", args.kernel_swap, &[Mode::Region]),
    ];
    for (flag, given, modes) in flags {
        if given && !modes.contains(&mode) {
            let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
            usage(&format!(
                "{flag} applies to the {} mode only, not to the {} mode",
                names.join(" and "),
                mode.name()
            ));
        }
    }
    if args.hot.is_some() && args.zipf.is_some() {
        usage("--hot and --zipf are two kinds of skew; give one");
    }
    if !args.budgets.is_empty() && !args.backends.iter().any(|b| b.trim_start().starts_with("tiered")) {
        usage("--budgets sets the budget of tiered stacks: give one with --backend tiered:...");
    }
    mode
}

fn usage(message: &str) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

fn bench(args: BenchArgs) -> Result<(), Error> {
    if args.explain {
        print!("{}", glossary::explain());
        return Ok(());
    }
    let mode = mode(&args);
    let batch = args.batch.unwrap_or(64);
    if batch == 0 || args.pages == 0 || args.rounds == 0 || args.depth == Some(0) || args.repeat == 0 {
        return Err("--batch, --depth, --pages, --repeat and --rounds must be at least 1".into());
    }
    let corpus = match &args.corpus {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::built_in(args.pages),
    };
    let info = CorpusInfo {
        source: corpus.source.clone(),
        pages: corpus.pages.len(),
        page_classes: corpus.classes.clone(),
    };
    let mut report = Report::new(mode, Machine::this(), info);
    match mode {
        Mode::Async => {
            let bench = async_bench::AsyncBench {
                specs: async_bench::specs(&args.backends),
                depth: args.depth.unwrap_or(64),
                batch,
                rounds: args.rounds,
            };
            report.async_setup = Some(async_bench::setup());
            report.results = async_bench::run_async(&bench, &corpus.pages)?.rows();
        }
        Mode::WorkingSet => {
            let working_set = args.working_set.unwrap_or_default();
            if working_set == 0 {
                return Err("--working-set must be at least 1 page".into());
            }
            let restores = args.restores.unwrap_or(working_set.saturating_mul(4));
            if restores == 0 {
                return Err("--restores must be at least 1".into());
            }
            let mut skew = match args.zipf {
                Some(exponent) => Skew::zipf(working_set, exponent, restores)?,
                None => Skew::parse(working_set, args.hot.as_deref().unwrap_or("20/80"), restores)?,
            };
            skew.warmup_passes = args.warmup.unwrap_or(1);
            let budgets = args
                .budgets
                .iter()
                .map(|b| parse_size(b).ok_or_else(|| format!("--budgets {b}: expected sizes such as 1MiB,4MiB")))
                .collect::<Result<Vec<_>, _>>()?;
            let plan = skewed::plan(&specs(&args), &budgets)?;
            let runs = skewed::bench(&plan, &corpus.pages, skew, args.rounds)?;
            report.skew = Some(skew);
            report.results = skewed::rows(&runs, &skew);
        }
        Mode::Region => report.results = region(&args, &corpus)?,
        _ => plain(&args, &corpus, batch, &mut report)?,
    }
    println!("{}", render::summary(&report, args.format));
    if args.full {
        println!("{}", render::table(&report, args.format));
    }
    if let Some(path) = &args.json {
        std::fs::write(path, report.json()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, chart::svg(&report)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The plain mode: every adapter in every way of handing pages over, then
/// the redis backends against `redis-benchmark`.
fn plain(args: &BenchArgs, corpus: &Corpus, batch: usize, report: &mut Report) -> Result<(), Error> {
    let pages = measure::Repeated {
        corpus: &corpus.pages,
        times: args.repeat,
    };
    let n = pages.len();
    let (specs, mut skipped) = default_specs(args, n);
    let adapters = adapters(args, &specs, n, &mut skipped)?;
    report.skipped = skipped;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |t| t.get()))
        .max(1);
    let mut modes = vec![
        measure::Mode { batch, threads: 1 },
        measure::Mode { batch: 1, threads: 1 },
    ];
    if threads > 1 {
        modes.push(measure::Mode { batch, threads });
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
    let mut out = measure::restore_buffer(corpus.pages.len());
    let start = std::time::Instant::now();
    // Round by round over every adapter and mode, so that a slow spell
    // of the machine falls on one round of each rather than on every round
    // of one; each operation keeps its best round.
    let mut best: Vec<measure::Best> = std::iter::repeat_with(measure::Best::default)
        .take(adapters.len() * modes.len())
        .collect();
    for n in 0..args.rounds {
        for (a, adapter) in adapters.iter().enumerate() {
            for (index, &mode) in modes.iter().enumerate() {
                progress.set_message(format!(
                    "{} (batch {}, {} threads, round {})",
                    adapter.name(),
                    mode.batch,
                    mode.threads,
                    n + 1
                ));
                let checks = measure::Checks { index, of: modes.len() };
                let tick = |k| {
                    progress.inc(k);
                    stop::check()
                };
                let round = measure::round_of(&**adapter, pages, &mut out, mode, n, args.rounds, checks, &tick)?;
                best[a * modes.len() + index].add(round);
            }
        }
    }
    let runs: Vec<measure::Run> = best.into_iter().map(measure::Best::finish).collect();
    report.timing = Some(Timing {
        run_s: start.elapsed().as_secs_f64(),
        windows_s: runs.iter().map(|r| r.windows.as_secs_f64()).sum(),
        in_calls_s: runs.iter().map(|r| r.in_calls.as_secs_f64()).sum(),
        verify_s: runs.iter().map(|r| r.verifying.as_secs_f64()).sum(),
        stats_s: runs.iter().map(|r| r.stats.as_secs_f64()).sum(),
    });
    progress.finish_and_clear();
    report.results = measure::rows(
        &runs,
        |name| name.starts_with("baseline:") || name.starts_with("kernel:"),
        |name, op| adapters.iter().find(|a| a.name() == name).and_then(|a| a.baseline(op)),
    );
    let ran: Vec<String> = specs
        .into_iter()
        .filter(|s| !report.skipped.iter().any(|k| k.backend == shown(s)))
        .collect();
    let redis = redis_bench::comparison(&ran, &report.results, batch, n)?;
    report.results.extend(redis);
    Ok(())
}

/// The region mode: each backend spec behind a region (default: lz4),
/// with the kernel's swap if asked for.
fn region(args: &BenchArgs, corpus: &Corpus) -> Result<Vec<pagebackup_cli::report::Row>, Error> {
    let (len_mib, budget_mib) = (args.region_mib.unwrap_or(1024), args.budget_mib.unwrap_or(256));
    if len_mib == 0 || budget_mib == 0 || args.threads == Some(0) || args.accesses == Some(0) {
        return Err("--region-mib, --budget-mib, --threads and --accesses must be at least 1".into());
    }
    let specs = match args.backends.is_empty() {
        true => vec!["compressed:algo=lz4".to_string()],
        false => args.backends.clone(),
    };
    let bench = region_bench::RegionBench {
        specs,
        len: len_mib << 20,
        budget: budget_mib << 20,
        accesses: args.accesses,
        threads: args.threads.unwrap_or(1),
        rounds: args.rounds,
        kernel_swap: args.kernel_swap,
    };
    // The kernel's child fills its memory from the same corpus.
    let corpus_args = match &args.corpus {
        Some(path) => vec!["--corpus".to_string(), path.to_string_lossy().into_owned()],
        None => vec!["--pages".to_string(), args.pages.to_string()],
    };
    region_bench::run(&bench, &corpus.pages, &corpus_args)
}

fn kernel_workload(
    cgroup: &Path,
    workload: &str,
    len: usize,
    accesses: u64,
    threads: usize,
    corpus: Option<&Path>,
    pages: usize,
) -> Result<(), Error> {
    let corpus = match corpus {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::built_in(pages),
    };
    let workload = Workload::from_name(workload).ok_or_else(|| format!("no workload called {workload}"))?;
    let figures = region_bench::kernel_workload(cgroup, workload, len, accesses, threads, &corpus.pages)?;
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

fn capture_to(pid: u32, out: &Path, force: bool, max_pages: Option<u64>) -> Result<(), Error> {
    let mut new = NewFile::create(out, force)?;
    let mut writer = std::io::BufWriter::new(new.file());
    let report = capture(pid, &mut writer, max_pages)?;
    std::io::Write::flush(&mut writer).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    drop(writer);
    new.commit()?;
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
