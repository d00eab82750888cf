//! A strict reader of the Prometheus text exposition format (0.0.4), for checking a whole
//! `/metrics` answer rather than grepping a line of it: every line is a `# HELP`, a
//! `# TYPE` or a sample; every sample belongs to a family whose `# TYPE` came before it;
//! names, label names and escapes are the format's; a family's lines are contiguous and
//! no series repeats; counters end in `_total` and are finite and non-negative; a
//! histogram's buckets rise to `+Inf`, which equals its `_count`. Written from the format's
//! description (prometheus.io, "Exposition formats"), independently of the service.

#![allow(dead_code)] // not every suite scrapes

use std::collections::{BTreeMap, BTreeSet};

/// One sample: its name, its labels (unescaped, in order) and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A whole exposition, checked.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → its type.
    pub types: BTreeMap<String, String>,
    /// Family name → its help text (unescaped).
    pub help: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the series `name{labels}` (labels in any order); `None` if absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeSet<(&str, &str)> = labels.iter().copied().collect();
        self.samples
            .iter()
            .find(|sample| {
                sample.name == name
                    && sample.labels.len() == want.len()
                    && sample
                        .labels
                        .iter()
                        .all(|(k, v)| want.contains(&(k.as_str(), v.as_str())))
            })
            .map(|sample| sample.value)
    }

    /// Every sample called `name`.
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .collect()
    }
}

/// Reads `text`, or says which line breaks which rule.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let Some(body) = text.strip_suffix('\n') else {
        return Err("the exposition must end with a line feed".to_owned());
    };
    let mut exposition = Exposition::default();
    // Families whose lines are over: one seen again is not contiguous.
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (index, line) in body.split('\n').enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", index + 1);
        let family = if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text".into()))?;
            check_name(name).map_err(at)?;
            let help = unescape(help, false).map_err(at)?;
            if exposition.help.insert(name.to_owned(), help).is_some() {
                return Err(at("a second HELP for this family".into()));
            }
            name.to_owned()
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            check_name(name).map_err(at)?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind:?}")));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at("a counter's name must end in _total".into()));
            }
            if exposition
                .samples
                .iter()
                .any(|s| family_of(&s.name, &exposition.types) == name)
            {
                return Err(at("TYPE after the family's first sample".into()));
            }
            if exposition
                .types
                .insert(name.to_owned(), kind.to_owned())
                .is_some()
            {
                return Err(at("a second TYPE for this family".into()));
            }
            name.to_owned()
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("neither HELP, TYPE nor a sample".into()));
        } else {
            let sample = sample(line).map_err(at)?;
            let family = family_of(&sample.name, &exposition.types);
            let Some(kind) = exposition.types.get(&family) else {
                return Err(at("a sample without a TYPE before it".into()));
            };
            if kind == "counter" && !(sample.value.is_finite() && sample.value >= 0.0) {
                return Err(at("a counter must be finite and not negative".into()));
            }
            if kind == "histogram"
                && sample.name.ends_with("_bucket")
                && !sample.labels.iter().any(|(k, _)| k == "le")
            {
                return Err(at("a histogram bucket without le".into()));
            }
            let mut key: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            key.sort();
            if !seen.insert(format!("{}{{{}}}", sample.name, key.join(","))) {
                return Err(at("this series appeared before".into()));
            }
            exposition.samples.push(sample);
            family
        };
        if current.as_deref() != Some(family.as_str()) {
            if closed.contains(&family) {
                return Err(at(format!("family {family} is not contiguous")));
            }
            if let Some(previous) = current.replace(family) {
                closed.insert(previous);
            }
        }
    }
    check_histograms(&exposition)?;
    Ok(exposition)
}

/// The family a sample belongs to: a histogram's `_bucket`, `_sum` and `_count` belong to
/// the histogram's name.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).map(String::as_str) == Some("histogram") {
                return base.to_owned();
            }
        }
    }
    name.to_owned()
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a metric name"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && !name.starts_with("__") && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a label name"))
    }
}

/// A help text (`quotes: false`: `\\` and `\n`) or a label value (also `\"`), unescaped.
fn unescape(text: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            other => return Err(format!("bad escape \\{other:?}")),
        }
    }
    Ok(out)
}

