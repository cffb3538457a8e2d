//! Unit tests for the `/proc` parsers.

use super::*;

#[test]
fn cpu_time_is_read_after_the_command_name() {
    // Field 2 holds spaces and a ')' on purpose.
    let stat = "4242 (consult hub) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                250 50 0 0 20 0 3 0 100 1000000 500 18446744073709551615";
    assert_eq!(parse_cpu_us(stat, 100).unwrap(), 3_000_000);
}

#[test]
fn rss_lines_are_read_in_kib() {
    let status = "Name:\tconsult-hub\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\n";
    assert_eq!(parse_status_kib(status, "VmRSS:"), Some(10240));
    assert_eq!(parse_status_kib(status, "VmHWM:"), Some(20480));
    assert_eq!(parse_status_kib(status, "VmSwap:"), None);
}

#[test]
fn this_process_can_be_sampled() {
    let reading = sample(&[std::process::id()]).unwrap();
    assert!(reading.rss_kib > 0);
    assert!(reading.fds > 0);
}

#[test]
fn machine_busy_leaves_out_idle_and_iowait() {
    let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\n";
    let earlier = MachineTimes::default();
    let now = parse_machine_times(stat).unwrap();
    assert_eq!(now.busy, 150);
    assert_eq!(now.total, 1000);
    assert_eq!(now.cores, 2);
    assert!((now.busy_percent_of_core_since(&earlier) - 30.0).abs() < 1e-9);
}
