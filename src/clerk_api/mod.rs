//! A client for Clerk's Backend API (BAPI), for backfill and reconciliation: it lists every user,
//! organization and organization membership of an instance, and looks single objects up.
//!
//! Why it exists: Clerk never sends webhooks for objects that existed before the endpoint did, and
//! a webhook missed for longer than Svix retries is gone. Listing the instance fills both gaps;
//! looking an object up confirms that it is really gone before the bridge records its deletion.
//!
//! The client is a guest on the instance's rate limit (1000 requests per 10 s for production
//! instances, 100 for development ones, shared with the application itself), so:
//! - it paces every request through one rate budget (a token bucket, see `budget`) that never
//!   exceeds the configured share of that limit, and a `429` pauses the whole budget for its
//!   `Retry-After`;
//! - it retries what may succeed later (`429`, `5xx`, connection errors, timeouts, a body that
//!   breaks off or is not JSON) a bounded number of times with capped, jittered exponential
//!   backoff, and fails at once, with a typed [`Error`], on what will not (`401`, other `4xx`);
//! - every wait is bounded (connect and request timeouts), and so is every body it reads.
//!
//! A pass over one [`Kind`] is a [`Listing`]: it yields pages of raw objects (`serde_json::Value`,
//! as Clerk sent each one) and keeps a small serializable [`Cursor`] that can be saved after each
//! page and handed back to [`Client::resume`] after a crash. How the listing copes with objects
//! created and deleted while it runs, and how it reports whether a pass may have missed some, is in
//! the `listing` module's docs and [`PassReport`].
//!
//! Nothing here logs the secret key or personal data: logs and errors carry paths, ids, statuses
//! and counts only.

mod budget;
mod client;
mod config;
mod error;
mod listing;
mod lookup;
mod retry;

use serde::{Deserialize, Serialize};

pub use client::Client;
pub use config::{
    Config, ConfigError, DEFAULT_BASE_URL, Instance, MAX_PAGE_LIMIT, MIN_PAGE_LIMIT, SecretKey,
};
pub use error::{Error, Transient};
pub use listing::{Cursor, Listing, PassReport};
pub use lookup::Lookup;

/// The Backend API version this client speaks (the spec's `info.version`), sent as
/// [`API_VERSION_HEADER`] on every request so response shapes cannot change under it.
pub const API_VERSION: &str = "2026-05-12";

/// The header that pins the API version.
pub const API_VERSION_HEADER: &str = "clerk-api-version";

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("clerk-bridge/", env!("CARGO_PKG_VERSION"));

/// The kinds of object the client lists and looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A user (`user_...`), listed from `GET /users`.
    User,
    /// An organization (`org_...`), listed from `GET /organizations`.
    Organization,
    /// An organization membership (`orgmem_...`), listed from `GET /organization_memberships`.
    OrganizationMembership,
}

// === impl Kind ===

impl Kind {
    /// All kinds, in the order a backfill should list them (memberships refer to both others).
    pub const ALL: [Kind; 3] = [Kind::User, Kind::Organization, Kind::OrganizationMembership];

    /// The `object` value Clerk gives this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Organization => "organization",
            Kind::OrganizationMembership => "organization_membership",
        }
    }

    /// The path segment of this kind's listing, below the base URL.
    pub(crate) const fn list_path(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Organization => "organizations",
            Kind::OrganizationMembership => "organization_memberships",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
