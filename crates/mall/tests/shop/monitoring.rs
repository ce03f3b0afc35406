//! The shop's monitoring as code (deploy/monitoring), proven against the shop: the alerts
//! fire in a real Prometheus and Alertmanager scraping a split shop (a frozen service pages
//! its team and resolves once it answers again; 5xx at the gateway burn the availability
//! budget), every alert has its team, severity, runbook section and promtool tests, and
//! every metric a dashboard or a rule names is one the shop exposes under load.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;

use crate::helpers::{Needs, Shop, free_ports, skipped};

/// Each service's port, as an offset from the shop's base port (`mall up`).
const SERVICES: [(&str, u16); 7] = [
    ("gateway", 0),
    ("order", 1),
    ("delivery", 2),
    ("product", 3),
    ("payment", 4),
    ("mypage", 5),
    ("auth", 6),
];

/// The `for:` every alert gets in the live tests, which cannot wait the minutes the
/// committed rules wait; everything else of the rules is as committed.
const FOR_IN_TESTS: &str = "3s";

/// How long an alert may take to show up in (or leave) Alertmanager in the live tests:
/// scrapes and evaluations each second, `for:` 3 s, then Prometheus sends at once.
const ALERT_TIMEOUT: Duration = Duration::from_secs(40);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A path as the repository names it, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(repository())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn monitoring_dir() -> PathBuf {
    repository().join("deploy/monitoring")
}

