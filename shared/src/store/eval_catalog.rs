//! The one writer of the evaluation catalog: `ai_eval_dataset`, `ai_eval_case` and
//! `ai_eval_suite` (what `cfg gen` applies from a catalog's `evals:` section, and what
//! `eval dataset add-from-audit / add-from-objects` add to), and the reader that turns them back
//! into an evals document (`cfg export`, `eval run` without a file, scheduled runs).
//!
//! It knows the catalog only as [`EvalCatalog`] values (the evaluation module turns what it read
//! into them), so the store never reaches the evaluation runner.
//!
//! Invariants: a case is stored as typed columns (variables, expected value, media reference,
//! tags, assertions, threshold, active, its own prompt, description, metadata) and read back into the same document a file would hold,
//! so export -> gen changes nothing; applying writes in one transaction; cases and suites a file
//! does not list are left alone (like route members without `--exclusive`); `add_cases` never
//! overwrites a case that exists (a curated expected value stays).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::dialect::{is_missing_table, is_unknown_column};
use super::{Db, StoreError, db_err, json_col, on_pool, sql};
use crate::catalog::{Action, PlanItem, PlanKind};
use crate::model::eval::{EvalCatalog, StoredCase};
use crate::model::now_ms;

type CaseRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<f64>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn columns_from(r: CaseRow) -> Result<(String, StoredCase), StoreError> {
    let (
        dataset,
        key,
        vars,
        expected,
        bucket,
        mkey,
        tags,
        assert,
        threshold,
        active,
        prompt,
        description,
        metadata,
    ) = r;
    let tags = match json_col(tags, "ai_eval_case.tags_json")? {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok((
        dataset,
        StoredCase {
            key,
            vars: json_col(vars, "ai_eval_case.vars_json")?,
            expected: json_col(expected, "ai_eval_case.expected_json")?,
            media: bucket.zip(mkey),
            tags,
            assert: json_col(assert, "ai_eval_case.assert_json")?,
            threshold,
            active: active != 0,
            prompt,
            description,
            metadata: json_col(metadata, "ai_eval_case.metadata_json")?,
        },
    ))
}

fn text(v: Option<&Value>) -> Option<String> {
    v.map(Value::to_string)
}

fn tolerate_missing<T: Default>(r: Result<T, sqlx::Error>) -> Result<T, StoreError> {
    match r {
        Ok(v) => Ok(v),
        // An unmigrated database has no evaluation catalog: nothing to read.
        Err(e) if is_missing_table(&e) || is_unknown_column(&e) => Ok(T::default()),
        Err(e) => Err(db_err(e)),
    }
}

impl Db {
    /// The stored datasets, cases and suites as an evals document (`{datasets, suites}`); with
    /// `suite`, only that suite and its dataset (`None` when there is no such active suite).
    pub async fn evals_document(&self, suite: Option<&str>) -> Result<Option<Value>, StoreError> {
        let pool = self.pool().await?;
        let suites: Vec<(String, String, String)> = match suite {
            Some(name) => tolerate_missing(on_pool!(pool, |p| sqlx::query_as(sql::EVAL_SUITE)
                .bind(name)
                .fetch_all(p)
                .await))?,
            None => tolerate_missing(on_pool!(pool, |p| sqlx::query_as(sql::EVAL_SUITES)
                .fetch_all(p)
                .await))?,
        };
        if suite.is_some() && suites.is_empty() {
            return Ok(None);
        }
        let (datasets, cases): (Vec<(String, Option<String>)>, Vec<CaseRow>) =
            match suites.first().filter(|_| suite.is_some()) {
                Some((_, ds, _)) => (
                    tolerate_missing(on_pool!(pool, |p| sqlx::query_as(sql::EVAL_DATASET)
                        .bind(ds)
                        .fetch_all(p)
                        .await))?,
                    tolerate_missing(on_pool!(pool, |p| sqlx::query_as(sql::EVAL_CASES_OF)
                        .bind(ds)
                        .fetch_all(p)
                        .await))?,
                ),
                None => (
                    tolerate_missing(on_pool!(pool, |p| sqlx::query_as(sql::EVAL_DATASETS)
                        .fetch_all(p)
                        .await))?,
                    tolerate_missing(on_pool!(pool, |p| sqlx::query_as(sql::EVAL_CASES)
                        .fetch_all(p)
                        .await))?,
                ),
            };
        if datasets.is_empty() && suites.is_empty() {
            return Ok(None);
        }
        let mut by_dataset: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for row in cases {
            let (ds, cols) = columns_from(row)?;
            by_dataset.entry(ds).or_default().push(cols.document());
        }
        let datasets: Vec<Value> = datasets
            .into_iter()
            .map(|(name, description)| {
                let mut m = Map::new();
                m.insert("name".into(), Value::String(name.clone()));
                if let Some(d) = description {
                    m.insert("description".into(), Value::String(d));
                }
                m.insert(
                    "cases".into(),
                    Value::Array(by_dataset.remove(&name).unwrap_or_default()),
                );
                Value::Object(m)
            })
            .collect();
        let suites = suites
            .into_iter()
            .map(|(_, _, def)| {
                json_col(Some(def), "ai_eval_suite.definition_json").map(|v| v.unwrap_or_default())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(
            serde_json::json!({"datasets": datasets, "suites": suites}),
        ))
    }

    /// The names of the stored datasets (a catalog's suites may run them).
    pub async fn dataset_names(&self) -> Result<BTreeSet<String>, StoreError> {
        let pool = self.pool().await?;
        let rows: Vec<(String, Option<String>)> =
            tolerate_missing(on_pool!(pool, |p| sqlx::query_as(sql::EVAL_DATASETS)
                .fetch_all(p)
                .await))?;
        Ok(rows.into_iter().map(|(n, _)| n).collect())
    }

    /// What applying `evals` would change, per dataset, case and suite (read-only).
    pub async fn plan_evals(&self, evals: &EvalCatalog) -> Result<Vec<PlanItem>, StoreError> {
        let stored = self.evals_document(None).await?.unwrap_or(Value::Null);
        let mut old_cases: BTreeMap<(String, String), Value> = BTreeMap::new();
        let mut old_sets: BTreeMap<String, Option<String>> = BTreeMap::new();
        for d in stored
            .get("datasets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = d.get("name").and_then(Value::as_str).unwrap_or("");
            old_sets.insert(
                name.to_owned(),
                d.get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
            for c in d
                .get("cases")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = c.get("key").and_then(Value::as_str).unwrap_or("");
                old_cases.insert((name.to_owned(), key.to_owned()), c.clone());
            }
        }
        let old_suites: BTreeMap<String, Value> = stored
            .get("suites")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    s.clone(),
                )
            })
            .collect();
        let item = |kind, name: String, action, changes: Vec<&'static str>| PlanItem {
            kind,
            name,
            action,
            changes,
        };
        let mut out = Vec::new();
        for d in &evals.datasets {
            out.push(match old_sets.get(&d.name) {
                None => item(
                    PlanKind::Dataset,
                    d.name.clone(),
                    Action::Create,
                    Vec::new(),
                ),
                Some(old) if d.description.is_some() && *old != d.description => item(
                    PlanKind::Dataset,
                    d.name.clone(),
                    Action::Update,
                    vec!["description"],
                ),
                Some(_) => item(
                    PlanKind::Dataset,
                    d.name.clone(),
                    Action::Unchanged,
                    Vec::new(),
                ),
            });
            for c in &d.cases {
                let now = c.document();
                let name = format!("{}:{}", d.name, c.key);
                out.push(match old_cases.get(&(d.name.clone(), c.key.clone())) {
                    None => item(PlanKind::Case, name, Action::Create, Vec::new()),
                    Some(old) if *old == now => {
                        item(PlanKind::Case, name, Action::Unchanged, Vec::new())
                    }
                    Some(_) => item(PlanKind::Case, name, Action::Update, vec!["case"]),
                });
            }
        }
        for s in &evals.suites {
            let now = Value::Object(s.definition.clone());
            out.push(match old_suites.get(&s.name) {
                None => item(PlanKind::Suite, s.name.clone(), Action::Create, Vec::new()),
                Some(old) if *old == now => item(
                    PlanKind::Suite,
                    s.name.clone(),
                    Action::Unchanged,
                    Vec::new(),
                ),
                Some(_) => item(
                    PlanKind::Suite,
                    s.name.clone(),
                    Action::Update,
                    vec!["definition"],
                ),
            });
        }
        Ok(out)
    }

    /// Applies `evals` in one transaction (datasets, their cases, suites); returns the plan that
    /// was carried out.
    pub async fn apply_evals(&self, evals: &EvalCatalog) -> Result<Vec<PlanItem>, StoreError> {
        let items = self.plan_evals(evals).await?;
        if items.iter().all(|i| i.action == Action::Unchanged) {
            return Ok(items);
        }
        let mysql = self.is_mysql();
        let now = now_ms();
        let pool = self.pool().await?;
        on_pool!(pool, |p| {
            let mut tx = p.begin().await.map_err(db_err)?;
            for d in &evals.datasets {
                sqlx::query(if mysql {
                    sql::UPSERT_EVAL_DATASET_MYSQL
                } else {
                    sql::UPSERT_EVAL_DATASET_SQLITE
                })
                .bind(&d.name)
                .bind(&d.description)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                for c in &d.cases {
                    let name = format!("{}:{}", d.name, c.key);
                    if items.iter().any(|i| {
                        i.kind == PlanKind::Case && i.name == name && i.action == Action::Unchanged
                    }) {
                        continue;
                    }
                    let cols = c;
                    sqlx::query(if mysql {
                        sql::UPSERT_EVAL_CASE_MYSQL
                    } else {
                        sql::UPSERT_EVAL_CASE_SQLITE
                    })
                    .bind(&d.name)
                    .bind(&cols.key)
                    .bind(text(cols.vars.as_ref()))
                    .bind(text(cols.expected.as_ref()))
                    .bind(cols.media.as_ref().map(|m| m.0.clone()))
                    .bind(cols.media.as_ref().map(|m| m.1.clone()))
                    .bind(
                        (!cols.tags.is_empty()).then(|| Value::from(cols.tags.clone()).to_string()),
                    )
                    .bind(text(cols.assert.as_ref()))
                    .bind(cols.threshold)
                    .bind(i64::from(cols.active))
                    .bind("yaml")
                    .bind(now)
                    .bind(&cols.prompt)
                    .bind(&cols.description)
                    .bind(text(cols.metadata.as_ref()))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                }
            }
            for s in &evals.suites {
                sqlx::query(if mysql {
                    sql::UPSERT_EVAL_SUITE_MYSQL
                } else {
                    sql::UPSERT_EVAL_SUITE_SQLITE
                })
                .bind(&s.name)
                .bind(&s.dataset)
                .bind(Value::Object(s.definition.clone()).to_string())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)?;
        });
        Ok(items)
    }

    /// Adds cases to `dataset` (created if missing), skipping keys it already has; `source` says
    /// where they came from (`audit`, `objects`). Returns how many were new.
    pub async fn add_cases(
        &self,
        dataset: &str,
        cases: &[StoredCase],
        source: &str,
    ) -> Result<u64, StoreError> {
        let mysql = self.is_mysql();
        let now = now_ms();
        let pool = self.pool().await?;
        let added = on_pool!(pool, |p| {
            let mut tx = p.begin().await.map_err(db_err)?;
            sqlx::query(if mysql {
                sql::UPSERT_EVAL_DATASET_MYSQL
            } else {
                sql::UPSERT_EVAL_DATASET_SQLITE
            })
            .bind(dataset)
            .bind(None::<String>)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_missing_table(&e) {
                    StoreError::Outdated("ai_eval_dataset")
                } else {
                    db_err(e)
                }
            })?;
            let mut added = 0;
            for cols in cases {
                added += sqlx::query(if mysql {
                    sql::INSERT_EVAL_CASE_IF_NEW_MYSQL
                } else {
                    sql::INSERT_EVAL_CASE_IF_NEW_SQLITE
                })
                .bind(dataset)
                .bind(&cols.key)
                .bind(text(cols.vars.as_ref()))
                .bind(text(cols.expected.as_ref()))
                .bind(cols.media.as_ref().map(|m| m.0.clone()))
                .bind(cols.media.as_ref().map(|m| m.1.clone()))
                .bind((!cols.tags.is_empty()).then(|| Value::from(cols.tags.clone()).to_string()))
                .bind(text(cols.assert.as_ref()))
                .bind(cols.threshold)
                .bind(i64::from(cols.active))
                .bind(source)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            }
            tx.commit().await.map_err(db_err)?;
            added
        });
        Ok(added)
    }
}
