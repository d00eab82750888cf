//! The Admin API's operations on the database, written once for both backends. Each runs
//! inside one transaction (see [`crate::store`]): it validates its whole input first,
//! then reads, then writes, and records what it changed in [`Changes`] so that the event
//! log and the data agree.
//!
//! | module | holds |
//! |---|---|
//! | [`consumers`] | `/consumers` |
//! | [`jwts`] | `/consumers/{c}/jwt`, `/jwts` |
//! | [`acls`] | `/consumers/{c}/acls`, `/acls` |
//! | [`owned`] | what `jwts` and `acls` share: writing a row a consumer owns |
//! | [`revocations`] | `/revocations` |
//! | [`lookup`] | the data plane's reads |

pub mod acls;
pub mod consumers;
pub mod jwts;
pub mod lookup;
mod owned;
pub mod revocations;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value as Json;

use crate::db::{DbError, Row, Tx, Value};
use crate::failure::Failure;
use crate::input::Input;

pub use crate::events::Changes;

/// The longest username, custom_id or credential key accepted.
pub const MAX_NAME: usize = 1024;
/// The longest group name: a consumer's groups all ride in each of its credential answers.
pub const MAX_GROUP: usize = 256;
/// The most groups one consumer may have: a credential answer lists them all and must fit
/// one `http_call` (see `lookup`'s largest-answer test).
pub const MAX_GROUPS: i64 = 100;
/// The most credentials one consumer may have: a consumer's events list all their keys.
pub const MAX_CREDENTIALS: i64 = 100;

/// 409 if `consumer_id` already has `max` rows in `table` (`acls` or `jwt_secrets`).
pub fn check_room(
    tx: &mut dyn Tx,
    table: &str,
    consumer_id: &str,
    max: i64,
    what: &str,
) -> Result<(), Failure> {
    let sql = if table == "acls" {
        "SELECT COUNT(*) FROM acls WHERE consumer_id = $1"
    } else {
        "SELECT COUNT(*) FROM jwt_secrets WHERE consumer_id = $1"
    };
    let count = tx
        .query(sql, &[Value::from(consumer_id)])?
        .first()
        .map(|row| row.int(0))
        .transpose()?
        .unwrap_or(0);
    if count >= max {
        return Err(Failure::Limit(format!(
            "a consumer has at most {max} {what}: consumer {consumer_id} has {count}"
        )));
    }
    Ok(())
}

/// One page of a listing: `size` and `offset` from the query, Kong's defaults (100, at
/// most 1000).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub size: i64,
    /// The last id of the previous page (decoded from `offset`).
    pub after: String,
    /// Kong's `?tags=a,b` (every one: `all` true) or `?tags=a/b` (any one).
    pub tags: Option<TagFilter>,
}

/// A list's `tags` filter, as Kong reads `?tags=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagFilter {
    pub tags: Vec<String>,
    pub all: bool,
    /// As given, for the `next` link.
    pub given: String,
}

/// The most tags one filter may name (Kong's limit).
const MAX_FILTER_TAGS: usize = 5;

impl TagFilter {
    /// `a,b,c` (and), `a/b/c` (or), `a`; Kong's regexes: each tag of printable ASCII but
    /// `,` and `/`, or UTF-8, at least one byte (one trailing separator allowed).
    pub fn parse(given: &str) -> Result<TagFilter, Failure> {
        let invalid = |why: &str| Failure::InvalidOptions("tags", why.to_owned());
        let (separator, all) = match (given.contains(','), given.contains('/')) {
            (true, true) => return Err(invalid("invalid filter syntax")),
            (_, true) => ('/', false),
            _ => (',', true),
        };
        let mut tags: Vec<String> = given.split(separator).map(str::to_owned).collect();
        if tags.len() > 1 && tags.last().is_some_and(String::is_empty) {
            tags.pop();
        }
        let valid = |tag: &String| {
            !tag.is_empty()
                && tag
                    .chars()
                    .all(|c| c == ' ' || c.is_ascii_graphic() || !c.is_ascii())
        };
        if !tags.iter().all(valid) {
            return Err(invalid("invalid filter syntax"));
        }
        if tags.len() > MAX_FILTER_TAGS {
            return Err(invalid("cannot query more than 5 tags"));
        }
        Ok(TagFilter {
            tags,
            all,
            given: given.to_owned(),
        })
    }

