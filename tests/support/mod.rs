//! Specs of the backends of this build, for the tests that run them all.
#![allow(dead_code, reason = "each test file uses part of the support")]

/// The spec of the redis server `.ci/run` starts (`PAGEBACKUP_REDIS_URL`)
/// followed by `extra`, or `None` after a `SKIP:` line when there is none.
pub fn redis_spec(extra: &str) -> Option<&'static str> {
    match std::env::var("PAGEBACKUP_REDIS_URL") {
        Ok(url) => Some(Box::leak(format!("redis:url={url}{extra}").into_boxed_str())),
        Err(_) => {
            println!("SKIP: redis: PAGEBACKUP_REDIS_URL is not set (.ci/run starts a server and sets it)");
            None
        }
    }
}

/// A spec with default options for every backend of this build: its name,
/// or for redis (which needs a server) [`redis_spec`], left out without one.
pub fn default_specs() -> Vec<&'static str> {
    pagebackup::available_backends()
        .into_iter()
        .filter_map(|name| match name {
            "redis" => redis_spec(""),
            name => Some(name),
        })
        .collect()
}
