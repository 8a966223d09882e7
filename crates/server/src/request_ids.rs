//! The `X-Request-ID` given to a request that comes without one.
//!
//! A fresh random UUID per request asks the kernel for randomness each time
//! (one `getrandom` system call per request, as `uuid`'s v4 without its
//! `fast-rng` feature does). These IDs only have to be unique, not
//! unguessable: they name a request in answers and audit records and protect
//! nothing. So each node draws one random UUID at start and numbers its
//! requests from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// Version-4 UUIDs: a random base plus a request counter.
#[derive(Clone)]
pub(crate) struct RequestIds {
    base: u128,
    next: Arc<AtomicU64>,
}

/// The version (4) and variant (RFC 9562) bits, and the bits they replace.
const KEEP: u128 = 0xFFFF_FFFF_FFFF_4FFF_BFFF_FFFF_FFFF_FFFF;
const SET: u128 = 0x0000_0000_0000_4000_8000_0000_0000_0000;

impl RequestIds {
    pub(crate) fn new() -> RequestIds {
        RequestIds {
            base: uuid::Uuid::new_v4().as_u128(),
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    fn next_id(&self) -> uuid::Uuid {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // The counter runs through the low 62 bits below the variant: unique
        // for 2^62 requests.
        uuid::Uuid::from_u128(self.base.wrapping_add(u128::from(n)) & KEEP | SET)
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = self.next_id().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_distinct_version_4_uuids() {
        let mut ids = RequestIds::new();
        let request = Request::new(());
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = ids.make_request_id(&request).unwrap();
            let text = id.header_value().to_str().unwrap().to_owned();
            let uuid = uuid::Uuid::parse_str(&text).unwrap();
            assert_eq!(uuid.get_version_num(), 4, "{text}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{text}");
            assert_eq!(text.len(), 36);
            assert!(seen.insert(text), "repeated");
        }
    }

    #[test]
    fn each_node_numbers_from_its_own_random_base() {
        let (a, b) = (RequestIds::new(), RequestIds::new());
        assert_ne!(a.next_id(), b.next_id());
    }
}
