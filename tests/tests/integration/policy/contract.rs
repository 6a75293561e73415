//! The store ports' contracts, one scenario each, run against the memory store and against
//! SQLite with the same assertions: upload leases (claimed once, fenced by the attempt number,
//! an expired lease or a failed job taken over, a pending result handed back), the finalize
//! claim (exactly one of many racing finalizers wins, a stale claim is taken over and fences the
//! old finalizer out), and budget reservations (all or none across budgets, refusals counted,
//! settlement, and concurrent reservations that fill a budget exactly, never past it; one left
//! behind by a call that died is held until it expires, then reclaimed once, or released by hand).
//!
//! A fake that passes here behaves like the database for every policy test built on it.

use ai_runner::eval::fanout::FINALIZE_LEASE_MS;
use ai_runner::model::cost::{
    Budget, BudgetScope, Claim as BudgetClaim, Held, Hold, Period, Reserved,
};
use ai_runner::model::eval::{EvalRun, GateOutcome, Report};
use ai_runner::model::media::{Claim, JobFinish, JobKey};
use ai_runner::model::now_ms;
use ai_runner::ports::{CostStore, EvalStore, JobStore};
use ai_runner::store::Db;
use ai_runner_tests::fake::MemoryStore;
use ai_runner_tests::{Backend, TestDb};
use serde_json::json;

// ---- upload leases ----

async fn claim<S: JobStore>(s: &S, key: &JobKey, now: i64) -> Claim {
    s.claim_job(key, "proj", "r", now, 1_000).await.unwrap()
}

fn finish(status: ai_runner::model::media::JobStatus, attempt: i64) -> JobFinish {
    JobFinish {
        status,
        attempt,
        finished_ms: now_ms(),
        ..JobFinish::default()
    }
}

async fn leases<S: JobStore>(s: &S) {
    let key = JobKey::new("bucket", "calls/x.wav", "v1");
    let now = 1_000_000;
    let Claim::New(id) = claim(s, &key, now).await else {
        panic!("the first delivery claims a new job");
    };
    assert_eq!(claim(s, &key, now + 10).await, Claim::InProgress(id));
    assert_eq!(
        claim(s, &key, now + 1_000).await,
        Claim::InProgress(id),
        "the lease holds up to its last millisecond"
    );
    assert_eq!(
        claim(s, &key, now + 1_001).await,
        Claim::TakenOver {
            id,
            attempts: 2,
            pending: None
        },
        "an expired lease is claimed again"
    );
    assert!(
        !s.finish_job(
            id,
            &finish(ai_runner::model::media::JobStatus::Succeeded, 1)
        )
        .await
        .unwrap(),
        "the first holder is fenced out by the attempt number"
    );
    assert!(
        s.finish_job(id, &finish(ai_runner::model::media::JobStatus::Failed, 2))
            .await
            .unwrap()
    );
    assert_eq!(
        claim(s, &key, now + 1_002).await,
        Claim::TakenOver {
            id,
            attempts: 3,
            pending: None
        },
        "a failed job is taken over at once"
    );
    assert!(
        s.finish_job(
            id,
            &finish(ai_runner::model::media::JobStatus::Succeeded, 3)
        )
        .await
        .unwrap()
    );
    assert_eq!(
        claim(s, &key, now + 10_000_000).await,
        Claim::Done {
            id,
            status: ai_runner::model::media::JobStatus::Succeeded
        },
        "a finished job is never run again, however late"
    );
    s.reopen_job(&key).await.unwrap();
    assert_eq!(
        claim(s, &key, now + 1_003).await,
        Claim::TakenOver {
            id,
            attempts: 4,
            pending: None
        },
        "a reopened job is claimable"
    );
    let answered = JobFinish {
        summary: Some(json!({"pending_result": "{\"doc\":1}"})),
        ..finish(ai_runner::model::media::JobStatus::Answered, 4)
    };
    assert!(s.finish_job(id, &answered).await.unwrap());
    assert_eq!(
        claim(s, &key, now + 1_004).await,
        Claim::TakenOver {
            id,
            attempts: 5,
            pending: Some("{\"doc\":1}".into())
        },
        "an answered job hands its pending result to the next delivery"
    );
    // Another version of the same key is another job.
    let other = JobKey::new("bucket", "calls/x.wav", "v2");
    assert!(matches!(claim(s, &other, now).await, Claim::New(n) if n != id));
}