/// `name{label="value",…} value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let (name, mut rest) = line.split_at(name_end);
    check_name(name)?;
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("a label without =")?;
            let label = &rest[..eq];
            check_label_name(label)?;
            let quoted = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("a label value must be quoted")?;
            // The closing quote is the first one not escaped.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let end = end.ok_or("an unterminated label value")?;
            let value = unescape(&quoted[..end], true)?;
            if labels.iter().any(|(k, _): &(String, String)| k == label) {
                return Err(format!("label {label} twice"));
            }
            labels.push((label.to_owned(), value));
            rest = &quoted[end + 1..];
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("labels must be separated by commas".to_owned());
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("one space before the value")?;
    let mut fields = rest.split(' ');
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number
            .parse::<f64>()
            .map_err(|_| format!("{number:?} is not a number"))?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("{timestamp:?} is not a timestamp"))?;
    }
    if fields.next().is_some() {
        return Err("more than a value and a timestamp".to_owned());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

type Labels = Vec<(String, String)>;

/// Per histogram and per label set (without `le`): buckets in rising `le` order with
/// rising counts, the last `+Inf` and equal to `_count`, and a `_sum`.
fn check_histograms(exposition: &Exposition) -> Result<(), String> {
    for (name, kind) in &exposition.types {
        if kind != "histogram" {
            continue;
        }
        let others = |sample: &Sample| -> Labels {
            sample
                .labels
                .iter()
                .filter(|(k, _)| k != "le")
                .cloned()
                .collect()
        };
        let mut sets: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for bucket in exposition.series(&format!("{name}_bucket")) {
            let le = bucket
                .labels
                .iter()
                .find(|(k, _)| k == "le")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse::<f64>()
                    .map_err(|_| format!("{name}: le={le:?} is not a number"))?
            };
            sets.entry(others(bucket))
                .or_default()
                .push((bound, bucket.value));
        }
        if sets.is_empty() {
            return Err(format!("{name}: a histogram without buckets"));
        }
        for (labels, buckets) in sets {
            for pair in buckets.windows(2) {
                if !(pair[0].0 < pair[1].0 && pair[0].1 <= pair[1].1) {
                    return Err(format!("{name}{labels:?}: buckets must rise: {buckets:?}"));
                }
            }
            let last = buckets.last().copied().unwrap_or_default();
            if last.0 != f64::INFINITY {
                return Err(format!("{name}{labels:?}: the last bucket must be +Inf"));
            }
            let borrowed: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let count = exposition.value(&format!("{name}_count"), &borrowed);
            if count != Some(last.1) {
                return Err(format!(
                    "{name}{labels:?}: _count {count:?} is not the +Inf bucket {}",
                    last.1
                ));
            }
            if exposition
                .value(&format!("{name}_sum"), &borrowed)
                .is_none()
            {
                return Err(format!("{name}{labels:?}: no _sum"));
            }
        }
    }
    Ok(())
}

/// The reader refuses what breaks the format: it is the check the service's tests lean on.
#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP a_total Things, with a \\\\ and a \\n.\n# TYPE a_total counter\na_total{x=\"q\\\"uote\\\\d\\nx\"} 3\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n";

    #[test]
    fn reads_a_good_exposition_and_unescapes_its_labels() {
        let exposition = parse(GOOD).unwrap();
        assert_eq!(
            exposition.value("a_total", &[("x", "q\"uote\\d\nx")]),
            Some(3.0)
        );
        assert_eq!(exposition.help["a_total"], "Things, with a \\ and a \n.");
        assert_eq!(exposition.value("h_count", &[]), Some(2.0));
    }

    #[test]
    fn refuses_each_broken_rule() {
        let rows = [
            ("no TYPE", "a_total 1\n"),
            ("counter without _total", "# TYPE a counter\na 1\n"),
            ("bad escape", "# TYPE a_total counter\na_total{x=\"\\t\"} 1\n"),
            ("unquoted", "# TYPE a_total counter\na_total{x=y} 1\n"),
            ("bad name", "# TYPE 1a gauge\n1a 1\n"),
            ("reserved label", "# TYPE a gauge\na{__x=\"1\"} 1\n"),
            ("repeated series", "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n"),
            ("not contiguous", "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 1\n"),
            ("no final newline", "# TYPE a gauge\na 1"),
            ("empty line", "# TYPE a gauge\n\na 1\n"),
            ("negative counter", "# TYPE a_total counter\na_total -1\n"),
            ("not a number", "# TYPE a gauge\na one\n"),
            (
                "falling buckets",
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            ),
            (
                "count not +Inf",
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
            ),
            ("no +Inf", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n"),
            ("comment", "# a comment\n"),
        ];
        for (why, text) in rows {
            assert!(parse(text).is_err(), "{why}: accepted {text:?}");
        }
    }
}
