//! The [`TemplateStore`] contract as checks. Run them all with [`template_store_conformance!`].
//!
//! Every check works on template ids of its own (a fresh UUID suffix) and deletes them at the
//! end, so the checks may run in parallel against one shared database.
//!
//! [`template_store_conformance!`]: crate::template_store_conformance

use crate::error::{Error, ErrorKind, Result};
use crate::template::{JobSpec, RetryPolicy, Trigger, WorkflowTemplate};
use crate::templates::{TemplateStore, TemplateSummary};
use semver::Version;
use std::time::Duration;

/// Returns a failure of `check` from the enclosing function unless `cond` holds.
macro_rules! ensure {
    ($check:expr, $cond:expr, $what:expr $(,)?) => {
        if !$cond {
            return Err(failure($check, ($what)()));
        }
    };
}

fn failure(check: &str, what: String) -> Error {
    Error::internal(format!("template store conformance `{check}` failed: {what}"))
}

/// Turns an error of operation `op` into a failure of `check`.
fn op_failed<'a>(check: &'a str, op: &'a str) -> impl FnOnce(Error) -> Error + 'a {
    move |e| failure(check, format!("{op}: {e}"))
}

/// Returns a failure of `check` from the enclosing function unless `res` is an error of `kind`.
macro_rules! expect_kind {
    ($check:expr, $op:expr, $res:expr, $kind:expr $(,)?) => {
        match $res {
            Err(e) if e.kind() == $kind => {}
            Err(e) => {
                let what = format!("{}: expected error kind {}, got {e}", $op, $kind);
                return Err(failure($check, what));
            }
            Ok(v) => {
                let what = format!("{}: expected error kind {}, got Ok({v:?})", $op, $kind);
                return Err(failure($check, what));
            }
        }
    };
}

/// A template id no other check or test run uses.
fn unique_id(check: &str) -> String {
    format!("conformance_{check}_{}", uuid::Uuid::now_v7().simple())
}

/// A valid two-job template that exercises most fields, so a lossy round trip shows.
fn template(id: &str, version: Version, name: &str) -> WorkflowTemplate {
    let mut t = WorkflowTemplate::new(id, version)
        .input_schema(serde_json::json!({ "type": "object", "properties": { "amount": { "type": "number" } } }))
        .job(
            JobSpec::new("initialize", "noop")
                .config(serde_json::json!({ "url": "https://example.invalid/init", "method": "POST" }))
                .retry(RetryPolicy::attempts(3).initial_delay(Duration::from_millis(500)))
                .timeout(Duration::from_secs(30))
                .priority(5),
        )
        .job(JobSpec::new("finalize", "noop").depends_on(["initialize"]).trigger(Trigger::AllDone));
    t.name = name.to_owned();
    t.description = Some(format!("conformance template {id}"));
    t
}

/// A template with two jobs of the same id, which structural validation rejects.
fn invalid_template(id: &str, version: Version) -> WorkflowTemplate {
    WorkflowTemplate::new(id, version).job(JobSpec::new("twice", "noop")).job(JobSpec::new("twice", "noop"))
}

fn v(major: u64, minor: u64, patch: u64) -> Version {
    Version::new(major, minor, patch)
}

/// Removes the check's templates; they were already checked, so a failure here is ignored.
async fn cleanup(store: &dyn TemplateStore, ids: &[&str]) {
    for id in ids {
        let _ = store.delete(id).await;
    }
}

async fn get_eq(
    store: &dyn TemplateStore,
    check: &str,
    version: Option<&Version>,
    expected: &WorkflowTemplate,
) -> Result<()> {
    let id = &expected.template_id;
    let op = format!("get({id}, {version:?})");
    let got = store.get(id, version).await.map_err(op_failed(check, &op))?;
    ensure!(check, got == *expected, || { format!("{op} returned {got:?}, expected {expected:?}") });
    Ok(())
}

/// A created template is returned, unchanged, as the latest version and by its version.
pub async fn create_then_get_latest(store: &dyn TemplateStore) -> Result<()> {
    let check = "create_then_get_latest";
    let id = unique_id(check);
    let t = template(&id, v(1, 0, 0), "first");
    store.create(&t).await.map_err(op_failed(check, "create"))?;
    get_eq(store, check, None, &t).await?;
    get_eq(store, check, Some(&t.version), &t).await?;
    cleanup(store, &[&id]).await;
    Ok(())
}

/// Creating an id that exists is a `Conflict` and leaves the stored template unchanged.
pub async fn create_existing_id_conflicts(store: &dyn TemplateStore) -> Result<()> {
    let check = "create_existing_id_conflicts";
    let id = unique_id(check);
    let t = template(&id, v(1, 0, 0), "original");
    store.create(&t).await.map_err(op_failed(check, "create"))?;
    let again = template(&id, v(2, 0, 0), "second create");
    expect_kind!(check, "second create", store.create(&again).await, ErrorKind::Conflict,);
    get_eq(store, check, None, &t).await?;
    cleanup(store, &[&id]).await;
    Ok(())
}

