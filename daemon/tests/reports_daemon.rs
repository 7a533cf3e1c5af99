//! Reports, the device registry, the threshold report and period exports through the real
//! daemon: HTTP, `fdmctl report`, `fdmctl devices`, `fdmctl export --from-date` and `verify`.
#![allow(clippy::unwrap_used)]

mod support;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Daemon, fdmctl};

const OP: &str = "85073003328";

fn enrol(d: &Daemon, cfg: &str, id: &str) -> String {
    let (code, out) = fdmctl(&["register", "add", id, "--json", "--config", cfg]);
    assert_eq!(code, 0, "{out}");
    let creds: Value = serde_json::from_str(&out[..out.rfind('}').unwrap() + 1]).unwrap();
    let _ = d;
    creds["http_token"].as_str().unwrap().to_owned()
}

fn post(d: &Daemon, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    d.request(
        Method::POST,
        path,
        Some(token),
        Some(serde_json::to_vec(&body).unwrap()),
    )
}

fn line(description: &str, q: i64, price: &str, vat: &str, category: &str) -> Value {
    json!({"description": description, "quantity": q, "unit_price": price, "vat": vat, "category": category})
}

#[test]
fn reports_registry_threshold_and_slices_through_the_daemon() {
    let d = Daemon::start_with_config(
        "[establishment]\nname = \"Testzaak\"\nvat_number = \"BE0123456749\"\n",
        &[],
    );
    let cfg = d.config_file.as_ref().unwrap().to_str().unwrap().to_owned();
    let data = d.data_dir();
    let data = data.to_str().unwrap();
    let admin = d.admin_token();
    let till = enrol(&d, &cfg, "till-1");
    let orders = "/v1/registers/till-1/orders";

    // Known figures for the threshold: meals on site 224.00 at 12 % (200.00 excl. VAT),
    // drinks 1452.00 at 21 % (1200.00), take-away 106.00 at 6 % (100.00), a training meal.
    let sales = [
        (vec![line("Menu", 2, "112.00", "B", "meal")], "224.00"),
        (vec![line("Wijn", 12, "121.00", "A", "drink")], "1452.00"),
        (
            vec![line("Frieten", 2, "53.00", "C", "takeaway_meal")],
            "106.00",
        ),
    ];
    for (i, (lines, total)) in sales.iter().enumerate() {
        let (s, r) = post(
            &d,
            orders,
            &till,
            json!({"request_id": format!("s-{i}"), "operator": OP, "event_type": "normal",
                   "lines": lines, "payments": [{"method": "card", "amount": total}]}),
        );
        assert_eq!(s, StatusCode::CREATED, "{r}");
    }
    let (s, _) = post(
        &d,
        orders,
        &till,
        json!({"request_id": "t-1", "operator": OP, "event_type": "training",
               "lines": [line("Menu", 50, "112.00", "B", "meal")]}),
    );
    assert_eq!(s, StatusCode::CREATED);
    // A table with a pro forma and no final sale: the Z report is refused and names it.
    let (s, r) = post(
        &d,
        orders,
        &till,
        json!({"request_id": "p-1", "operator": OP, "event_type": "pro_forma", "table": "12",
               "lines": [line("Cola", 2, "2.70", "A", "drink")]}),
    );
    assert_eq!((s, r["label"].as_str()), (StatusCode::CREATED, Some("PS")));
    let (s, r) = post(
        &d,
        "/v1/registers/till-1/reports",
        &till,
        json!({"kind": "z", "request_id": "z-1"}),
    );
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert_eq!(r["code"], 207);
    assert_eq!(r["open_tables"][0]["table"], "12");
    assert!(r["message"].as_str().unwrap().contains("table 12"), "{r}");
    let (code, out) = fdmctl(&["report", "z", "--register", "till-1", "--config", &cfg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("open table"), "{out}");
    // The final ticket (it lists the table's lines) closes the table; an X report over HTTP as
    // text, then the Z through fdmctl.
    let (s, _) = post(
        &d,
        orders,
        &till,
        json!({"request_id": "n-1", "operator": OP, "event_type": "normal", "table": "12",
               "lines": [], "payments": [{"method": "cash", "amount": "5.40"}]}),
    );
    assert_eq!(s, StatusCode::CREATED);
    let (s, x) = d.request(
        Method::POST,
        "/v1/registers/till-1/reports?format=text",
        Some(&till),
        Some(br#"{"kind":"x"}"#.to_vec()),
    );
    assert_eq!(s, StatusCode::CREATED);
    let x = x.as_str().unwrap().to_owned();
    assert!(x.contains("X REPORT") && x.contains("1787.40"), "{x}");
    // An operator clocked in on till-1 (restaurant workflows): refused without an override,
    // made with one, and the override is in the signed report.
    let (s, r) = post(
        &d,
        orders,
        &till,
        json!({"request_id": "w-1", "operator": OP, "event_type": "normal", "purpose": "work_in"}),
    );
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (code, out) = fdmctl(&["report", "z", "--register", "till-1", "--config", &cfg]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("still clocked in") && out.contains(OP),
        "{out}"
    );
    let (code, out) = fdmctl(&[
        "report",
        "z",
        "--register",
        "till-1",
        "--override-reason",
        "closing staff stays for cleaning",
        "--json",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 0, "{out}");
    let z: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(z["report"], "Z");
    assert_eq!(z["override"]["reason"], "closing staff stays for cleaning");
    assert_eq!(z["override"]["clocked_in"][0]["operator"], OP);
    assert_eq!(z["report_number"], "000001");
    assert_eq!(z["totals"]["net"], "1787.40");
    assert_eq!(z["totals"]["labels"]["TS"]["count"], 1);
    assert_eq!(z["establishment"]["name"], "Testzaak");
    assert_eq!(z["checkpoint"]["merkle_root"].as_str().unwrap().len(), 64);
    let (code, out) = fdmctl(&["report", "x", "--register", "till-1", "--config", &cfg]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("X REPORT") && out.contains("Report number"),
        "{out}"
    );

    // Threshold: 200 / (200 + 1200 + 100 + 4.46 for the cola) < 10 %? 200/1504.46 = 13.29 %.
    let year = z["fdm_time"].as_str().unwrap()[..4].to_owned();
    let (code, out) = fdmctl(&[
        "report",
        "threshold",
        "--year",
        &year,
        "--json",
        "--data-dir",
        data,
    ]);
    assert_eq!(code, 0, "{out}");
    let t: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["meals_on_site"], "200.00");
    assert_eq!(t["excluding_vat"]["drink"], "1204.46");
    assert_eq!(t["excluding_vat"]["takeaway_meal"], "100.00");
    assert_eq!(t["total_horeca_turnover"], "1504.46");
    assert_eq!(t["meal_share_percent"], "13.29");
    assert_eq!(t["ten_percent_rule_met"], true);
    assert_eq!(t["meal_turnover_at_least_25000"], false);
    assert_eq!(t["cash_system_required"], true);
    let (s, t2) = d.request(
        Method::GET,
        &format!("/v1/admin/reports/threshold?year={year}"),
        Some(&admin),
        None,
    );
    assert_eq!(
        (s, &t2["meals_on_site"]),
        (StatusCode::OK, &json!("200.00"))
    );

    // Registry: link, a bad production number, list, deactivate, history.
    let (code, out) = fdmctl(&[
        "devices",
        "link",
        "till-1",
        "BODO001000001",
        "--config",
        &cfg,
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("production number"), "{out}");
    let (code, out) = fdmctl(&[
        "devices",
        "link",
        "till-1",
        "BODO0010000001",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 0, "{out}");
    let till2 = enrol(&d, &cfg, "till-2");
    let (s, r) = post(
        &d,
        "/v1/admin/devices/registers/till-2/link",
        &admin,
        json!({"production_number": "BODO0010000001"}),
    );
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    let (s, r) = post(
        &d,
        "/v1/admin/devices/registers/till-2/link",
        &admin,
        json!({"production_number": "BODO0010000002"}),
    );
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (code, out) = fdmctl(&["devices", "--config", &cfg]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("DEVFDMD0001") && out.contains("BODO0010000001"),
        "{out}"
    );
    assert!(out.contains("VSC id of the card:    DEVSW-"), "{out}");
    let (code, out) = fdmctl(&[
        "devices",
        "deactivate",
        "till-2",
        "--reason",
        "other",
        "--config",
        &cfg,
    ]);
    assert_ne!(code, 0, "a note is required with other: {out}");
    let (code, out) = fdmctl(&[
        "devices",
        "deactivate",
        "till-2",
        "--reason",
        "defect",
        "--note",
        "screen broken",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 0, "{out}");
    // A deactivated register's orders are refused, and nothing is journaled for them.
    let (s, r) = post(
        &d,
        "/v1/registers/till-2/orders",
        &till2,
        json!({"request_id": "late", "operator": OP, "event_type": "normal", "lines": [line("Cola", 1, "2.70", "A", "drink")]}),
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{r}");
    // An unknown reason is refused, naming the reasons there are.
    let (code, out) = fdmctl(&[
        "devices",
        "replace-card",
        "0000000196-860",
        "--reason",
        "bored",
        "--config",
        &cfg,
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("reason") && out.contains("defect"), "{out}");
    let (code, out) = fdmctl(&[
        "devices",
        "replace-card",
        "0000000196-860",
        "--reason",
        "defect",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = fdmctl(&["devices", "history", "register", "till-2", "--config", &cfg]);
    assert_eq!(code, 0, "{out}");
    let actions: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(actions, ["enrol", "link", "deactivate"], "{out}");
    let (s, h) = d.request(
        Method::GET,
        "/v1/admin/devices/card/0000000196-860/history",
        Some(&admin),
        None,
    );
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[0]["action"], "replace_card");

    // A slice of one day's records, exported and verified on its own with the key.
    let day = &z["fdm_time"].as_str().unwrap()[..10];
    let slice = d.dir.path().join("slice.jsonl");
    let (code, out) = fdmctl(&[
        "export",
        "--data-dir",
        data,
        "--from-date",
        day,
        "--to-date",
        day,
        "-o",
        slice.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let (_, signer) = d.request(Method::GET, "/v1/signer", None, None);
    let key = signer["public_key"].as_str().unwrap();
    let (code, out) = fdmctl(&["verify", "--key", key, slice.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK"), "{out}");
    let (code, out) = fdmctl(&[
        "export",
        "--data-dir",
        data,
        "--from-date",
        "1999-01-01",
        "--to-date",
        "1999-01-02",
    ]);
    assert_ne!(code, 0, "{out}");
    // The whole journal still verifies (report numbers included).
    let (code, out) = fdmctl(&["verify", "--data-dir", data]);
    assert_eq!(code, 0, "{out}");
}

/// Series per group of registers (the decree: per register, per group of registers or per
/// establishment): till-1 and till-2 share the bar's series, the kiosk has its own; a Z report
/// asked by till-2 is the bar's, sums both tills and not the kiosk.
#[test]
fn ticket_and_report_series_per_group_of_registers() {
    let d = Daemon::start_with_config(
        "[numbering]\nscope = \"group\"\n[numbering.groups]\nbar = [\"till-1\", \"till-2\"]\n",
        &[],
    );
    let cfg = d.config_file.as_ref().unwrap().to_str().unwrap().to_owned();
    let tokens: Vec<(String, String)> = ["till-1", "till-2", "kiosk"]
        .iter()
        .map(|r| (r.to_string(), enrol(&d, &cfg, r)))
        .collect();
    let mut numbers = Vec::new();
    for (i, (register, token)) in tokens.iter().chain(tokens.iter()).enumerate() {
        let (s, r) = post(
            &d,
            &format!("/v1/registers/{register}/orders"),
            token,
            json!({"request_id": format!("g-{i}"), "operator": OP, "event_type": "normal",
                   "lines": [line("Koffie", 1, "3.00", "A", "drink")],
                   "payments": [{"method": "cash", "amount": "3.00"}]}),
        );
        assert_eq!(s, StatusCode::CREATED, "{r}");
        // Printed as the tickets print it: "000001".
        let number: u64 = r["ticket_number"].as_str().unwrap().parse().unwrap();
        numbers.push((register.clone(), number));
    }
    // till-1, till-2, kiosk, till-1, till-2, kiosk
    let got: Vec<u64> = numbers.iter().map(|(_, n)| *n).collect();
    assert_eq!(got, [1, 2, 1, 3, 4, 2], "{numbers:?}");

    let (s, z) = d.request(
        Method::POST,
        "/v1/registers/till-2/reports",
        Some(&tokens[1].1),
        Some(br#"{"kind":"z"}"#.to_vec()),
    );
    assert_eq!(s, StatusCode::CREATED, "{z}");
    assert_eq!(z["scope"], "group");
    assert_eq!(z["ticket_series"], "group/bar/Z");
    assert_eq!(z["registers"], json!(["till-1", "till-2"]));
    assert_eq!(z["totals"]["net"], "12.00", "{z}");
    assert_eq!(z["totals"]["labels"]["NS"]["count"], 4);
    // The kiosk's own Z: its two tickets only.
    let (s, k) = d.request(
        Method::POST,
        "/v1/registers/kiosk/reports",
        Some(&tokens[2].1),
        Some(br#"{"kind":"z"}"#.to_vec()),
    );
    assert_eq!(s, StatusCode::CREATED, "{k}");
    assert_eq!(k["ticket_series"], "register/kiosk/Z");
    assert_eq!(k["totals"]["net"], "6.00", "{k}");
    let (code, out) = fdmctl(&["verify", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

/// Groups are checked like every other key: a register in two groups, or groups without
/// scope = "group", stop the daemon with the key named.
#[test]
fn group_configuration_mistakes_are_named() {
    for (config, message) in [
        (
            "[numbering]\nscope = \"group\"\n[numbering.groups]\nbar = [\"till-1\"]\nterrace = [\"till-1\"]\n",
            "in more than one group",
        ),
        (
            "[numbering.groups]\nbar = [\"till-1\"]\n",
            "only used with scope = \"group\"",
        ),
        ("[numbering]\nscope = \"group\"\n", "at least one group"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fdmd.toml");
        std::fs::write(
            &file,
            format!(
                "{config}[fdm]\ndata_dir = \"{}\"\n[establishment]\nname = \"Testzaak\"\naddress = \"Markt 1\"\nvat_number = \"BE0123456749\"\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let (code, out) = fdmctl(&["check-config", "--config", file.to_str().unwrap()]);
        assert_eq!(code, 78, "{config}: {out}");
        assert!(
            out.contains("numbering.groups") && out.contains(message),
            "{config}: {out}"
        );
    }
}
