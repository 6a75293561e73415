//! `quickstart`: set up a database, store an encrypted demo key and configs, and run them against
//! the local demo provider (or a real one with `OPENAI_API_KEY`): one call, a failover route, an
//! upload, and a small evaluation suite whose HTML report lands in `tmp/quickstart-eval.html`. `--mode rds` does it on the configured MySQL; `--mode demo` is the predecessor's media
//! demo (upload a file, run it through the pipeline, save the masked result to
//! `tmp/demo_result.json`).
//!
//! Invariants: the configs it leaves behind keep answering afterwards (their demo endpoint is
//! served again by later commands, see [`ai_runner::demo::serve_stored`]); it ends by printing
//! the next commands to try, each of which works as printed; it never prints the pepper or a key.

use std::path::{Path, PathBuf};

use ai_runner::app::App;
use ai_runner::config::{DatabaseTarget, ObjectTarget, Settings};
use ai_runner::demo::{self, DemoServer, QuickstartProvider, Scenario};
use ai_runner::media::{self, Outcome};
use ai_runner::model::media::ObjectRef;
use ai_runner::objects::LocalStore;
use ai_runner::ports::{ObjectPin, ObjectStore};
use ai_runner::store::{Db, migrate};
use ai_runner::{Code, RunContext, Trigger, Variables};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::context::Cx;
use crate::failure::Failure;
use crate::output::{self, outln};

/// Which database quickstart sets up.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuickstartMode {
    /// The embedded SQLite file (`AI_RUNNER_DB_PATH`), whatever else is configured.
    Local,
    /// The configured MySQL / MariaDB (`DATABASE_URL` or `MYSQL_*`).
    Rds,
    /// The predecessor's media demo: upload a file and run it through the upload pipeline.
    Demo,
}

/// `quickstart`.
#[derive(Args)]
pub struct QuickstartArgs {
    /// local (embedded file), rds (the configured MySQL) or demo (the upload pipeline).
    #[arg(long, value_enum, default_value = "local")]
    pub mode: QuickstartMode,
    /// The media file the demo mode uploads (default: a generated 1 KiB file, tmp/demo/2.mp3).
    #[arg(long)]
    pub media_path: Option<PathBuf>,
    /// The demo provider's loopback port (0 = any free port).
    #[arg(long, env = "AI_RUNNER_DEMO_PORT", default_value_t = ai_runner::demo::DEFAULT_DEMO_PORT)]
    pub demo_port: u16,
    /// Print the whole run results as JSON.
    #[arg(long)]
    pub json: bool,
}

impl QuickstartArgs {
    /// Runs the quickstart in its mode.
    pub async fn run(self, cx: &Cx) -> Result<(), Failure> {
        let configured = cx.settings()?;
        let mut settings = configured.clone();
        match self.mode {
            QuickstartMode::Local => {
                settings.database = DatabaseTarget::Sqlite(settings.embedded_db.clone());
            }
            QuickstartMode::Rds if !matches!(settings.database, DatabaseTarget::MySql(_)) => {
                return Err(Failure::usage(
                    Code::ConfigMissing,
                    "quickstart --mode rds needs a MySQL database: DATABASE_URL=mysql://... or MYSQL_HOST, MYSQL_USER, MYSQL_PASSWORD, MYSQL_AI_DATABASE",
                ));
            }
            QuickstartMode::Rds | QuickstartMode::Demo => {}
        }
        ensure_pepper(&mut settings)?;
        let db = Db::creating(settings.database.clone());
        migrate::init(&db).await?;
        outln!("database: {}", db.target().describe());
        let server = start_demo(self.demo_port).await?;
        let app = App::with_db(&settings, db)?;
        let out = match self.mode {
            QuickstartMode::Demo => {
                demo_mode(&app, &settings, &server, self.media_path.as_deref()).await
            }
            QuickstartMode::Local | QuickstartMode::Rds => tour(&app, &server, self.json).await,
        };
        app.runner.store().close().await;
        out?;
        next_steps(self.mode, configured, &settings);
        Ok(())
    }
}

/// A generated pepper for the embedded database (written to `ai.env`, mode 0600); a server
/// database must already have its own.
fn ensure_pepper(settings: &mut Settings) -> Result<(), Failure> {
    if settings.pepper.is_some() {
        return Ok(());
    }
    if !matches!(settings.database, DatabaseTarget::Sqlite(_)) {
        return Err(ai_runner::crypto::CryptoError::PepperMissing.into());
    }
    let dir = ai_runner::config::env_dir();
    settings.pepper = Some(ai_runner::config::generate_pepper_file(&dir)?);
    outln!(
        "generated a new AI_PEPPER in {}",
        dir.join("ai.env").display()
    );
    Ok(())
}

