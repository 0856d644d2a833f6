//! The runner: replays a target's corpus, then checks mutations of it until the time or
//! iteration budget is spent. A mutation that shows a behaviour not seen yet (by the target's
//! signature) joins the corpus, a poor man's coverage that works on the stable toolchain.
//!
//! Settings (environment): `FUZZ_SECONDS` per target (default 10), `FUZZ_ITERATIONS` per
//! target (default unlimited), `FUZZ_SEED` (default 1; the run is the same for the same seed
//! and the same number of iterations), `FUZZ_REPLAY=<file>` checks one saved input only (a
//! relative path is from the repository root), `FUZZ_SAVE_NEW=1` writes the inputs that joined
//! the corpus to `target/fuzz/new-corpus/<target>/` (to review and commit under `fuzz/corpus/`).

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::mutate;

/// splitmix64: small, fast and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// FNV-1a: a stable hash for signatures, file names and per-input split points.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Folds values into one signature.
pub fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0x84222325, |h, p| fnv(&(h ^ p).to_le_bytes()))
}

/// A structure-aware mutation: (rng, input, corpus, dictionary) → a new input, or `None`.
pub type Mutator = fn(&mut Rng, &[u8], &[Vec<u8>], &[&str]) -> Option<Vec<u8>>;

pub struct Target {
    pub name: &'static str,
    /// Seed inputs besides the files in `fuzz/corpus/<name>/`.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens the mutator splices in: field names and values the code under test looks for.
    pub dictionary: &'static [&'static str],
    /// Checks one input: panics when an invariant breaks, else returns a signature of what
    /// the code did with it.
    pub check: fn(&[u8]) -> u64,
    /// A mutation that knows the input's structure; `None` lets a generic one run.
    pub mutate: Option<Mutator>,
    /// Mutations are cut to this length.
    pub max_len: usize,
}

struct Settings {
    seconds: f64,
    iterations: u64,
    seed: u64,
    replay: Option<PathBuf>,
    save_new: bool,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name).ok().filter(|raw| !raw.trim().is_empty()) {
        Some(raw) => raw
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={raw:?} is not a valid number")),
        None => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        Self {
            seconds: env("FUZZ_SECONDS", 10.0),
            iterations: env("FUZZ_ITERATIONS", u64::MAX),
            seed: env("FUZZ_SEED", 1),
            replay: std::env::var_os("FUZZ_REPLAY")
                .filter(|path| !path.is_empty())
                .map(PathBuf::from),
            save_new: env("FUZZ_SAVE_NEW", 0u8) == 1,
        }
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn out_dir() -> PathBuf {
    repo_root().join("target").join("fuzz")
}

/// Every file of a directory, sorted by name so the run does not depend on the file system.
pub fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display())))
        .collect()
}

/// Most inputs the corpus grows to, and the largest one it keeps: beyond that new behaviours
/// are still checked, just not mutated further.
const MAX_CORPUS: usize = 4096;
const MAX_KEPT_LEN: usize = 64 * 1024;

pub fn run(target: &Target) {
    let settings = Settings::from_env();
    if let Some(path) = &settings.replay {
        // cargo runs the test from fuzz/; a relative path is meant from the repository root.
        let path = repo_root().join(path);
        let input = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        guarded(target, &input, "replayed");
        println!("fuzz {}: {} passes", target.name, path.display());
        return;
    }
    let mut corpus = (target.seeds)();
    corpus.extend(files_in(
        &repo_root().join("fuzz").join("corpus").join(target.name),
    ));
    assert!(!corpus.is_empty(), "fuzz target {} has no corpus", target.name);
    let seeds = corpus.len();
    let mut seen = HashSet::new();
    for input in &corpus {
        seen.insert(guarded(target, input, "corpus"));
    }
    let started = Instant::now();
    let budget = Duration::from_secs_f64(settings.seconds.max(0.0));
    let mut rng = Rng::new(settings.seed ^ fnv(target.name.as_bytes()));
    let mut runs = 0u64;
    while runs < settings.iterations && started.elapsed() < budget {
        let base = rng.below(corpus.len());
        let input = mutate::mutate(&mut rng, &corpus[base], &corpus, target);
        let signature = guarded(target, &input, "mutated");
        if seen.insert(signature) && corpus.len() < MAX_CORPUS && input.len() <= MAX_KEPT_LEN {
            if settings.save_new {
                save(&out_dir().join("new-corpus").join(target.name), &input);
            }
            corpus.push(input);
        }
        runs += 1;
    }
    println!(
        "fuzz {}: {runs} mutated inputs in {:.1} s (seed {}), corpus {seeds} -> {}, {} behaviours",
        target.name,
        started.elapsed().as_secs_f64(),
        settings.seed,
        corpus.len(),
        seen.len()
    );
}

fn save(dir: &Path, input: &[u8]) -> PathBuf {
    let path = dir.join(format!("{:016x}", fnv(input)));
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, input));
    if let Err(e) = written {
        eprintln!("cannot write {}: {e}", path.display());
    }
    path
}

/// Runs the check; on a panic, saves the input and fails with how to replay it.
fn guarded(target: &Target, input: &[u8], what: &str) -> u64 {
    match panic::catch_unwind(AssertUnwindSafe(|| (target.check)(input))) {
        Ok(signature) => signature,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            let path = save(&out_dir().join("failures").join(target.name), input);
            let preview: String = String::from_utf8_lossy(&input[..input.len().min(2000)])
                .escape_debug()
                .collect();
            panic!(
                "fuzz target {} failed on a {what} input of {} bytes: {message}\n\
                 saved to {}; replay with\n  \
                 FUZZ_REPLAY={} cargo test -p codex-openai-wrapper-fuzz --profile fuzz -- {}\n\
                 input: \"{preview}\"",
                target.name,
                input.len(),
                path.display(),
                path.display(),
                target.name,
            )
        }
    }
}
