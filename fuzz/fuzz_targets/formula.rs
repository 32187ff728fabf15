//! Formulas (SPEC "Custom headers and formulas"): any text parses or is refused with an
//! offset on a character boundary inside it, never a panic; what parses renders, with every
//! merge field given arbitrary text, to a value or an error, and a constant renders to the
//! same value whatever the fields hold.
//!
//! Input: split on 0xFF, the first piece is the formula text and the rest are field values.

#![no_main]

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use callout::formula::{Field, Fields, Formula};
use libfuzzer_sys::fuzz_target;

struct Given(Vec<String>);

impl Fields for Given {
    fn get(&self, field: &Field) -> Option<Cow<'_, str>> {
        let i = format!("{field}").len() % self.0.len().max(1);
        self.0.get(i).map(|v| Cow::Borrowed(v.as_str()))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut pieces = data.split(|b| *b == 0xFF);
    let Some(text) = pieces.next().and_then(|t| std::str::from_utf8(t).ok()) else {
        return;
    };
    let values = Given(pieces.map(|p| String::from_utf8_lossy(p).into_owned()).collect());
    match Formula::parse(text) {
        Err(e) => assert!(text.is_char_boundary(e.offset) && e.offset <= text.len()),
        Ok(formula) => {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let rendered = formula.render(&values, now);
            if let Some(constant) = formula.constant() {
                assert_eq!(rendered.as_deref().ok(), Some(constant));
            }
        }
    }
});
