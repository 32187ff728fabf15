//! The seed's naming rule, and "did you mean" suggestions for misspelt names and keys.

/// The seed's naming rule for named credentials, external credentials, principals and
/// permission sets.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let first = name.chars().next();
    if first.is_none() {
        return Err("is empty");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("may contain only ASCII letters, digits and underscores");
    }
    if !first.is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err("must begin with a letter");
    }
    if name.ends_with('_') {
        return Err("must not end with an underscore");
    }
    if name.contains("__") {
        return Err("must not contain two consecutive underscores");
    }
    Ok(())
}

/// ", did you mean `X`?" for the closest known name, when one is close.
pub fn suggestion<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let best = known
        .map(|k| {
            (
                edit_distance(&name.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                k,
            )
        })
        .min();
    match best {
        Some((d, k)) if d <= name.len().max(3) / 3 + 1 => format!("; did you mean `{k}`?"),
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        for ok in ["A", "Target_Org", "a1_b2", "X9"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "_a", "1a", "a_", "a__b", "a-b", "a b", "ä", ".callout"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn suggests_only_close_names() {
        assert_eq!(
            suggestion("Target_Orgg", ["Target_Org", "Other"].into_iter()),
            "; did you mean `Target_Org`?"
        );
        assert_eq!(
            suggestion("token_ur", ["token_url", "scope"].into_iter()),
            "; did you mean `token_url`?"
        );
        assert_eq!(suggestion("zzz", ["Target_Org"].into_iter()), "");
    }
}
