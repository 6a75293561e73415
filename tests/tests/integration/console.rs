//! The `ai-runner dev` console, served for real on a loopback port: its token, origin and host
//! checks over HTTP, the predecessor's `/routes` and `/invoke`, the trail's keyset pages, spilled
//! bodies fetched from object storage, and a run through every main page in headless Chromium
//! driven over WebDriver (`chromedriver`), with a screenshot of each page kept under
//! `target/console-screenshots/`.

use ai_runner::demo::{ProviderServer, Reply};
use ai_runner_tests::{Backend, ConsoleServer, RouteSpec, Seed, TestDb, seed, seed_route};
use serde_json::{Value, json};

const TOKEN: &str = "console-test-token-0123456789";
const PLAIN_KEY: &str = "sk-test-provider-key-000";

async fn start(tdb: &TestDb, extra: &[(&str, &str)]) -> ConsoleServer {
    ConsoleServer::start(&tdb.settings(extra), TOKEN).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn auth() -> String {
    format!("token {TOKEN}")
}

/// A config `c-primary` answering 429 and `c-backup` answering `answer`, and route `shop/ask`
/// over them in that order.
async fn seed_handover(tdb: &TestDb, answer: &str) -> (ProviderServer, ProviderServer) {
    let bad = ProviderServer::start(vec![Reply::error(429, "slow down")])
        .await
        .unwrap();
    let good = ProviderServer::start(vec![Reply::content(answer)])
        .await
        .unwrap();
    let db = tdb.db();
    seed(&db, &Seed::text("c-primary", &bad.url())).await;
    seed(&db, &Seed::text("c-backup", &good.url())).await;
    seed_route(
        &db,
        "shop",
        "ask",
        &RouteSpec::default(),
        &[("c-primary", 1, 1), ("c-backup", 2, 1)],
    )
    .await;
    db.close().await;
    (bad, good)
}

/// The text of the page at `url`, fetched with the token.
async fn page_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url)
        .header("authorization", auth())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every `/audit/<id>` link of a trail page, in page order.
