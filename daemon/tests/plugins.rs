//! Plugins end to end: the real `fdmd` binary loads the real built `.so` files (Rust plugins and a
//! C plugin compiled here against the header), refuses what it must, keeps serving when a
//! plugin panics, aborts or does not answer in time, and carries a plugin's protocol over MQTT
//! topics with a real client.
#![allow(clippy::unwrap_used)]

#[path = "support/mosquitto.rs"]
mod mosquitto;
mod mqtt_common;
mod plugin_support;
mod support;

use hyper::{Method, StatusCode};
use plugin_support::*;
use serde_json::Value;
use std::net::SocketAddr;
use support::{Daemon, free_port};

const EXAMPLE: &str = "libfdmd_plugin_example_vendor.so";

fn status(d: &Daemon) -> Value {
    let (code, v) = d.request(Method::GET, "/v1/status", Some(&d.admin_token()), None);
    assert_eq!(code, StatusCode::OK);
    v
}

/// The status once plugin `name` is in it (the daemon answers HTTP before its plugins load).
fn status_with_plugin(d: &Daemon, name: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let s = status(d);
        if s["plugins"][name]["state"].is_string() {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "plugin {name} never in the status: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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

/// A runtime whose tasks (the MQTT test client's event loop) run between `block_on` calls too;
/// the daemon helpers of `support` make runtimes of their own, so they run outside it.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn mqtt_topics_carry_a_plugin_protocol_and_publish_stays_in_the_namespace() {
    use mqtt_common::{QUIET, TestClient};
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin(EXAMPLE), "example.so");
    let config = plugins.section(&format!(
        "mqtt_max_payload_bytes = 4096\n{}{}",
        mqtt_instance("vendor-mq", "example.so", false, "dev-register", ""),
        mqtt_instance(
            "vendor-iso",
            "example.so",
            true,
            "dev-register",
            "mqtt_reply = \"answers\""
        ),
    ));
    let d = Daemon::start_dev_with_config(&config);
    let (user, pass) = dev_mqtt_credentials(&d);
    let base = "fdm/v1/registers/dev-register/plugins";
    let text = |m: mqtt_common::Message| String::from_utf8(m.payload).unwrap();
    let rt = client_runtime();
    let ticket = rt.block_on(async {
        let mut c = TestClient::connect(d.mqtt, "vendor-pos", Some((&user, &pass))).await;
        // The daemon answers HTTP before its plugins are up: probe until the plugin answers.
        c.subscribe(&format!("{base}/vendor-mq/out/probe")).await;
        let mut probes = 0;
        loop {
            probes += 1;
            assert!(
                probes <= 50,
                "the plugin never answered over MQTT:\n{}",
                d.log()
            );
            c.publish(&format!("{base}/vendor-mq/in/probe"), b"PING".to_vec())
                .await;
            if c.message_within(std::time::Duration::from_millis(200))
                .await
                .is_some()
            {
                break;
            }
        }
        while c.message_within(QUIET).await.is_some() {}
        for sub in [
            format!("{base}/vendor-mq/out/orders"),
            format!("{base}/vendor-mq/out/display"),
            format!("{base}/vendor-iso/out/answers"),
            "fdm/v1/registers/dev-register/receipts".to_owned(),
        ] {
            c.subscribe(&sub).await;
        }
        let input = format!("{base}/vendor-mq/in/orders");

        // The plugin's protocol over MQTT: lines in, the answers back on …/out/orders.
        let request = format!("PING\nORDER {}\n", order_json("mq-order-1"));
        c.publish(&input, request.into_bytes()).await;
        let m = c.next_message().await;
        assert_eq!(m.topic, format!("{base}/vendor-mq/out/orders"));
        let answer = text(m);
        let lines: Vec<&str> = answer.lines().collect();
        assert_eq!(lines[0], "PONG", "{answer}");
        let parts: Vec<&str> = lines[1].split(' ').collect();
        assert_eq!(
            (parts[0], parts[2], parts[4]),
            ("OK", "NS", "000"),
            "{answer}"
        );

        // publish inside the namespace: relative to …/out, QoS 0 and 1; the notification is
        // queued during the call, so it comes before the answer.
        c.publish(&input, b"NOTIFY 1 display table 4 ready".to_vec())
            .await;
        let m = c.next_message().await;
        assert_eq!(m.topic, format!("{base}/vendor-mq/out/display"));
        assert_eq!(text(m), "table 4 ready");
        assert_eq!(text(c.next_message().await), "NOTIFIED\n");
        c.publish(&input, b"NOTIFY 0 display qos zero".to_vec())
            .await;
        assert_eq!(text(c.next_message().await), "qos zero");
        assert_eq!(text(c.next_message().await), "NOTIFIED\n");

        // Outside it: refused (FDMD_RC_BAD_ARGUMENT), nothing published there.
        for (qos, topic) in [
            (1, "fdm/v1/registers/dev-register/receipts"),
            (1, "fdm/v1/status"),
            (
                1,
                "fdm/v1/registers/dev-register/plugins/vendor-iso/out/answers",
            ),
            (2, "display"),
        ] {
            c.publish(
                &input,
                format!("NOTIFY {qos} {topic} {{\"forged\":true}}").into_bytes(),
            )
            .await;
            let m = c.next_message().await;
            assert_eq!(m.topic, format!("{base}/vendor-mq/out/orders"), "{topic}");
            let answer = text(m);
            assert!(
                answer.starts_with("ERR 299 host service failed (rc 3): publish refused"),
                "{topic}: {answer}"
            );
        }

        // An isolated instance, answering on its configured reply topic; the refusal code
        // crosses the helper's socket.
        c.publish(
            &format!("{base}/vendor-iso/in/x/y"),
            b"PING\nNOTIFY 1 fdm/v1/status down".to_vec(),
        )
        .await;
        let m = c.next_message().await;
        assert_eq!(m.topic, format!("{base}/vendor-iso/out/answers"));
        let answer = text(m);
        assert!(
            answer.starts_with("PONG\nERR 299 host service failed (rc 3)"),
            "{answer}"
        );

        // Over plugins.mqtt_max_payload_bytes: never handed to the plugin.
        let mut big = b"PING\n".to_vec();
        big.resize(5000, b' ');
        c.publish(&input, big).await;
        c.publish(&input, b"STATUS".to_vec()).await;
        let answer = text(c.next_message().await);
        assert!(answer.starts_with("STATUS ready DEVFDMD0001"), "{answer}");
        assert!(
            c.message_within(QUIET).await.is_none(),
            "nothing else, and no forged receipt"
        );

        // The gate: another register's plugin inputs, and wildcard or input subscriptions,
        // are refused (the client is disconnected).
        for (i, what) in ["publish", "subscribe-wildcard", "subscribe-input"]
            .iter()
            .enumerate()
        {
            let mut other =
                TestClient::connect(d.mqtt, &format!("intruder-{i}"), Some((&user, &pass))).await;
            match *what {
                "publish" => {
                    other
                        .publish(
                            "fdm/v1/registers/other-till/plugins/vendor-mq/in/orders",
                            b"PING".to_vec(),
                        )
                        .await
                }
                "subscribe-wildcard" => {
                    let _ = other
                        .client
                        .subscribe(format!("{base}/vendor-mq/out/#"), rumqttc::QoS::AtLeastOnce)
                        .await;
                }
                _ => {
                    let _ = other
                        .client
                        .subscribe(
                            format!("{base}/vendor-mq/in/orders"),
                            rumqttc::QoS::AtLeastOnce,
                        )
                        .await;
                }
            }
            other.closed().await;
        }
        parts[1].to_owned()
    });
    // The order is in the journal, as the bound register's.
    let records = journal_records(&d);
    let order: Vec<&Value> = records
        .iter()
        .filter(|r| r["body"]["request_id"] == "mq-order-1")
        .collect();
    assert_eq!(order.len(), 1, "once");
    assert_eq!(order[0]["body"]["register"], "dev-register");
    assert_eq!(
        order[0]["body"]["ticket_number"],
        ticket.parse::<u64>().unwrap(),
        "the ticket the plugin answered"
    );
    let s = status(&d);
    let p = &s["plugins"]["vendor-mq"];
    assert_eq!(p["mqtt_out"], format!("{base}/vendor-mq/out"), "{s}");
    assert_eq!(p["mqtt_dropped"], 1, "{s}");
    assert_eq!(p["publish_refused"], 4, "{s}");
    assert_eq!(s["plugins"]["vendor-iso"]["publish_refused"], 1, "{s}");
    assert!(
        p["last_error"]
            .as_str()
            .unwrap()
            .contains("over plugins.mqtt_max_payload_bytes (4096)"),
        "{s}"
    );
    let log = d.log();
    assert!(
        log.contains(
            "plugin vendor-mq: publish to \"fdm/v1/registers/dev-register/receipts\" refused: topic \"fdm/v1/registers/dev-register/receipts\" is outside this plugin's namespace"
        ),
        "{log}"
    );
    let (code, out) = support::fdmctl(&["verify", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    // SIGTERM stops everything, the plugins' MQTT client included, cleanly.
    let mut d = d;
    assert!(d.stop().success());
}

#[test]
fn a_call_past_its_timeout_fails_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin(EXAMPLE), "example.so");
    let (inproc, isolated) = (free_port(), free_port());
    let faults = "{ test_faults = true }";
    let config = plugins.section_with_timeout(
        400,
        &format!(
            "{}{}{}",
            instance("slow-inproc", "example.so", false, inproc, faults),
            instance("slow-isolated", "example.so", true, isolated, faults),
            mqtt_instance(
                "slow-mq",
                "example.so",
                false,
                "dev-register",
                &format!("config = {faults}")
            ),
        ),
    );
    let d = Daemon::start_dev_with_config(&config);
    let addr = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
    for (name, port) in [("slow-inproc", inproc), ("slow-isolated", isolated)] {
        // The plugin sleeps 8 s; the host gives up after 400 ms and closes the connection.
        let mut c = LineClient::connect(addr(port));
        assert_eq!(c.ask("SLEEP 8000"), None, "{name}");
        if name == "slow-inproc" {
            // The in-process plugin's thread is still asleep: its next call times out too.
            let mut c = LineClient::connect(addr(port));
            assert_eq!(c.ask("PING"), None);
        }
        // Meanwhile the daemon serves MQTT orders.
        let r = mqtt_order(&d, &format!("while-{name}-sleeps"));
        assert_eq!(r["status"], "signed", "{r}");
        let s = status(&d);
        let p = &s["plugins"][name];
        // The status says so (later calls may have failed otherwise: busy, restarting).
        assert_eq!(
            p["last_crash"], "plugin did not answer within 400 ms",
            "{s}"
        );
        assert!(p["errors"].as_u64().unwrap() >= 1, "{s}");
        // And it serves again once the sleep is over (in-process) or in a new helper.
        eventually(addr(port), "PING", "PONG");
    }
    let s = status(&d);
    assert_eq!(s["plugins"]["slow-isolated"]["restarts"], 1, "{s}");
    assert_eq!(s["plugins"]["slow-inproc"]["state"], "loaded", "{s}");

    // Over MQTT: the input that times out gets no answer, orders go on meanwhile (the plugins
    // have their own MQTT client), and the plugin answers again once it is back.
    use mqtt_common::TestClient;
    let (user, pass) = dev_mqtt_credentials(&d);
    let base = "fdm/v1/registers/dev-register/plugins/slow-mq";
    let rt = client_runtime();
    let mut c = rt.block_on(async {
        let mut c = TestClient::connect(d.mqtt, "slow-pos", Some((&user, &pass))).await;
        c.subscribe(&format!("{base}/out/pos")).await;
        c.publish(&format!("{base}/in/pos"), b"SLEEP 3000".to_vec())
            .await;
        c
    });
    let r = mqtt_order(&d, "while-slow-mq-sleeps");
    assert_eq!(r["status"], "signed", "{r}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let answer = rt.block_on(async {
        loop {
            c.publish(&format!("{base}/in/pos"), b"PING".to_vec()).await;
            if let Some(m) = c
                .message_within(std::time::Duration::from_millis(500))
                .await
            {
                return String::from_utf8(m.payload).unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "slow-mq never answered again"
            );
        }
    });
    assert_eq!(
        answer, "PONG\n",
        "the timed-out SLEEP itself is never answered"
    );
    let s = status(&d);
    assert_eq!(
        s["plugins"]["slow-mq"]["last_crash"], "plugin did not answer within 400 ms",
        "{s}"
    );
}

