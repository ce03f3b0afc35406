//! `mall canary`: starts, shows, promotes, aborts and ends a canary through the gateway's
//! admin API (`/api/admin/canaries`), as an operator or a pipeline step would.

use std::{sync::Mutex, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::loadgen::parse_shop_url;

#[derive(Args)]
pub struct Settings {
    #[command(subcommand)]
    action: Action,
    /// The shop's gateway.
    #[arg(long, global = true, env = "MALL_GATEWAY_URL",
          default_value = "http://127.0.0.1:8080", value_parser = parse_shop_url)]
    gateway: String,
    /// An admin's token; without one, --admin-email logs in.
    #[arg(long, global = true, env = "MALL_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// An admin account (its password comes from MALL_ADMIN_PASSWORD).
    #[arg(long, global = true, env = "MALL_ADMIN_EMAIL")]
    admin_email: Option<String>,
    #[arg(
        long,
        global = true,
        env = "MALL_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    admin_password: Option<String>,
    /// Print the gateway's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Action {
    /// Send a service's requests to a new version's instances: the cohort always, and the
    /// first step's share of everyone else, growing each interval while the canary does as
    /// well as the stable version; rolled back at once when it does worse.
    Start {
        /// The service: auth, product, order, delivery, mypage or payment.
        service: String,
        /// Base URL of a new version's instance (repeat, or separate with commas).
        #[arg(long = "instance", required = true, value_delimiter = ',')]
        instances: Vec<String>,
        /// A customer id that always meets the canary (repeat, or separate with commas).
        #[arg(long = "customer", value_delimiter = ',')]
        customers: Vec<Uuid>,
        /// A role whose holders always meet the canary (`admin`: the shop's staff).
        #[arg(long = "role", value_delimiter = ',')]
        roles: Vec<String>,
        /// Percentages of everyone else, one per step, the last 100 (0: the cohort only).
        #[arg(long, default_value = "5,25,50,100", value_delimiter = ',')]
        steps: Vec<u8>,
        /// How long each step lasts before it is promoted.
        #[arg(long, default_value_t = 60)]
        interval_secs: u64,
        /// How much higher than the stable version's the canary's error rate may be (0.01:
        /// one percentage point).
        #[arg(long, default_value_t = 0.01)]
        max_error_rate_increase: f64,
        /// How much higher than the stable version's the canary's p99 may be.
        #[arg(long, default_value_t = 100)]
        max_p99_increase_ms: u64,
        /// Answers a version must have given in a step before it is judged.
        #[arg(long, default_value_t = 20)]
        min_requests: u64,
        /// Follow the canary until it is promoted (exit 0) or rolled back (exit 1), as a
        /// pipeline step does.
        #[arg(long)]
        wait: bool,
    },
    /// Every canary, or one service's: its step, share, and each version's requests,
    /// errors and p99.
    Status { service: Option<String> },
    /// Send every request to the canary now, skipping the remaining steps.
    Promote { service: String },
    /// Send every request to the stable version now.
    Abort { service: String },
    /// Forget a promoted (or rolled-back) canary once the stable version runs its code.
    End { service: String },
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let gateway = Gateway::connect(&settings).await?;
    let json = settings.json;
    match settings.action {
        Action::Start {
            service,
            instances,
            customers,
            roles,
            steps,
            interval_secs,
            max_error_rate_increase,
            max_p99_increase_ms,
            min_requests,
            wait,
        } => {
            let plan = json!({
                "instances": instances, "customers": customers, "roles": roles, "steps": steps,
                "interval_secs": interval_secs, "max_error_rate_increase": max_error_rate_increase,
                "max_p99_increase_ms": max_p99_increase_ms, "min_requests": min_requests,
            });
            let status = gateway.call(Method::PUT, &service, "", Some(plan)).await?;
            show(&status, json);
            if wait {
                follow(&gateway, &service, json).await?;
            }
        }
        Action::Status { service: None } => {
            let all = gateway.call(Method::GET, "", "", None).await?;
            let canaries = all["canaries"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{all:#}");
            } else if canaries.is_empty() {
                println!("no canary");
            }
            for status in canaries.iter().filter(|_| !json) {
                show(status, false);
            }
        }
        Action::Status {
            service: Some(service),
        } => show(&gateway.call(Method::GET, &service, "", None).await?, json),
        Action::Promote { service } => show(
            &gateway
                .call(Method::POST, &service, "/promote", None)
                .await?,
            json,
        ),
        Action::Abort { service } => show(
            &gateway.call(Method::POST, &service, "/abort", None).await?,
            json,
        ),
        Action::End { service } => {
            gateway.call(Method::DELETE, &service, "", None).await?;
            println!("{service}: canary ended; every request goes to its stable instances");
        }
    }
    Ok(())
}

