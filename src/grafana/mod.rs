//! Grafana HTTP API client and the idempotent provisioning built on it: upsert the Prometheus
//! datasource by a fixed uid, import dashboards into a folder, skip what is already current.
//!
//! Supported: Grafana 11.x and 12.x. Endpoints used: `GET /api/health`, `GET /api/datasources/uid/:uid`,
//! `GET /api/datasources/name/:name`, `POST /api/datasources`, `PUT /api/datasources/uid/:uid`,
//! `GET /api/dashboards/uid/:uid`, `POST /api/dashboards/db`, `GET /api/search`,
//! `GET /api/folders`, `GET /api/folders/:uid`, `POST /api/folders`.
//!
//! One truth for where the dashboards live: the file provider in
//! `monitoring/grafana/provisioning/dashboards/iris.yaml` and this importer both use folder uid
//! [`FOLDER_UID`] titled [`FOLDER_TITLE`] (a unit test reads the YAML to keep them agreeing).

//!
//! Split by concern: [`client`] (HTTP, auth, errors), [`dashboards`] (files, comparison),
//! [`provisioning`] (datasource upsert, folder, dashboard import, waiting for the file provisioner).
//! Release annotations are written and read by [`Client::annotate`] and [`Client::annotations`].

use serde::Serialize;

pub mod client;
pub mod dashboards;
pub mod provisioning;

pub use client::{redact_urls, split_userinfo, Auth, Client, GrafanaError};
pub use dashboards::{
    dashboard_is_current, is_file_provisioned, load_dashboard, load_dashboards,
    resolved_dashboards, write_resolved_dashboards, DashboardFile,
};
pub use provisioning::{
    dashboard_plan, ensure_folder, import_dashboard, provision, provision_waiting, save_dashboard,
    upsert_datasource, wait_for_file_provisioning, DatasourceSpec, Plan, FILE_PROVISIONING_GRACE,
};

/// The datasource uid every dashboard panel refers to (also in the file provisioning).
pub const DATASOURCE_UID: &str = "iris-prometheus";
pub const DATASOURCE_NAME: &str = "Prometheus";
pub const FOLDER_UID: &str = "iris";
pub const FOLDER_TITLE: &str = "Iris";
/// Where, under the project directory, the resolved copy of the dashboards for Grafana's file
/// provider is written ([`write_resolved_dashboards`]); mounted at `/etc/grafana/dashboards`.
pub const RESOLVED_DASHBOARDS_DIR: &str = ".irisctl/grafana-dashboards";

/// What a provisioning step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub object: String,
    pub action: Action,
    pub url: String,
}
