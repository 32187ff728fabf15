//! The Python venv botocore runs in: `$CALLOUT_VENV` (default `target/ci-venv`, what
//! `.ci/run` makes), with `PACKAGES` at the versions tests/interop/requirements.txt pins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Python packages `botocore_sign.py` imports, pinned in tests/interop/requirements.txt.
const PACKAGES: &[&str] = &["botocore", "jmespath", "python-dateutil", "urllib3", "six"];

/// The venv's python with `PACKAGES` at their pinned versions: made and installed when
/// needed. Panics, saying why, when that cannot be done.
pub fn venv_python() -> PathBuf {
    let dir = match std::env::var_os("CALLOUT_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("ci-venv"),
    };
    let python = dir.join("bin").join("python");
    if !python.exists() {
        let mut venv = Command::new("python3");
        venv.args(["-m", "venv"]).arg(&dir);
        run_bounded(
            venv,
            &format!("python3 -m venv {} (needs python3 with venv)", dir.display()),
        );
    }
    let pins = pins();
    if missing(&python, &pins).is_empty() {
        return python;
    }
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]);
    pip.args(pins.iter().map(|(name, version)| format!("{name}=={version}")));
    run_bounded(
        pip,
        &format!("{} -m pip install botocore ... (needs PyPI)", python.display()),
    );
    let still = missing(&python, &pins);
    assert!(
        still.is_empty(),
        "the venv {} still lacks {still:?} after pip install",
        dir.display()
    );
    python
}

/// `PACKAGES` with the versions tests/interop/requirements.txt pins.
fn pins() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/requirements.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let pins: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| line.split('#').next()?.trim().split_once("=="))
        .filter(|(name, _)| PACKAGES.contains(&name.trim()))
        .map(|(name, version)| (name.trim().to_owned(), version.trim().to_owned()))
        .collect();
    assert_eq!(
        pins.len(),
        PACKAGES.len(),
        "{} pins each of {PACKAGES:?}",
        path.display()
    );
    pins
}

/// The pins the venv does not have at their version.
fn missing(python: &Path, pins: &BTreeMap<String, String>) -> Vec<String> {
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
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "{} does not run: {}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Runs `command` to success within ten minutes, or panics with its output.
fn run_bounded(mut command: Command, what: &str) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("`{what}` cannot start: {e}"));
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = reader.join().unwrap();
            assert!(status.success(), "`{what}` failed ({status}):\n{stderr}");
            return;
        }
        if started.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` took over ten minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
