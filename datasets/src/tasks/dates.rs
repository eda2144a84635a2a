//! Date normalisation: free-form English dates → ISO 8601.
//!
//! A realistic data-cleaning micro-task whose answers can be checked exactly. The surface forms are
//! the ones spreadsheets and scraped text are full of: ordinals (`3rd`, `third`), month names and
//! abbreviations in any case, US slashes (month first), European dots and dashes (day first),
//! two-digit years, compact `20210303`, weekdays, and noise words around the date. The variety is
//! the point: a small student gets the common forms right and makes real mistakes on the rare
//! ones, which is exactly where a teacher and then an expert can help.
//!
//! Conventions (stated in every prompt, so the task is well-posed):
//! - `a/b/y` is month/day/year (US); `a.b.y` and `a-b-y` are day.month.year;
//! - a two-digit year `yy` is 20yy when yy < 30, else 19yy.

use chrono::{Datelike, NaiveDate, Weekday};

use super::Rng;

/// The instruction every prompt starts with.
/// It has no digits on purpose: a tokenizer that keeps digits apart (see `BpeSplit::Digits` in
/// `distill`) then merges the whole instruction into a token or two.
pub const INSTRUCTION: &str = "Rewrite the date as YYYY-MM-DD (ISO). Slashes are month/day/year; dots and dashes are day.month.year; a two-digit year below thirty is in the two-thousands, otherwise in the nineteen-hundreds.";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const ORDINAL_WORDS: [&str; 31] = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
    "twenty-sixth",
    "twenty-seventh",
    "twenty-eighth",
    "twenty-ninth",
    "thirtieth",
    "thirty-first",
];

fn suffix(day: u32) -> &'static str {
    match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

