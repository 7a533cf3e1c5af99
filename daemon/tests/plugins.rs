//! Plugins end to end: the real `fdmd` binary loads the real built `.so` files (Rust plugins and a
//! C plugin compiled here against the header), refuses what it must, and keeps serving when a
//! plugin panics or its helper process aborts.
#![allow(clippy::unwrap_used)]

mod plugin_support;
mod support;

use hyper::{Method, StatusCode};
use plugin_support::*;
use serde_json::Value;
use std::net::SocketAddr;
use support::{Daemon, free_port};

const EXAMPLE: &str = "libfdmd_plugin_example_vendor.so";

fn status(d: &Daemon) -> Value {
    let (code, v) = d.request(Method::GET, "/v1/status", None, None);
    assert_eq!(code, StatusCode::OK);
    v
}

#[test]
fn example_vendor_and_c_plugins_serve_in_process_and_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin(EXAMPLE), "example.so");
    let c_so = dir.path().join("c-test.so");
    build_c_plugin(&c_so, &[]);
    plugins.add_signed(&c_so, "c-test.so");
    let (inproc, isolated, c_port) = (free_port(), free_port(), free_port());
    let config = plugins.section(&format!(
        "{}{}{}",
        instance("vendor-a", "example.so", false, inproc, "{}"),
        instance("vendor-b", "example.so", true, isolated, "{}"),
        instance("c-test", "c-test.so", true, c_port, "{}"),
    ));
    let d = Daemon::start_dev_with_config(&config);
    for port in [inproc, isolated] {
        let mut c = LineClient::connect(([127, 0, 0, 1], port).into());
        assert_eq!(c.ask("PING").as_deref(), Some("PONG"));
        let status_line = c.ask("STATUS").unwrap();
        assert!(
            status_line.starts_with("STATUS ready DEVFDMD0001 DEVSW-"),
            "{status_line}"
        );
        let id = format!("vendor-order-{port}");
        let first = c.ask(&format!("ORDER {}", order_json(&id))).unwrap();
        let parts: Vec<&str> = first.split(' ').collect();
        assert_eq!(parts[0], "OK", "{first}");
        assert_eq!(parts[2], "NS");
        assert_eq!(parts[4], "000");
        let again = c.ask(&format!("ORDER {}", order_json(&id))).unwrap();
        assert_eq!(
            again,
            format!("OK {} NS {} 102", parts[1], parts[3]),
            "a resend is answered from the journal"
        );
        let bad = c.ask("ORDER {\"request_id\":\"x\"}").unwrap();
        assert!(bad.starts_with("ERR 207"), "{bad}");
        assert_eq!(c.ask("NOPE").as_deref(), Some("ERR 206 unknown command"));
        // the protocol's faults are off without test_faults
        assert_eq!(c.ask("PANIC").as_deref(), Some("ERR 206 unknown command"));
    }
    let mut c = LineClient::connect(([127, 0, 0, 1], c_port).into());
    assert_eq!(c.ask("hello").as_deref(), Some("C:hello"));
    let from_c: Value = serde_json::from_str(&c.ask("STATUS").unwrap()).unwrap();
    assert_eq!(from_c["fdm_id"], "DEVFDMD0001");
    assert_eq!(from_c["ready"], true);
    let s = status(&d);
    let p = &s["plugins"];
    assert_eq!(p["vendor-a"]["state"], "loaded", "{s}");
    assert_eq!(p["vendor-a"]["plugin"], "example-vendor");
    assert_eq!(p["vendor-a"]["abi"], "1.0");
    assert_eq!(p["vendor-b"]["isolated"], true);
    assert_eq!(p["c-test"]["plugin"], "c-test");
    assert_eq!(p["c-test"]["built_with"], "cc against fdmd_plugin.h");
    assert_eq!(
        p["c-test"]["signed_by"],
        fdmd::plugins::checks::public_key_hex(&TEST_VENDOR_SEED)
    );
}

