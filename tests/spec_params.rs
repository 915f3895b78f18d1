//! The spec parameters in `open`'s docs and the README are the backends'
//! own tables (`PARAMS`), rendered.
//!
//! After a backend's table changes, `PAGEBACKUP_BLESS=1 cargo test
//! --all-features --test spec_params` rewrites `docs/spec-params.md` and the
//! README's copy of it.
#![cfg(all(
    feature = "shmem",
    feature = "file",
    feature = "compressed",
    feature = "redis",
    feature = "tiered"
))]

use pagebackup::MemoryBackend;
use pagebackup::compressed::CompressedConfig;
use pagebackup::file::FileConfig;
use pagebackup::raw::params::ParamDoc;
use pagebackup::redis::RedisConfig;
use pagebackup::shmem::ShmemConfig;
use pagebackup::tiered::TieredConfig;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/spec-params.md");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const BEGIN: &str = "<!-- spec-params: generated from the backends' PARAMS by tests/spec_params.rs -->\n";
const END: &str = "<!-- /spec-params -->";

/// Every backend's parameters, one table each.
fn rendered() -> String {
    let backends: [(&str, &str, &[ParamDoc]); 6] = [
        ("memory", "always", MemoryBackend::PARAMS),
        ("shmem", "feature `shmem`", ShmemConfig::PARAMS),
        ("file", "feature `file`", FileConfig::PARAMS),
        (
            "compressed",
            "feature `compressed`, or `compressed-lz4`, `compressed-zstd`",
            CompressedConfig::PARAMS,
        ),
        ("tiered", "feature `tiered`", TieredConfig::PARAMS),
        ("redis", "feature `redis`", RedisConfig::PARAMS),
    ];
    backends
        .iter()
        .map(|(name, feature, table)| {
            format!(
                "**`{name}`** ({feature}):\n\n| parameter | default | meaning |\n|---|---|---|\n{}",
                ParamDoc::markdown(table)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The README's generated block: the text before it, its content, the text after.
fn readme_block(readme: &str) -> (&str, &str, &str) {
    let (before, rest) = readme.split_once(BEGIN).expect("the README has the spec-params block");
    let (block, after) = rest.split_once(END).expect("the README's spec-params block ends");
    (before, block, after)
}

#[test]
fn the_docs_and_the_readme_show_each_backends_own_table() {
    let expected = rendered();
    if std::env::var_os("PAGEBACKUP_BLESS").is_some() {
        let readme = std::fs::read_to_string(README).unwrap();
        let (before, _, after) = readme_block(&readme);
        std::fs::write(README, format!("{before}{BEGIN}{expected}{END}{after}")).unwrap();
        std::fs::write(FILE, &expected).unwrap();
    }
    let readme = std::fs::read_to_string(README).unwrap();
    assert_eq!(readme_block(&readme).1, expected, "run with PAGEBACKUP_BLESS=1");
    assert_eq!(
        std::fs::read_to_string(FILE).unwrap(),
        expected,
        "run with PAGEBACKUP_BLESS=1"
    );
}