/// The demo endpoint on the chosen port, or on any free one when that port is taken (two
/// quickstarts at once each keep their own).
async fn start_demo(port: u16) -> Result<DemoServer, Failure> {
    match DemoServer::bind(port).await {
        Ok(s) => Ok(s),
        Err(_) => DemoServer::bind(0)
            .await
            .map_err(|e| Failure::usage(Code::DemoProviderFailed, e.to_string())),
    }
}

/// One call, a failover route, an upload: each audited, each shown.
async fn tour(app: &App, server: &DemoServer, json: bool) -> Result<(), Failure> {
    let (runner, db) = (&app.runner, app.runner.store());
    let target = match QuickstartProvider::from_env() {
        Some(real) => {
            outln!(
                "provider: {} (model {}, from OPENAI_API_KEY)",
                real.url,
                real.model
            );
            real
        }
        None => {
            let p = QuickstartProvider::demo(server);
            outln!(
                "provider: DEMO provider on loopback {} (canned answers, not a real model; set OPENAI_API_KEY to use a real one)",
                p.url
            );
            p
        }
    };
    demo::install_quickstart(
        db,
        runner.keyring(),
        &target,
        &Scenario::Outage.url(server.port()),
    )
    .await?;
    outln!(
        "config:   {} (key stored encrypted)",
        demo::QUICKSTART_CONFIG_KEY
    );
    let ctx = RunContext::new(Trigger::Quickstart);
    let result = runner
        .run_once(demo::QUICKSTART_CONFIG_KEY, &Variables::new(), &ctx)
        .await;
    outln!("\n== run result ==");
    let printed = output::result(&result, json);
    if !json && result.is_ok() {
        outln!(
            "(trace {}, {} ms total, {} ms provider, {} attempt(s))",
            result.trace_id,
            result.total_ms,
            result.provider_ms,
            result.attempts
        );
    }
    if let Some(id) = result.audit_id {
        let row = db.audit_row(id).await?;
        outln!("\n== audit row ai_call_logs.id = {id} ==");
        output::pretty(&row);
    }
    printed?;

    outln!(
        "\n== route {}/{}: member 1 {} (DEMO endpoint that always answers 503), member 2 {} ==",
        demo::QUICKSTART_PROJECT,
        demo::QUICKSTART_ROUTE,
        demo::QUICKSTART_FLAKY_KEY,
        demo::QUICKSTART_CONFIG_KEY
    );
    let routed = runner
        .run_route(
            demo::QUICKSTART_PROJECT,
            demo::QUICKSTART_ROUTE,
            &Variables::new(),
            &ctx,
        )
        .await;
    if json {
        output::pretty(&routed);
    } else {
        for a in &routed.member_attempts {
            outln!(
                "member {} {}: {}",
                a.attempt,
                a.config_key,
                match &a.error {
                    None => "answered".to_owned(),
                    Some(e) => format!("{} -> handed over", e.code),
                }
            );
        }
        if let Some(c) = &routed.result.content {
            outln!(
                "answer from {}: {c}",
                routed.answered_by.as_deref().unwrap_or("-")
            );
        }
    }
    let rows = db.audit_rows_for_trace(&routed.result.trace_id).await?;
    outln!("\n== the route's audit rows (one per member attempt) ==");
    for row in &rows {
        let pick = |k: &str| row.get(k).cloned().unwrap_or(Value::Null);
        outln!(
            "id={} config_key={} http_status={} error_code={} route_attempt={} handover_reason={}",
            pick("id"),
            pick("config_key"),
            pick("http_status"),
            pick("error_code"),
            pick("route_attempt"),
            pick("handover_reason")
        );
    }
    output::outcome(&routed.result)?;

    // An upload: a generated WAV lands in the local object store and the pipeline processes it.
    demo::install_quickstart_media(db, runner.keyring(), &Scenario::Media.url(server.port()))
        .await?;
    let objects_dir = PathBuf::from("./ai-runner-objects");
    let store = LocalStore::new(&objects_dir);
    let key = format!(
        "{}hello-{}.wav",
        demo::QUICKSTART_MEDIA_PREFIX,
        &routed.result.trace_id[..8]
    );
    let wav = demo::wav_tone(500, 440.0);
    let size = wav.len();
    store
        .put(demo::QUICKSTART_MEDIA_BUCKET, &key, wav, "audio/wav")
        .await?;
    outln!(
        "\n== upload: {size} bytes of WAV into {}/{}/{} (local object store), processed by route {}/{} ==",
        objects_dir.display(),
        demo::QUICKSTART_MEDIA_BUCKET,
        key,
        demo::QUICKSTART_PROJECT,
        demo::QUICKSTART_MEDIA_ROUTE
    );
    let mut object_settings = app.object_settings().clone();
    object_settings.target = ObjectTarget::Local(objects_dir);
    let report = media::process(
        runner,
        &store,
        &object_settings,
        &object(demo::QUICKSTART_MEDIA_BUCKET, &key),
        &ctx,
        false,
    )
    .await;
    output::pretty(&report);
    if let Some(j) = db.list_jobs(1).await?.first() {
        outln!(
            "job #{} {} result={}",
            j.id,
            j.status,
            j.result_key.as_deref().unwrap_or("-")
        );
    }
    if !matches!(report.outcome, Outcome::Succeeded { .. }) {
        return Err(Failure::found(
            Code::QuickstartUploadFailed,
            format!("{:?}", report.outcome),
        ));
    }
    evaluation(app).await
}