#[test]
fn bad_plugins_are_refused_and_the_daemon_runs_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    let example = built_plugin(EXAMPLE);
    plugins.add(&example, "unsigned.so");
    plugins.add(&example, "other-vendor.so");
    plugins.sign("other-vendor.so", &OTHER_VENDOR_SEED);
    let writable = plugins.add_signed(&example, "writable.so");
    std::fs::set_permissions(
        &writable,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let tampered = plugins.add_signed(&example, "tampered.so");
    let mut bytes = std::fs::read(&tampered).unwrap();
    bytes.push(0);
    std::fs::write(&tampered, bytes).unwrap();
    let wrong_abi = dir.path().join("abi99.so");
    build_c_plugin(&wrong_abi, &["-DPLUGIN_ABI_MAJOR=99"]);
    plugins.add_signed(&wrong_abi, "abi99.so");
    let no_entry = dir.path().join("no-entry.so");
    build_c_plugin(&no_entry, &["-DNO_ENTRY"]);
    plugins.add_signed(&no_entry, "no-entry.so");
    let good = plugins.add_signed(&example, "good.so");
    let good_port = free_port();
    let mut instances = String::new();
    for (name, file, isolate) in [
        ("unsigned", "unsigned.so", false),
        ("other-vendor", "other-vendor.so", false),
        ("writable", "writable.so", false),
        ("tampered", "tampered.so", false),
        ("abi99-inproc", "abi99.so", false),
        ("abi99-isolated", "abi99.so", true),
        ("no-entry", "no-entry.so", false),
        ("missing", "missing.so", false),
    ] {
        instances += &instance(name, file, isolate, free_port(), "{}");
    }
    instances += &instance("good", "good.so", false, good_port, "{}");
    let d = Daemon::start_dev_with_config(&plugins.section(&instances));
    let mut c = LineClient::connect(([127, 0, 0, 1], good_port).into());
    assert_eq!(c.ask("PING").as_deref(), Some("PONG"));
    let s = status(&d);
    let reason = |name: &str| {
        assert_eq!(s["plugins"][name]["state"], "refused", "{name}: {s}");
        s["plugins"][name]["reason"].as_str().unwrap().to_owned()
    };
    assert!(reason("unsigned").contains("has no signature file"));
    assert!(reason("other-vendor").contains("does not verify with any trusted vendor key"));
    assert!(reason("writable").contains("writable by group or others (mode 666)"));
    assert!(reason("tampered").contains("does not verify"));
    assert!(reason("abi99-inproc").contains("ABI version 99.0 is not supported"));
    assert!(reason("abi99-isolated").contains("ABI version 99.0 is not supported"));
    assert!(reason("no-entry").contains("no fdmd_plugin_entry_v1 symbol"));
    assert!(reason("missing").contains("cannot read"));
    assert_eq!(s["plugins"]["good"]["state"], "loaded");
    let log = d.log();
    assert!(
        log.contains("plugin writable (writable.so) REFUSED, fdmd runs without it"),
        "{log}"
    );
    drop(d);
    let _ = good;

    // With --dev and plugins.allow_unsigned, an unsigned plugin loads, with a loud warning.
    let port = free_port();
    let d = Daemon::start_dev_with_config(&plugins.section(&format!(
        "allow_unsigned = true\n{}",
        instance("unsigned", "unsigned.so", false, port, "{}")
    )));
    let mut c = LineClient::connect(([127, 0, 0, 1], port).into());
    assert_eq!(c.ask("PING").as_deref(), Some("PONG"));
    assert!(d.log().contains("is NOT SIGNED"), "{}", d.log());
    assert_eq!(status(&d)["plugins"]["unsigned"]["signed_by"], Value::Null);
}

