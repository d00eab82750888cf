//! The one Redis script a request runs: every counter checked, then — only if none would go
//! over — every counter incremented, each new key expiring with its window. Atomic, so any
//! number of service replicas on one Redis count exactly; a refused request counts nowhere.

use crate::failure::{Failure, Outage};
use crate::plan::Check;

/// Seconds a counter outlives its window: a replica whose clock lags a little still finds
/// the counter of the window it believes in.
pub const EXPIRY_MARGIN_SECS: u64 = 5;

/// `KEYS[i]`: the counter of check `i`. `ARGV[3i-2], ARGV[3i-1], ARGV[3i]`: its limit, its
/// hits and its time to live in seconds. The same key may appear twice (two descriptors
/// with the same entries): `pending` adds what earlier checks of this request would add.
///
/// Returns `{admitted, count_1, over_1, …}`: admitted 1 or 0; the count after this request
/// when admitted, before it when refused; over 1 where this check alone refuses it.
pub const LUA: &str = r#"
local n = #KEYS
local reply = {1}
local pending = {}
for i = 1, n do
  local key = KEYS[i]
  local limit = tonumber(ARGV[3 * i - 2])
  local hits = tonumber(ARGV[3 * i - 1])
  local before = tonumber(redis.call('GET', key) or '0') + (pending[key] or 0)
  local over = 0
  if before + hits > limit then
    over = 1
    reply[1] = 0
  end
  pending[key] = (pending[key] or 0) + hits
  reply[2 * i] = before
  reply[2 * i + 1] = over
end
if reply[1] == 1 then
  for i = 1, n do
    local key = KEYS[i]
    local hits = tonumber(ARGV[3 * i - 1])
    if hits > 0 then
      local after = redis.call('INCRBY', key, hits)
      if after == hits then
        redis.call('EXPIRE', key, tonumber(ARGV[3 * i]))
      end
      reply[2 * i] = after
    end
  end
end
return reply
"#;

/// The script's arguments for `checks` at `now_secs`: per check its limit, hits and time
/// to live (window end − now + [`EXPIRY_MARGIN_SECS`]). The TTL is relative, so the key
/// dies by this service's clock, not by Redis's.
pub fn arguments(checks: &[Check], now_secs: u64) -> Vec<u64> {
    checks
        .iter()
        .flat_map(|check| {
            let ttl = check.window.end.saturating_sub(now_secs) + EXPIRY_MARGIN_SECS;
            [u64::from(check.limit), check.hits, ttl]
        })
        .collect()
}

/// What the script answered, per check in plan order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    pub admitted: bool,
    /// Per check: the count (after the request if admitted, before it if refused) and
    /// whether this check is over.
    pub counts: Vec<(u64, bool)>,
}

/// Reads the script's reply for `checks` checks; a reply of any other shape is the store
/// misbehaving.
pub fn counted(reply: &[i64], checks: usize) -> Result<Counted, Failure> {
    let malformed = || {
        Failure::Unavailable(
            Outage::BadReply,
            format!("unexpected script reply {reply:?}"),
        )
    };
    let (admitted, rest) = reply.split_first().ok_or_else(malformed)?;
    if rest.len() != 2 * checks || !matches!(admitted, 0 | 1) {
        return Err(malformed());
    }
    let counts = rest
        .chunks_exact(2)
        .map(|pair| match pair {
            [count, over] => Ok((u64::try_from(*count).unwrap_or(0), *over != 0)),
            _ => Err(malformed()),
        })
        .collect::<Result<_, _>>()?;
    Ok(Counted {
        admitted: *admitted == 1,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::CountUnit;
    use portcullis_core::rate_limit::window::Window;
    use portcullis_core::rate_limit::Period;

    #[test]
    fn each_check_passes_limit_hits_and_a_ttl_to_its_window_end() {
        let check = Check {
            descriptor: 0,
            key: "k".to_owned(),
            limit: 10,
            unit: CountUnit::Calendar(Period::Minute),
            window: Window {
                start: 60,
                end: 120,
            },
            hits: 2,
        };
        assert_eq!(
            arguments(&[check], 100),
            vec![10, 2, 20 + EXPIRY_MARGIN_SECS]
        );
    }

    #[test]
    fn reads_a_reply_per_check() {
        assert_eq!(
            counted(&[0, 3, 0, 5, 1], 2),
            Ok(Counted {
                admitted: false,
                counts: vec![(3, false), (5, true)]
            })
        );
        assert_eq!(
            counted(&[1], 0),
            Ok(Counted {
                admitted: true,
                counts: vec![]
            })
        );
    }

    #[test]
    fn a_reply_of_the_wrong_shape_is_the_store_failing() {
        for reply in [&[][..], &[1, 2][..], &[2, 1, 0][..], &[1, 1, 0, 1][..]] {
            let failure = counted(reply, 1).unwrap_err();
            assert_eq!(failure.code(), tonic::Code::Unavailable, "{reply:?}");
        }
    }
}
