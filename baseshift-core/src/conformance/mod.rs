//! Conformance suites: the contracts of [`StateStore`],
//! [`EventBus`](crate::EventBus) and [`TemplateStore`](crate::TemplateStore) as plain
//! `pub async fn` checks that every backend runs against its real server.
//!
//! Enabled by the `testkit` feature. Each check takes the backend as a trait object,
//! exercises one clause of the trait's `# Contract` and returns `Err` (kind `Internal`,
//! message starting `conformance check failed:`) when the backend breaks it; errors the
//! backend itself returns come back unchanged.
//!
//! # Running the state store suite on a backend
//!
//! Add `baseshift-core` with the `testkit` feature and `tokio` (features `macros`,
//! `rt-multi-thread`) as dev-dependencies, and write one integration test file:
//!
//! ```no_run
//! // baseshift-redis/tests/conformance.rs
//! # use baseshift_core::MemoryStateStore as RedisStateStore;
//! /// A store under a key prefix of its own.
//! async fn redis_store_for_test() -> RedisStateStore {
//!     // connect, pick a unique prefix ...
//! #   RedisStateStore::new()
//! }
//!
//! baseshift_core::state_store_conformance!(redis_store_for_test().await);
//! # fn main() {}
//! ```
//!
//! [`state_store_conformance!`](crate::state_store_conformance) expands to a module
//! `state_store_conformance` with one `#[tokio::test]` per check in [`state`], each named
//! after its check, so a failure names the clause that broke. The expression is evaluated
//! once per test and must yield a **fresh, empty** store (a unique key prefix, schema or
//! database per test): checks count outbox entries, list workflows and claim "any ready
//! job", so they assume no other test writes to the same store. It may `.await`, and it
//! may yield the store itself or an `Arc` of it (anything implementing [`AsStateStore`]).
//!
//! Checks that involve leases and delays sleep in real time (a few hundred milliseconds),
//! because a durable backend's clock is not tokio's.
//!
//! A backend with an extra test can also call a check directly:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> baseshift_core::Result<()> {
//! use baseshift_core::conformance::state;
//! use baseshift_core::MemoryStateStore;
//!
//! state::create_and_read_back(&MemoryStateStore::new()).await
//! # }
//! ```

pub mod bus;
pub mod check;
pub mod engine;
pub mod fixtures;
pub mod state;
pub mod templates;

use crate::store::StateStore;
use std::sync::Arc;

/// Borrows a store under test as `&dyn StateStore`, whether the test built the store
/// itself or an `Arc` of it.
pub trait AsStateStore {
    /// The store as a trait object.
    fn as_state_store(&self) -> &dyn StateStore;
}

impl<T: StateStore> AsStateStore for T {
    fn as_state_store(&self) -> &dyn StateStore {
        self
    }
}

impl<T: StateStore> AsStateStore for Arc<T> {
    fn as_state_store(&self) -> &dyn StateStore {
        &**self
    }
}

impl AsStateStore for Arc<dyn StateStore> {
    fn as_state_store(&self) -> &dyn StateStore {
        &**self
    }
}

/// Runs every [`StateStore`] conformance check in [`state`] as its own test.
///
/// `$store` is an expression (it may `.await`) that yields a fresh, empty store, or an
/// `Arc` of one; it is evaluated once per test. The tests live in a module named
/// `state_store_conformance` that imports the caller's module (`use super::*`), so the
/// expression may call helpers defined beside the macro call. The calling crate needs
/// `tokio` (features `macros`, `rt-multi-thread`) as a dev-dependency.
///
/// ```no_run
/// baseshift_core::state_store_conformance!(baseshift_core::MemoryStateStore::new());
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! state_store_conformance {
    ($store:expr) => {
        $crate::state_store_conformance!(@tests $store;
            create_and_read_back,
            create_with_used_key_returns_existing,
            concurrent_creates_with_one_key_create_once,
            create_workflows_answers_each_in_order,
            missing_records_are_not_found,
            jobs_by_id_in_order_asked,
            workflows_by_id_in_order_asked,
            jobs_of_many_in_order_asked,
            template_snapshot_round_trip,
            list_workflows_pages_and_filters,
            write_bumps_version_by_one,
            stale_version_is_conflict_and_writes_nothing,
            racing_writes_have_one_winner,
            failed_step_writes_nothing,
            illegal_transition_is_rejected,
            header_write_keeps_remaining,
            child_waits_for_all_parents,
            trigger_all_success,
            trigger_all_done,
            trigger_one_success,
            trigger_none_failed,
            skips_count_in_remaining,
            conditional_child_becomes_eligible,
            jobs_created_ready_are_claimable,
            jobs_created_running_keep_their_lease,
            claim_marks_job_running_under_lease,
            claim_orders_by_priority_then_age,
            claim_respects_limit_and_exclude_types,
            claim_respects_type_limits,
            concurrent_claims_never_share_a_job,
            delayed_job_waits_until_due,
            expired_lease_is_reclaimed,
            renew_extends_lease,
            renew_with_stale_token_conflicts,
            awaiting_external_job_is_not_reclaimed,
            wait_for_work_wakes_on_ready,
            outbox_keeps_step_order,
            outbox_ack_removes_events,
            dead_letters_list_failed_jobs,
            replay_step_reopens_a_failed_workflow,
            complete_at_zero_completes_in_the_step,
            complete_at_zero_waits_for_failures_and_skips,
            claim_respects_concurrency_keys,
            concurrent_claims_respect_concurrency_keys,
        );
    };
    (@tests $store:expr; $($check:ident),+ $(,)?) => {
        mod state_store_conformance {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let store = $store;
                    let store = $crate::conformance::AsStateStore::as_state_store(&store);
                    if let Err(e) = $crate::conformance::state::$check(store).await {
                        panic!("{}: {e}", stringify!($check));
                    }
                }
            )+
        }
    };
}

/// Runs every engine scenario in [`engine`] on a state store backend, each as its own test.
///
/// `$store` is an expression (it may `.await`) that yields a fresh, empty store (a concrete
/// store type, wrapped in an `Arc` by the macro); it is evaluated once per test. The tests
/// live in a module named `engine_conformance`.
///
/// ```no_run
/// baseshift_core::engine_conformance!(baseshift_core::MemoryStateStore::new());
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! engine_conformance {
    ($store:expr) => {
        $crate::engine_conformance!(@tests $store;
            dead_letter_replay_completes_the_workflow,
            dead_letter_discard_hides_it,
            replay_is_refused_after_compensations,
            concurrency_key_limit_holds_across_instances,
        );
    };
    (@tests $store:expr; $($check:ident),+ $(,)?) => {
        mod engine_conformance {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let store: ::std::sync::Arc<dyn $crate::StateStore> = ::std::sync::Arc::new($store);
                    if let Err(e) = $crate::conformance::engine::$check(store).await {
                        panic!("{}: {e}", stringify!($check));
                    }
                }
            )+
        }
    };
}
