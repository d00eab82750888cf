//! PromQL, as far as finding the metric names an expression reads.

use std::collections::BTreeSet;
use std::fmt;

/// A metric an expression reads: by name, or every name a `__name__=~` regex matches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricRef {
    Name(String),
    Pattern(NamePattern),
}

impl fmt::Display for MetricRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricRef::Name(name) => f.write_str(name),
            MetricRef::Pattern(p) => write!(f, "{{__name__=~\"{}\"}}", p.regex),
        }
    }
}

/// A name regex of the one form the dashboard needs, `<literal>.+<literal>` (or `.*`),
/// anchored at both ends as Prometheus anchors every regex matcher.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NamePattern {
    pub regex: String,
    pub prefix: String,
    pub suffix: String,
    /// `.+` (true) or `.*`.
    pub non_empty: bool,
}

impl NamePattern {
    pub fn parse(regex: &str) -> Result<NamePattern, String> {
        let literal = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        let split = ["+", "*"].iter().find_map(|q| {
            let wildcard = format!(".{q}");
            let (prefix, suffix) = regex.split_once(&wildcard)?;
            Some((prefix, suffix, *q == "+"))
        });
        match split {
            Some((prefix, suffix, non_empty)) if literal(prefix) && literal(suffix) => {
                Ok(NamePattern {
                    regex: regex.to_owned(),
                    prefix: prefix.to_owned(),
                    suffix: suffix.to_owned(),
                    non_empty,
                })
            }
            _ => Err(format!(
                "__name__ regex {regex:?}: only <name chars>.+<name chars> (or .*) is \
                 understood, so that the metrics it reads can be checked"
            )),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        name.len() >= self.prefix.len() + self.suffix.len() + usize::from(self.non_empty)
            && name.starts_with(&self.prefix)
            && name.ends_with(&self.suffix)
    }

    /// The part of `name` the wildcard matched.
    pub fn middle<'a>(&self, name: &'a str) -> Option<&'a str> {
        if !self.matches(name) {
            return None;
        }
        name.get(self.prefix.len()..name.len() - self.suffix.len())
    }
}

/// Aggregation operators: `sum by (x) (…)` puts a keyword, not `(`, after the name.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Binary operators and modifiers spelt as words.
const WORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2"];
/// Number literals spelt as words.
const NUMBERS: &[&str] = &["inf", "nan"];