/// A small evaluation suite over the config and the route, stored like any run, with its HTML
/// report in `tmp/quickstart-eval.html`.
async fn evaluation(app: &App) -> Result<(), Failure> {
    use ai_runner::eval::run::{self, Options, Start};
    use ai_runner::eval::suite::read_suite;
    use ai_runner::ports::EvalStore;
    let db = app.runner.store();
    demo::install_quickstart_evals(db).await?;
    let doc = db
        .suite_document(demo::QUICKSTART_SUITE)
        .await?
        .unwrap_or(Value::Null);
    let (suite, findings) = read_suite(&doc, demo::QUICKSTART_SUITE, Path::new("."));
    let suite = suite.ok_or_else(|| {
        Failure::found(
            Code::SuiteInvalid,
            format!("quickstart suite: {findings:?}"),
        )
    })?;
    outln!(
        "\n== evaluation: suite {} ({} cases x {} targets, from the evaluation catalog) ==",
        suite.name,
        suite.cases.len(),
        suite.targets.len()
    );
    let how = Start {
        trigger: ai_runner::Trigger::Cli,
        baseline: None,
    };
    let report = run::start(
        &app.runner,
        &suite,
        &Options::default(),
        &how,
        &|_, _, _| {},
    )
    .await
    .map_err(|e| Failure::usage(e.code(), e.to_string()))?;
    super::eval::summary(&report);
    let path = Path::new("tmp/quickstart-eval.html");
    output::write_out(Some(path), &ai_runner::eval::report::html(&report))?;
    outln!("report: {} (open it in a browser)", path.display());
    Ok(())
}

fn object(bucket: &str, key: &str) -> ObjectRef {
    ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size: None,
        etag: None,
        version_id: None,
    }
}

