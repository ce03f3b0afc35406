//! `mall loadgen`: real customers through the gateway. Signs customers up, places orders
//! with a chosen concurrency, duration and mix, follows each to its final state, and
//! reports confirmed orders/s, saga latency (placed → confirmed) percentiles and errors,
//! with a JSON result and an SVG plot.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use reqwest::{Client, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Args)]
pub struct Settings {
    /// The shop's gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = parse_shop_url)]
    url: String,
    /// An admin account, to create the products the run orders (its password comes from
    /// MALL_ADMIN_PASSWORD).
    #[arg(long)]
    admin_email: String,
    #[arg(long, env = "MALL_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: String,
    /// Customers to sign up; each worker takes turns with them.
    #[arg(long, default_value_t = 64)]
    customers: usize,
    /// Orders in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to place orders, in seconds.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Percentages of normal, over-stock, declined and cancelled orders.
    #[arg(long, default_value = "85,5,5,5")]
    mix: String,
    /// Folder for result.json and plot.svg.
    #[arg(long, default_value = "loadgen-result")]
    out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Normal,
    OverStock,
    Declined,
    Cancelled,
}

/// The final state each kind must reach.
fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Normal => "DELIVERING",
        Kind::OverStock | Kind::Declined => "REJECTED",
        Kind::Cancelled => "CANCELLED",
    }
}

/// How often a worker looks at its order; bounds the latency's resolution.
const POLL: Duration = Duration::from_millis(10);
const SAGA_TIMEOUT: Duration = Duration::from_secs(60);

struct Results {
    latency_us: Vec<(f64, u64)>,
    finals: BTreeMap<String, usize>,
    errors: BTreeMap<String, usize>,
    confirmed_at: Vec<f64>,
    /// When the shop last answered anything, even an error.
    last_answer: Instant,
}

/// A shop that has answered nothing for this long has stopped: the run ends, failed,
/// rather than counting connection errors until its time is up.
const SILENCE_LIMIT: Duration = Duration::from_secs(10);

