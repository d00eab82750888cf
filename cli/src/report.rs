//! The report: one line per entity or field of the input that was not carried over, named by
//! its path in the input, with what it is and why. Nothing is dropped silently: whatever the
//! converter reads and does not carry goes here, sorted in input order.

use std::fmt::Write as _;

/// A place in the input: its path (`services[1].routes[0].paths[2]`) and its position in
/// document order (`seq`), which sorts the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub path: String,
    pub seq: u32,
}

impl Loc {
    /// The input's root.
    pub fn root() -> Loc {
        Loc {
            path: String::new(),
            seq: 0,
        }
    }

    /// `self.key` (or `key` at the root).
    pub fn field(&self, key: &str, seq: u32) -> Loc {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Loc { path, seq }
    }

    /// `self[index]`.
    pub fn index(&self, index: usize, seq: u32) -> Loc {
        Loc {
            path: format!("{}[{index}]", self.path),
            seq,
        }
    }

    /// The same place, with a label after the path: `plugins[0] (cors)`.
    pub fn labelled(&self, label: &str) -> Loc {
        Loc {
            path: format!("{} ({label})", self.path),
            seq: self.seq,
        }
    }
}

/// One item not carried over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub at: Loc,
    /// What it is: `plugin cors`, `unknown field`, `credential`.
    pub what: String,
    /// Why it was not carried, and what to use instead where there is something.
    pub why: String,
}

/// Every item not carried over.
#[derive(Clone, Debug, Default)]
pub struct Report {
    items: Vec<Item>,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    /// Records that what is at `at` was not carried over.
    pub fn add(&mut self, at: &Loc, what: impl Into<String>, why: impl Into<String>) {
        self.items.push(Item {
            at: at.clone(),
            what: what.into(),
            why: why.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The items in input order (items about one place keep the order they were added in).
    pub fn items(&self) -> Vec<&Item> {
        let mut items: Vec<&Item> = self.items.iter().collect();
        items.sort_by_key(|item| item.at.seq);
        items
    }

    /// `report.txt`: one line per item, `<path>: <what> — <why>`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for item in self.items() {
            let _ = writeln!(out, "{}: {} — {}", item.at.path, item.what, item.why);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_input_order() {
        let mut report = Report::new();
        let root = Loc::root();
        let services = root.field("services", 1);
        report.add(
            &services.index(1, 9).labelled("cors"),
            "plugin cors",
            "no Portcullis filter",
        );
        report.add(&services.index(0, 3), "field snis", "TLS is not converted");
        assert_eq!(
            report.render(),
            "services[0]: field snis — TLS is not converted\n\
             services[1] (cors): plugin cors — no Portcullis filter\n"
        );
        assert_eq!(report.len(), 2);
    }
}
