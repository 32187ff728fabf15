//! The Python venv the tests run PyPI code in (Authlib and moto servers in the interop
//! suite, botocore in `tests/it/sigv4.rs`): `$CALLOUT_VENV` (what `.ci/run` exports), else
//! `target/ci-venv`, with every package `tests/interop/requirements.txt` pins installed at
//! its pinned version. Shared by the test binaries through `#[path]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long creating the venv and `pip install` may take.
const PIP_TIMEOUT: Duration = Duration::from_secs(300);

fn venv_dir() -> PathBuf {
    match std::env::var_os("CALLOUT_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("ci-venv"),
    }
}

fn requirements() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/requirements.txt")
}

/// The venv's python with every pin installed: creates the venv and runs `pip install -r`
/// when needed, at most once per test process. Panics (never skips) when that cannot be done.
pub fn venv_python() -> PathBuf {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match READY.get_or_init(prepare_venv) {
        Ok(python) => python.clone(),
        Err(e) => panic!("the tests' Python venv cannot be made: {e}"),
    }
}

fn prepare_venv() -> Result<PathBuf, String> {
    let dir = venv_dir();
    let python = dir.join("bin").join("python");
    let requirements = requirements();
    let pins = pinned_requirements(&requirements)?;
    if !python.exists() {
        let mut venv = Command::new("python3");
        venv.args(["-m", "venv"]).arg(&dir);
        run_bounded(venv, &format!("python3 -m venv {}", dir.display()), PIP_TIMEOUT).map_err(|e| {
            format!("{e}\n(the tests need Python 3.10+ with the venv module, e.g. Debian's python3-venv)")
        })?;
    }
    if missing_pins(&python, &pins)?.is_empty() {
        return Ok(python);
    }
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
    ])
    .arg(&requirements);
    run_bounded(
        pip,
        &format!(
            "{} -m pip install -r tests/interop/requirements.txt (needs the PyPI registry)",
            python.display()
        ),
        PIP_TIMEOUT,
    )?;
    let missing = missing_pins(&python, &pins)?;
    if missing.is_empty() {
        Ok(python)
    } else {
        Err(format!(
            "`pip install` succeeded but the venv {} still lacks: {}",
            dir.display(),
            missing.join(", ")
        ))
    }
}

/// `name==version` lines of a requirements file.
fn pinned_requirements(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            line.split_once("==")
                .map(|(name, version)| (name.trim().to_owned(), version.trim().to_owned()))
                .ok_or_else(|| format!("{}: `{line}` is not pinned with ==", path.display()))
        })
        .collect()
}

/// The pinned packages the venv does not have at their pinned version ("name have != want").
fn missing_pins(python: &Path, pins: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    const CHECK: &str = r#"
import json, sys
from importlib.metadata import PackageNotFoundError, version
for name, want in json.loads(sys.argv[1]).items():
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        print(f"{name} {have} != {want}")
"#;
    let output = Command::new(python)
        .args(["-c", CHECK])
        .arg(serde_json::to_string(pins).unwrap())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} does not run ({}): {}\n(delete the venv {} to have it made again)",
            python.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            python.parent().and_then(Path::parent).unwrap_or(python).display(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Runs `command` to success within `timeout`; `Err` with its output otherwise.
pub fn run_bounded(mut command: Command, what: &str, timeout: Duration) -> Result<(), String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{what}` cannot be started: {e}"))?;
    // Both pipes drained by threads, so the child never blocks on a full one.
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|pipe| std::thread::spawn(move || std::io::read_to_string(pipe).unwrap_or_default()))
    .collect();
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{what}` took over {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for `{what}`: {e}")),
        }
    };
    let output: String = readers
        .into_iter()
        .map(|r| r.join().unwrap_or_default())
        .collect();
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{what}` failed ({status}):\n{output}"))
    }
}