pub fn parse_shop_url(value: &str) -> Result<String, String> {
    match reqwest::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Ok(value.to_owned())
        }
        Ok(_) => Err(format!("`{value}` is not an http:// or https:// address")),
        Err(error) => Err(format!(
            "`{value}` is not a URL ({error}), e.g. http://127.0.0.1:8080"
        )),
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let mix: Vec<u32> = settings
        .mix
        .split(',')
        .map(|p| p.trim().parse())
        .collect::<Result<_, _>>()
        .context("--mix is four percentages, e.g. 85,5,5,5")?;
    anyhow::ensure!(
        mix.len() == 4 && mix.iter().sum::<u32>() == 100,
        "--mix is four percentages adding up to 100"
    );
    anyhow::ensure!(
        settings.concurrency >= 1 && settings.customers >= 1,
        "--concurrency and --customers are at least 1"
    );
    let client = Client::builder().timeout(Duration::from_secs(30)).build()?;
    let shop = Shop::new(client.clone(), &settings.url);

    let admin = shop
        .login(&settings.admin_email, &settings.admin_password)
        .await?;
    let products = Arc::new(shop.test_products(&admin, "loadgen").await?);

    let bar = ProgressBar::new(settings.customers as u64).with_style(ProgressStyle::with_template(
        "signing up {pos}/{len} {wide_bar}",
    )?);
    let mut tokens = Vec::new();
    let run_id = uuid::Uuid::now_v7();
    for i in 0..settings.customers {
        let email = format!("loadgen-{run_id}-{i}@load.12st");
        tokens.push(shop.sign_up(&email, &format!("Load {i}")).await?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let tokens = Arc::new(tokens);

    let results = Arc::new(Mutex::new(Results {
        latency_us: Vec::new(),
        finals: BTreeMap::new(),
        errors: BTreeMap::new(),
        confirmed_at: Vec::new(),
        last_answer: Instant::now(),
    }));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(settings.duration_secs);
    let bar = ProgressBar::new(settings.duration_secs).with_style(ProgressStyle::with_template(
        "{elapsed_precise} {wide_bar} {pos}/{len} s  {msg}",
    )?);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..settings.concurrency {
        let (shop, tokens, products, results, mix) = (
            shop.clone(),
            tokens.clone(),
            products.clone(),
            results.clone(),
            mix.clone(),
        );
        workers.spawn(async move {
            let mut turn = worker;
            while Instant::now() < deadline && !silent(&results) {
                let kind = pick(&mix);
                let token = &tokens[turn % tokens.len()];
                turn += settings.concurrency;
                let product = match kind {
                    Kind::OverStock => &products[1],
                    Kind::Declined => &products[2],
                    Kind::Normal | Kind::Cancelled => &products[0],
                };
                let outcome = shop.one_order(token, product, kind).await;
                let now = started.elapsed().as_secs_f64();
                let mut results = results.lock().expect("results lock poisoned");
                if !matches!(&outcome, Err(error) if error.ends_with("connection")) {
                    results.last_answer = Instant::now();
                }
                match outcome {
                    Ok((status, latency)) => {
                        *results
                            .finals
                            .entry(format!("{kind:?} -> {status}"))
                            .or_default() += 1;
                        if status != expected(kind) {
                            *results
                                .errors
                                .entry(format!("{kind:?} ended {status}"))
                                .or_default() += 1;
                        }
                        if let Some(latency) = latency {
                            results.latency_us.push((now, latency.as_micros() as u64));
                            results.confirmed_at.push(now);
                        }
                    }
                    Err(error) => *results.errors.entry(error).or_default() += 1,
                }
            }
        });
    }
    while Instant::now() < deadline && !silent(&results) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (confirmed, errors) = {
            let results = results.lock().expect("results lock poisoned");
            (
                results.confirmed_at.len(),
                results.errors.values().sum::<usize>(),
            )
        };
        bar.set_position(started.elapsed().as_secs().min(settings.duration_secs));
        bar.set_message(format!("{confirmed} confirmed, {errors} errors"));
    }
    while workers.join_next().await.is_some() {}
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        !silent(&results),
        "the shop at {} has not answered for {} s: stopped after {elapsed:.0} s",
        settings.url,
        SILENCE_LIMIT.as_secs()
    );
    let results = Arc::try_unwrap(results)
        .ok()
        .context("workers finished")?
        .into_inner()?;
    report(&settings, &results, elapsed)
}

/// Whether the shop has stopped answering.
fn silent(results: &Mutex<Results>) -> bool {
    let results = results.lock().expect("results lock poisoned");
    results.last_answer.elapsed() > SILENCE_LIMIT
}

fn pick(mix: &[u32]) -> Kind {
    let roll = rand::rng().random_range(0..100);
    let kinds = [
        Kind::Normal,
        Kind::OverStock,
        Kind::Declined,
        Kind::Cancelled,
    ];
    let mut upto = 0;
    for (kind, share) in kinds.into_iter().zip(mix) {
        upto += share;
        if roll < upto {
            return kind;
        }
    }
    Kind::Normal
}

/// A shop's gateway, as the load generator and `mall chaos` use it.
#[derive(Clone)]
pub struct Shop {
    client: Client,
    url: String,
}

impl Shop {
    pub fn new(client: Client, url: &str) -> Self {
        Shop {
            client,
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request.send().await?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "{status}: {}",
            response.text().await.unwrap_or_default()
        );
        Ok(response.json().await?)
    }

    /// Signs a customer up (password `generated password`) and returns their token.
    pub async fn sign_up(&self, email: &str, name: &str) -> anyhow::Result<String> {
        const PASSWORD: &str = "generated password";
        let body = json!({"email": email, "password": PASSWORD, "name": name});
        self.send::<Value>(self.client.post(self.at("/api/auth/signup")).json(&body))
            .await?;
        self.login(email, PASSWORD).await
    }