/// Prints each change of the canary until it stops progressing; fails on a rollback.
async fn follow(gateway: &Gateway, service: &str, json: bool) -> anyhow::Result<()> {
    let mut shown = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = gateway.call(Method::GET, service, "", None).await?;
        let log = status["log"].as_array().cloned().unwrap_or_default();
        for entry in log.iter().skip(shown).filter(|_| !json) {
            println!(
                "{}  {}",
                entry["at"].as_str().unwrap_or(""),
                entry["what"].as_str().unwrap_or("")
            );
        }
        shown = log.len();
        match status["phase"].as_str() {
            Some("progressing") => {}
            Some("promoted") => {
                show(&status, json);
                return Ok(());
            }
            _ => {
                show(&status, json);
                anyhow::bail!("the canary of {service} was rolled back");
            }
        }
    }
}

fn show(status: &Value, json: bool) {
    if json {
        println!("{status:#}");
        return;
    }
    let plan = &status["plan"];
    let steps = plan["steps"].as_array().map_or(0, Vec::len);
    println!(
        "{}: {}, step {} of {steps} ({} % of everyone else, plus {} listed customers and roles {}), \
         {} s into a {} s step",
        status["service"].as_str().unwrap_or("?"),
        status["phase"].as_str().unwrap_or("?").replace('_', " "),
        status["step"].as_u64().unwrap_or(0) + 1,
        status["weight_percent"],
        plan["customers"].as_array().map_or(0, Vec::len),
        plan["roles"],
        status["step_started_secs_ago"],
        plan["interval_secs"],
    );
    println!("  instances: {}", plan["instances"]);
    println!(
        "  {:<18} {:>10} {:>8} {:>10}",
        "", "requests", "errors", "p99 ms"
    );
    for (period, figures) in [("since the start", "totals"), ("this step", "this_step")] {
        for version in ["stable", "canary"] {
            let figures = &status[figures][version];
            println!(
                "  {:<18} {:>10} {:>8} {:>10}",
                format!("{version}, {period}"),
                figures["requests"],
                figures["errors"],
                figures["p99_ms"]
                    .as_f64()
                    .map_or("-".into(), |ms| format!("{ms:.1}")),
            );
        }
    }
    if let Some(reason) = status["reason"].as_str() {
        println!("  reason: {reason}");
    }
}

/// The gateway's canary API, with an admin's token.
struct Gateway {
    client: Client,
    base: String,
    /// An admin's email and password, to log in again when a token expires while
    /// `--wait` follows a canary longer than a token lives.
    credentials: Option<(String, String)>,
    token: Mutex<String>,
}

impl Gateway {
    async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let client = Client::builder().timeout(Duration::from_secs(10)).build()?;
        let base = settings.gateway.trim_end_matches('/').to_owned();
        let credentials = match (&settings.admin_email, &settings.admin_password) {
            (Some(email), Some(password)) => Some((email.clone(), password.clone())),
            (Some(_), None) => anyhow::bail!("--admin-email needs MALL_ADMIN_PASSWORD"),
            (None, _) => None,
        };
        let mut gateway = Gateway {
            client,
            base,
            credentials,
            token: Mutex::new(settings.admin_token.clone().unwrap_or_default()),
        };
        match (&settings.admin_token, &gateway.credentials) {
            (Some(_), _) => {}
            (None, Some(_)) => {
                *gateway.token.get_mut().expect("not shared yet") = gateway.login().await?
            }
            (None, None) => anyhow::bail!(
                "say who you are: MALL_ADMIN_TOKEN, or MALL_ADMIN_EMAIL and MALL_ADMIN_PASSWORD \
                 of an admin account"
            ),
        }
        Ok(gateway)
    }

    async fn login(&self) -> anyhow::Result<String> {
        let (email, password) = self
            .credentials
            .as_ref()
            .context("no admin account to log in")?;
        let answer = self
            .client
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        let body = answer_of(answer).await?;
        Ok(body["access_token"]
            .as_str()
            .context("the login answer holds no token")?
            .to_owned())
    }

    async fn call(
        &self,
        method: Method,
        service: &str,
        action: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let path = match service {
            "" => "/api/admin/canaries".to_owned(),
            service => format!("/api/admin/canaries/{service}{action}"),
        };
        let send = |token: String| {
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            request.send()
        };
        let token = self.token.lock().expect("token lock poisoned").clone();
        let mut answer = send(token).await;
        if let (Ok(refused), Some(_)) = (&answer, &self.credentials)
            && refused.status() == StatusCode::UNAUTHORIZED
        {
            let token = self.login().await?;
            *self.token.lock().expect("token lock poisoned") = token.clone();
            answer = send(token).await;
        }
        let answer =
            answer.with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        answer_of(answer).await
    }
}

/// The body of a successful answer; a problem's detail as the error otherwise.
async fn answer_of(answer: reqwest::Response) -> anyhow::Result<Value> {
    let status = answer.status();
    let body: Value = match status {
        StatusCode::NO_CONTENT => Value::Null,
        _ => answer.json().await.unwrap_or(Value::Null),
    };
    if status.is_success() {
        return Ok(body);
    }
    anyhow::bail!(
        "the gateway answered {status}: {}",
        body["detail"]
            .as_str()
            .or(body["title"].as_str())
            .unwrap_or("no detail")
    )
}