/// Every metric `expr` reads, sorted and without repeats; an error names what it could
/// not read. Skipped: strings, ranges and subqueries (`[5m:1m]`), numbers and
/// durations, function and aggregation names, keywords, label names (in `by (…)`,
/// matchers), comments, and Grafana's variables (`$job`, `${job}`, `$__rate_interval`).
pub fn metric_refs(expr: &str) -> Result<Vec<MetricRef>, String> {
    let mut scanner = Scanner {
        chars: expr.chars().collect(),
        at: 0,
    };
    let mut refs = BTreeSet::new();
    while let Some(c) = scanner.peek() {
        match c {
            c if c.is_whitespace() => scanner.at += 1,
            '#' => scanner.skip_while(|c| c != '\n'),
            '"' | '\'' | '`' => {
                scanner.string()?;
            }
            '[' => scanner.skip_past(']')?,
            '{' => {
                // A selector without a name before it: the name is a matcher.
                let name = scanner.matchers()?.ok_or_else(|| {
                    format!("a selector without a metric name at {}: {expr}", scanner.at)
                })?;
                refs.insert(name);
            }
            '$' => {
                scanner.at += 1;
                if scanner.peek() == Some('{') {
                    scanner.skip_past('}')?;
                } else {
                    scanner.skip_while(is_name_char);
                }
            }
            c if c.is_ascii_digit() || (c == '.' && scanner.next_is_digit()) => {
                // Numbers (0.99, 1e3, 0x1f) and durations (5m, 1h30m).
                scanner.skip_while(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
            }
            c if is_name_start(c) => {
                let word = scanner.word();
                let lower = word.to_ascii_lowercase();
                let next = scanner.next_non_space();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if next == Some('(') {
                        scanner.skip_spaces();
                        scanner.skip_past(')')?;
                    }
                } else if WORDS.contains(&lower.as_str()) || NUMBERS.contains(&lower.as_str()) {
                } else if next == Some('(') {
                    // A function call; its arguments are read as the loop goes on.
                } else if AGGREGATIONS.contains(&word.as_str())
                    && scanner.next_word_is(&["by", "without"])
                {
                } else {
                    refs.insert(MetricRef::Name(word));
                    if next == Some('{') {
                        scanner.skip_spaces();
                        // Label matchers of a named selector; a `__name__` among them
                        // would be a second name, which PromQL refuses.
                        if scanner.matchers()?.is_some() {
                            return Err(format!("a metric named twice: {expr}"));
                        }
                    }
                }
            }
            '(' | ')' | ',' | '+' | '-' | '*' | '/' | '%' | '^' | '=' | '!' | '<' | '>' | '@'
            | ':' => scanner.at += 1,
            other => return Err(format!("unexpected {other:?} at {}: {expr}", scanner.at)),
        }
    }
    Ok(refs.into_iter().collect())
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

struct Scanner {
    chars: Vec<char>,
    at: usize,
}

impl Scanner {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next_is_digit(&self) -> bool {
        self.chars
            .get(self.at + 1)
            .is_some_and(|c| c.is_ascii_digit())
    }

    fn skip_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
    }

    fn skip_spaces(&mut self) {
        self.skip_while(char::is_whitespace);
    }

    fn next_non_space(&self) -> Option<char> {
        self.chars[self.at..]
            .iter()
            .copied()
            .find(|c| !c.is_whitespace())
    }

    fn next_word_is(&self, words: &[&str]) -> bool {
        let rest: String = self.chars[self.at..]
            .iter()
            .skip_while(|c| c.is_whitespace())
            .take_while(|c| is_name_char(**c))
            .collect();
        words.contains(&rest.to_ascii_lowercase().as_str())
    }

    fn word(&mut self) -> String {
        let start = self.at;
        self.skip_while(is_name_char);
        self.chars[start..self.at].iter().collect()
    }

    /// Skips to just past `close` (ranges, label lists, `${…}`: nothing nests there).
    fn skip_past(&mut self, close: char) -> Result<(), String> {
        let start = self.at;
        while let Some(c) = self.peek() {
            self.at += 1;
            if c == close {
                return Ok(());
            }
        }
        Err(format!("no {close:?} closes what opens at {start}"))
    }

    /// A quoted string, unescaped as far as `\"`, `\'` and `\\` go.
    fn string(&mut self) -> Result<String, String> {
        let start = self.at;
        let quote = self.peek().unwrap_or('"');
        self.at += 1;
        let mut value = String::new();
        while let Some(c) = self.peek() {
            self.at += 1;
            match c {
                '\\' if quote != '`' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.at += 1;
                    }
                }
                c if c == quote => return Ok(value),
                c => value.push(c),
            }
        }
        Err(format!("a string opened at {start} is not closed"))
    }

    /// `{label op "value", …}`: the metric its `__name__` matcher names, if any.
    fn matchers(&mut self) -> Result<Option<MetricRef>, String> {
        let start = self.at;
        self.at += 1;
        let mut name = None;
        loop {
            self.skip_spaces();
            match self.peek() {
                Some('}') => {
                    self.at += 1;
                    return Ok(name);
                }
                Some(',') => self.at += 1,
                Some(c) if is_name_start(c) => {
                    let label = self.word();
                    self.skip_spaces();
                    let op_start = self.at;
                    self.skip_while(|c| matches!(c, '=' | '!' | '~'));
                    let op: String = self.chars[op_start..self.at].iter().collect();
                    self.skip_spaces();
                    if !matches!(self.peek(), Some('"' | '\'' | '`')) {
                        return Err(format!("matcher {label}{op} without a string value"));
                    }
                    let value = self.string()?;
                    if label == "__name__" {
                        name = Some(match op.as_str() {
                            "=" => MetricRef::Name(value),
                            "=~" => MetricRef::Pattern(NamePattern::parse(&value)?),
                            _ => {
                                return Err(format!(
                                    "__name__{op}{value:?} names no metric to check"
                                ))
                            }
                        });
                    }
                }
                _ => return Err(format!("label matchers opened at {start} do not read")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_refs(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn reads_names_not_functions_labels_keywords_or_durations() {
        let cases: &[(&str, &[&str])] = &[
            ("rate(a_total[5m])", &["a_total"]),
            ("up", &["up"]),
            ("up{job=\"portcullis-admin\"} == 0", &["up"]),
            (
                "sum by (job, instance) (rate(x_total[5m])) / sum without (le) (y)",
                &["x_total", "y"],
            ),
            ("sum by(job)(a)", &["a"]),
            ("sum(rate(a[1m])) by (job) > 0", &["a"]),
            (
                "histogram_quantile(0.99, sum by (le) (rate(h_bucket{job=~\"$job\"}[$__rate_interval])))",
                &["h_bucket"],
            ),
            (
                "sum(rate(a[5m])) > 1 and on(job) group_left(instance) b offset 1h",
                &["a", "b"],
            ),
            ("a unless ignoring (x) b or c > bool 2", &["a", "b", "c"]),
            ("a > Inf or b < NaN or c > 1e3 or d > 0x1f", &["a", "b", "c", "d"]),
            ("rate(a[$__rate_interval:$__interval]) + rate(b[5m:1m])", &["a", "b"]),
            ("count_values(\"version\", a) + topk(5, b) + quantile(0.9, c)", &["a", "b", "c"]),
            ("max by (instance) (a) * on (instance) group_right b", &["a", "b"]),
            ("# a comment naming c_total\na_total", &["a_total"]),
            ("a > $threshold and b > ${threshold}", &["a", "b"]),
            ("a @ start() - a @ 1609746000", &["a"]),
            ("rate(a:recorded:rate5m[1h])", &["a:recorded:rate5m"]),
            ("a_total + a_total", &["a_total"]),
        ];
        for (expr, expected) in cases {
            assert_eq!(names(expr), *expected, "{expr}");
        }
    }

    #[test]
    fn reads_nothing_inside_strings() {
        assert_eq!(
            names(r#"label_replace(a, "dst", "sum(b) c_total", "src", "(.*)")"#),
            ["a"]
        );
        assert_eq!(names(r#"a{path="/x\"y", q='b', r=`c\`}"#), ["a"]);
    }

    #[test]
    fn reads_a_name_given_as_a_matcher() {
        assert_eq!(names(r#"{__name__="x_total", job="a"}"#), ["x_total"]);
        assert_eq!(
            names(r#"rate({job="a", __name__="x_total"}[5m])"#),
            ["x_total"]
        );
    }

    #[test]
    fn reads_a_name_regex_of_the_prefix_wildcard_suffix_form() {
        let refs = metric_refs(
            r#"label_replace({__name__=~"p_.+_total"}, "reason", "$1", "__name__", "p_(.+)_total")"#,
        )
        .unwrap();
        let [MetricRef::Pattern(p)] = refs.as_slice() else {
            panic!("{refs:?}")
        };
        assert_eq!((p.prefix.as_str(), p.suffix.as_str()), ("p_", "_total"));
        assert!(p.matches("p_expired_total"));
        assert_eq!(p.middle("p_expired_total"), Some("expired"));
        assert!(!p.matches("p_total"), ".+ needs one character at least");
        assert!(!p.matches("q_expired_total"));
        let any = NamePattern::parse("p_.*").unwrap();
        assert!(any.matches("p_") && any.matches("p_x"));
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        for (expr, says) in [
            (r#"{job="a"}"#, "without a metric name"),
            (r#"{__name__=~"a|b"}"#, "only <name chars>"),
            (r#"{__name__=~"a_(x|y)_total"}"#, "only <name chars>"),
            (r#"{__name__!="a"}"#, "names no metric"),
            (r#"a{__name__="b"}"#, "named twice"),
            (r#"a{job="x"#, "not closed"),
            ("rate(a[5m)", "no ']'"),
            ("a{job}", "without a string value"),
            ("a ; b", "unexpected ';'"),
        ] {
            let err = metric_refs(expr).expect_err(expr);
            assert!(err.contains(says), "{expr}: {err}");
        }
    }
}