    /// Adds the three products a run orders, as `admin`: plenty in stock, none left, and
    /// one whose price (ends in 402) the simulated provider declines. Their ids, in order.
    pub async fn test_products(&self, admin: &str, by: &str) -> anyhow::Result<[String; 3]> {
        let mut ids = Vec::new();
        for (name, price, stock) in [
            ("plenty", 1_000, 1_000_000),
            ("none left", 1_000, 0),
            ("card declined", 10_402, 1_000_000),
        ] {
            let body = json!({"name": format!("{by}: {name}"), "description": format!("created by mall {by}"), "price": price, "stock": stock});
            let created: Value = self
                .send(
                    self.client
                        .post(self.at("/api/products"))
                        .bearer_auth(admin)
                        .json(&body),
                )
                .await?;
            ids.push(created["id"].as_str().context("no product id")?.to_owned());
        }
        Ok(ids.try_into().expect("three products"))
    }

    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let body = json!({"email": email, "password": password});
        let token: Value = self
            .send(self.client.post(self.at("/api/auth/login")).json(&body))
            .await?;
        Ok(token["access_token"]
            .as_str()
            .context("no token")?
            .to_owned())
    }

    /// Places one order of `kind` and follows it to its final state; the latency is the
    /// time from the 202 to the first sight of it confirmed.
    async fn one_order(
        &self,
        token: &str,
        product: &str,
        kind: Kind,
    ) -> Result<(String, Option<Duration>), String> {
        let body = json!({"product_id": product, "quantity": 1, "address": "1 Teheran-ro, Gangnam-gu, Seoul"});
        let placed_at = Instant::now();
        let response = self
            .client
            .post(self.at("/api/orders"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await;
        let order: Value = match response {
            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                r.json().await.map_err(|e| format!("place: {e}"))?
            }
            Ok(r) => return Err(format!("place: {}", r.status())),
            Err(e) => {
                return Err(format!(
                    "place: {}",
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "connection"
                    }
                ));
            }
        };
        let order_id = order["order_id"]
            .as_str()
            .ok_or("place: no order id")?
            .to_owned();
        if kind == Kind::Cancelled {
            let cancel = self
                .client
                .post(self.at(&format!("/api/orders/{order_id}/cancel")))
                .bearer_auth(token)
                .send()
                .await;
            match cancel {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => return Err(format!("cancel: {}", r.status())),
                Err(_) => return Err("cancel: connection".into()),
            }
        }
        let mut confirmed = None;
        loop {
            let response = self
                .client
                .get(self.at(&format!("/api/orders/{order_id}")))
                .bearer_auth(token)
                .send()
                .await;
            let status = match response {
                Ok(r) if r.status().is_success() => {
                    let order: Value = r.json().await.map_err(|e| format!("follow: {e}"))?;
                    if order["request"]["status"] == "PENDING" {
                        // A cancel once confirmed: final once delivery answered it.
                        "REQUEST_PENDING".into()
                    } else {
                        order["status"].as_str().unwrap_or_default().to_owned()
                    }
                }
                Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED".into(),
                Ok(r) => return Err(format!("follow: {}", r.status())),
                Err(_) => return Err("follow: connection".into()),
            };
            if confirmed.is_none()
                && matches!(status.as_str(), "CONFIRMED" | "DELIVERING" | "DELIVERED")
            {
                confirmed = Some(placed_at.elapsed());
            }
            if !matches!(
                status.as_str(),
                "PENDING" | "CONFIRMED" | "RATE_LIMITED" | "REQUEST_PENDING"
            ) {
                return Ok((status, confirmed.filter(|_| kind == Kind::Normal)));
            }
            if placed_at.elapsed() > SAGA_TIMEOUT {
                return Err("saga did not finish within 60 s".into());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn report(settings: &Settings, results: &Results, elapsed: f64) -> anyhow::Result<()> {
    let mut histogram = Histogram::<u64>::new(3)?;
    for (_, micros) in &results.latency_us {
        histogram.record((*micros).max(1))?;
    }
    let ms = |micros: u64| micros as f64 / 1_000.0;
    let confirmed_per_sec = results.confirmed_at.len() as f64 / elapsed;
    let latency = json!({
        "p50_ms": ms(histogram.value_at_quantile(0.50)),
        "p90_ms": ms(histogram.value_at_quantile(0.90)),
        "p99_ms": ms(histogram.value_at_quantile(0.99)),
        "max_ms": ms(histogram.max()),
    });
    let mut per_second: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (at, micros) in &results.latency_us {
        per_second.entry(*at as u64).or_default().push(*micros);
    }
    let timeline: Vec<Value> = per_second
        .iter()
        .map(|(second, latencies)| {
            let mut sorted = latencies.clone();
            sorted.sort_unstable();
            let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
            json!({"second": second, "confirmed": sorted.len(), "p99_ms": ms(p99)})
        })
        .collect();
    let result = json!({
        "url": settings.url,
        "customers": settings.customers,
        "concurrency": settings.concurrency,
        "duration_secs": elapsed,
        "mix": {"normal": settings.mix},
        "confirmed_orders_per_sec": confirmed_per_sec,
        "saga_latency_placed_to_confirmed": latency,
        "final_states": results.finals,
        "errors": results.errors,
        "timeline": timeline,
    });
    std::fs::create_dir_all(&settings.out)?;
    std::fs::write(
        settings.out.join("result.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    std::fs::write(settings.out.join("plot.svg"), plot(&timeline))?;
    println!(
        "confirmed orders: {} in {elapsed:.1} s = {confirmed_per_sec:.1}/s",
        results.confirmed_at.len()
    );
    println!(
        "saga latency placed -> confirmed (polled every {} ms): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        POLL.as_millis(),
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.90)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.max())
    );
    println!("final states: {:?}", results.finals);
    println!("errors: {:?}", results.errors);
    println!(
        "written: {}/result.json, {}/plot.svg",
        settings.out.display(),
        settings.out.display()
    );
    Ok(())
}

/// Confirmed orders per second (bars) and p99 latency (line) over the run.
fn plot(timeline: &[Value]) -> String {
    let (width, height, margin) = (800.0, 300.0, 40.0);
    let seconds = timeline.len().max(1) as f64;
    let max_confirmed = timeline
        .iter()
        .filter_map(|p| p["confirmed"].as_f64())
        .fold(1.0, f64::max);
    let max_p99 = timeline
        .iter()
        .filter_map(|p| p["p99_ms"].as_f64())
        .fold(1.0, f64::max);
    let x = |i: usize| margin + (width - 2.0 * margin) * i as f64 / seconds;
    let bar_width = (width - 2.0 * margin) / seconds * 0.8;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"{margin}\" y=\"20\">confirmed orders/s (bars, max {max_confirmed:.0}) and p99 saga latency (line, max {max_p99:.1} ms)</text>\n"
    );
    let mut line = String::new();
    for (i, point) in timeline.iter().enumerate() {
        let confirmed = point["confirmed"].as_f64().unwrap_or(0.0);
        let bar = (height - 2.0 * margin) * confirmed / max_confirmed;
        svg += &format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar_width:.1}\" height=\"{bar:.1}\" fill=\"#7aa6d8\"/>\n",
            x(i),
            height - margin - bar
        );
        let p99 = point["p99_ms"].as_f64().unwrap_or(0.0);
        line += &format!(
            "{:.1},{:.1} ",
            x(i) + bar_width / 2.0,
            height - margin - (height - 2.0 * margin) * p99 / max_p99
        );
    }
    svg += &format!(
        "<polyline points=\"{line}\" fill=\"none\" stroke=\"#d9534f\" stroke-width=\"2\"/>\n"
    );
    svg += &format!(
        "<line x1=\"{margin}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/>\n<text x=\"{margin}\" y=\"{2}\">0 s</text><text x=\"{3}\" y=\"{2}\">{seconds:.0} s</text>\n</svg>\n",
        height - margin,
        width - margin,
        height - margin + 15.0,
        width - margin - 30.0
    );
    svg
}
