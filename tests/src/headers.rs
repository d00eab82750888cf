//! Header lists as the client ([`crate::Reply`]) and the upstream ([`crate::Recorded`])
//! record them: names lowercased, values trimmed, in arrival order, duplicates kept.

/// The first value of the header `name` (any case).
pub fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    all(headers, name).into_iter().next()
}

/// Every value of the header `name` (any case), in arrival order.
pub fn all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// One `name: value` line of an HTTP/1.1 head as it is recorded; `None` without a colon.
pub fn parse_line(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once(':')?;
    Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_in_any_case_and_duplicates_keep_their_order() {
        let headers: Vec<(String, String)> = ["X-A: 1", "x-b:2", "x-a:  3 ", "no colon"]
            .iter()
            .filter_map(|line| parse_line(line))
            .collect();
        assert_eq!(all(&headers, "x-A"), vec!["1", "3"]);
        assert_eq!(first(&headers, "X-B"), Some("2"));
        assert_eq!(first(&headers, "x-c"), None);
    }
}
