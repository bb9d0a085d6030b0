//! Shared by the native tests: fixtures, the API in process ([`app`]), `lens serve` as a
//! process ([`server`]), a hub with HuggingFace's layout ([`hub_server`]).

#![allow(dead_code)] // not every helper is used by the tests of every build (wasm32, features)

pub mod app;
pub mod files;
pub mod hub_server;
pub mod server;

use serde_json::Value;

/// Asserts status and error code, and that the message is not empty.
pub fn assert_error(result: &(u16, Value), status: u16, code: &str) {
    let (got, body) = result;
    assert_eq!((*got, body["error"]["code"].as_str()), (status, Some(code)), "{body}");
    assert!(!body["error"]["message"].as_str().unwrap_or("").is_empty(), "{body}");
}