#[test]
fn panics_and_aborts_never_stop_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin(EXAMPLE), "example.so");
    let c_so = dir.path().join("c-test.so");
    build_c_plugin(&c_so, &[]);
    plugins.add_signed(&c_so, "c-test.so");
    let (inproc, isolated, c_port) = (free_port(), free_port(), free_port());
    let faults = "{ test_faults = true }";
    let config = plugins.section(&format!(
        "{}{}{}",
        instance("faulty-inproc", "example.so", false, inproc, faults),
        instance("faulty-isolated", "example.so", true, isolated, faults),
        instance("c-isolated", "c-test.so", true, c_port, "{}"),
    ));
    let d = Daemon::start_dev_with_config(&config);
    let addr = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
    let mut orders = 0;
    let mut mqtt_order_ok = |d: &Daemon| {
        orders += 1;
        let r = mqtt_order(d, &format!("during-faults-{orders}"));
        assert_eq!(r["status"], "signed", "{r}");
        assert_eq!(r["code"], 0);
    };

    // In-process panic: caught at the boundary; the call fails, the connection is closed, the
    // plugin and the daemon go on.
    let mut c = LineClient::connect(addr(inproc));
    assert_eq!(c.ask("PANIC"), None);
    mqtt_order_ok(&d);
    assert_eq!(eventually(addr(inproc), "PING", "PONG"), 1);

    // Isolated panic: the helper catches it too and stays up.
    let mut c = LineClient::connect(addr(isolated));
    assert_eq!(c.ask("PANIC"), None);
    assert_eq!(eventually(addr(isolated), "PING", "PONG"), 1);

    // Isolated abort: the helper process dies; the daemon keeps serving MQTT orders and starts
    // a new helper.
    for round in 0..2 {
        let mut c = LineClient::connect(addr(isolated));
        assert_eq!(c.ask("ABORT"), None, "round {round}");
        mqtt_order_ok(&d);
        eventually(addr(isolated), "PING", "PONG");
    }
    let mut c = LineClient::connect(addr(c_port));
    assert_eq!(c.ask("ABORT"), None);
    mqtt_order_ok(&d);
    eventually(addr(c_port), "x", "C:x");

    let s = status(&d);
    assert_eq!(s["plugins"]["faulty-isolated"]["restarts"], 2, "{s}");
    assert_eq!(s["plugins"]["c-isolated"]["restarts"], 1, "{s}");
    assert!(
        s["plugins"]["faulty-inproc"]["last_error"]
            .as_str()
            .unwrap()
            .contains("plugin panicked: panic: PANIC requested by the client"),
        "{s}"
    );
    assert!(
        s["plugins"]["c-isolated"]["last_crash"]
            .as_str()
            .unwrap()
            .contains("plugin process died: signal: 6"),
        "{s}"
    );
    // A timeout is an error too: SLEEP longer than the call timeout (5 s) would stall this test,
    // so a short one shows the call path stays responsive.
    let mut c = LineClient::connect(addr(inproc));
    assert_eq!(c.ask("SLEEP 10").as_deref(), Some("SLEPT"));
    // The journal saw every order and verifies.
    let (code, out) = support::fdmctl(&["verify", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn fdmctl_plugin_keygen_sign_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    let so = plugins.add(&built_plugin(EXAMPLE), "example.so");
    let key = dir.path().join("vendor.key");
    let (code, out) = support::fdmctl(&["plugin", "keygen", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let public = out.trim().to_owned();
    assert_eq!(public.len(), 64);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let (code, out) = support::fdmctl(&[
        "plugin",
        "sign",
        "--key",
        key.to_str().unwrap(),
        so.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "PING\nORDER {\"request_id\":\"r-1\"}\n").unwrap();
    let (code, out) = support::fdmctl(&[
        "plugin",
        "check",
        so.to_str().unwrap(),
        "--trusted-key",
        &public,
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("PASS  signature: signed by {public}")),
        "{out}"
    );
    assert!(out.contains("PASS  garbage input"), "{out}");
    assert!(out.contains("plugin wrote: PONG\\n"), "{out}");
    assert!(
        out.contains("plugin wrote: OK 000001 NS CHECKSIG 000\\n"),
        "{out}"
    );
    assert!(out.ends_with("RESULT: PASS\n"), "{out}");

    // Another vendor's key: the signature step fails.
    let other = fdmd::plugins::checks::public_key_hex(&OTHER_VENDOR_SEED);
    let (code, out) = support::fdmctl(&[
        "plugin",
        "check",
        so.to_str().unwrap(),
        "--trusted-key",
        &other,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL  signature"), "{out}");

    // A plugin that aborts on its input: the helper dies, the check says so.
    let c_so = dir.path().join("c-test.so");
    build_c_plugin(&c_so, &[]);
    std::fs::write(&input, "ABORT\n").unwrap();
    let (code, out) = support::fdmctl(&[
        "plugin",
        "check",
        c_so.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  your input: plugin process died"),
        "{out}"
    );

    // A plugin of an unknown ABI version is refused at load.
    let abi99 = dir.path().join("abi99.so");
    build_c_plugin(&abi99, &["-DPLUGIN_ABI_MAJOR=99"]);
    let (code, out) = support::fdmctl(&["plugin", "check", abi99.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ABI version 99.0 is not supported"), "{out}");

    // A world-writable file fails the first step.
    std::fs::set_permissions(&so, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let (code, out) = support::fdmctl(&["plugin", "check", so.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  file owned by root, not writable by group or others"),
        "{out}"
    );
}
