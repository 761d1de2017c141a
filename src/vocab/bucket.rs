//! Catalog page buckets: a resource's bucket is fixed by its id, so the page that holds it
//! is known without a lookup.

use sha2::{Digest, Sha256};

/// How many hash buckets resources are spread over; `catalog.pages` is at most this.
pub const BUCKETS: u32 = 4096;

/// The bucket of a resource: the low 12 bits of the first two bytes of sha256(id).
pub fn bucket_of(resource_id: &str) -> i32 {
    let d = Sha256::digest(resource_id.as_bytes());
    (((u32::from(d[0]) & 0x0f) << 8) | u32::from(d[1])) as i32
}

/// [`bucket_of`] as a PostgreSQL expression over the `id` column (backfill, benchmarks).
pub const POSTGRES_BUCKET_SQL: &str = "(((get_byte(sha256(convert_to(id, 'UTF8')), 0) & 15) << 8) \
     | get_byte(sha256(convert_to(id, 'UTF8')), 1))";