#[test]
fn check_config_names_bad_plugin_mqtt_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = support::write_config(
        dir.path(),
        free_port(),
        free_port(),
        "[plugins]\nmqtt_max_payload_bytes = 0\n[[plugins.instance]]\nname = \"a\"\nfile = \"a.so\"\nregister = \"till-1\"\nmqtt = true\nmqtt_reply = \"x/#\"\n",
    );
    let out = std::process::Command::new(support::FDMD)
        .args(["check-config", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let out = String::from_utf8_lossy(&out.stderr);
    assert!(out.contains("plugins.mqtt_max_payload_bytes"), "{out}");
    assert!(out.contains("plugins.instance[0].mqtt_reply"), "{out}");
    // Good keys, and a plugin the daemon would load (check-config also checks the files).
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin(EXAMPLE), "a.so");
    let file = support::write_config(
        dir.path(),
        free_port(),
        free_port(),
        &plugins.section(&format!(
            "mqtt_max_payload_bytes = 1024\n{}",
            mqtt_instance("a", "a.so", false, "till-1", "mqtt_reply = \"answers/pos\"")
        )),
    );
    let (code, out) = support::fdmctl(&["check-config", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_group_writable_plugin_directory_is_refused_outside_dev() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin(EXAMPLE), "example.so");
    std::fs::set_permissions(
        &plugins.path,
        std::os::unix::fs::PermissionsExt::from_mode(0o775),
    )
    .unwrap();
    let port = free_port();
    let section = plugins.section(&instance("vendor", "example.so", false, port, "{}"));
    let d = Daemon::start_with_config(&section, &[]);
    let s = status_with_plugin(&d, "vendor");
    assert_eq!(s["plugins"]["vendor"]["state"], "refused", "{s}");
    let reason = s["plugins"]["vendor"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("plugin directory ")
            && reason.ends_with("is writable by group or others (mode 775)"),
        "{reason}"
    );
    drop(d);
    // --dev loads it, with a loud warning.
    let d = Daemon::start_dev_with_config(&section);
    let mut c = LineClient::connect(([127, 0, 0, 1], port).into());
    assert_eq!(c.ask("PING").as_deref(), Some("PONG"));
    let log = d.log();
    assert!(
        log.contains("is writable by group or others (mode 775): plugin vendor is loaded from it only because of --dev"),
        "{log}"
    );
}

#[test]
fn plugin_topics_through_an_external_mosquitto_with_the_shipped_acl() {
    use mqtt_common::{QUIET, TestClient};
    let Some(bins) = mosquitto::Mosquitto::binaries() else {
        return;
    };
    let broker = mosquitto::Mosquitto::start(
        &bins,
        &[
            ("fdmd", "fdmd-secret"),
            ("till-1", "till-1-secret"),
            ("till-2", "till-2-secret"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("mqtt-password");
    std::fs::write(&password, "fdmd-secret\n").unwrap();
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin(EXAMPLE), "example.so");
    let extra = format!(
        "[mqtt]\nmode = \"external\"\n[mqtt.external]\nhost = \"127.0.0.1\"\nport = {}\nusername = \"fdmd\"\npassword_file = \"{}\"\n{}",
        broker.addr.port(),
        password.display(),
        plugins.section(&mqtt_instance("acme", "example.so", false, "till-1", "")),
    );
    let d = Daemon::start_with_config(&extra, &[]);
    let cfg = d.config_file.clone().unwrap();
    let (code, out) = support::fdmctl(&[
        "register",
        "add",
        "till-1",
        "--json",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let base = "fdm/v1/registers/till-1/plugins/acme";
    let text = |m: mqtt_common::Message| String::from_utf8(m.payload).unwrap();
    client_runtime().block_on(async {
        let mut till =
            TestClient::connect(broker.addr, "till-1-pos", Some(("till-1", "till-1-secret"))).await;
        till.subscribe(&format!("{base}/out/pos")).await;
        till.subscribe(&format!("{base}/out/display")).await;
        let mut other =
            TestClient::connect(broker.addr, "till-2-pos", Some(("till-2", "till-2-secret"))).await;
        // Mosquitto 2.0 grants what its ACL forbids reading, and then delivers nothing.
        other
            .client
            .subscribe(format!("{base}/out/pos"), rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        let mut probes = 0;
        loop {
            probes += 1;
            assert!(
                probes <= 50,
                "no answer through mosquitto:\n{}",
                broker.log()
            );
            till.publish(&format!("{base}/in/pos"), b"PING".to_vec())
                .await;
            if let Some(m) = till
                .message_within(std::time::Duration::from_millis(200))
                .await
            {
                assert_eq!(text(m), "PONG\n");
                break;
            }
        }
        while till.message_within(QUIET).await.is_some() {}
        let order = format!("ORDER {}\nNOTIFY 1 display hello", order_json("ext-1"));
        till.publish(&format!("{base}/in/pos"), order.into_bytes())
            .await;
        let m = till.next_message().await;
        assert_eq!(m.topic, format!("{base}/out/display"));
        assert_eq!(text(m), "hello");
        let answer = text(till.next_message().await);
        assert!(answer.starts_with("OK "), "{answer}");
        assert!(answer.ends_with(" 000\nNOTIFIED\n"), "{answer}");
        // Another register can neither feed till-1's plugin nor read its answers.
        other
            .publish(
                &format!("{base}/in/pos"),
                format!("ORDER {}", order_json("ext-forged")).into_bytes(),
            )
            .await;
        assert!(
            till.message_within(QUIET).await.is_none(),
            "the forged input got an answer"
        );
        while let Some(m) = other.message_within(QUIET).await {
            assert!(!m.topic.starts_with(base), "till-2 read {}", m.topic);
        }
    });
    let records = journal_records(&d);
    let ids: Vec<&str> = records
        .iter()
        .filter_map(|r| r["body"]["request_id"].as_str())
        .collect();
    assert!(ids.contains(&"ext-1"), "{ids:?}");
    assert!(!ids.contains(&"ext-forged"), "{ids:?}");
    let mut d = d;
    assert!(d.stop().success());
}

#[test]
fn a_plugin_listener_whose_port_is_taken_is_reported_and_binds_once_it_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin(EXAMPLE), "example.so");
    // Somebody else holds the port when fdmd starts.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let d = Daemon::start_dev_with_config(&plugins.section(&instance(
        "late",
        "example.so",
        false,
        port,
        "{}",
    )));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let reported = loop {
        let s = status(&d);
        let failed = s["problems"].as_array().unwrap().iter().any(|p| {
            p["code"] == "plugin_error"
                && p["message"]
                    .as_str()
                    .unwrap()
                    .contains("plugin late: cannot listen")
        });
        if failed {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failed bind never reached the problems: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(reported["status"], "degraded", "{reported}");
    assert!(
        reported["plugins"]["late"]["transport_error"]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "{reported}"
    );
    drop(blocker);
    // The retry binds it (back-off at most a few seconds this early) and the problem goes.
    let plugin_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(plugin_addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the plugin never listened on {plugin_addr} after the port was freed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        LineClient::connect(plugin_addr).ask("PING").as_deref(),
        Some("PONG")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = status(&d);
        if !s["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == "plugin_error")
        {
            assert!(s["plugins"]["late"]["transport_error"].is_null(), "{s}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the problem stayed after the bind: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