/// An update with a greater version becomes the latest; the older version stays readable.
pub async fn update_keeps_older_versions(store: &dyn TemplateStore) -> Result<()> {
    let check = "update_keeps_older_versions";
    let id = unique_id(check);
    let v1 = template(&id, v(1, 0, 0), "one");
    let v2 = template(&id, v(1, 1, 0), "two").job(JobSpec::new("notify", "noop"));
    store.create(&v1).await.map_err(op_failed(check, "create"))?;
    store.update(&v2).await.map_err(op_failed(check, "update"))?;
    get_eq(store, check, None, &v2).await?;
    get_eq(store, check, Some(&v1.version), &v1).await?;
    get_eq(store, check, Some(&v2.version), &v2).await?;
    cleanup(store, &[&id]).await;
    Ok(())
}

/// An update whose version is not greater than the latest (equal, lower, or a pre-release
/// of the latest) is a `Conflict` and changes nothing.
pub async fn update_with_stale_version_conflicts(store: &dyn TemplateStore) -> Result<()> {
    let check = "update_with_stale_version_conflicts";
    let id = unique_id(check);
    let v1 = template(&id, v(1, 0, 0), "one");
    let v2 = template(&id, v(2, 0, 0), "two");
    store.create(&v1).await.map_err(op_failed(check, "create"))?;
    store.update(&v2).await.map_err(op_failed(check, "update"))?;
    let stale =
        [v(2, 0, 0), v(1, 5, 0), v(1, 0, 0), Version::parse("2.0.0-rc.1").map_err(|e| failure(check, e.to_string()))?];
    for version in stale {
        let op = format!("update to {version}");
        let t = template(&id, version.clone(), "stale");
        expect_kind!(check, &op, store.update(&t).await, ErrorKind::Conflict);
        if version != v1.version && version != v2.version {
            let got = store.get(&id, Some(&version)).await;
            expect_kind!(check, &format!("get({version}) after rejected {op}"), got, ErrorKind::NotFound,);
        }
    }
    get_eq(store, check, None, &v2).await?;
    get_eq(store, check, Some(&v1.version), &v1).await?;
    cleanup(store, &[&id]).await;
    Ok(())
}

/// Updating an id that was never created is `NotFound` and stores nothing.
pub async fn update_of_missing_id_is_not_found(store: &dyn TemplateStore) -> Result<()> {
    let check = "update_of_missing_id_is_not_found";
    let id = unique_id(check);
    let t = template(&id, v(1, 0, 0), "orphan");
    expect_kind!(check, "update", store.update(&t).await, ErrorKind::NotFound);
    expect_kind!(check, "get after update", store.get(&id, None).await, ErrorKind::NotFound,);
    Ok(())
}

/// A missing id, or a missing version of an existing id, is `NotFound`.
pub async fn get_missing_is_not_found(store: &dyn TemplateStore) -> Result<()> {
    let check = "get_missing_is_not_found";
    let missing = unique_id(check);
    expect_kind!(check, "get(missing, latest)", store.get(&missing, None).await, ErrorKind::NotFound,);
    let version = v(1, 0, 0);
    expect_kind!(check, "get(missing, 1.0.0)", store.get(&missing, Some(&version)).await, ErrorKind::NotFound,);
    let id = unique_id(check);
    store.create(&template(&id, v(1, 0, 0), "one")).await.map_err(op_failed(check, "create"))?;
    for version in [v(1, 0, 1), v(0, 9, 0), v(2, 0, 0)] {
        let op = format!("get(existing, {version})");
        expect_kind!(check, &op, store.get(&id, Some(&version)).await, ErrorKind::NotFound,);
    }
    cleanup(store, &[&id]).await;
    Ok(())
}

/// `list` is sorted by id and gives each id's versions ascending, with the latest's name.
pub async fn list_is_sorted_with_versions(store: &dyn TemplateStore) -> Result<()> {
    let check = "list_is_sorted_with_versions";
    let prefix = unique_id(check);
    let (a, b, c) = (format!("{prefix}_a"), format!("{prefix}_b"), format!("{prefix}_c"));
    store.create(&template(&b, v(1, 0, 0), "b")).await.map_err(op_failed(check, "create b"))?;
    store.create(&template(&a, v(0, 1, 0), "a")).await.map_err(op_failed(check, "create a"))?;
    store.create(&template(&c, v(3, 0, 0), "c1")).await.map_err(op_failed(check, "create c"))?;
    store.update(&template(&c, v(3, 0, 1), "c2")).await.map_err(op_failed(check, "update c"))?;
    store.update(&template(&c, v(10, 0, 0), "c3")).await.map_err(op_failed(check, "update c"))?;
    let list = store.list().await.map_err(op_failed(check, "list"))?;
    ensure!(check, list.windows(2).all(|w| w[0].template_id < w[1].template_id), || {
        format!("ids not strictly ascending: {:?}", list.iter().map(|s| &s.template_id).collect::<Vec<_>>())
    },);
    let ours: Vec<&TemplateSummary> = list.iter().filter(|s| s.template_id.starts_with(&prefix)).collect();
    let summary =
        |s: &TemplateSummary| (s.template_id.clone(), s.name.clone(), s.latest_version.clone(), s.versions.clone());
    let got: Vec<_> = ours.iter().map(|s| summary(s)).collect();
    let expected = vec![
        (a.clone(), "a".to_owned(), v(0, 1, 0), vec![v(0, 1, 0)]),
        (b.clone(), "b".to_owned(), v(1, 0, 0), vec![v(1, 0, 0)]),
        (c.clone(), "c3".to_owned(), v(10, 0, 0), vec![v(3, 0, 0), v(3, 0, 1), v(10, 0, 0)]),
    ];
    ensure!(check, got == expected, || { format!("listed {got:?}, expected {expected:?}") });
    cleanup(store, &[&a, &b, &c]).await;
    Ok(())
}