fn audit_ids(page: &str) -> Vec<i64> {
    page.split("href=\"/audit/")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn a_request_without_the_token_is_refused_and_the_printed_url_sets_a_cookie() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let c = start(&tdb, &[]).await;
    let http = client();
    let r = http.get(format!("{}/", c.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("CONSOLE_TOKEN_INVALID"));
    let r = http
        .get(format!("{}/audit?token=not-the-token-at-all", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = http
        .get(format!("{}/audit?status=error&token={TOKEN}", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/audit?status=error");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    assert!(
        !pair.contains(TOKEN),
        "every server on this host gets the cookie: never the token"
    );
    let r = http
        .get(format!("{}/audit?status=error", c.base))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(r.text().await.unwrap().contains("Audit trail"));
}

#[tokio::test]
async fn a_cross_site_post_or_a_foreign_host_is_refused_and_nothing_is_called() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (bad, good) = seed_handover(&tdb, "fine").await;
    let c = start(&tdb, &[]).await;
    let http = client();
    // The cookie the printed URL sets (its session value: the token itself is no cookie).
    let r = http
        .get(format!("{}/?token={TOKEN}", c.base))
        .send()
        .await
        .unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();
    let form = [("project", "shop"), ("route", "ask"), ("action", "run")];
    let r = http
        .post(format!("{}/try", c.base))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CONSOLE_CROSS_ORIGIN"));
    // DNS rebinding: the right token, a name that is not this machine.
    let r = http
        .get(format!("{}/", c.base))
        .header("host", "attacker.example")
        .header("authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(bad.requests().is_empty() && good.requests().is_empty());

    let r = http
        .post(format!("{}/try", c.base))
        .header("cookie", &cookie)
        .header("origin", &c.base)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("handed over"));
    assert_eq!(good.requests().len(), 1);
}

#[tokio::test]
async fn the_predecessors_routes_and_invoke_answer_with_its_fields_and_a_masked_key() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (_bad, _good) = seed_handover(&tdb, "{\"ok\": true}").await;
    let db = tdb.db();
    seed_route(
        &db,
        "shop",
        "newer",
        &RouteSpec::default(),
        &[("c-backup", 1, 1)],
    )
    .await;
    let c = start(&tdb, &[]).await;
    let http = client();
    let get = |q: &str| {
        http.get(format!("{}/routes{q}", c.base))
            .header("authorization", auth())
            .send()
    };
    let routes: Value = get("?project=shop").await.unwrap().json().await.unwrap();
    assert_eq!(
        routes,
        json!({"routes": [{"route_key": "newer", "policy": "primary_backup"},
                          {"route_key": "ask", "policy": "primary_backup"}]})
    );
    let none: Value = get("").await.unwrap().json().await.unwrap();
    assert_eq!(none, json!({"routes": []}));

    let invoke = |body: Value| {
        http.post(format!("{}/invoke", c.base))
            .header("authorization", auth())
            .json(&body)
            .send()
    };
    let r = invoke(json!({"project": "shop", "route": "ask", "runtime_variables": {"TOPIC": "雨"}, "dry_run": true}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dry: Value = r.json().await.unwrap();
    assert_eq!(dry["dry_run"], true);
    let masked = dry["headers"]["Authorization"].as_str().unwrap();
    assert_eq!(masked, "Bearer sk-***000", "the predecessor's mask");
    assert_eq!(dry["request"]["headers"]["Authorization"], masked);
    assert_eq!(
        dry["request"]["body"]["messages"][0]["content"],
        "说一句话：雨"
    );
    assert_eq!(dry["meta"]["order"], json!(["c-primary", "c-backup"]));
    assert!(!dry.to_string().contains(PLAIN_KEY));

    let run: Value = invoke(json!({"project_name": "shop", "route_key": "ask", "variables": {}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["status"], 200, "{run}");
    assert!(run["duration_ms"].as_u64().is_some());
    assert_eq!(run["error"], Value::Null);
    assert_eq!(
        run["response"]["choices"][0]["message"]["content"],
        "{\"ok\": true}"
    );
    assert_eq!(run["meta"]["answered_by"], "c-backup");
    assert!(!run.to_string().contains(PLAIN_KEY));
    let row = db
        .audit_row(run["meta"]["audit_id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row["trigger_source"], "console");
    assert_eq!(row["route_attempt"], 2);

    let r = invoke(json!({"route_key": "ask"})).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = invoke(json!({"project_name": "shop", "route_key": "nope"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    db.close().await;
}

/// Writes `n` audit rows for `config` sharing one `created_at` (ties the keyset must break).
async fn insert_rows(tdb: &TestDb, config: &str, n: usize, error: Option<&str>) {
    let pool = sqlx::SqlitePool::connect(&tdb.url).await.unwrap();
    for _ in 0..n {
        sqlx::query(
            "INSERT INTO ai_call_logs (config_key, http_status, duration_ms, error_code, status, created_at) \
             VALUES (?, 200, 5, ?, ?, '2026-11-30 10:00:00.000')",
        )
        .bind(config)
        .bind(error)
        .bind(if error.is_some() { "error" } else { "ok" })
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
}

#[tokio::test]
async fn trail_pages_walk_every_filtered_row_once_newest_first() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    insert_rows(&tdb, "c-a", 70, None).await;
    insert_rows(&tdb, "c-b", 40, Some("UPSTREAM_TIMEOUT")).await;
    insert_rows(&tdb, "c-a", 50, Some("HTTP_429")).await;
    let c = start(&tdb, &[]).await;
    let http = client();
    let mut seen = Vec::new();
    let mut url = format!("{}/audit?config=c-a&status=ok", c.base);
    let mut pages = 0;
    loop {
        let page = page_text(&http, &url).await;
        pages += 1;
        seen.extend(audit_ids(&page));
        let Some(at) = page.find("id=\"older\" href=\"") else {
            break;
        };
        let href = page[at + 17..]
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&");
        assert!(
            href.contains("config=c-a") && href.contains("status=ok"),
            "{href}"
        );
        url = format!("{}{href}", c.base);
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 70);
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, each once");
    assert_eq!(seen[0], 70, "the last c-a ok row (ids 1..=70)");

    let page = page_text(&http, &format!("{}/audit?code=UPSTREAM_TIMEOUT", c.base)).await;
    assert_eq!(audit_ids(&page), (71..=110).rev().collect::<Vec<_>>());
    let r = http
        .get(format!("{}/audit?since=yesterday", c.base))
        .header("authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("INVALID_INPUT"));
}

#[tokio::test]
async fn no_page_shows_a_key_a_key_blob_or_the_pepper() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (_bad, _good) = seed_handover(&tdb, "<b>done</b>").await;
    let c = start(&tdb, &[]).await;
    let http = client();
    let pool = sqlx::SqlitePool::connect(&tdb.url).await.unwrap();
    let blobs: Vec<String> = sqlx::query_scalar("SELECT api_key_encrypted FROM ai_connection")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(blobs.len(), 2);
    let run = http
        .post(format!("{}/try", c.base))
        .header("authorization", auth())
        .form(&[
            ("config", "c-backup"),
            ("action", "run"),
            ("var.TOPIC", "x"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        run.contains("&lt;b&gt;done&lt;/b&gt;") && !run.contains("<b>done"),
        "{run}"
    );
    let id = audit_ids(&run)[0];
    let trace: String = sqlx::query_scalar("SELECT trace_id FROM ai_call_logs WHERE id = ?")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut pages = vec![run];
    for path in [
        "/".to_owned(),
        "/configs/c-primary".into(),
        "/routes/shop/ask".into(),
        "/audit".into(),
        format!("/audit/{id}"),
        format!("/trace/{trace}"),
        "/uploads".into(),
        "/evals".into(),
    ] {
        let r = http
            .get(format!("{}{path}", c.base))
            .header("authorization", auth())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        pages.push(r.text().await.unwrap());
    }
    for form in [
        vec![("config", "c-primary"), ("action", "dry")],
        vec![("project", "shop"), ("route", "ask"), ("action", "dry")],
    ] {
        let dry = http
            .post(format!("{}/try", c.base))
            .header("authorization", auth())
            .form(&form)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(dry.contains("Bearer ***-000"), "{dry}");
        pages.push(dry);
    }
    for p in &pages {
        assert!(!p.contains(PLAIN_KEY));
        assert!(!p.contains(ai_runner_tests::PEPPER));
        for b in &blobs {
            assert!(!p.contains(b.as_str()));
        }
    }
    assert!(pages[1].contains("c-primary") && pages[1].contains("v2"));
    pool.close().await;
}

#[tokio::test]
async fn a_spilled_body_is_fetched_from_object_storage_and_checked() {
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let objects = tempfile::tempdir().unwrap();
    let long = "很长的回答".repeat(200);
    let server = ProviderServer::start(vec![Reply::content(&long)])
        .await
        .unwrap();
    seed(&tdb.db(), &Seed::text("c-long", &server.url())).await;
    let dir = objects.path().display().to_string();
    let extra = [
        ("ENABLE_OSS_SPILLOVER", "true"),
        ("OSS_BUCKET", "spill"),
        ("AI_RUNNER_OBJECTS_DIR", dir.as_str()),
        ("AUDIT_SPILL_THRESHOLD_BYTES", "1024"),
    ];
    let c = start(&tdb, &extra).await;
    let http = client();
    let run = http
        .post(format!("{}/try", c.base))
        .header("authorization", auth())
        .form(&[("config", "c-long"), ("action", "run")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let id = audit_ids(&run)[0];
    let detail = http
        .get(format!("{}/audit/{id}", c.base))
        .header("authorization", auth())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(detail.contains("id=\"fetch-response\""), "{detail}");
    assert!(!detail.contains(&long));
    let body = http
        .get(format!("{}/audit/{id}/body/response", c.base))
        .header("authorization", auth())
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    let body = body.text().await.unwrap();
    assert!(body.contains(&long), "the whole answer, from the object");
    assert!(body.contains("badge ok"), "its SHA-256 matches the row's");

    // A provider answer shaped like a reference is stored as sent: it must not make the console
    // read another object.
    std::fs::create_dir_all(objects.path().join("private")).unwrap();
    std::fs::write(
        objects.path().join("private/secret.json"),
        "{\"secret\": \"s3cr3t-payroll\"}",
    )
    .unwrap();
    let pool = sqlx::SqlitePool::connect(&tdb.url).await.unwrap();
    let forged: i64 = sqlx::query_scalar(
        "INSERT INTO ai_call_logs (config_key, response_body_json) \
         VALUES ('c-long', '{\"$ref\": \"s3://private/secret.json\"}') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    let r = http
        .get(format!("{}/audit/{forged}/body/response", c.base))
        .header("authorization", auth())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error() || r.status().is_client_error());
    let page = r.text().await.unwrap();
    assert!(
        page.contains("OBJECT_ACCESS_DENIED") && !page.contains("s3cr3t-payroll"),
        "{page}"
    );
}

/// The console in headless Chromium over WebDriver (Debian's `chromium` and `chromium-driver`).
mod browser {
    use super::*;
    use fantoccini::{ClientBuilder, Locator};

    fn shots() -> std::path::PathBuf {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    struct Driver(std::process::Child);

    impl Drop for Driver {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    async fn webdriver() -> (Driver, fantoccini::Client) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin =
            std::env::var("AI_RUNNER_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = std::process::Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt-get install chromium-driver)");
        let driver = Driver(child);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--window-size=1400,1000", "--no-first-run"]}),
        );
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => return (driver, c),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        panic!("chromedriver did not answer on {url}");
    }

    async fn shot(b: &fantoccini::Client, name: &str) {
        let png = b.screenshot().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
    }

    /// Waits until the browser shows the page a step leads to: `path` in the address bar with
    /// each of `query` (`name=value`) in its query string, and `h1` as its heading. Until then
    /// the browser may still show the page before, whose table a step must not read. Polled for
    /// up to 30 s: the wait ends when the page is there, never after a set time.
    async fn arrive(b: &fantoccini::Client, path: &str, query: &[&str], h1: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let url = b.current_url().await.unwrap();
            let pairs: Vec<&str> = url.query().unwrap_or("").split('&').collect();
            if url.path() == path && query.iter().all(|q| pairs.contains(q)) {
                // The heading of the document now shown (one being replaced may be gone).
                if let Ok(heading) = b.find(Locator::Css("h1")).await
                    && heading.text().await.is_ok_and(|text| text == h1)
                {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the browser never showed {path} {query:?} «{h1}»: it is at {url}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Clicks the link `link` finds and waits for the page it leads to, headed `h1` (given the
    /// link's own path).
    async fn follow(b: &fantoccini::Client, link: Locator<'_>, h1: impl Fn(&str) -> String) {
        let a = b.find(link).await.unwrap();
        let href = a.attr("href").await.unwrap().unwrap();
        a.click().await.unwrap();
        let (path, query) = href.split_once('?').unwrap_or((&href, ""));
        let query: Vec<&str> = query.split('&').filter(|q| !q.is_empty()).collect();
        arrive(b, path, &query, &h1(path)).await;
    }

    async fn text_of(b: &fantoccini::Client, css: &str) -> String {
        b.find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    #[tokio::test]
    #[ignore = "needs Debian's chromium and chromium-driver: bash .ci/run installs them and runs ignored tests"]
    async fn a_person_browses_dry_runs_runs_and_finds_the_call_in_the_trail() {
        let hostile = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>好";
        let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
        let (bad, good) = seed_handover(&tdb, hostile).await;
        // An upload job, as the pipeline leaves one.
        let pool = sqlx::SqlitePool::connect(&tdb.url).await.unwrap();
        sqlx::query(
            "INSERT INTO ai_media_job (bucket, object_key, status, project_name, route_key, error_code, created_ms) \
             VALUES ('uploads', 'calls/2026/a.wav', 'failed', 'shop', 'ask', 'MEDIA_UNSUPPORTED', 1764590400000)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let c = start(&tdb, &[]).await;
        let (_driver, b) = webdriver().await;

        // Without the token: refused.
        b.goto(&format!("{}/", c.base)).await.unwrap();
        assert!(b.source().await.unwrap().contains("CONSOLE_TOKEN_INVALID"));
        shot(&b, "00-refused").await;

        // The printed URL: the catalog, and the token gone from the address bar.
        b.goto(&format!("{}/?token={TOKEN}", c.base)).await.unwrap();
        arrive(&b, "/", &[], "Catalog").await;
        assert_eq!(
            b.current_url().await.unwrap().as_str(),
            format!("{}/", c.base)
        );
        assert_eq!(text_of(&b, "h1").await, "Catalog");
        shot(&b, "01-catalog").await;

        // Browse to the route: members in order.
        follow(&b, Locator::LinkText("ask"), |_| "Route shop/ask".into()).await;
        let members = text_of(&b, "main table:nth-of-type(2) tbody").await;
        assert!(
            members.find("c-primary").unwrap() < members.find("c-backup").unwrap(),
            "{members}"
        );
        shot(&b, "02-route").await;

        // Dry run: the exact request, the key masked, nothing sent.
        let topic = b
            .find(Locator::Css("input[name='var.TOPIC']"))
            .await
            .unwrap();
        topic.clear().await.unwrap();
        topic.send_keys("晴天").await.unwrap();
        b.find(Locator::Id("dry-run"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        arrive(&b, "/try", &[], "Dry run of shop/ask").await;
        let page = b.source().await.unwrap();
        assert!(page.contains("Bearer ***-000") && page.contains("说一句话：晴天"));
        assert!(!page.contains(PLAIN_KEY));
        assert!(bad.requests().is_empty() && good.requests().is_empty());
        shot(&b, "03-dry-run").await;

        // Run it: the primary is rate limited, the backup answers with markup shown as text.
        b.back().await.unwrap();
        arrive(&b, "/routes/shop/ask", &[], "Route shop/ask").await;
        b.find(Locator::Id("run"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        arrive(&b, "/try", &[], "Run of shop/ask").await;
        assert_eq!(text_of(&b, "#answer").await, hostile);
        assert_eq!(b.title().await.unwrap(), "Run of shop/ask · ai-runner");
        assert!(text_of(&b, "main").await.contains("handed over"));
        shot(&b, "04-run").await;

        // The trail, filtered down to the new row.
        follow(&b, Locator::LinkText("Audit trail"), |_| {
            "Audit trail".into()
        })
        .await;
        let cfg = b.find(Locator::Id("f-config")).await.unwrap();
        cfg.send_keys("c-backup").await.unwrap();
        b.find(Locator::Id("f-project"))
            .await
            .unwrap()
            .send_keys("shop")
            .await
            .unwrap();
        b.find(Locator::Id("filter"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // The filtered page, not the whole trail still showing before it loads.
        arrive(
            &b,
            "/audit",
            &["config=c-backup", "project=shop"],
            "Audit trail",
        )
        .await;
        let rows = b
            .find_all(Locator::Css("main table tbody tr"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let row = rows[0].text().await.unwrap();
        assert!(
            row.contains("c-backup") && row.contains("console") && row.contains("shop/ask"),
            "{row}"
        );
        shot(&b, "05-trail").await;

        // Its trace: both member attempts in order, the handover's reason on the first.
        follow(
            &b,
            Locator::Css("main table tbody tr td:last-child a"),
            |path| format!("Trace {}", path.trim_start_matches("/trace/")),
        )
        .await;
        let trace = b
            .find_all(Locator::Css("main table:nth-of-type(2) tbody tr"))
            .await
            .unwrap();
        assert_eq!(trace.len(), 2);
        let first = trace[0].text().await.unwrap();
        assert!(
            first.contains("c-primary") && first.contains("HTTP_429"),
            "{first}"
        );
        assert!(trace[1].text().await.unwrap().contains("c-backup"));
        shot(&b, "06-trace").await;

        // A row's detail: bodies pretty-printed.
        follow(
            &b,
            Locator::Css("main table:nth-of-type(2) tbody tr:last-child td:nth-child(2) a"),
            |path| format!("Audit row #{}", path.trim_start_matches("/audit/")),
        )
        .await;
        assert!(
            b.source()
                .await
                .unwrap()
                .contains("&lt;script&gt;document.title")
        );
        assert!(!b.title().await.unwrap().contains("pwned"));
        shot(&b, "07-audit-row").await;

        // Uploads and evaluations.
        follow(&b, Locator::LinkText("Uploads"), |_| "Uploads".into()).await;
        let jobs = text_of(&b, "main table tbody").await;
        assert!(
            jobs.contains("calls/2026/a.wav") && jobs.contains("MEDIA_UNSUPPORTED"),
            "{jobs}"
        );
        shot(&b, "08-uploads").await;
        follow(&b, Locator::LinkText("Evaluations"), |_| {
            "Evaluations".into()
        })
        .await;
        assert_eq!(text_of(&b, "h1").await, "Evaluations");
        shot(&b, "09-evals").await;
        b.close().await.unwrap();
    }
}

#[tokio::test]
async fn the_catalog_shows_each_connections_circuit_breaker() {
    use ai_runner::ports::{BreakerStore, Store};
    let tdb = TestDb::new(Backend::Sqlite).await.unwrap();
    let (_bad, _good) = seed_handover(&tdb, "好").await;
    let db = tdb.db();
    let id = db.resolve_config("c-primary").await.unwrap().connection.id;
    let opens = ai_runner::model::breaker::Limits {
        failures: 1,
        window_ms: 60_000,
        cooldown_ms: 600_000,
    };
    db.breaker_failed(id, opens, ai_runner::model::now_ms())
        .await
        .unwrap();
    db.close().await;
    let c = start(&tdb, &[]).await;
    let page = page_text(&client(), &format!("{}/", c.base)).await;
    assert!(page.contains("Circuit breaker"), "{page}");
    let connections = page.split("id=\"connections\"").nth(1).unwrap();
    let row = |name: &str| {
        connections
            .split("<tr>")
            .find(|r| r.contains(&format!(">{name}<")))
            .unwrap_or_else(|| panic!("no row for {name}"))
            .to_owned()
    };
    assert!(row("conn-c-primary").contains("open until"), "{page}");
    assert!(row("conn-c-backup").contains("closed"), "{page}");
}
