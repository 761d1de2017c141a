//! paved: self-service infrastructure for Backstage.
//!
//! Module map (the product's nouns): `templates` (offerings from Software Templates: forms,
//! validation, rendering, lint), `provisioning` (requests, engine, drivers), `catalog`
//! (Backstage entities), `api` (HTTP), `db` (schema, migrations, entities), `config`,
//! `telemetry`, `app` (wiring), `cli` and `client` (the command line, also as an API client).

pub mod access;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod config;
pub mod cost;
pub mod day2;
pub mod db;
pub mod error;
pub mod guardrails;
pub mod jobs;
pub mod notifications;
pub mod policy;
pub mod provisioning;
pub mod reports;
pub mod telemetry;
pub mod templates;
pub mod usecases;
pub mod vocab;
