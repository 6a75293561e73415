//! The evaluation report in a real browser (Debian's `chromium`; `bash .ci/run` installs it and
//! runs these with `--include-ignored`).

use super::*;

fn chromium() -> String {
    std::env::var("AI_RUNNER_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// The DOM after the page loaded and its scripts ran.
fn dump_dom(page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (apt-get install chromium)");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// The text of the first `<td class="{class}">` after `start` in `dom`.
fn cell<'a>(dom: &'a str, start: &str, class: &str) -> &'a str {
    let row = &dom[dom.find(start).unwrap()..];
    let open = format!("<td class=\"{class}\">");
    let at = row.find(&open).unwrap() + open.len();
    row[at..].split(['<', ' ']).next().unwrap()
}

#[test]
#[ignore = "needs Debian's chromium: bash .ci/run installs it and runs ignored tests"]
fn the_html_report_renders_the_jsons_numbers_and_shows_model_html_as_text() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        ai_runner(dir.path(), &[], &["quickstart"], None)
            .status
            .success()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hostile = rt
        .block_on(ai_runner::demo::ProviderServer::start(vec![
            ai_runner::demo::Reply::content("<script>document.title='pwned'</script><b>粗体</b>"),
        ]))
        .unwrap();
    std::fs::write(
            dir.path().join("h.yaml"),
            format!(
                "connections: [{{name: h, provider: custom, base_url: \"{}\", api_key: sk-h-1}}]\n\
                 models: [{{name: h-model, connection: h}}]\n\
                 prompts: [{{name: h, version: v1, messages: [{{role: user, content: \"{{{{TEXT}}}}\"}}]}}]\n\
                 configs: [{{config_key: hostile, model: h-model, prompt: h@v1}}]\n",
                hostile.url()
            ),
        )
        .unwrap();
    assert!(
        ai_runner(dir.path(), &[], &["cfg", "gen", "-f", "h.yaml"], None)
            .status
            .success()
    );
    std::fs::write(
            dir.path().join("evals.yaml"),
            "datasets:\n  - name: d\n    cases:\n      - {key: a, vars: {TEXT: 一}}\n      - {key: b, vars: {TEXT: 二}}\n      - {key: c, vars: {TEXT: 三}}\n\
             suites:\n  - name: s\n    dataset: d\n    targets: [{config: hostile}, {config: quickstart-demo}]\n    assert: [{type: contains, value: 粗体}]\n",
        )
        .unwrap();
    let out = ai_runner(
        dir.path(),
        &[],
        &["eval", "run", "s", "--out", "r.json", "--out", "r.html"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    let dom = dump_dom(&dir.path().join("r.html"));
    assert!(
        dom.contains("<title>s · ai-runner evaluation</title>"),
        "the page's own script did not run: {}",
        &dom[..300.min(dom.len())]
    );
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;b&gt;粗体&lt;/b&gt;"),
        "the model's HTML is text"
    );
    for t in json["targets"].as_array().unwrap() {
        let name = t["target"].as_str().unwrap();
        let start = format!("<tr data-target=\"{name}\">");
        assert_eq!(
            cell(&dom, &start, "pass-rate"),
            format!("{:.3}", t["pass_rate"].as_f64().unwrap()),
            "{name}"
        );
        assert_eq!(
            cell(&dom, &start, "mean-score"),
            format!("{:.3}", t["mean_score"].as_f64().unwrap())
        );
        assert_eq!(cell(&dom, &start, "passed"), t["passed"].to_string());
        // Each histogram (scores, latency) counts every result of the target once.
        let fig_start = format!("<figure data-target=\"{name}\">");
        let fig = &dom[dom.find(&fig_start).unwrap()..];
        let fig = &fig[..fig.find("</figure>").unwrap()];
        for chart in fig.split("<svg").skip(1) {
            let counted: u64 = chart
                .split("data-count=\"")
                .skip(1)
                .map(|c| c[..c.find('"').unwrap()].parse::<u64>().unwrap())
                .sum();
            assert_eq!(counted, t["results"].as_u64().unwrap(), "{name}");
        }
    }
    assert_eq!(dom.matches("<tr class=\"case ").count(), 6);
}

#[test]
#[ignore = "needs Debian's chromium: bash .ci/run installs it and runs ignored tests"]
fn the_usage_page_renders_its_charts_with_the_jsons_numbers_and_names_as_text() {
    let dir = super::costs::priced_quickstart();
    let d = dir.path();
    // A model whose name is markup: it must show as text.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(ai_runner::demo::ProviderServer::start(vec![
            ai_runner::demo::Reply::content("好"),
        ]))
        .unwrap();
    std::fs::write(
            d.join("h.yaml"),
            format!(
                "connections: [{{name: h, provider: custom, base_url: \"{}\", api_key: sk-h-1}}]\n\
                 models: [{{name: \"<img src=x onerror=document.title='pwned'>\", connection: h}}]\n\
                 prompts: [{{name: h, version: v1, messages: [{{role: user, content: 你好}}]}}]\n\
                 configs: [{{config_key: hostile, model: \"<img src=x onerror=document.title='pwned'>\", prompt: h@v1}}]\n\
                 prices: [{{model: \"<img src=x onerror=document.title='pwned'>\", input_cost_per_token: 3.0e-06, output_cost_per_token: 6.0e-06}}]\n",
                server.url()
            ),
        )
        .unwrap();
    let applied = ai_runner(d, &[], &["cfg", "gen", "-f", "h.yaml"], None);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    for key in ["quickstart-demo", "hostile", "quickstart-demo"] {
        let out = ai_runner(d, &[], &["run-once", key], None);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = ai_runner(
        d,
        &[],
        &[
            "usage",
            "--by",
            "model",
            "--format",
            "json",
            "--html",
            "usage.html",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dom = dump_dom(&d.join("usage.html"));
    assert!(
        dom.contains("<title>ai-runner usage since"),
        "{}",
        &dom[..300.min(dom.len())]
    );
    assert!(
        !dom.contains("<img"),
        "the model name is text, not an element"
    );
    assert!(dom.contains("&lt;img src=x onerror=document.title='pwned'&gt;"));
    let between = |from: &str, to: &str| {
        let at = dom.find(from).unwrap() + from.len();
        dom[at..at + dom[at..].find(to).unwrap()].to_owned()
    };
    assert_eq!(
        between("<span id=\"total-cost\">", "<"),
        format!("{:.6}", json["total"]["cost_usd"].as_f64().unwrap())
    );
    assert_eq!(
        between("<span id=\"total-calls\">", "<"),
        json["total"]["calls"].to_string()
    );
    // One stacked bar segment per (day, model) that spent something, each the JSON's amount.
    let mut segments = 0;
    for day in json["days"].as_array().unwrap() {
        for (model, nano) in day["spend"].as_object().unwrap() {
            if nano.as_i64().unwrap() > 0 {
                segments += 1;
                let usd = format!("{:.9}", nano.as_f64().unwrap() / 1e9);
                assert!(
                    dom.contains(&format!("data-usd=\"{usd}\"")),
                    "{model} {usd}"
                );
            }
        }
    }
    assert!(segments >= 2, "two priced models");
    assert_eq!(dom.matches("class=\"spend\"").count(), segments);
    assert_eq!(
        dom.matches("class=\"error-rate\"").count(),
        json["days"].as_array().unwrap().len()
    );
    assert_eq!(dom.matches("<polyline").count(), 2, "p50 and p95");
    // And it paints: a screenshot of the page is a real image.
    let profile = tempfile::tempdir().unwrap();
    let shot = d.join("usage.png");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", d.join("usage.html").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 10_000,
        "a page with charts, not a blank one: {} bytes",
        png.len()
    );
}
