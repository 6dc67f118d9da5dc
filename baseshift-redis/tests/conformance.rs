//! The core conformance suites against the real Redis server at `BASESHIFT_REDIS_URL`
//! (default `redis://127.0.0.1:6379`), each test under a key prefix of its own.
//! These tests fail (never skip) when Redis is unreachable: run `scripts/services.sh`.

use baseshift_core::{MemoryTemplateStore, StateStore};
use baseshift_redis::{CachedTemplateStore, RedisConfig, RedisStateStore};
use std::time::Duration;

/// A config with a fresh random key prefix, so tests running in parallel never meet.
fn test_config() -> RedisConfig {
    RedisConfig::builder()
        .key_prefix(format!("bstest-{}", uuid_like()))
        .build()
        .unwrap_or_else(|e| panic!("invalid Redis test settings: {e}"))
}

fn uuid_like() -> String {
    format!("{:016x}{:08x}", fastrand_u64(), std::process::id())
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}

fn unreachable(e: baseshift_core::Error) -> ! {
    panic!("Redis is not reachable ({e}); start it with `scripts/services.sh` or set BASESHIFT_REDIS_URL")
}

async fn redis_store_for_test() -> RedisStateStore {
    RedisStateStore::connect(&test_config()).await.unwrap_or_else(|e| unreachable(e))
}

async fn cached_templates_for_test() -> CachedTemplateStore<MemoryTemplateStore> {
    CachedTemplateStore::connect(MemoryTemplateStore::new(), &test_config()).await.unwrap_or_else(|e| unreachable(e))
}

baseshift_core::state_store_conformance!(redis_store_for_test().await);
baseshift_core::template_store_conformance!(cached_templates_for_test().await);

#[tokio::test]
async fn capabilities_say_durable_and_shared() {
    let store = redis_store_for_test().await;
    let caps = store.capabilities();
    assert_eq!((caps.name, caps.durable, caps.shared), ("redis", true, true));
    let _ = Duration::ZERO;
}