async fn racing_claims<S: JobStore>(s: &S) {
    let key = JobKey::new("bucket", "calls/race.wav", "v1");
    let claims = futures_util::future::join_all((0..16).map(|_| claim(s, &key, 5_000_000))).await;
    let new = claims.iter().filter(|c| matches!(c, Claim::New(_))).count();
    let held = claims
        .iter()
        .filter(|c| matches!(c, Claim::InProgress(_)))
        .count();
    assert_eq!((new, held), (1, 15), "{claims:?}");
}

#[tokio::test]
async fn upload_leases_keep_their_contract_on_the_memory_store() {
    let s = MemoryStore::new();
    leases(&s).await;
    racing_claims(&s).await;
}

#[tokio::test]
async fn upload_leases_keep_their_contract_on_sqlite() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    leases(&db).await;
    racing_claims(&db).await;
    db.close().await;
}

// ---- finalizing an evaluation run ----

fn run(key: &str) -> EvalRun {
    EvalRun {
        run_key: key.into(),
        suite: "moods".into(),
        status: ai_runner::model::eval::EvalStatus::Running,
        trigger: ai_runner::Trigger::Schedule,
        suite_json: json!({}),
        options_json: json!({}),
        config_hash: None,
        total: 2,
        baseline: None,
        summary: None,
        gate: None,
        report_location: None,
        created_ms: now_ms(),
        finished_ms: None,
        stop_reason: None,
        failure_streak: 0,
    }
}

fn report(key: &str, stopped: Option<&str>) -> Report {
    Report {
        run_id: key.into(),
        suite: "moods".into(),
        total_ms: 1,
        targets: Vec::new(),
        gate: GateOutcome {
            passed: true,
            failures: Vec::new(),
        },
        results: Vec::new(),
        stopped: stopped.map(str::to_owned),
    }
}

async fn status<S: EvalStore>(s: &S, key: &str) -> ai_runner::model::eval::EvalStatus {
    s.eval_run(key).await.unwrap().unwrap().status
}

async fn finalization<S: EvalStore>(s: &S) {
    let key = "run-finalize";
    s.create_run(&run(key)).await.unwrap();
    let now = now_ms();
    let stale = now - FINALIZE_LEASE_MS;
    let tokens: Vec<String> = (0..16).map(|i| format!("token-{i}")).collect();
    let wins = futures_util::future::join_all(
        tokens
            .iter()
            .map(|t| async move { s.claim_finalize(key, t, now, stale).await.unwrap() }),
    )
    .await;
    assert_eq!(
        wins.iter().filter(|w| **w).count(),
        1,
        "exactly one finalizer wins: {wins:?}"
    );
    let winner = &tokens[wins.iter().position(|w| *w).unwrap()];
    let loser = &tokens[wins.iter().position(|w| !*w).unwrap()];
    assert_eq!(status(s, key).await, "finalizing");
    assert!(
        !s.finish_run(key, &report(key, None), None, Some(loser))
            .await
            .unwrap(),
        "a loser's write is fenced out"
    );
    assert!(
        !s.claim_finalize(key, "early", now + 1, stale + 1)
            .await
            .unwrap(),
        "a live claim is not taken over"
    );
    // The winner dies; once its claim is older than the lease, another worker takes over.
    let later = now + FINALIZE_LEASE_MS + 1;
    assert!(
        s.claim_finalize(key, "late", later, later - FINALIZE_LEASE_MS)
            .await
            .unwrap()
    );
    assert!(
        !s.finish_run(key, &report(key, None), None, Some(winner))
            .await
            .unwrap(),
        "the finalizer that was taken over cannot write any more"
    );
    assert!(
        s.finish_run(key, &report(key, None), Some("reports/x/"), Some("late"))
            .await
            .unwrap()
    );
    let done = s.eval_run(key).await.unwrap().unwrap();
    assert_eq!(done.status, "finished");
    assert_eq!(done.report_location.as_deref(), Some("reports/x/"));
    assert!(!s.claim_finalize(key, "after", later, later).await.unwrap());
    assert!(
        !s.stop_run(
            key,
            ai_runner::model::eval::EvalStatus::Stopping,
            "too late"
        )
        .await
        .unwrap()
    );

    // A stopped run is finalized from `stopping`, and ends `stopped`.
    let key = "run-stopped";
    s.create_run(&run(key)).await.unwrap();
    assert!(
        s.stop_run(key, ai_runner::model::eval::EvalStatus::Stopping, "outage")
            .await
            .unwrap()
    );
    assert!(
        !s.stop_run(key, ai_runner::model::eval::EvalStatus::Stopping, "outage")
            .await
            .unwrap()
    );
    assert!(s.claim_finalize(key, "t", now, stale).await.unwrap());
    assert!(
        s.finish_run(key, &report(key, Some("outage")), None, Some("t"))
            .await
            .unwrap()
    );
    let stopped = s.eval_run(key).await.unwrap().unwrap();
    assert_eq!(
        (stopped.status.as_str(), stopped.stop_reason.as_deref()),
        ("stopped", Some("outage"))
    );
}

