//! The README against the running code: what it documents must be what callout does.

use std::collections::{BTreeMap, BTreeSet};

use crate::errors::{setup, within};
use crate::support::http_get;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The metrics table of the README: name → (type, labels).
fn documented_metrics() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out = BTreeMap::new();
    for line in readme().lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        let [name, kind, labels] = cells[..] else { continue };
        let Some(name) = name.strip_prefix("`callout_").and_then(|n| n.strip_suffix('`')) else {
            continue;
        };
        // Each label is the first backquoted word of a comma-separated item.
        let labels = labels
            .split(", `")
            .filter_map(|item| item.trim_start_matches('`').split('`').next())
            .map(str::to_owned)
            .collect();
        out.insert(format!("callout_{name}"), (kind.to_owned(), labels));
    }
    out
}

/// A scrape: metric family → (type, label names seen on its samples, without `le`).
fn scraped(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.to_owned()).or_default().0 = kind.to_owned();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, _) = line.split_once('{').unwrap_or((line, ""));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| series.strip_suffix(suffix).filter(|f| out.contains_key(*f)))
            .unwrap_or(series);
        let labels = line
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(labels, _)| labels)
            .unwrap_or_default();
        let names = labels
            .split("\",")
            .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.to_owned()))
            .filter(|k| k != "le");
        out.entry(family.to_owned()).or_default().1.extend(names);
    }
    out
}

#[tokio::test]
async fn the_documented_metrics_are_the_scraped_ones() {
    let documented = documented_metrics();
    assert_eq!(documented.len(), 4, "the README's metrics table: {documented:?}");
    let s = setup("", "", "").await;
    within(http_get(
        &s.callout.url("/Api/x"),
        &[("x-callout-permission-sets", "Admin_Set")],
    ))
    .await;
    let (status, _, body) = within(http_get(&s.callout.url("/.callout/metrics"), &[])).await;
    assert_eq!(status, 200);
    let scrape = scraped(&String::from_utf8_lossy(&body));
    assert_eq!(documented, scrape, "README (left) and a scrape (right) disagree");
}

/// The shell lines of the fenced block that follows `marker` in the README.
fn block_after(marker: &str) -> Vec<String> {
    let text = readme();
    let after = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"))..];
    let start = after.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let block = &after[start..start + after[start..].find("```").unwrap()];
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim().to_owned())
        .collect()
}

/// The quick start as a newcomer types it: the demo (which `cargo test` builds as a program,
/// not a test harness, and so is run here from target/ directly: a test cannot call cargo) and then the README's
/// curl lines, verbatim, through a shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_works_as_written() {
    let first = block_after("## Quick start");
    assert_eq!(
        first,
        ["cargo run --example demo", "cargo test"],
        "the two commands"
    );
    let examples = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples");
    let demo = examples.join("demo");
    assert!(
        demo.exists(),
        "{} is built by `cargo test` (not `--all-targets`, which builds examples as tests)",
        demo.display()
    );
    let mut child = tokio::process::Command::new(&demo)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The demo prints the proxied request's answer, then keeps serving.
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        use tokio::io::AsyncBufReadExt as _;
        let mut line = String::new();
        while stdout.read_line(&mut line).await.unwrap() > 0 {
            seen.push_str(&line);
            if line.contains("Bearer demo-token-") {
                return true;
            }
            line.clear();
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "the demo's own request showed no injected token:\n{seen}"
    );

    let curls = block_after("It keeps running, so you");
    assert!(
        curls.len() >= 4 && curls.iter().all(|c| c.starts_with("curl ")),
        "{curls:?}"
    );
    let mut outputs = Vec::new();
    for line in &curls {
        let out = tokio::process::Command::new("sh")
            .args(["-c", &format!("{line} -s -w ' HTTP%{{http_code}}'")])
            .output()
            .await
            .expect("sh and curl run");
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert!(
        outputs[0].contains("Bearer demo-token-") && outputs[0].ends_with("HTTP200"),
        "{}",
        outputs[0]
    );
    assert!(outputs[1].ends_with("HTTP200"), "{}", outputs[1]);
    assert!(
        outputs[2].contains("no_principal") && outputs[2].contains("HTTP403"),
        "{}",
        outputs[2]
    );
    assert!(
        outputs[3].contains("Demo_API") && outputs[3].ends_with("HTTP200"),
        "{}",
        outputs[3]
    );
}
