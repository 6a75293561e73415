//! Uploads: media jobs newest first with the mappings that route them, and a job's result
//! object.
//!
//! Invariants: a result is read only from the object the job row names; presigned signatures are
//! never shown (the rows are redacted before they are stored).

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{OnPage, Page, PageError, S};
use crate::code::Code;
use crate::console::page::{
    Nav, badge, e, facts_html, html, json_block, json_text_block, link, opt, seg, table_html,
};

pub(super) fn when(ms: i64) -> String {
    // To the second: the milliseconds are noise on a page.
    let mut t = crate::model::utc_datetime_ms(ms);
    t.truncate(19);
    t
}

/// `GET /uploads`: media jobs, newest first, and the mappings that route them.
pub(in crate::console) async fn uploads(State(c): S) -> Page {
    let db = c.app.runner.store();
    let jobs = db.list_jobs(200).await.on_page(Nav::Uploads)?;
    let maps = db.list_mappings().await.on_page(Nav::Uploads)?;
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let audits = j
                .audit_ids
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter_map(|s| s.trim().parse::<i64>().ok())
                .map(|id| link(&format!("/audit/{id}"), &format!("#{id}")))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                j.id.to_string(),
                e(&when(j.created_ms)),
                e(&format!("{}/{}", j.bucket, j.object_key)),
                badge(j.status.as_str()),
                j.attempts.to_string(),
                match (&j.project_name, &j.route_key) {
                    (Some(p), Some(r)) => link(
                        &format!("/routes/{}/{}", seg(p), seg(r)),
                        &format!("{p}/{r}"),
                    ),
                    _ => opt(None),
                },
                j.error_code
                    .as_ref()
                    .map_or_else(|| opt(None), |c| format!("<code>{}</code>", e(c))),
                j.duration_ms.map_or_else(|| opt(None), |d| d.to_string()),
                if j.result_key.is_some() {
                    link(&format!("/uploads/{}/result", j.id), "result")
                } else {
                    opt(None)
                },
                j.trace_id.as_ref().map_or_else(
                    || opt(None),
                    |t| link(&format!("/trace/{}", seg(t)), t.get(..8).unwrap_or(t)),
                ),
                if audits.is_empty() { opt(None) } else { audits },
            ]
        })
        .collect();
    let mut body = String::from("<h2>Jobs</h2>");
    body.push_str(&table_html(
        &[
            "Id",
            "Created (UTC)",
            "Object",
            "Status",
            "Claims",
            "Route",
            "Error",
            "ms",
            "Result",
            "Trace",
            "Audit rows",
        ],
        &rows,
    ));
    body.push_str("<h2>Mappings</h2>");
    let rows: Vec<Vec<String>> = maps
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                e(&m.bucket),
                e(&format!("{}*{}", m.key_prefix, m.key_suffix)),
                link(
                    &format!("/routes/{}/{}", seg(&m.project), seg(&m.route_key)),
                    &format!("{}/{}", m.project, m.route_key),
                ),
                m.variables.as_ref().map_or_else(|| opt(None), json_block),
                badge(if m.active { "active" } else { "inactive" }),
            ]
        })
        .collect();
    body.push_str(&table_html(
        &["Id", "Bucket", "Keys", "Route", "Variables", ""],
        &rows,
    ));
    Ok(html(StatusCode::OK, "Uploads", Nav::Uploads, &body))
}

/// `GET /uploads/{id}/result`: the job's result object, fetched from object storage.
pub(in crate::console) async fn job_result(State(c): S, Path(id): Path<i64>) -> Page {
    let job = match c.app.runner.store().job_by_id(id).await {
        Ok(Some(j)) => j,
        Ok(None) => {
            return Err(PageError::new(
                Code::InvalidInput,
                format!("no job #{id}"),
                Nav::Uploads,
            ));
        }
        Err(err) => return Err(PageError::logged(err.code(), &err, Nav::Uploads)),
    };
    let (Some(bucket), Some(key)) = (job.result_bucket.as_deref(), job.result_key.as_deref())
    else {
        return Err(PageError::new(
            Code::InvalidInput,
            "this job has no result object",
            Nav::Uploads,
        ));
    };
    match c
        .app
        .objects
        .get(bucket, key, crate::ports::ObjectPin::NONE)
        .await
    {
        Ok(bytes) => {
            let mut body = facts_html(&[("Object", e(&format!("s3://{bucket}/{key}")))]);
            body.push_str(&json_text_block(&String::from_utf8_lossy(&bytes)));
            Ok(html(
                StatusCode::OK,
                &format!("Job #{id}: result"),
                Nav::Uploads,
                &body,
            ))
        }
        Err(err) => Err(PageError::logged(err.code(), &err, Nav::Uploads)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_read_as_utc_date_and_time() {
        assert_eq!(when(0), "1970-01-01 00:00:00");
        assert_eq!(when(1_764_590_400_000), "2025-12-01 12:00:00");
    }
}
