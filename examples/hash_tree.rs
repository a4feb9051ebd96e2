//! Real work, in parallel, in order: hashes every file under a directory
//! (default: this project's own tree, without `target/` and `.git/`) with
//! SHA-256 and prints `hash  path` lines in sorted path order, exactly what
//! a sequential run prints (the example checks it, byte for byte). Files
//! that cannot be read print an error line in their place and the run goes
//! on. Both timings go to standard error.
//!
//! Run with `cargo run --release --example hash_tree [DIR]`.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// Files hashed at once (and read ahead, at most).
const WINDOW: usize = 64;

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let mut files = Vec::new();
    if let Err(error) = collect_files(&root, &mut files) {
        eprintln!("cannot list {}: {error}", root.display());
        std::process::exit(1);
    }
    files.sort();

    // The parallel run first: the sequential one then reads from a warm cache.
    let rt = kasync::Runtime::new().expect("a kasync runtime");
    let start = Instant::now();
    let mut parallel = String::new();
    let hashes = rt
        .domain("hash")
        .map_ordered(files.clone(), WINDOW, |path: PathBuf| hash_file(&path));
    for (path, hashed) in files.iter().zip(hashes) {
        let hashed = hashed.unwrap_or_else(|panic| Err(io::Error::other(panic.to_string())));
        parallel.push_str(&line(&root, path, hashed));
    }
    let parallel_time = start.elapsed();

    let start = Instant::now();
    let sequential: String = files.iter().map(|path| line(&root, path, hash_file(path))).collect();
    let sequential_time = start.elapsed();

    print!("{parallel}");
    assert_eq!(parallel, sequential, "map_ordered printed what a sequential run prints");
    eprintln!(
        "{} files: sequential {:.1} ms, kasync map_ordered (window {WINDOW}) {:.1} ms; outputs identical",
        files.len(),
        sequential_time.as_secs_f64() * 1e3,
        parallel_time.as_secs_f64() * 1e3,
    );
}

/// Every regular file under `dir`, skipping build output and version control.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// The file's SHA-256, in hex.
fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        }))
}

/// One output line: `hash  path`, or the error in the hash's place.
fn line(root: &Path, path: &Path, hashed: io::Result<String>) -> String {
    let shown = path.strip_prefix(root).unwrap_or(path).display();
    match hashed {
        Ok(hash) => format!("{hash}  {shown}\n"),
        Err(error) => format!("error: {error}  {shown}\n"),
    }
}