#[tokio::test]
async fn the_finalize_claim_keeps_its_contract_on_the_memory_store() {
    finalization(&MemoryStore::new()).await;
}

#[tokio::test]
async fn the_finalize_claim_keeps_its_contract_on_sqlite() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let db = tdb.db();
    finalization(&db).await;
    db.close().await;
}

// ---- budget reservations ----

/// A window's (used, reserved, calls, refused) in the current UTC day, as each store reads it.
trait Windows: CostStore {
    async fn window(&self, budget: &Budget) -> (i64, i64, i64, i64);
}

impl Windows for MemoryStore {
    async fn window(&self, budget: &Budget) -> (i64, i64, i64, i64) {
        let w = MemoryStore::window(self, budget.id, &budget.period.window(now_ms()));
        (w.used, w.reserved, w.calls, w.refused)
    }
}

impl Windows for Db {
    async fn window(&self, budget: &Budget) -> (i64, i64, i64, i64) {
        let uses = self.budget_uses(now_ms()).await.unwrap();
        let u = uses.iter().find(|u| u.budget.id == budget.id).unwrap();
        (u.used_nano, u.reserved_nano, u.calls, u.refused)
    }
}

fn claim_on(budget: &Budget, amount: i64) -> BudgetClaim {
    BudgetClaim {
        budget: budget.clone(),
        window: budget.period.window(now_ms()),
        amount,
    }
}

/// Reservation `n`, expiring at `expires_ms`.
fn hold(n: u32, expires_ms: i64) -> Hold {
    Hold {
        id: format!("{n:032x}"),
        created_ms: now_ms(),
        expires_ms,
        trace_id: format!("trace-{n}"),
    }
}

/// Reservation `n` of a call still running (expires in an hour).
fn live(n: u32) -> Hold {
    hold(n, now_ms() + 3_600_000)
}

/// `budget release`, as each store does it.
trait Release: Windows {
    async fn release(&self, ids: &[String], expired_before: Option<i64>) -> Vec<Held>;
    async fn held(&self) -> Vec<Held>;
}

impl Release for MemoryStore {
    async fn release(&self, ids: &[String], expired_before: Option<i64>) -> Vec<Held> {
        self.release_reservations(ids, expired_before)
    }
    async fn held(&self) -> Vec<Held> {
        MemoryStore::held(self)
    }
}

