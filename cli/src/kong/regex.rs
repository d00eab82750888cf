//! Kong's regexes are PCRE; Envoy's `safe_regex` is RE2. This module takes what RE2 can
//! express (rewriting the spellings that differ: `(?<name>` and `(?'name'` named groups,
//! `\Z`, `(?#…)` comments) and refuses, with the reason, what it cannot: lookaround,
//! backreferences, atomic groups, possessive quantifiers, conditionals, recursion, backtracking
//! verbs, and flags RE2 lacks. The result is then compiled by the `regex` crate, whose syntax
//! is RE2's with a few extensions that the scan refuses first (class set operations, `\<`).

/// PCRE → RE2, or why not.
pub fn pcre_to_re2(pcre: &str) -> Result<String, String> {
    let chars: Vec<char> = pcre.chars().collect();
    let mut out = String::with_capacity(pcre.len() + 8);
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    return Err("ends with a lone backslash".to_owned());
                };
                match n {
                    '1'..='9' => return Err(format!("backreference \\{n}")),
                    'k' | 'g' => return Err(format!("backreference or subroutine \\{n}")),
                    'Z' => out.push_str("\\z"),
                    // A literal < or > in PCRE; a word boundary in the regex crate.
                    '<' | '>' => out.push(n),
                    'G' | 'K' | 'R' | 'X' | 'C' | 'h' | 'H' | 'v' | 'V' | 'N' | 'e' | 'c' => {
                        return Err(format!("\\{n} is PCRE only"));
                    }
                    _ => {
                        out.push('\\');
                        out.push(n);
                    }
                }
                i += 2;
            }
            '[' => {
                let end = class_end(&chars, i)?;
                let class: String = chars.get(i..=end).unwrap_or_default().iter().collect();
                for op in ["&&", "--", "~~"] {
                    if class.contains(op) {
                        return Err(format!(
                            "{op} in a character class reads differently in RE2"
                        ));
                    }
                }
                out.push_str(&class);
                i = end + 1;
            }
            '(' => {
                let rest: String = chars.get(i..).unwrap_or_default().iter().take(4).collect();
                if rest.starts_with("(*") {
                    return Err("backtracking verb (*…)".to_owned());
                }
                if let Some(after) = rest.strip_prefix("(?") {
                    let next = after.chars().next();
                    match next {
                        Some('=') | Some('!') => return Err("lookahead (?=…) / (?!…)".to_owned()),
                        Some('<') if after.starts_with("<=") || after.starts_with("<!") => {
                            return Err("lookbehind (?<=…) / (?<!…)".to_owned())
                        }
                        Some('<') => {
                            out.push_str("(?P<");
                            i += 3;
                            continue;
                        }
                        Some('\'') => {
                            let close = chars
                                .iter()
                                .skip(i + 3)
                                .position(|&c| c == '\'')
                                .ok_or_else(|| "unclosed group name".to_owned())?;
                            let name: String = chars
                                .get(i + 3..i + 3 + close)
                                .unwrap_or_default()
                                .iter()
                                .collect();
                            out.push_str(&format!("(?P<{name}>"));
                            i += 3 + close + 1;
                            continue;
                        }
                        Some('>') => return Err("atomic group (?>…)".to_owned()),
                        Some('|') => return Err("branch reset (?|…)".to_owned()),
                        Some('(') => return Err("conditional (?(…)…)".to_owned()),
                        Some('#') => {
                            let close = chars
                                .iter()
                                .skip(i)
                                .position(|&c| c == ')')
                                .ok_or_else(|| "unclosed comment (?#…".to_owned())?;
                            i += close + 1;
                            continue;
                        }
                        Some('R') | Some('&') | Some('+') | Some('0'..='9') => {
                            return Err("recursion or subroutine call".to_owned())
                        }
                        Some('P') if after.starts_with("P=") || after.starts_with("P>") => {
                            return Err("named backreference (?P=…)".to_owned())
                        }
                        Some('P') => {}
                        Some(_) => {
                            // Flags: (?i) (?i-s:…). RE2 knows i, m, s, U.
                            for f in chars.iter().skip(i + 2) {
                                match f {
                                    ':' | ')' => break,
                                    'i' | 'm' | 's' | 'U' | '-' => {}
                                    other => return Err(format!("flag (?{other}) is PCRE only")),
                                }
                            }
                        }
                        None => {}
                    }
                }
                out.push('(');
                i += 1;
            }
            '*' | '+' | '?' | '}' => {
                out.push(c);
                if chars.get(i + 1) == Some(&'+') {
                    return Err("possessive quantifier (…+)".to_owned());
                }
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    regex::Regex::new(&out).map_err(|e| {
        let e = e.to_string();
        let last = e.lines().last().unwrap_or("").trim().to_owned();
        format!("not a regex RE2 reads: {last}")
    })?;
    Ok(out)
}

