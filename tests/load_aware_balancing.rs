//! `least_request` and `ewma` against round robin, through the real binary: one fast and one
//! slow instance under concurrent load. Round robin gives both the same share whatever their
//! speed; the load-aware balancers move the share to the fast one.

mod support;
use std::time::Duration;
use support::scripted::Scripted;
use support::*;

/// A server answering every request after `delay`.
fn server(delay: Duration) -> Scripted {
    Scripted::start(move |_| {
        std::thread::sleep(delay);
        (200, vec![], "ok".to_string())
    })
}

/// The slow instance's share of `threads × per_thread` concurrent requests under `balance`.
fn slow_share(balance: &str, threads: usize, per_thread: usize) -> f64 {
    let fast = server(Duration::ZERO);
    let slow = server(Duration::from_millis(40));
    let gw = Gateway::start(&format!(
        "routes: [{{name: api, service: s}}]\nservices:\n  s: {{balance: {balance}, instances: [\"{}\", \"{}\"]}}\n",
        fast.addr, slow.addr
    ));
    let addr = gw.addr;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(move || {
                for _ in 0..per_thread {
                    assert_eq!(get(addr, "/", &[]).status, 200);
                }
            });
        }
    });
    let (f, s) = (fast.count(), slow.count());
    assert_eq!(
        f + s,
        threads * per_thread,
        "every request reached one instance"
    );
    s as f64 / (f + s) as f64
}

#[test]
fn least_request_and_ewma_send_less_to_a_slow_instance_than_round_robin() {
    let round_robin = slow_share("round_robin", 8, 40);
    let least_request = slow_share("least_request", 8, 40);
    let ewma = slow_share("ewma", 8, 40);
    eprintln!(
        "slow instance's share: round_robin {round_robin:.2}, least_request {least_request:.2}, ewma {ewma:.2}"
    );
    assert!(
        (0.4..=0.6).contains(&round_robin),
        "round robin ignores speed: {round_robin}"
    );
    assert!(
        least_request < round_robin - 0.15,
        "least_request {least_request} vs round robin {round_robin}"
    );
    assert!(
        ewma < round_robin - 0.15,
        "ewma {ewma} vs round robin {round_robin}"
    );
}

#[test]
fn ewma_moves_even_sequential_traffic_away_from_a_high_latency_instance() {
    // One request at a time: in-flight counts are always 0, so only the latency average can
    // tell the instances apart.
    let ewma = slow_share("ewma", 1, 150);
    let least_request = slow_share("least_request", 1, 150);
    eprintln!("sequential: ewma {ewma:.2}, least_request {least_request:.2}");
    assert!(ewma < 0.2, "ewma {ewma}");
    assert!(
        (0.3..=0.7).contains(&least_request),
        "least_request sees no difference without concurrency: {least_request}"
    );
}
