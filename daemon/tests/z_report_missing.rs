//! A day without a Z report (issue 15 point 5): once a register's series has fiscal events on an
//! FDM date before today and no Z report covering them, `GET /v1/status` lists
//! `z_report_missing` for that series (and `/metrics` sets its gauge) until the Z is made; across
//! a restart too. Served over HTTP by an App whose journal runs on a clock the test sets.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, FixedOffset};
use fdmd::access::ClientKind;
use fdmd::app::App;
use fdmd::assembly::AppBuilder;
use fdmd::config::Config;
use fdmd::http::HttpService;
use fdmd::journal::{Clock, Journal, JournalConfig};
use fdmd::signer::SoftwareSigner;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A clock the test sets by hand.
struct TestClock(Mutex<DateTime<FixedOffset>>);

impl Clock for TestClock {
    fn now(&self) -> DateTime<FixedOffset> {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn shift(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

/// The App on `data` (journal on `clock`), serving HTTP on a free loopback port.
struct Served {
    rt: tokio::runtime::Runtime,
    app: Arc<App>,
    http: Option<HttpService>,
    addr: SocketAddr,
    admin: String,
}

impl Served {
    fn start(data: &Path, clock: Arc<TestClock>) -> Served {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut config = Config::default();
        config.fdm.data_dir = data.to_path_buf();
        config.fdm.id = "DEVFDMD0001".into();
        config.http.listen = ([127, 0, 0, 1], 0).into();
        let mut journal_config = JournalConfig::new(fdmd::paths::journal_file(data), "DEVFDMD0001");
        journal_config.clock = clock;
        let journal =
            Journal::open(journal_config, Arc::new(SoftwareSigner::from_seed([5; 32]))).unwrap();
        let (app, http) = rt.block_on(async {
            let app = AppBuilder::new(config).journal(journal).build().unwrap();
            let http = HttpService::start(app.clone()).await.unwrap();
            (app, http)
        });
        Served {
            addr: http.local_addr(),
            admin: fdmd::access::read_admin_token(data).unwrap(),
            rt,
            app,
            http: Some(http),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let (status, bytes) = self
            .rt
            .block_on(fdmd::client::request(
                self.addr,
                method,
                path,
                token,
                body.map(|b| serde_json::to_vec(&b).unwrap()),
                std::time::Duration::from_secs(10),
            ))
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn status(&self, token: Option<&str>) -> Value {
        let (code, body) = self.request(Method::GET, "/v1/status", token, None);
        assert_eq!(code, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The `z_report_missing` problems of the whole status document.
    fn missing(&self) -> Vec<String> {
        let status = self.status(Some(&self.admin.clone()));
        status["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["code"] == "z_report_missing")
            .map(|p| p["message"].as_str().unwrap().to_owned())
            .collect()
    }

    fn metric(&self) -> String {
        let (code, text) = self.request(Method::GET, "/metrics", None, None);
        assert_eq!(code, StatusCode::OK);
        text.lines()
            .find(|l| l.starts_with("fdmd_problem{code=\"z_report_missing\"}"))
            .unwrap_or_else(|| panic!("no z_report_missing gauge:\n{text}"))
            .to_owned()
    }

    fn enrol(&self, register: &str) -> String {
        self.app
            .access
            .enrol(ClientKind::Register, register, &self.app.now())
            .unwrap()
            .http_token
    }

    fn sale(&self, register: &str, token: &str, request_id: &str) {
        let order = json!({"request_id": request_id, "operator": "85073003328", "event_type": "normal",
            "lines": [{"description": "Cola", "quantity": 1, "unit_price": "2.20", "vat": "A"}],
            "payments": [{"method": "cash", "amount": "2.20"}]});
        let (code, body) = self.request(
            Method::POST,
            &format!("/v1/registers/{register}/orders"),
            Some(token),
            Some(order),
        );
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }

    fn z_report(&self, register: &str) {
        let (code, body) = self.request(
            Method::POST,
            "/v1/admin/reports",
            Some(&self.admin.clone()),
            Some(json!({"kind": "z", "register": register})),
        );
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }

    fn stop(mut self) {
        let journal = self.app.registrar.journal().clone();
        self.app.shutdown.cancel();
        if let Some(http) = self.http.take() {
            self.rt
                .block_on(http.shutdown(std::time::Duration::from_secs(5)));
        }
        let Served { rt, app, .. } = self;
        drop(app);
        drop(rt);
        journal.close();
    }
}

#[test]
fn a_day_without_a_z_report_is_in_the_status_until_the_z_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let start = DateTime::parse_from_rfc3339("2026-12-04T20:00:00+01:00").unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let s = Served::start(&data, clock.clone());
    let till1 = s.enrol("till-1");
    let till2 = s.enrol("till-2");
    s.sale("till-1", &till1, "a-1");
    s.sale("till-2", &till2, "b-1");
    // The same day: nothing missing yet.
    assert!(s.missing().is_empty());
    assert_eq!(s.metric(), "fdmd_problem{code=\"z_report_missing\"} 0");

    // The next morning, neither register has made its Z report for the 4th.
    clock.shift(Duration::hours(13));
    s.sale("till-1", &till1, "a-2");
    assert_eq!(
        s.missing(),
        [
            "Z report missing since 2026-12-04: no Z report for series register/till-1/Z since 2026-12-04",
            "Z report missing since 2026-12-04: no Z report for series register/till-2/Z since 2026-12-04",
        ]
    );
    assert_eq!(s.metric(), "fdmd_problem{code=\"z_report_missing\"} 1");
    // The LAN sees the code and the short message, not which register.
    let public = s.status(None);
    let listed: Vec<&Value> = public["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["code"] == "z_report_missing")
        .collect();
    assert_eq!(listed.len(), 2, "{public}");
    assert_eq!(
        listed[0],
        &json!({"code": "z_report_missing", "message": "Z report missing since 2026-12-04"})
    );
    assert!(!public.to_string().contains("till-"), "{public}");

    // till-1's Z report (covering the 4th and this morning) ends its problem, not till-2's.
    s.z_report("till-1");
    assert_eq!(
        s.missing(),
        [
            "Z report missing since 2026-12-04: no Z report for series register/till-2/Z since 2026-12-04"
        ]
    );

    // Across a restart: read back from the journal.
    s.stop();
    let s = Served::start(&data, clock.clone());
    assert_eq!(
        s.missing(),
        [
            "Z report missing since 2026-12-04: no Z report for series register/till-2/Z since 2026-12-04"
        ]
    );
    s.z_report("till-2");
    assert!(s.missing().is_empty());
    assert_eq!(s.metric(), "fdmd_problem{code=\"z_report_missing\"} 0");

    // till-1's sale of this morning is covered by its Z; one made after it is not, the day after.
    s.sale("till-1", &till1, "a-3");
    clock.shift(Duration::days(1));
    assert_eq!(
        s.missing(),
        [
            "Z report missing since 2026-12-05: no Z report for series register/till-1/Z since 2026-12-05"
        ]
    );
    s.stop();
}