/// The files of `dir` whose names end in `suffix`, sorted.
fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *{suffix} in {}", dir.display());
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every rule of a Prometheus rule file (`groups[].rules[]`).
fn rules_of(file: &Yaml) -> Vec<&Yaml> {
    file["groups"]
        .as_sequence()
        .expect("a rule file has groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().expect("a group has rules"))
        .collect()
}

fn rule_files() -> Vec<(PathBuf, Yaml)> {
    files_in(&monitoring_dir().join("rules"), ".yml")
        .into_iter()
        .map(|path| {
            let yaml = serde_yaml_ng::from_str(&read(&path)).unwrap();
            (path, yaml)
        })
        .collect()
}

/// The rules as committed but for each `for:`, which becomes [`FOR_IN_TESTS`].
fn with_short_for(rules: &str) -> String {
    let mut out = String::new();
    for line in rules.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with("for:") {
            out.push_str(&format!("{}for: {FOR_IN_TESTS}\n", &line[..indent]));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The first of `names` found on the PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A Prometheus with the shop's rules scraping every service of a shop each second, and
/// the Alertmanager it sends to with the shop's routing, both on loopback ports of their
/// own. Killed when dropped.
struct Monitor {
    dir: tempfile::TempDir,
    prometheus: Child,
    alertmanager: Child,
    prometheus_url: String,
    alertmanager_url: String,
    client: reqwest::Client,
}

impl Monitor {
    /// `None` (and says SKIPPED) where Prometheus or Alertmanager is not installed.
    async fn start(shop: &Shop) -> Option<Monitor> {
        let (Some(prometheus), Some(alertmanager)) = (
            on_path(&["prometheus"]),
            on_path(&["alertmanager", "prometheus-alertmanager"]),
        ) else {
            skipped(
                Needs::Prometheus,
                "no prometheus and alertmanager on the PATH (Debian: apt-get install prometheus prometheus-alertmanager)",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2);
        let (prometheus_port, alertmanager_port) = (ports, ports + 1);

        std::fs::create_dir(dir.path().join("rules")).unwrap();
        for path in files_in(&monitoring_dir().join("rules"), ".yml") {
            std::fs::write(
                dir.path().join("rules").join(path.file_name().unwrap()),
                with_short_for(&read(&path)),
            )
            .unwrap();
        }
        // The committed routing, with the placeholder webhooks sent to a port where
        // nothing listens (nothing leaves the machine).
        let routing = read(&monitoring_dir().join("alertmanager.yml"));
        let placeholder = "https://alerts.example.invalid/";
        assert!(routing.contains(placeholder));
        std::fs::write(
            dir.path().join("alertmanager.yml"),
            routing.replace(placeholder, "http://127.0.0.1:9/"),
        )
        .unwrap();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 800ms\n  evaluation_interval: 1s\n\
             rule_files: [rules/*.yml]\n\
             alerting:\n  alertmanagers:\n    - static_configs: [{{targets: [\"127.0.0.1:{alertmanager_port}\"]}}]\n\
             scrape_configs:\n"
        );
        for (service, offset) in SERVICES {
            config.push_str(&format!(
                "  - job_name: {service}\n    static_configs: [{{targets: [\"127.0.0.1:{}\"]}}]\n",
                shop.base_port + offset
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();

        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let alertmanager = Command::new(alertmanager)
            .arg(format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("alertmanager-data").display()
            ))
            .arg(format!(
                "--web.listen-address=127.0.0.1:{alertmanager_port}"
            ))
            // No cluster: it would listen on 0.0.0.0:9094.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log("alertmanager.log"))
            .spawn()
            .unwrap();
        let prometheus = Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(log("prometheus.log"))
            .spawn()
            .unwrap();
        let mut monitor = Monitor {
            dir,
            prometheus,
            alertmanager,
            prometheus_url: format!("http://127.0.0.1:{prometheus_port}"),
            alertmanager_url: format!("http://127.0.0.1:{alertmanager_port}"),
            client: reqwest::Client::new(),
        };
        monitor.wait_ready().await;
        Some(monitor)
    }

    async fn wait_ready(&mut self) {
        let started = Instant::now();
        for url in [&self.alertmanager_url, &self.prometheus_url] {
            while !self
                .client
                .get(format!("{url}/-/ready"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
            {
                let exited = self.prometheus.try_wait().unwrap().is_some()
                    || self.alertmanager.try_wait().unwrap().is_some();
                assert!(
                    !exited && started.elapsed() < Duration::from_secs(20),
                    "Prometheus or Alertmanager did not start: {}",
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn logs(&self) -> String {
        ["prometheus.log", "alertmanager.log"]
            .map(|name| {
                let log = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
                format!("--- {name}:\n{log}")
            })
            .join("\n")
    }

    /// Prometheus's answer to an instant query: its result vector.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let answer: Value = self
            .client
            .get(
                reqwest::Url::parse_with_params(
                    &format!("{}/api/v1/query", self.prometheus_url),
                    [("query", promql)],
                )
                .unwrap(),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"].as_array().unwrap().clone()
    }

    /// The alerts Alertmanager holds now (active, suppressed or unprocessed; a resolved
    /// alert is no longer listed), each with the receivers its route chose.
    async fn alerts(&self) -> Vec<Value> {
        self.client
            .get(format!("{}/api/v2/alerts", self.alertmanager_url))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until Prometheus has scraped every service of the shop.
    async fn wait_until_every_service_is_up(&self) {
        let started = Instant::now();
        while self.query("up == 1").await.len() < SERVICES.len() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not every service is up in Prometheus: {:?}\n{}",
                self.query("up").await,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for child in [&mut self.prometheus, &mut self.alertmanager] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The alert among `alerts` whose labels include every one of `labels`.
fn alert_with<'a>(alerts: &'a [Value], labels: &[(&str, &str)]) -> Option<&'a Value> {
    alerts.iter().find(|alert| {
        labels
            .iter()
            .all(|(name, value)| alert["labels"][name] == *value)
    })
}

fn receivers(alert: &Value) -> Vec<&str> {
    alert["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|receiver| receiver["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_frozen_service_pages_its_team_through_alertmanager_and_resolves_once_it_answers() {
    let shop = Shop::start_split(&[]).await;
    let Some(monitor) = Monitor::start(&shop).await else {
        return;
    };
    monitor.wait_until_every_service_is_up().await;
    assert_eq!(monitor.alerts().await, Vec::<Value>::new());

    // Frozen, product keeps its port and its connections but answers nothing: the
    // scrapes time out (a SIGKILL would be undone by the supervisor within 250 ms).
    shop.signal("product", "STOP");
    let frozen = Instant::now();
    let down = [("alertname", "ServiceDown"), ("job", "product")];
    let alert = loop {
        if let Some(alert) = alert_with(&monitor.alerts().await, &down) {
            break alert.clone();
        }
        if frozen.elapsed() > ALERT_TIMEOUT {
            shop.signal("product", "CONT");
            panic!(
                "no ServiceDown for product in Alertmanager {:?} after product froze; Prometheus has {:?}\n{}",
                ALERT_TIMEOUT,
                monitor.query("ALERTS").await,
                monitor.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let fired_after = frozen.elapsed();
    shop.signal("product", "CONT");
    eprintln!(
        "product frozen: ServiceDown in Alertmanager after {fired_after:?} (`for:` {FOR_IN_TESTS})"
    );
    assert_eq!(alert["labels"]["team"], "product", "{alert}");
    assert_eq!(alert["labels"]["severity"], "page", "{alert}");
    assert_eq!(
        alert["annotations"]["runbook_url"], "docs/runbook.md#servicedown",
        "{alert}"
    );
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert_eq!(
        receivers(&alert),
        ["product"],
        "routed to the product team: {alert}"
    );
    // Only product is down.
    let alerts = monitor.alerts().await;
    assert!(
        alerts
            .iter()
            .all(|alert| alert["labels"]["job"] == "product"),
        "{alerts:?}"
    );

    let thawed = Instant::now();
    while alert_with(&monitor.alerts().await, &down).is_some() {
        assert!(
            thawed.elapsed() < ALERT_TIMEOUT,
            "ServiceDown for product still in Alertmanager {ALERT_TIMEOUT:?} after product answers again: {:?}",
            monitor.alerts().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(monitor.query("ALERTS").await.is_empty());
    eprintln!(
        "product answering again: resolved after {:?}",
        thawed.elapsed()
    );
}

#[tokio::test]
async fn errors_at_the_gateway_burn_the_availability_budget_and_page_the_platform_team() {
    // Every request product's API gets fails with a 500, which the gateway passes on.
    let shop = Shop::start_split(&[("MALL_FAULTS", "product:error-rate=1")]).await;
    let Some(monitor) = Monitor::start(&shop).await else {
        return;
    };
    monitor.wait_until_every_service_is_up().await;

    // Answers that went well (the shop's page; with no traffic at all the SLI is 0/0):
    // the SLI is 0, not missing, and nothing fires.
    let started = Instant::now();
    loop {
        assert_eq!(shop.get("/").await.status(), StatusCode::OK);
        let ratio = monitor
            .query("mall:gateway_availability:error_ratio_rate5m")
            .await;
        if let [sample] = ratio.as_slice()
            && sample["value"][1] == "0"
        {
            break;
        }
        assert!(
            started.elapsed() < ALERT_TIMEOUT,
            "no SLI recorded: {ratio:?}\n{}",
            monitor.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(monitor.alerts().await, Vec::<Value>::new());

    let fast = [("alertname", "GatewayErrorBudgetBurnFast")];
    let slow = [("alertname", "GatewayErrorBudgetBurnSlow")];
    let errors_began = Instant::now();
    let mut failed = 0;
    let (paged, ticket) = loop {
        for _ in 0..5 {
            let response = shop.get("/api/products").await;
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            failed += 1;
        }
        let alerts = monitor.alerts().await;
        if let (Some(paged), Some(ticket)) =
            (alert_with(&alerts, &fast), alert_with(&alerts, &slow))
            && ticket["status"]["state"] == "suppressed"
        {
            break (paged.clone(), ticket.clone());
        }
        assert!(
            errors_began.elapsed() < ALERT_TIMEOUT,
            "no page for the availability SLO after {failed} errors: {alerts:?}\nPrometheus: {:?}\n{}",
            monitor.query("ALERTS").await,
            monitor.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "{failed} 500s at the gateway: GatewayErrorBudgetBurnFast in Alertmanager after {:?}",
        errors_began.elapsed()
    );
    assert_eq!(paged["labels"]["team"], "platform", "{paged}");
    assert_eq!(paged["labels"]["severity"], "page", "{paged}");
    assert_eq!(paged["labels"]["slo"], "gateway-availability", "{paged}");
    assert_eq!(paged["status"]["state"], "active", "{paged}");
    assert_eq!(receivers(&paged), ["platform"], "{paged}");
    // The ticket for the same SLO waits under the page (alertmanager.yml, inhibit_rules).
    assert_eq!(ticket["labels"]["severity"], "ticket", "{ticket}");
    assert_eq!(
        ticket["status"]["inhibitedBy"].as_array().map(Vec::len),
        Some(1),
        "{ticket}"
    );
}

/// The teams of docs/analysis.md ("One team per capability"), as `team` label values.
fn teams_of_the_analysis() -> BTreeSet<String> {
    let analysis = read(&repository().join("docs/analysis.md"));
    let table = analysis
        .split("| Team | KPIs it owns |")
        .nth(1)
        .expect("the teams' table in docs/analysis.md");
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let team = line.split('|').nth(1).unwrap().trim();
            let team = team.split(" (").next().unwrap();
            team.to_lowercase().replace(' ', "")
        })
        .collect()
}

/// A `team` label computed from the service (`service`, or `job` for `up`): the service's
/// own team, or platform's for the gateway and auth.
fn team_by_service(label: &str) -> String {
    format!(
        "{{{{ if eq $labels.{label} \"gateway\" \"auth\" }}}}platform{{{{ else }}}}{{{{ $labels.{label} }}}}{{{{ end }}}}"
    )
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_names_its_team_a_severity_a_runbook_section_and_has_tests_that_fire_and_stay_quiet()
{
    let teams = teams_of_the_analysis();
    assert_eq!(
        teams,
        [
            "delivery", "mypage", "order", "payment", "platform", "product"
        ]
        .map(String::from)
        .into(),
        "the teams of docs/analysis.md"
    );
    // Every service's team, as the computed labels give it.
    for (service, _) in SERVICES {
        let team = if matches!(service, "gateway" | "auth") {
            "platform"
        } else {
            service
        };
        assert!(teams.contains(team), "{service}'s team {team}");
    }
    let runbook = read(&repository().join("docs/runbook.md"));
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(anchor)
        .collect();

    let mut alerts = BTreeSet::new();
    for (path, file) in rule_files() {
        for rule in rules_of(&file) {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            let at = format!("{}: {name}", shown(&path));
            assert!(
                alerts.insert(name.to_owned()),
                "{at}: two alerts of one name"
            );
            let labels = &rule["labels"];
            assert!(
                matches!(labels["severity"].as_str(), Some("page" | "ticket")),
                "{at}: severity {:?}",
                labels["severity"]
            );
            let team = labels["team"].as_str().unwrap_or_default();
            assert!(
                teams.contains(team)
                    || team == team_by_service("service")
                    || team == team_by_service("job"),
                "{at}: team {team:?} is neither a team of docs/analysis.md nor the service's"
            );
            let runbook_url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_default();
            let section = runbook_url
                .strip_prefix("docs/runbook.md#")
                .unwrap_or_else(|| panic!("{at}: runbook_url {runbook_url:?}"));
            assert_eq!(section, name.to_lowercase(), "{at}: its own section");
            assert!(
                sections.contains(section),
                "{at}: no section `## {name}` in docs/runbook.md"
            );
        }
    }
    assert_eq!(alerts.len(), 9, "{alerts:?}");

    // What the promtool tests expect of each alert: that it fires, that it stays quiet.
    let mut tested: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for path in files_in(&monitoring_dir().join("tests"), ".test.yml") {
        let file: Yaml = serde_yaml_ng::from_str(&read(&path)).unwrap();
        for test in file["tests"].as_sequence().unwrap() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap().to_owned();
                let fires = case["exp_alerts"]
                    .as_sequence()
                    .is_some_and(|expected| !expected.is_empty());
                let entry = tested.entry(name).or_default();
                if fires {
                    entry.0 = true;
                } else {
                    entry.1 = true;
                }
            }
        }
    }
    for alert in &alerts {
        assert_eq!(
            tested.get(alert),
            Some(&(true, true)),
            "{alert}: a promtool test where it fires and one where it stays quiet (deploy/monitoring/tests)"
        );
    }
}

#[test]
fn the_live_tests_change_nothing_of_the_rules_but_their_for() {
    for path in files_in(&monitoring_dir().join("rules"), ".yml") {
        let committed: Yaml = serde_yaml_ng::from_str(&read(&path)).unwrap();
        let tested: Yaml = serde_yaml_ng::from_str(&with_short_for(&read(&path))).unwrap();
        let (committed, tested) = (rules_of(&committed), rules_of(&tested));
        assert_eq!(committed.len(), tested.len());
        for (committed, tested) in committed.iter().zip(tested) {
            let mut committed = (*committed).clone();
            if committed.get("for").is_some() {
                assert_eq!(tested["for"].as_str(), Some(FOR_IN_TESTS));
                committed["for"] = Yaml::from(FOR_IN_TESTS);
            }
            assert_eq!(&committed, tested, "{}", path.display());
        }
    }
}

/// The metric names a PromQL expression reads: every identifier that is not a function,
/// an aggregation, a keyword, or a label name (in braces, or in a `by`, `without`, `on`,
/// `ignoring`, `group_left` or `group_right` list); string literals, ranges and Grafana's
/// `$variables` left out.
fn metric_names(promql: &str) -> BTreeSet<String> {
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const KEYWORDS: [&str; 9] = [
        "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan", "start",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = promql.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening `open` to just past its matching `close`.
    let skip_group = |mut i: usize, open: char, close: char| {
        let mut depth = 0;
        while i < chars.len() {
            if chars[i] == open {
                depth += 1;
            } else if chars[i] == close {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            i += 1;
        }
        i
    };
    let is_name_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c == '$' {
            // A Grafana variable: `$name`, `${name}`, `$__rate_interval`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(i, '{', '}');
            } else {
                while i < chars.len() && is_name(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (`14.4`, `1e3`, `0x1f`, `5m`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_name_start(c) {
            let start = i;
            while i < chars.len() && is_name(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if called {
                    i = skip_group(next, '(', ')');
                }
            } else if !called
                && !AGGREGATIONS.contains(&word.as_str())
                && !KEYWORDS.contains(&word.to_lowercase().as_str())
            {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = |promql: &str| metric_names(promql).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, service) (rate(mall_http_request_duration_seconds_bucket{route!~"/health/.*|/metrics",service=~"$service"}[$__rate_interval])))"#
        ),
        ["mall_http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        names(
            "(sum(rate(a_total{status=~\"5..\"}[5m])) or vector(0))\n/ sum without (instance) (rate(a_total[5m] offset 1h)) > bool 1e-3"
        ),
        ["a_total"]
    );
    assert_eq!(
        names("mall:x:ratio_rate1h > (14.4 * 0.005) and on (group) deriv(lag[10m:1m]) > 0"),
        ["lag", "mall:x:ratio_rate1h"]
    );
    assert_eq!(
        names("b * on (service) group_left (team) c unless up == 0"),
        ["b", "c", "up"]
    );
    assert_eq!(
        names(r#"label_replace(up, "x", "$1", "job", "(.*)") or absent(nope) or Inf"#),
        ["nope", "up"]
    );
}

#[test]
fn every_dashboard_panel_queries_the_provisioned_prometheus() {
    let grafana = monitoring_dir().join("grafana");
    let provisioned: Yaml =
        serde_yaml_ng::from_str(&read(&grafana.join("provisioning/datasources/mall.yml"))).unwrap();
    let uid = provisioned["datasources"][0]["uid"].as_str().unwrap();
    let providers: Yaml =
        serde_yaml_ng::from_str(&read(&grafana.join("provisioning/dashboards/mall.yml"))).unwrap();
    assert_eq!(providers["providers"][0]["type"].as_str(), Some("file"));
    let mut uids = BTreeSet::new();
    for path in files_in(&grafana.join("dashboards"), ".json") {
        let at = path.display().to_string();
        let dashboard: Value = serde_json::from_str(&read(&path)).unwrap();
        assert!(
            uids.insert(dashboard["uid"].as_str().unwrap().to_owned()),
            "{at}: a uid of another dashboard"
        );
        let mut ids = BTreeSet::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            let title = &panel["title"];
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{at}: {title}: id taken"
            );
            assert!(
                panel["gridPos"]["w"].as_u64().unwrap() <= 24,
                "{at}: {title}"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(panel["datasource"]["uid"], uid, "{at}: {title}");
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{at}: {title}: no query");
            for target in targets {
                assert_eq!(target["datasource"]["uid"], uid, "{at}: {title}");
                assert!(
                    !target["expr"].as_str().unwrap().is_empty(),
                    "{at}: {title}"
                );
            }
        }
    }
    assert_eq!(uids.len(), 3, "{uids:?}");
}

/// Every PromQL expression of the rules, the Managed Prometheus rules and the dashboards,
/// with where it is; and the names the recording rules define.
fn every_expression() -> (Vec<(String, String)>, BTreeSet<String>) {
    let mut expressions = Vec::new();
    let mut recorded = BTreeSet::new();
    let mut rule_sets: Vec<(PathBuf, Yaml)> = rule_files();
    let managed = repository().join("deploy/k8s/monitoring/rules.yaml");
    for document in serde_yaml_ng::Deserializer::from_str(&read(&managed)) {
        let object = <Yaml as serde::Deserialize>::deserialize(document).unwrap();
        rule_sets.push((managed.clone(), object["spec"].clone()));
    }
    for (path, file) in &rule_sets {
        for rule in rules_of(file) {
            let name = rule["record"].as_str().or(rule["alert"].as_str()).unwrap();
            if let Some(record) = rule["record"].as_str() {
                recorded.insert(record.to_owned());
            }
            expressions.push((
                format!("{}: {name}", shown(path)),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for path in files_in(&monitoring_dir().join("grafana/dashboards"), ".json") {
        let dashboard: Value = serde_json::from_str(&read(&path)).unwrap();
        let mut found = Vec::new();
        collect_expressions(&dashboard, "", &mut found);
        assert!(!found.is_empty(), "{}: no queries", path.display());
        for (title, expr) in found {
            expressions.push((format!("{}: {title}", shown(&path)), expr));
        }
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let query = match &variable["query"] {
                Value::String(query) => query.clone(),
                Value::Object(query) => query["query"].as_str().unwrap_or_default().to_owned(),
                _ => String::new(),
            };
            // Grafana's `label_values(metric, label)`: only the metric is PromQL.
            if let Some(arguments) = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
            {
                let metric = arguments.rsplit_once(',').map_or(arguments, |(m, _)| m);
                expressions.push((
                    format!("{}: variable {}", shown(&path), variable["name"]),
                    metric.trim().to_owned(),
                ));
            }
        }
    }
    (expressions, recorded)
}

/// Every `expr` of a dashboard's panels (rows' panels included), with its panel's title.
fn collect_expressions(value: &Value, title: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            let title = object.get("title").and_then(Value::as_str).unwrap_or(title);
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => found.push((title.to_owned(), expr.clone())),
                    _ => collect_expressions(value, title, found),
                }
            }
        }
        Value::Array(values) => {
            for value in values {
                collect_expressions(value, title, found);
            }
        }
        _ => {}
    }
}

/// The names of every sample in a Prometheus text exposition (`mall_x_total`,
/// `mall_y_bucket`, ...).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_metric_a_dashboard_or_a_rule_reads_is_exposed_by_the_shop_under_load() {
    let shop = Shop::start_split(&[]).await;
    // A short load that takes every way the dashboards show: confirmed orders, one
    // rejected for stock, one declined by the (simulated) provider, one cancelled.
    let product = shop.add_product(1_000, 40).await;
    let scarce = shop.add_product(1_000, 1).await;
    let declining = shop.add_product(10_402, 5).await;
    let mut confirmed = Vec::new();
    for _ in 0..17 {
        confirmed.push(shop.place_order(&product, 1).await);
    }
    let out_of_stock = shop.place_order(&scarce, 2).await;
    let declined = shop.place_order(&declining, 1).await;
    for order in &confirmed {
        assert_eq!(shop.final_order(order).await["status"], "DELIVERING");
    }
    assert_eq!(shop.final_order(&out_of_stock).await["status"], "REJECTED");
    assert_eq!(shop.final_order(&declined).await["status"], "REJECTED");
    let cancelled = &confirmed[0];
    let cancel = shop
        .post_as(
            &shop.token,
            &format!("/api/orders/{cancelled}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    let started = Instant::now();
    while shop.order(cancelled).await["status"] != "CANCELLED" {
        assert!(started.elapsed() < Duration::from_secs(30), "not cancelled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut exposed: BTreeSet<String> = BTreeSet::new();
    let mut expositions = BTreeMap::new();
    for (service, offset) in SERVICES {
        let text = shop.metrics_text(offset).await;
        exposed.extend(sample_names(&text));
        expositions.insert(service, text);
    }
    let (expressions, recorded) = every_expression();
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (at, expr) in &expressions {
        for name in metric_names(expr) {
            // `up` (of every scrape) and `ALERTS` are Prometheus's own.
            if !exposed.contains(&name)
                && !recorded.contains(&name)
                && !["up", "ALERTS"].contains(&name.as_str())
            {
                missing.entry(name).or_default().push(at.clone());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried but exposed by no service of the shop (nor recorded by a rule):\n{}\n\nexposed: {exposed:?}",
        missing
            .iter()
            .map(|(name, places)| format!("  {name}: {}", places.join("; ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        expressions.len() > 40,
        "{} expressions: the dashboards and rules were not all read",
        expressions.len()
    );

    // The saga SLI reads the 2.5 s bucket of order's saga histogram
    // (deploy/monitoring/rules/slo.yml): it must be one of its boundaries.
    assert!(
        expositions["order"].lines().any(|line| {
            line.starts_with("mall_saga_duration_seconds_bucket{")
                && line.contains("until=\"confirmed\"")
                && line.contains("le=\"2.5\"")
        }),
        "order's saga histogram has no le=\"2.5\" bucket for until=\"confirmed\":\n{}",
        expositions["order"]
    );
}
