//! `mall chaos` refuses to pass a run that proves nothing or ends an order wrongly: short
//! runs of it, on a split shop of its own, each made to fail one way.

use std::process::{Command, Output};

use crate::helpers::free_ports;

/// `mall chaos` for `duration_secs` with a kill every second, two customers and `faults`,
/// in an environment with `env` added (its shop inherits it).
fn chaos(duration_secs: u32, faults: &str, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["chaos", "--duration-secs", &duration_secs.to_string()])
        .args(["--kill-every-ms", "1000", "--concurrency", "2"])
        .args(["--base-port", &free_ports(7).to_string()])
        .args(["--faults", faults])
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_chaos_run_that_confirms_nothing_and_rejects_normal_orders_fails_saying_so() {
    // Every card is over the limit: normal orders end REJECTED, for a reason that is no
    // doing of chaos's.
    let run = chaos(2, "", &[("MALL_PAYMENT_LIMIT_KRW", "500")]);
    let said = said(&run);
    assert!(!run.status.success(), "{said}");
    assert!(
        said.contains("(Normal) ended REJECTED: payment declined: amount exceeds the card limit"),
        "{said}"
    );
    assert!(said.contains("not done: no order was confirmed"), "{said}");
}

#[test]
fn a_chaos_run_whose_crash_points_never_fire_fails_saying_so() {
    let run = chaos(2, "order:crash-at=before-publish@0", &[]);
    let said = said(&run);
    assert!(!run.status.success(), "{said}");
    assert!(
        said.contains("not done: no injected crash happened (order:crash-at=before-publish@0)"),
        "{said}"
    );
    assert!(!said.contains("not done: no order was confirmed"), "{said}");
}