impl Release for Db {
    async fn release(&self, ids: &[String], expired_before: Option<i64>) -> Vec<Held> {
        self.release_reservations(ids, expired_before)
            .await
            .unwrap()
    }
    async fn held(&self) -> Vec<Held> {
        self.reservations().await.unwrap()
    }
}

async fn reservations<S: Windows>(s: &S, a: &Budget, b: &Budget) {
    let both = [claim_on(a, 40), claim_on(b, 40)];
    let first = live(1);
    assert_eq!(s.reserve(&first, &both).await.unwrap(), Reserved::Granted);
    assert_eq!(s.window(a).await, (0, 40, 0, 0));
    assert_eq!(
        s.reserve(&live(2), &both).await.unwrap(),
        Reserved::Refused {
            budget: b.clone(),
            spent: 40
        },
        "b has 10 left, so neither is reserved"
    );
    assert_eq!(s.window(a).await, (0, 40, 0, 0), "all or none");
    assert_eq!(s.window(b).await, (0, 40, 0, 1), "the refusal is counted");

    let settled = s.settle(&first, &both, 25).await.unwrap();
    assert_eq!(
        settled
            .iter()
            .map(|x| (x.budget.id, x.used_after, x.added))
            .collect::<Vec<_>>(),
        [(a.id, 25, 25), (b.id, 25, 25)]
    );
    assert_eq!(
        s.window(a).await,
        (25, 0, 1, 0),
        "the reservation became the cost"
    );

    // 20 callers at once for a's last 75: exactly 10 reservations of 7 fit, never an 11th.
    let one = [claim_on(a, 7)];
    let holds: Vec<Hold> = (100..120).map(live).collect();
    let outcomes = futures_util::future::join_all(holds.iter().map(|h| s.reserve(h, &one))).await;
    let granted: Vec<&Hold> = holds
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, Ok(Reserved::Granted)))
        .map(|(h, _)| h)
        .collect();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Reserved::Refused { .. })))
        .count();
    assert_eq!((granted.len(), refused), (10, 10), "{outcomes:?}");
    assert_eq!(s.window(a).await, (25, 70, 1, 10));
    // Settling at less than reserved frees the rest; settling the same reservation again
    // frees nothing twice (its cost counts, what it held was freed once).
    s.settle(granted[0], &one, 3).await.unwrap();
    assert_eq!(s.window(a).await, (28, 63, 2, 10));
    s.settle(granted[0], &one, 3).await.unwrap();
    assert_eq!(s.window(a).await, (31, 63, 3, 10));
    for h in &granted[1..] {
        s.settle(h, &one, 7).await.unwrap();
    }
    assert_eq!(s.window(a).await, (94, 0, 12, 10));
}

