use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sigv4::amz_datetime;
use crate::sigv4::time::civil_from_days;

fn at(seconds: i64) -> String {
    let now = match u64::try_from(seconds) {
        Ok(after) => UNIX_EPOCH + Duration::from_secs(after),
        Err(_) => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    };
    amz_datetime(now)
}

#[test]
fn formats_known_instants() {
    assert_eq!(at(0), "19700101T000000Z");
    // The suite's instant.
    assert_eq!(at(1_440_938_160), "20150830T123600Z");
    assert_eq!(at(1_456_704_000), "20160229T000000Z");
    assert_eq!(at(951_782_400), "20000229T000000Z");
    // 2100 is not a leap year: February 28 is followed by March 1.
    assert_eq!(at(4_107_456_000), "21000228T000000Z");
    assert_eq!(at(4_107_456_000 + 86_399), "21000228T235959Z");
    assert_eq!(at(4_107_542_400), "21000301T000000Z");
    assert_eq!(at(253_402_300_799), "99991231T235959Z");
    assert_eq!(at(-1), "19691231T235959Z");
    assert_eq!(at(-2_203_891_200), "19000301T000000Z");
}

#[test]
fn sub_second_times_are_floored() {
    let now = UNIX_EPOCH + Duration::from_millis(1_440_938_160_999);
    assert_eq!(amz_datetime(now), "20150830T123600Z");
    let before = UNIX_EPOCH - Duration::from_millis(500);
    assert_eq!(amz_datetime(before), "19691231T235959Z");
}

#[test]
fn the_clock_formats() {
    let text = amz_datetime(SystemTime::now());
    assert_eq!(text.len(), 16, "{text}");
    assert!(
        text.starts_with("20") && text.ends_with('Z') && &text[8..9] == "T",
        "{text}"
    );
}

/// Every day from 1600 to 2400 against a calendar counted one day at a time.
#[test]
fn civil_from_days_agrees_with_counting() {
    fn leap(year: i64) -> bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }
    fn month_days(year: i64, month: u32) -> u32 {
        match month {
            2 if leap(year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }
    // 1600-01-01 is day -135140 (1970-01-01 is 0).
    let (mut year, mut month, mut day) = (1600, 1, 1);
    for days in -135_140..157_000 {
        assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
        day += 1;
        if day > month_days(year, month) {
            day = 1;
            month += 1;
            if month > 12 {
                month = 1;
                year += 1;
            }
        }
    }
    assert_eq!(civil_from_days(0), (1970, 1, 1));
}
