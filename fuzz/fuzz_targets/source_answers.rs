//! portcullis-admin's data-plane answers as the jwt filter's consumer source reads them: a
//! hostile or broken admin (any status, any body) never panics the poller or a worker, and
//! a lookup answer it cannot read is never cached as a credential.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::jwt::source::directory::{Answered, Lookup};
use portcullis_core::jwt::source::{Call, ConsumerSource, Directory, Poller, RawConsumerSource};
use portcullis_core::shared::MemoryStore;

const NOW_MS: u64 = 1_767_225_610_000;

fuzz_target!(|data: &[u8]| {
    let raw = RawConsumerSource {
        cluster: "admin".into(),
        authority: None,
        timeout_ms: None,
        poll_interval_ms: None,
        negative_ttl: None,
        stale_ttl: None,
        cache_size: None,
        max_lookups_per_second: None,
        token: None,
    };
    let Ok(source) = ConsumerSource::compile("consumer_source", &raw) else {
        panic!("the target's own settings are refused");
    };
    // The first byte picks which answer the bytes are: revocations, changes after a
    // load, a revocation delta, or a credential lookup.
    let (which, body) = match data.split_first() {
        Some((b, rest)) => (b % 4, rest),
        None => (0, data),
    };
    let store = MemoryStore::new();
    let mut poller = Poller::new(source.clone(), 1);
    let Ok(calls) = poller.tick(&store, NOW_MS) else {
        panic!("memory store failed");
    };
    if which == 0 {
        let _ = poller.answered(&store, &calls[0], Some("200"), body, NOW_MS);
        return;
    }
    let load = br#"{"epoch":"e","head":1,"grace":60,"jtis":[],"consumers":[],"credentials":[]}"#;
    let _ = poller.answered(&store, &calls[0], Some("200"), load, NOW_MS);
    let mut directory = Directory::new(source);
    let _ = directory.sync(&store);
    match which {
        1 | 2 => {
            let later = NOW_MS + 1_000;
            let Ok(calls) = poller.tick(&store, later) else {
                panic!("memory store failed");
            };
            for call in calls {
                if let Ok((more, _)) = poller.answered(&store, &call, Some("200"), body, later) {
                    for delta in more {
                        let _ = poller.answered(&store, &delta, Some("200"), body, later);
                    }
                }
            }
            let _ = directory.sync(&store);
            let _ = directory.find("k", later);
        }
        _ => {
            let _ = directory.resolve(&store, "k", NOW_MS);
            let answered = directory.answered(&store, "k", Some("200"), body, NOW_MS);
            if !matches!(answered, Ok(Answered::Stored)) {
                assert!(
                    !matches!(directory.find("k", NOW_MS), Lookup::Found(_)),
                    "an answer not stored was cached"
                );
            }
            let _ = Call::Credential { key: "k".into() }.path();
        }
    }
});
