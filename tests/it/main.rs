//! paved's integration tests, one binary: each module is one area, run against the real
//! PostgreSQL, Redis and (in `backstage_e2e`) a real Backstage backend. Linking the crate once
//! instead of once per file keeps the suite fast; `cargo nextest run -E 'test(/^area::/)'`
//! runs one area (e.g. `test(/^engine::/)`).

mod common;

mod access;
mod api;
mod auth;
mod backstage_e2e;
mod backstage_frontend;
mod backstage_modules;
mod catalog_feed;
mod catalog_pages;
mod cli;
mod day2;
mod drivers;
mod engine;
mod faults;
mod guardrails;
mod hardening;
mod honest;
mod input;
mod jobs;
mod layers;
mod load;
mod rbac;
mod secrets_key;
mod shutdown;
mod teams;
mod tenancy;
mod terraform;
