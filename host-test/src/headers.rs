//! The header map that requests, responses and host calls share.

/// A header map: lower-case names, byte values, in order, repeats allowed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers {
    pub pairs: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// The first value of `name` (Envoy hands filters the first of repeated headers).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    /// The first value of `name` as text (lossy).
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.pairs.push((name.to_ascii_lowercase(), value.to_vec()));
    }
    pub fn remove(&mut self, name: &str) {
        self.pairs.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
    /// Sets `name` to one value as Envoy's `setCopy` does: every occurrence is removed and
    /// the new value appended at the end.
    pub fn replace(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.add(name, value);
    }
    pub fn names(&self) -> Vec<&str> {
        self.pairs.iter().map(|(k, _)| k.as_str()).collect()
    }
}
