//! Errors and their sources as one line, for logs and problem details.

/// `err` and each of its sources, joined by `: `, skipping a source whose text the line
/// already holds (hyper and rustls often repeat their cause in their own message).
pub fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