/// The predecessor's `--mode demo`: its route and members, a media file uploaded to the
/// configured object store, the route run through the upload pipeline, and the masked result
/// in `tmp/demo_result.json`.
async fn demo_mode(
    app: &App,
    settings: &Settings,
    server: &DemoServer,
    media_path: Option<&Path>,
) -> Result<(), Failure> {
    let inline = matches!(settings.objects.target, ObjectTarget::Local(_));
    let bucket = match (&settings.objects.bucket, inline) {
        (Some(b), _) => b.clone(),
        (None, true) => demo::QUICKSTART_MEDIA_BUCKET.to_owned(),
        (None, false) => {
            return Err(Failure::usage(
                Code::ConfigMissing,
                "quickstart --mode demo with S3/OSS needs OSS_BUCKET (where the media file is uploaded)",
            ));
        }
    };
    let prefix = "demo/";
    demo::install_demo_mode(
        app.runner.store(),
        app.runner.keyring(),
        &Scenario::Media.url(server.port()),
        inline,
        &bucket,
        prefix,
    )
    .await?;
    let path = match media_path {
        Some(p) => p.to_path_buf(),
        None => generated_media()?,
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        Failure::usage(
            Code::IoError,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let name = path
        .file_name()
        .map_or_else(|| "media.mp3".into(), |n| n.to_string_lossy().into_owned());
    let key = format!("{prefix}{name}");
    let content_type =
        ai_runner::objects::guess_content_type(&key).unwrap_or("application/octet-stream");
    app.objects.put(&bucket, &key, bytes, content_type).await?;
    outln!(
        "uploaded {} to {bucket}/{key} ({})",
        path.display(),
        if inline {
            "local object store: the model gets it inline"
        } else {
            "the model gets a presigned URL"
        }
    );
    let report = media::process(
        &app.runner,
        app.objects.as_ref(),
        app.object_settings(),
        &object(&bucket, &key),
        &RunContext::new(Trigger::Quickstart),
        true,
    )
    .await;
    let Outcome::Succeeded { result, .. } = &report.outcome else {
        output::pretty(&report);
        return Err(Failure::found(
            Code::QuickstartUploadFailed,
            format!("{:?}", report.outcome),
        ));
    };
    let result_key = result
        .strip_prefix(&format!("s3://{bucket}/"))
        .unwrap_or(result);
    let doc: Value = serde_json::from_slice(
        &app.objects
            .get(&bucket, result_key, ObjectPin::NONE)
            .await?,
    )
    .unwrap_or(Value::Null);
    let routed = &doc["result"];
    let response = &routed["response"];
    let summary = json!({
        "project": demo::DEMO_MODE_PROJECT,
        "route": demo::DEMO_MODE_ROUTE,
        "policy": "primary_backup",
        "members": demo::DEMO_MODE_MEMBERS,
        "media_url": "<redacted url>",
        "status": routed["http_status"],
        "response": {
            "id": response["id"],
            "object": response["object"],
            "model": response["model"],
            "choices": [{"message": {"content": "<structure only>"}}],
            "usage": {"total_tokens": response.pointer("/usage/total_tokens").cloned().unwrap_or(json!(0))}
        },
        "answered_by": routed["answered_by"],
        "result_object": result,
        "note": "This is a demo. Content is for structure only; the full result is the private result object above."
    });
    output::write_out(
        Some(Path::new("tmp/demo_result.json")),
        &serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )?;
    output::pretty(&summary);
    outln!("saved to tmp/demo_result.json");
    Ok(())
}

/// The predecessor's stand-in media: 1 KiB of random bytes at `tmp/demo/2.mp3`.
fn generated_media() -> Result<PathBuf, Failure> {
    let path = PathBuf::from("tmp/demo/2.mp3");
    let bytes: Vec<u8> = (0..1024).map(|_| rand::random::<u8>()).collect();
    std::fs::create_dir_all("tmp/demo")
        .and_then(|()| std::fs::write(&path, bytes))
        .map_err(|e| {
            Failure::usage(
                Code::IoError,
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
    Ok(path)
}

/// What to try next; each line runs as printed from this directory.
fn next_steps(mode: QuickstartMode, configured: &Settings, used: &Settings) {
    // When quickstart used another database than the configured one (local mode with a MySQL
    // configured), the commands must say which.
    let prefix = match &used.database {
        DatabaseTarget::Sqlite(p) if used.database != configured.database => {
            format!("DATABASE_URL=sqlite://{} ", p.display())
        }
        DatabaseTarget::Sqlite(_) | DatabaseTarget::MySql(_) => String::new(),
    };
    let commands: Vec<String> = match mode {
        QuickstartMode::Local | QuickstartMode::Rds => vec![
            format!("run-once {}", demo::QUICKSTART_CONFIG_KEY),
            format!(
                "route -p {} -r {}",
                demo::QUICKSTART_PROJECT,
                demo::QUICKSTART_ROUTE
            ),
            format!(
                "route -p {} -r {} --dry-run",
                demo::QUICKSTART_PROJECT,
                demo::QUICKSTART_ROUTE
            ),
            "media jobs".into(),
            format!("eval run {} --out report.html", demo::QUICKSTART_SUITE),
            "eval list".into(),
            "cfg export".into(),
        ],
        QuickstartMode::Demo => vec![
            format!(
                "route -p {} -r {} --dry-run",
                demo::DEMO_MODE_PROJECT,
                demo::DEMO_MODE_ROUTE
            ),
            "media jobs".into(),
            "cfg export".into(),
        ],
    };
    outln!(
        "\nnext, try (the demo provider is served again by each command; from a checkout, `cargo run -p ai-runner-cli --` stands for `ai-runner`):"
    );
    for c in commands {
        outln!("  {prefix}ai-runner {c}");
    }
    if mode != QuickstartMode::Demo {
        outln!(
            "\nserve the OpenAI-compatible API (any OpenAI SDK: base URL http://127.0.0.1:8080/v1; it runs until Ctrl-C), then call it from another shell:\n  $ {prefix}ai-runner serve\n  $ curl -sS http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\": \"{}\", \"messages\": [{{\"role\": \"user\", \"content\": \"再短一点\"}}]}}'",
            demo::QUICKSTART_CONFIG_KEY
        );
    }
    outln!(
        "\n`ai-runner` on your PATH from a checkout: cargo install --locked --path cli (installs it into ~/.cargo/bin)"
    );
}
