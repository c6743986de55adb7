//! `kill -9` in the middle of SCIM traffic, on the real binary: after a restart on the same `STATE_DIR`, every
//! request that was answered 2xx is there, and every request is there whole or not at all.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{eventually, scratch_state_dir, start_fakes, OUTLINE_SECRET};
use crate::scim::SCIM_TOKEN;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(outline_url: &str, outline_token: &str, state: &std::path::Path) -> (Killed, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_authentik-bridge"))
        .arg("serve")
        .env_clear()
        .env("SOURCE", "scim")
        .env("SCIM_TOKEN", SCIM_TOKEN)
        .env("STATE_DIR", state)
        .env("OUTLINE_URL", outline_url)
        .env("OUTLINE_TOKEN", outline_token)
        .env("OUTLINE_WEBHOOK_SECRET", OUTLINE_SECRET)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RECONCILE_INTERVAL", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the bridge starts");
    (Killed(child), format!("http://127.0.0.1:{port}/scim/v2"))
}

async fn up(http: &reqwest::Client, base: &str) {
    let url = format!("{base}/ServiceProviderConfig");
    for _ in 0..1000 {
        if let Ok(r) = http.get(&url).bearer_auth(SCIM_TOKEN).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the bridge did not answer within 10 s");
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut req = http
        .request(method, url)
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", "application/scim+json");
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Some((status, body))
}

#[tokio::test]
async fn kill_9_mid_traffic_loses_nothing_answered_and_leaves_nothing_half_done() {
    let (_authentik, outline) = start_fakes().await;
    let state = scratch_state_dir("scim-crash");
    let http = reqwest::Client::new();
    let (mut first, base) = serve(&outline.url(), &outline.token(), &state);
    up(&http, &base).await;
    let (status, group) = send(
        &http,
        reqwest::Method::POST,
        format!("{base}/Groups"),
        Some(json!({"displayName": "v-start"})),
    )
    .await
    .expect("answered");
    assert_eq!(status, 201);
    let gid = group["id"].as_str().expect("id").to_string();

    // Each step: create user i, then one PATCH that adds them and renames the group to v-i, atomically.
    let answered_users: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let answered_patches: Arc<Mutex<Vec<usize>>> = Arc::default();
    let answers = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (http, base, gid) = (http.clone(), base.clone(), gid.clone());
        let (users, patches, answers) = (
            answered_users.clone(),
            answered_patches.clone(),
            answers.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for n in 0..500 {
                let i = n * 4 + worker;
                let body = json!({"userName": format!("p{i}"), "emails": [{"value": format!("p{i}@example.com"), "primary": true}]});
                let Some((201, user)) = send(&http, reqwest::Method::POST, format!("{base}/Users"), Some(body)).await else {
                    return;
                };
                let uid = user["id"].as_str().unwrap_or_default().to_string();
                users.lock().expect("lock").push((i, uid.clone()));
                answers.fetch_add(1, Ordering::SeqCst);
                let patch = json!({"Operations": [
                    {"op": "add", "path": "members", "value": [{"value": uid}]},
                    {"op": "replace", "path": "displayName", "value": format!("v-{i}")}]});
                let Some((204, _)) = send(&http, reqwest::Method::PATCH, format!("{base}/Groups/{gid}"), Some(patch)).await else {
                    return;
                };
                patches.lock().expect("lock").push(i);
                answers.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Killed once enough requests were answered that others are surely in flight.
    eventually("200 SCIM answers", Duration::from_secs(60), || {
        answers.load(Ordering::SeqCst) >= 200
    })
    .await;
    first.0.kill().expect("SIGKILL");
    let _ = first.0.wait();
    for t in tasks {
        let _ = t.await;
    }

    let (_second, base) = serve(&outline.url(), &outline.token(), &state);
    up(&http, &base).await;
    let users = answered_users.lock().expect("lock").clone();
    let patches = answered_patches.lock().expect("lock").clone();
    assert!(
        users.len() >= 100,
        "traffic was flowing when the bridge was killed"
    );
    for (i, uid) in &users {
        let (status, body) = send(
            &http,
            reqwest::Method::GET,
            format!("{base}/Users/{uid}"),
            None,
        )
        .await
        .expect("answered");
        assert_eq!(
            status, 200,
            "user p{i} was answered 201 before the kill: {body}"
        );
    }
    let (_, group) = send(
        &http,
        reqwest::Method::GET,
        format!("{base}/Groups/{gid}"),
        None,
    )
    .await
    .expect("answered");
    let members: Vec<String> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["value"].as_str().map(str::to_string))
        .collect();
    let uid_of = |i: usize| users.iter().find(|(j, _)| *j == i).map(|(_, u)| u.clone());
    for i in &patches {
        let uid = uid_of(*i).expect("the user of an answered PATCH was answered");
        assert!(
            members.contains(&uid),
            "PATCH {i} was answered 204 before the kill"
        );
    }
    // Whole or nothing: the name the group ended with came with its member.
    let name = group["displayName"].as_str().expect("name");
    if let Some(i) = name
        .strip_prefix("v-")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let (_, found) = send(
            &http,
            reqwest::Method::GET,
            format!("{base}/Users?filter=userName+eq+%22p{i}%22"),
            None,
        )
        .await
        .expect("answered");
        let uid = found["Resources"][0]["id"]
            .as_str()
            .expect("the renaming PATCH's user exists")
            .to_string();
        assert!(
            members.contains(&uid),
            "the rename to {name} was stored without its member"
        );
    }
    // And nothing half-written: every member is a user the store knows.
    let (_, all) = send(
        &http,
        reqwest::Method::GET,
        format!("{base}/Users?count=200&startIndex=1"),
        None,
    )
    .await
    .expect("answered");
    assert!(all["totalResults"].as_u64().unwrap_or(0) as usize >= users.len());
}
