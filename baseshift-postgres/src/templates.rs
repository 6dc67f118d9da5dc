//! [`PostgresTemplateStore`]: the versioned template catalog in `templates` and
//! `template_versions`.

use crate::backend::Shared;
use crate::error::{BACKEND, backend_error, db, db_error};
use async_trait::async_trait;
use baseshift_core::templates::TemplateSummary;
use baseshift_core::{Error, ErrorKind, Result, TemplateStore, WorkflowTemplate};
use semver::Version;
use sqlx::types::Json;
use std::sync::Arc;

/// The PostgreSQL [`TemplateStore`]: one `templates` row per id (its latest version and
/// name) and one `template_versions` row per version (the template as JSONB). Every write
/// validates the template first; `update` locks the id's row, so concurrent updates
/// cannot both store a "newest" version.
///
/// Obtain one from [`Postgres::template_store`](crate::Postgres::template_store).
#[derive(Clone)]
pub struct PostgresTemplateStore {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for PostgresTemplateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTemplateStore").field("schema", &self.shared.config.schema).finish_non_exhaustive()
    }
}

fn ctx(e: Error, op: &'static str) -> Error {
    e.with_operation(op).with_backend(BACKEND)
}

fn missing(template_id: &str, op: &'static str) -> Error {
    backend_error(ErrorKind::NotFound, op, format!("template `{template_id}` does not exist"))
}

fn parse_version(v: &str, op: &'static str) -> Result<Version> {
    Version::parse(v).map_err(|e| backend_error(ErrorKind::Internal, op, format!("stored version `{v}`: {e}")))
}

#[async_trait]
impl TemplateStore for PostgresTemplateStore {
    async fn create(&self, template: &WorkflowTemplate) -> Result<()> {
        const OP: &str = "TemplateStore::create";
        template.validate().map_err(|e| ctx(e, OP))?;
        let body = serde_json::to_value(template)?;
        let created: i64 = sqlx::query_scalar(
            "WITH t AS (INSERT INTO templates (template_id, name, latest_version) VALUES ($1, $2, $3) \
               ON CONFLICT DO NOTHING RETURNING template_id), \
             v AS (INSERT INTO template_versions (template_id, version, body) SELECT template_id, $3, $4 FROM t) \
             SELECT count(*) FROM t",
        )
        .bind(&template.template_id)
        .bind(&template.name)
        .bind(template.version.to_string())
        .bind(body)
        .fetch_one(&self.shared.pool)
        .await
        .map_err(db(OP))?;
        if created == 0 {
            return Err(ctx(Error::conflict(format!("template `{}` already exists", template.template_id)), OP));
        }
        Ok(())
    }

    async fn get(&self, template_id: &str, version: Option<&Version>) -> Result<WorkflowTemplate> {
        const OP: &str = "TemplateStore::get";
        let body: Option<Json<WorkflowTemplate>> = match version {
            None => {
                sqlx::query_scalar(
                    "SELECT v.body FROM templates t JOIN template_versions v \
                       ON v.template_id = t.template_id AND v.version = t.latest_version \
                     WHERE t.template_id = $1",
                )
                .bind(template_id)
                .fetch_optional(&self.shared.pool)
                .await
            }
            Some(v) => {
                sqlx::query_scalar("SELECT body FROM template_versions WHERE template_id = $1 AND version = $2")
                    .bind(template_id)
                    .bind(v.to_string())
                    .fetch_optional(&self.shared.pool)
                    .await
            }
        }
        .map_err(db(OP))?;
        if let Some(body) = body {
            return Ok(body.0);
        }
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM templates WHERE template_id = $1")
            .bind(template_id)
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(db(OP))?;
        match (exists, version) {
            (Some(_), Some(v)) => {
                Err(backend_error(ErrorKind::NotFound, OP, format!("template `{template_id}` has no version {v}")))
            }
            _ => Err(missing(template_id, OP)),
        }
    }

    async fn update(&self, template: &WorkflowTemplate) -> Result<()> {
        const OP: &str = "TemplateStore::update";
        template.validate().map_err(|e| ctx(e, OP))?;
        let id = &template.template_id;
        let body = serde_json::to_value(template)?;
        let mut tx = self.shared.pool.begin().await.map_err(db(OP))?;
        let latest: Option<String> =
            sqlx::query_scalar("SELECT latest_version FROM templates WHERE template_id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db(OP))?;
        let latest = parse_version(&latest.ok_or_else(|| missing(id, OP))?, OP)?;
        if template.version <= latest {
            return Err(ctx(
                Error::conflict(format!(
                    "template `{id}`: version {} is not greater than the latest version {latest}",
                    template.version
                )),
                OP,
            ));
        }
        sqlx::query(
            "WITH v AS (INSERT INTO template_versions (template_id, version, body) VALUES ($1, $2, $3)) \
             UPDATE templates SET latest_version = $2, name = $4, updated_at = now() WHERE template_id = $1",
        )
        .bind(id)
        .bind(template.version.to_string())
        .bind(body)
        .bind(&template.name)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<TemplateSummary>> {
        const OP: &str = "TemplateStore::list";
        let rows: Vec<(String, String, Vec<String>)> = sqlx::query_as(
            "SELECT t.template_id, t.name, array_agg(v.version) FROM templates t \
               JOIN template_versions v ON v.template_id = t.template_id \
             GROUP BY t.template_id, t.name ORDER BY t.template_id",
        )
        .fetch_all(&self.shared.pool)
        .await
        .map_err(db(OP))?;
        let mut summaries = Vec::with_capacity(rows.len());
        for (id, name, versions) in rows {
            let versions = versions.iter().map(|v| parse_version(v, OP)).collect::<Result<Vec<_>>>()?;
            summaries.push(TemplateSummary::new(id, name, versions).map_err(|e| ctx(e, OP))?);
        }
        Ok(summaries)
    }

    async fn delete(&self, template_id: &str) -> Result<()> {
        const OP: &str = "TemplateStore::delete";
        let deleted = sqlx::query("DELETE FROM templates WHERE template_id = $1")
            .bind(template_id)
            .execute(&self.shared.pool)
            .await
            .map_err(|e| db_error(OP, e))?;
        if deleted.rows_affected() == 0 {
            return Err(missing(template_id, OP));
        }
        Ok(())
    }
}