    /// ` AND (tags LIKE $n ESCAPE '!' AND|OR …)`, its patterns pushed onto `params`: each
    /// tag as its JSON string (as stored) inside the stored array's text.
    fn clause(&self, params: &mut Vec<Value>) -> String {
        let mut parts = Vec::with_capacity(self.tags.len());
        for tag in &self.tags {
            let json = serde_json::to_string(tag).unwrap_or_default();
            let mut pattern = String::from("%");
            for c in json.chars() {
                if matches!(c, '%' | '_' | '!') {
                    pattern.push('!');
                }
                pattern.push(c);
            }
            pattern.push('%');
            params.push(Value::from(pattern));
            parts.push(format!("tags LIKE ${} ESCAPE '!'", params.len()));
        }
        let joiner = if self.all { " AND " } else { " OR " };
        format!(" AND ({})", parts.join(joiner))
    }
}

impl PageRequest {
    /// Reads `size` and `offset` as Kong does (`size must be a number`, `size must be an
    /// integer between 1 and 1000`, `'x' is not a valid offset: bad base64 encoding`).
    pub fn from_query(query: &Input) -> Result<PageRequest, Failure> {
        let size = match query.get("size") {
            None | Some(Json::Null) => 100,
            Some(Json::String(text)) => {
                let number: f64 = text
                    .trim()
                    .parse()
                    .map_err(|_| Failure::InvalidSize("size must be a number".to_owned()))?;
                if number.fract() != 0.0 || !(1.0..=1000.0).contains(&number) {
                    return Err(Failure::InvalidSize(
                        "size must be an integer between 1 and 1000".to_owned(),
                    ));
                }
                number as i64
            }
            Some(_) => return Err(Failure::InvalidSize("size must be a number".to_owned())),
        };
        let after = match query.get("offset") {
            None | Some(Json::Null) => String::new(),
            Some(Json::String(offset)) => URL_SAFE_NO_PAD
                .decode(offset)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|id| crate::ids::is_uuid(id))
                .ok_or_else(|| Failure::InvalidOffset(offset.clone(), "bad base64 encoding"))?,
            Some(other) => {
                return Err(Failure::InvalidOffset(
                    other.to_string(),
                    "bad base64 encoding",
                ))
            }
        };
        let tags = match query.get("tags") {
            None | Some(Json::Null) => None,
            Some(Json::String(given)) => Some(TagFilter::parse(given)?),
            Some(Json::Array(items)) => match items.first() {
                // Kong reads the first of repeated `tags`.
                Some(Json::String(given)) => Some(TagFilter::parse(given)?),
                _ => None,
            },
            Some(_) => None,
        };
        Ok(PageRequest { size, after, tags })
    }
}

/// A page: the items and, when more follow, the offset of the next page.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub data: Vec<Json>,
    pub offset: Option<String>,
}

/// Runs a page query: `sql` selects up to its `WHERE … id > $n` (`$n` the parameter after
/// `params`, the page's `after`); the tag filter, the order and the limit are added here
/// (one more row than `size`, to know whether a next page exists).
pub fn page<T>(
    tx: &mut dyn Tx,
    sql: &str,
    mut params: Vec<Value>,
    request: &PageRequest,
    from_row: fn(&Row) -> Result<T, DbError>,
    to_json: fn(&T) -> Json,
    id_of: fn(&T) -> &str,
) -> Result<Page, Failure> {
    params.push(Value::from(request.after.as_str()));
    let mut sql = sql.to_owned();
    if let Some(tags) = &request.tags {
        sql.push_str(&tags.clause(&mut params));
    }
    params.push(Value::Int(request.size + 1));
    sql.push_str(&format!(" ORDER BY id LIMIT ${}", params.len()));
    let rows = tx.query(&sql, &params)?;
    let mut items = rows.iter().map(from_row).collect::<Result<Vec<T>, _>>()?;
    let more = items.len() as i64 > request.size;
    items.truncate(usize::try_from(request.size).unwrap_or(0));
    let offset = match (more, items.last()) {
        (true, Some(last)) => Some(URL_SAFE_NO_PAD.encode(id_of(last))),
        _ => None,
    };
    Ok(Page {
        data: items.iter().map(to_json).collect(),
        offset,
    })
}

/// Whether `sql` (with `params`) returns a row.
pub fn exists(tx: &mut dyn Tx, sql: &str, params: &[Value]) -> Result<bool, DbError> {
    Ok(!tx.query(sql, params)?.is_empty())
}

/// The keys of every credential of a consumer, in key order.
pub fn credential_keys(tx: &mut dyn Tx, consumer_id: &str) -> Result<Vec<String>, DbError> {
    tx.query(
        "SELECT key FROM jwt_secrets WHERE consumer_id = $1 ORDER BY key",
        &[Value::from(consumer_id)],
    )?
    .iter()
    .map(|row| row.text(0))
    .collect()
}

/// A new id: the OS random source failing is an internal error, never a weak id.
pub fn new_id() -> Result<String, Failure> {
    crate::ids::new_uuid().map_err(Failure::Internal)
}