/// The index of the `]` closing the class opened at `start`.
fn class_end(chars: &[char], start: usize) -> Result<usize, String> {
    let mut i = start + 1;
    if chars.get(i) == Some(&'^') {
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => i += 2,
            '[' if chars.get(i + 1) == Some(&':') => {
                let close = chars
                    .iter()
                    .skip(i + 2)
                    .position(|&c| c == ']')
                    .ok_or_else(|| "unclosed [:class:]".to_owned())?;
                i += 2 + close + 1;
            }
            ']' => return Ok(i),
            _ => i += 1,
        }
    }
    Err("unclosed character class [".to_owned())
}

/// How many capture groups a (translated) regex has.
pub fn capture_groups(re2: &str) -> usize {
    regex::Regex::new(re2).map_or(0, |r| r.captures_len().saturating_sub(1))
}

/// Whether the regex (translated) can match the whole of `text` (Envoy's full match).
pub fn full_match(re2: &str, text: &str) -> bool {
    regex::Regex::new(&format!("^(?:{re2})$")).is_ok_and(|r| r.is_match(text))
}

/// `text` as an RE2 literal.
pub fn escape(text: &str) -> String {
    regex::escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_re2_reads_and_respells_what_differs() {
        let cases = [
            (r"/users/\d+$", r"/users/\d+$"),
            (r"/(?<id>\d+)/x", r"/(?P<id>\d+)/x"),
            (r"/(?'id'\d+)", r"/(?P<id>\d+)"),
            (r"/a\Z", r"/a\z"),
            (r"/a(?#comment)b", r"/ab"),
            (r"/(?i)abc", r"/(?i)abc"),
            (r"/[^/]+/[[:alpha:]]+", r"/[^/]+/[[:alpha:]]+"),
            (r"/v[]x]", r"/v[]x]"),
            (r"/x{2,3}?", r"/x{2,3}?"),
        ];
        for (pcre, re2) in cases {
            assert_eq!(pcre_to_re2(pcre).as_deref(), Ok(re2), "{pcre}");
        }
    }

    #[test]
    fn refuses_what_re2_cannot_do_with_the_reason() {
        let cases = [
            (r"/(?=x)", "lookahead"),
            (r"/(?!x)", "lookahead"),
            (r"/(?<=x)y", "lookbehind"),
            (r"/(a)\1", "backreference \\1"),
            (r"/(?>a+)", "atomic group"),
            (r"/a++", "possessive"),
            (r"/a{2}+", "possessive"),
            (r"/(?x) a", "flag (?x)"),
            (r"/(?(1)a|b)", "conditional"),
            (r"/(?R)", "recursion"),
            (r"/(*SKIP)a", "verb"),
            (r"/[a&&b]", "&&"),
            (r"/(unclosed", "not a regex RE2 reads"),
            (r"/\k<n>", "backreference or subroutine"),
        ];
        for (pcre, why) in cases {
            let err = pcre_to_re2(pcre).unwrap_err();
            assert!(err.contains(why), "{pcre}: {err}");
        }
    }

    #[test]
    fn counts_groups_and_full_matches() {
        assert_eq!(capture_groups(r"/(a)(?:b)(?P<c>c)"), 2);
        assert!(full_match(r"/users/\d+", "/users/12"));
        assert!(!full_match(r"/users/\d+", "/users/12/x"));
        assert_eq!(escape("/a.b"), r"/a\.b");
    }
}
