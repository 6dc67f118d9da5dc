//! The baseshift-core conformance suites against the PostgreSQL server at
//! `BASESHIFT_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), each
//! test in a fresh schema of its own. An unreachable server fails every test with a hint
//! to run `scripts/services.sh`.

mod common;

use common::fresh;

baseshift_core::state_store_conformance!(fresh(4).await);
baseshift_core::engine_conformance!(fresh(4).await);
baseshift_core::template_store_conformance!(fresh(2).await);