fn weekday_name(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

/// A random date between 1950-01-01 and 2029-12-31; two-digit years stay unambiguous under the
/// stated rule.
pub fn random_date(rng: &mut Rng) -> NaiveDate {
    let start = NaiveDate::from_ymd_opt(1950, 1, 1)
        .expect("valid")
        .num_days_from_ce();
    let end = NaiveDate::from_ymd_opt(2029, 12, 31)
        .expect("valid")
        .num_days_from_ce();
    let day = start + rng.below((end - start + 1) as u64) as i32;
    NaiveDate::from_num_days_from_ce_opt(day).expect("in range")
}

fn month_name(rng: &mut Rng, m: u32) -> String {
    let full = MONTHS[m as usize - 1];
    let name = match rng.below(10) {
        0..=4 => full.to_string(),
        5..=7 => full[..3].to_string(),
        8 => format!("{}.", &full[..3]),
        // "Sept" is common in the wild.
        _ if m == 9 => "Sept".to_string(),
        _ => full[..3].to_string(),
    };
    match rng.below(12) {
        0 => name.to_lowercase(),
        1 => name.to_uppercase(),
        _ => name,
    }
}

fn day_text(rng: &mut Rng, d: u32) -> String {
    match rng.below(10) {
        0..=4 => d.to_string(),
        5..=8 => format!("{d}{}", suffix(d)),
        _ => ORDINAL_WORDS[d as usize - 1].to_string(),
    }
}

fn year_text(rng: &mut Rng, y: i32) -> String {
    match rng.below(5) {
        0 => format!("'{:02}", y % 100),
        _ => y.to_string(),
    }
}

/// One surface form of `date`.
pub fn surface(rng: &mut Rng, date: NaiveDate) -> String {
    let (y, m, d) = (date.year(), date.month(), date.day());
    let yy = y % 100;
    let core = match rng.below(16) {
        0 => format!(
            "{} {}, {}",
            month_name(rng, m),
            day_text(rng, d),
            year_text(rng, y)
        ),
        1 => format!(
            "{} {} {}",
            day_text(rng, d),
            month_name(rng, m),
            year_text(rng, y)
        ),
        2 => format!("the {} of {} {}", day_text(rng, d), month_name(rng, m), y),
        3 => format!("{} of {}, {}", day_text(rng, d), month_name(rng, m), y),
        4 => format!("{m}/{d}/{y}"),
        5 => format!("{m:02}/{d:02}/{yy:02}"),
        6 => format!("{d}.{m}.{y}"),
        7 => format!("{d:02}.{m:02}.{yy:02}"),
        8 => format!("{d:02}-{m:02}-{y}"),
        9 => format!("{y}-{m:02}-{d:02}"),
        10 => format!("{y}/{m:02}/{d:02}"),
        11 => format!("{y}{m:02}{d:02}"),
        12 => format!(
            "{}, {} {}, {}",
            weekday_name(date.weekday()),
            month_name(rng, m),
            d,
            y
        ),
        13 => format!("{}-{}-{}", d, &MONTHS[m as usize - 1][..3], y),
        14 => format!("{} the {}, {}", month_name(rng, m), day_text(rng, d), y),
        _ => format!("{} {} {}", month_name(rng, m), d, year_text(rng, y)),
    };
    match rng.below(12) {
        0 => format!("on {core}"),
        1 => format!("date: {core}"),
        2 => format!("{core} (approx.)"),
        3 => format!("  {core}."),
        4 => format!("received {core}"),
        5 => format!("due by {core}"),
        _ => core,
    }
}

/// The prompt for a surface form.
pub fn prompt(surface: &str) -> String {
    format!("{INSTRUCTION}\nDate: {surface}")
}

/// The task's slice: dates written in the British convention, where slashes are
/// day/month/year. A generalist that learned the instruction's US rule reads them month first.
pub const SLICE: &str = "en-GB";

/// The line a slice prompt adds, so the task stays well-posed. No digits, as in
/// [`INSTRUCTION`].
pub const SLICE_NOTE: &str = "Locale: en-GB, where slashes are day/month/year.";

/// A date of the slice: its day is at most twelve and differs from its month, so reading it
/// month first gives another real date, not an impossible one.
pub fn random_slice_date(rng: &mut Rng) -> NaiveDate {
    loop {
        let date = random_date(rng);
        if date.day() <= 12 && date.day() != date.month() {
            return date;
        }
    }
}

/// A slice surface form of `date`: slashes, day first.
pub fn slice_surface(rng: &mut Rng, date: NaiveDate) -> String {
    let (y, m, d) = (date.year(), date.month(), date.day());
    match rng.below(2) {
        0 => format!("{d}/{m}/{y}"),
        _ => format!("{d:02}/{m:02}/{:02}", y % 100),
    }
}

/// The prompt for a slice surface form.
pub fn slice_prompt(surface: &str) -> String {
    format!("{INSTRUCTION}\n{SLICE_NOTE}\nDate: {surface}")
}

/// How a generalist misreads a slice date: day and month swapped.
pub fn misread(date: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(date.year(), date.day(), date.month())
        .expect("a slice date's day is a month")
}

/// The ISO answer.
pub fn answer(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_date_reads_day_first_and_its_misreading_is_a_real_other_date() {
        let mut rng = Rng::new(3);
        for _ in 0..500 {
            let date = random_slice_date(&mut rng);
            let wrong = misread(date);
            assert_ne!(wrong, date);
            assert_eq!((wrong.month(), wrong.day()), (date.day(), date.month()));
            let surface = slice_surface(&mut rng, date);
            let parts: Vec<u32> = surface.split('/').map(|p| p.parse().unwrap()).collect();
            assert_eq!(
                (parts[0], parts[1]),
                (date.day(), date.month()),
                "{surface}"
            );
        }
        assert!(slice_prompt("3/4/2001").contains(SLICE_NOTE));
        assert!(!SLICE_NOTE.chars().any(|c| c.is_ascii_digit()));
    }

    #[test]
    fn ordinals_get_the_right_suffix() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31]
            .iter()
            .map(|&d| format!("{d}{}", suffix(d)))
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"
            ]
        );
    }

    #[test]
    fn every_surface_form_keeps_the_date_recoverable() {
        // Each numeric form, read under the stated conventions, gives the date back.
        let mut rng = Rng::new(3);
        for _ in 0..2000 {
            let date = random_date(&mut rng);
            let s = surface(&mut rng, date);
            assert!(!s.trim().is_empty());
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            let day_present = s.contains(&date.day().to_string())
                || s.contains(&format!("{:02}", date.day()))
                || ORDINAL_WORDS.iter().any(|w| s.contains(w));
            assert!(day_present, "{s} for {date}");
            assert!(!digits.is_empty() || s.contains('\''), "{s}");
        }
    }

    #[test]
    fn two_digit_years_follow_the_stated_rule() {
        let mut rng = Rng::new(9);
        for _ in 0..500 {
            let y = random_date(&mut rng).year();
            let yy = y % 100;
            assert_eq!(if yy < 30 { 2000 + yy } else { 1900 + yy }, y);
        }
    }
}