/// A reservation left behind by a call that never settled (its process killed mid-call): held
/// until it expires, then reclaimed by the first reservation that needs its room, atomically
/// (a late settlement adds its cost and frees nothing twice); or released by hand.
async fn abandoned<S: Release>(s: &S, a: &Budget) {
    assert_eq!(a.limit_nano, 100);
    // 60 of 100 held by a call that is gone, its reservation not expired yet.
    let dead = hold(1, now_ms() + 60_000);
    assert_eq!(
        s.reserve(&dead, &[claim_on(a, 60)]).await.unwrap(),
        Reserved::Granted
    );
    let listed = s.held().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].id.as_str(),
            listed[0].budget_id,
            listed[0].amount_nano
        ),
        (dead.id.as_str(), a.id, 60)
    );
    assert_eq!(listed[0].expires_ms, dead.expires_ms);
    assert_eq!(listed[0].trace_id.as_deref(), Some("trace-1"));
    assert_eq!(
        s.reserve(&live(2), &[claim_on(a, 50)]).await.unwrap(),
        Reserved::Refused {
            budget: a.clone(),
            spent: 60
        },
        "an unexpired reservation holds its room"
    );
    // By hand: released once, whoever asks again.
    let released = s.release(std::slice::from_ref(&dead.id), None).await;
    assert_eq!(released.len(), 1);
    assert!(
        s.release(std::slice::from_ref(&dead.id), None)
            .await
            .is_empty()
    );
    assert_eq!(s.window(a).await, (0, 0, 0, 1));
    assert!(s.held().await.is_empty());

    // Expired: the next reservation that finds no room reclaims it and is granted.
    let expired = hold(3, now_ms() - 1);
    assert_eq!(
        s.reserve(&expired, &[claim_on(a, 60)]).await.unwrap(),
        Reserved::Granted,
        "nothing reclaims while there is room"
    );
    assert_eq!(s.window(a).await, (0, 60, 0, 1));
    let next = live(4);
    assert_eq!(
        s.reserve(&next, &[claim_on(a, 50)]).await.unwrap(),
        Reserved::Granted,
        "the expired reservation was reclaimed for it"
    );
    assert_eq!(s.window(a).await, (0, 50, 0, 1), "its 60 freed, 50 held");
    let ids: Vec<String> = s.held().await.into_iter().map(|h| h.id).collect();
    assert_eq!(ids, std::slice::from_ref(&next.id));
    // The reclaimed call settles late: its cost counts, nothing of the new one is freed.
    s.settle(&expired, &[claim_on(a, 60)], 30).await.unwrap();
    assert_eq!(s.window(a).await, (30, 50, 1, 1));
    s.settle(&next, &[claim_on(a, 50)], 20).await.unwrap();
    assert_eq!(s.window(a).await, (50, 0, 2, 1));

    // `--expired`: every reservation past its expiry, and none that is not.
    let stale = hold(5, now_ms() - 1);
    let running = live(6);
    for h in [&stale, &running] {
        assert_eq!(
            s.reserve(h, &[claim_on(a, 10)]).await.unwrap(),
            Reserved::Granted
        );
    }
    let freed = s.release(&[], Some(now_ms())).await;
    assert_eq!(
        freed.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        [stale.id.as_str()]
    );
    assert_eq!(s.window(a).await, (50, 10, 2, 1));
    s.settle(&running, &[claim_on(a, 10)], 10).await.unwrap();
    assert_eq!(s.window(a).await, (60, 0, 3, 1));
}

#[tokio::test]
async fn abandoned_reservations_keep_their_contract_on_the_memory_store() {
    let s = MemoryStore::new();
    let a = s.set_budget(BudgetScope::Project, "proj", Period::Day, 100);
    abandoned(&s, &a).await;
}

async fn abandoned_on(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.db();
    db.set_budget(BudgetScope::Project, "proj", Period::Day, 100)
        .await
        .unwrap();
    let a = db.active_budgets().await.unwrap().remove(0);
    abandoned(&db, &a).await;
    db.close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn abandoned_reservations_keep_their_contract_on_sqlite() {
    abandoned_on(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
async fn abandoned_reservations_keep_their_contract_on_mariadb() {
    abandoned_on(Backend::MariaDb).await;
}

#[tokio::test]
async fn budget_reservations_keep_their_contract_on_the_memory_store() {
    let s = MemoryStore::new();
    let a = s.set_budget(BudgetScope::Project, "proj", Period::Day, 100);
    let b = s.set_budget(BudgetScope::Route, "proj/r", Period::Day, 50);
    reservations(&s, &a, &b).await;
}

async fn reservations_on(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.db();
    db.set_budget(BudgetScope::Project, "proj", Period::Day, 100)
        .await
        .unwrap();
    db.set_budget(BudgetScope::Route, "proj/r", Period::Day, 50)
        .await
        .unwrap();
    let budgets = db.active_budgets().await.unwrap();
    reservations(&db, &budgets[0], &budgets[1]).await;
    db.close().await;
    tdb.cleanup().await;
}

#[tokio::test]
async fn budget_reservations_keep_their_contract_on_sqlite() {
    reservations_on(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs MariaDB: bash .ci/run sets AI_RUNNER_TEST_MYSQL_URL and runs ignored tests"]
async fn budget_reservations_keep_their_contract_on_mariadb() {
    reservations_on(Backend::MariaDb).await;
}