/// `delete` removes every version: each `get` is then `NotFound`, the id leaves `list`, and
/// the id can be created afresh.
pub async fn delete_removes_every_version(store: &dyn TemplateStore) -> Result<()> {
    let check = "delete_removes_every_version";
    let id = unique_id(check);
    store.create(&template(&id, v(1, 0, 0), "one")).await.map_err(op_failed(check, "create"))?;
    store.update(&template(&id, v(2, 0, 0), "two")).await.map_err(op_failed(check, "update"))?;
    store.delete(&id).await.map_err(op_failed(check, "delete"))?;
    expect_kind!(check, "get(latest) after delete", store.get(&id, None).await, ErrorKind::NotFound,);
    for version in [v(1, 0, 0), v(2, 0, 0)] {
        let op = format!("get({version}) after delete");
        expect_kind!(check, &op, store.get(&id, Some(&version)).await, ErrorKind::NotFound,);
    }
    let list = store.list().await.map_err(op_failed(check, "list"))?;
    ensure!(check, list.iter().all(|s| s.template_id != id), || { "the deleted id is still listed".into() });
    let fresh = template(&id, v(0, 1, 0), "fresh");
    store.create(&fresh).await.map_err(op_failed(check, "create after delete"))?;
    get_eq(store, check, None, &fresh).await?;
    cleanup(store, &[&id]).await;
    Ok(())
}

/// Deleting an id that does not exist is `NotFound`.
pub async fn delete_missing_is_not_found(store: &dyn TemplateStore) -> Result<()> {
    let check = "delete_missing_is_not_found";
    expect_kind!(check, "delete", store.delete(&unique_id(check)).await, ErrorKind::NotFound,);
    Ok(())
}

/// A structurally invalid template (two jobs with one id) is `InvalidTemplate` on create and
/// on update, and nothing is stored.
pub async fn invalid_template_is_rejected(store: &dyn TemplateStore) -> Result<()> {
    let check = "invalid_template_is_rejected";
    let id = unique_id(check);
    let bad = invalid_template(&id, v(1, 0, 0));
    expect_kind!(check, "create(invalid)", store.create(&bad).await, ErrorKind::InvalidTemplate,);
    expect_kind!(check, "get after create(invalid)", store.get(&id, None).await, ErrorKind::NotFound,);
    let list = store.list().await.map_err(op_failed(check, "list"))?;
    ensure!(check, list.iter().all(|s| s.template_id != id), || { "the rejected template is listed".into() });

    let good = template(&id, v(1, 0, 0), "good");
    store.create(&good).await.map_err(op_failed(check, "create"))?;
    let bad = invalid_template(&id, v(2, 0, 0));
    expect_kind!(check, "update(invalid)", store.update(&bad).await, ErrorKind::InvalidTemplate,);
    get_eq(store, check, None, &good).await?;
    let got = store.get(&id, Some(&bad.version)).await;
    expect_kind!(check, "get(2.0.0) after update(invalid)", got, ErrorKind::NotFound,);
    cleanup(store, &[&id]).await;
    Ok(())
}

/// Expands to a module `template_store_conformance` with one `#[tokio::test]` per check of
/// [`conformance::templates`](crate::conformance::templates), each against a fresh store.
///
/// The argument is an expression that evaluates to a value implementing
/// [`TemplateStore`](crate::TemplateStore); it may use `.await` and names in scope at the
/// call site. The calling crate needs `tokio` (features `macros`, `rt-multi-thread`) as a
/// dev-dependency.
///
/// ```
/// use baseshift_core::MemoryTemplateStore;
///
/// baseshift_core::template_store_conformance!(MemoryTemplateStore::new());
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! template_store_conformance {
    ($make:expr) => {
        $crate::template_store_conformance!(@checks $make;
            create_then_get_latest,
            create_existing_id_conflicts,
            update_keeps_older_versions,
            update_with_stale_version_conflicts,
            update_of_missing_id_is_not_found,
            get_missing_is_not_found,
            list_is_sorted_with_versions,
            delete_removes_every_version,
            delete_missing_is_not_found,
            invalid_template_is_rejected,
        );
    };
    (@checks $make:expr; $($check:ident),+ $(,)?) => {
        mod template_store_conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let store = $make;
                    if let Err(e) = $crate::conformance::templates::$check(&store).await {
                        panic!("{e}");
                    }
                }
            )+
        }
    };
}
