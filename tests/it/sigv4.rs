//! `callout::sigv4::sign` against botocore, AWS's Python SDK core, an independent SigV4
//! implementation: generated requests (paths with reserved, unreserved and UTF-8 characters
//! and `//`, queries with repeated names and empty values, headers in mixed case with extra
//! blanks, bodies empty and not, with and without a session token, over s3, execute-api and
//! sts in several regions) are signed by both, and the Authorization, x-amz-date,
//! x-amz-content-sha256 and x-amz-security-token values must be the same.
//!
//! botocore runs in the venv `$CALLOUT_VENV` (default `target/ci-venv`) with the versions
//! `tests/interop/requirements.txt` pins, made and installed here when missing (needs
//! python3 with venv, and PyPI). Without it the test fails, saying why; it never skips.
//! `CALLOUT_SIGV4_SEED` picks another set of requests.

mod cases;
#[path = "../common/venv.rs"]
mod venv;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use callout::sigv4::{Payload, Scope, sign};
use serde_json::Value;

use cases::{Case, Rng};
use venv::venv_python;

const CASES: usize = 40;

#[test]
fn sign_agrees_with_botocore() {
    let seed = std::env::var("CALLOUT_SIGV4_SEED")
        .ok()
        .map(|seed| seed.parse::<u64>().expect("CALLOUT_SIGV4_SEED is a number"))
        .unwrap_or(0x5167_0004);
    let mut rng = Rng(seed | 1);
    let cases: Vec<Case> = (0..CASES).map(|_| Case::generate(&mut rng)).collect();

    let mut ours = Vec::new();
    for case in &cases {
        let mut headers = case.header_map();
        let payload = match case.unsigned {
            true => Payload::Unsigned,
            false => Payload::Bytes(&case.body),
        };
        let scope = Scope {
            region: &case.region,
            service: &case.service,
        };
        let now = UNIX_EPOCH + Duration::from_secs(case.time);
        sign(
            &case.method,
            &case.uri(),
            &mut headers,
            payload,
            &case.credentials(),
            &scope,
            now,
        )
        .unwrap_or_else(|e| panic!("cannot sign {}: {e}", case.describe()));
        ours.push(headers);
    }

    let theirs = botocore(&cases);
    let mut kinds = BTreeMap::<&str, usize>::new();
    for ((case, ours), theirs) in cases.iter().zip(&ours).zip(&theirs) {
        for name in [
            "authorization",
            "x-amz-date",
            "x-amz-content-sha256",
            "x-amz-security-token",
        ] {
            let mine: Vec<&str> = ours.get_all(name).iter().map(|v| v.to_str().unwrap()).collect();
            let want: Vec<&str> = theirs[name].as_str().into_iter().collect();
            assert_eq!(
                mine,
                want,
                "{name} differs (seed {seed}) for {}\nbotocore's canonical request:\n{}",
                case.describe(),
                theirs["canonical_request"].as_str().unwrap_or_default()
            );
        }
        *kinds.entry(case.service.as_str()).or_default() += 1;
    }
    // The generator covers what it claims to.
    assert!(kinds.len() == 3, "{kinds:?}");
    assert!(cases.iter().any(|c| c.token.is_some()) && cases.iter().any(|c| c.token.is_none()));
    assert!(cases.iter().any(|c| c.unsigned) && cases.iter().any(|c| c.body.is_empty()));
    assert!(cases.iter().any(|c| c.path.contains("//")));
}

/// botocore's answer for each case, in order.
fn botocore(cases: &[Case]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigv4/botocore_sign.py");
    let mut child = Command::new(venv_python())
        .arg(&script)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the venv's python starts");
    let mut input = String::new();
    for case in cases {
        input.push_str(&case.json().to_string());
        input.push('\n');
    }
    // Written from a thread: python answers as it reads, and could fill its stdout pipe
    // before taking all of its input.
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().expect("botocore_sign.py takes its input");
    assert!(
        output.status.success(),
        "botocore_sign.py failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(answers.len(), cases.len(), "one answer per request");
    answers
}
