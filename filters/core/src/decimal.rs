//! Numbers in decimal for what a request writes (rate-limit headers, decision records, keys),
//! without the formatting machinery.
//!
//! A `u64` is cut into parts below 10^8 (one 64-bit division each, none for a number below
//! 10^8), and each part is written two digits at a time in 32-bit arithmetic: half the steps
//! of a digit at a time, and no 64-bit division per digit (WebAssembly has no 64-bit
//! multiply-high, so rustc leaves a `u64` divided by 10 as `i64.div_u` for the engine to
//! reduce or not).

use std::fmt;
use std::ops::Deref;

/// A number in decimal, its digits kept inline: a value that costs no allocation, read as a
/// `&str`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// The digits, right-aligned: `digits[start..]`.
    digits: [u8; 20],
    start: u8,
}

/// "00" to "99", two bytes each.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

const PART: u64 = 100_000_000;

impl Decimal {
    pub fn new(n: u64) -> Decimal {
        // u64::MAX has 20 digits.
        let mut digits = [b'0'; 20];
        let mut end = digits.len();
        let mut rest = n;
        while rest >= PART {
            // Below 10^8: fits in a u32.
            let part = (rest % PART) as u32;
            rest /= PART;
            write_part(&mut digits, end, part, 8);
            end -= 8;
        }
        let rest = rest as u32;
        let width = width(rest);
        write_part(&mut digits, end, rest, width);
        Decimal {
            digits,
            start: (end - width) as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        let used = self.as_bytes();
        debug_assert!(used.iter().all(u8::is_ascii_digit));
        // SAFETY: `new` writes only ASCII digits from `start` on, and nothing changes them:
        // UTF-8. (Checked, this costs a validation per value on every request.)
        unsafe { std::str::from_utf8_unchecked(used) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.digits
            .get(usize::from(self.start)..)
            .unwrap_or_default()
    }
}

/// How many digits `n` (below 10^8) has; 1 for 0.
fn width(n: u32) -> usize {
    match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1_000..=9_999 => 4,
        10_000..=99_999 => 5,
        100_000..=999_999 => 6,
        1_000_000..=9_999_999 => 7,
        _ => 8,
    }
}

/// Writes the last `width` digits of `n` (zero-padded) so that they end at `end`.
fn write_part(digits: &mut [u8; 20], end: usize, mut n: u32, width: usize) {
    let mut at = end;
    let start = end.saturating_sub(width);
    while at >= start + 2 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        if let (Some(out), Some(two)) = (digits.get_mut(at..at + 2), PAIRS.get(pair..pair + 2)) {
            out.copy_from_slice(two);
        }
    }
    if at > start {
        at -= 1;
        if let Some(out) = digits.get_mut(at) {
            *out = b'0' + (n % 10) as u8;
        }
    }
}

impl Deref for Decimal {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_u64_as_std_does() {
        let mut cases: Vec<u64> = vec![0, u64::MAX, u64::MAX - 1];
        // Every power of ten and its neighbours: each width and each part boundary.
        let mut p = 1u64;
        loop {
            cases.extend([p - 1, p, p + 1]);
            match p.checked_mul(10) {
                Some(next) => p = next,
                None => break,
            }
        }
        // And a spread of others, some with zeros inside a part.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            cases.extend([
                x,
                x >> 20,
                x >> 40,
                x % 1_000_000_000_000,
                100_000_007 * (x >> 50),
            ]);
        }
        for n in cases {
            assert_eq!(Decimal::new(n).as_str(), n.to_string(), "{n}");
        }
    }

    #[test]
    fn reads_as_text_and_bytes() {
        let d = Decimal::new(429);
        assert_eq!(&*d, "429");
        assert_eq!(d.as_bytes(), b"429");
        assert_eq!(format!("{d} {d:?}"), "429 \"429\"");
    }
}
