//! The fake's data: users, organizations and memberships, generated deterministically from Clerk's
//! example payloads (`tests/fixtures/clerk-events/*.created.json`, their `data`) with fresh ids and
//! `created_at`/`updated_at` in ms, plus the mutation API tests use between pages.
//!
//! Each table keeps its rows sorted by (`created_at`, `id`), the order every listing walks, and the
//! `created_at` of deleted ids (tombstones), so a `starting_after` naming a deleted user can be
//! answered the way the test asks. Objects are stored serialized: a page is a concatenation.
//! Like Clerk, deleting a user or an organization deletes its memberships.

use std::collections::HashMap;

use clerk_bridge::clerk_api::Kind;
use serde_json::{Value, json};

/// Clerk's example `user.created`, whose `data` is the user template.
const USER_EXAMPLE: &str = include_str!("../../fixtures/clerk-events/user.created.json");
/// Clerk's example `organization.created`.
const ORGANIZATION_EXAMPLE: &str =
    include_str!("../../fixtures/clerk-events/organization.created.json");
/// Clerk's example `organizationMembership.created`.
const MEMBERSHIP_EXAMPLE: &str =
    include_str!("../../fixtures/clerk-events/organizationMembership.created.json");

/// The `created_at` of the first generated object (2020-09-13).
const EPOCH_MS: i64 = 1_600_000_000_000;
/// Generated objects are this far apart, except for deliberate ties (every 7th shares its
/// predecessor's `created_at`, so orderings must break ties).
const STEP_MS: i64 = 1_000;
/// Base-62 digits, for ids.
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// One stored object.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Its id.
    pub(crate) id: String,
    /// Its `created_at` (ms).
    pub(crate) created_at: i64,
    /// For memberships: the organization.
    pub(crate) organization_id: Option<String>,
    /// For memberships: the user.
    pub(crate) user_id: Option<String>,
    /// The object, serialized.
    pub(crate) json: String,
}

/// The objects of one kind.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// Live rows, sorted by (`created_at`, `id`).
    rows: Vec<Row>,
    /// `created_at` of every live id.
    live: HashMap<String, i64>,
    /// `created_at` of every deleted id.
    tombstones: HashMap<String, i64>,
}

/// Everything the fake Clerk holds.
#[derive(Debug)]
pub(crate) struct Store {
    /// Users.
    pub(crate) users: Table,
    /// Organizations.
    pub(crate) organizations: Table,
    /// Organization memberships.
    pub(crate) memberships: Table,
    /// Objects made so far, for fresh ids.
    made: u64,
    /// The `created_at` of the newest object.
    clock: i64,
    /// The example payloads' `data`: user, organization, membership.
    templates: [Value; 3],
}

// === impl Table ===

impl Table {
    /// Live rows, oldest first.
    pub(crate) fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The live row with `id`.
    pub(crate) fn get(&self, id: &str) -> Option<&Row> {
        let at = *self.live.get(id)?;
        self.position(id, at).ok().map(|i| &self.rows[i])
    }

    /// The `created_at` of a deleted id.
    pub(crate) fn tombstone(&self, id: &str) -> Option<i64> {
        self.tombstones.get(id).copied()
    }

    /// Live ids, oldest first.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.rows.iter().map(|row| row.id.clone()).collect()
    }

    /// Where (`id`, `at`) is or would be.
    fn position(&self, id: &str, at: i64) -> Result<usize, usize> {
        self.rows
            .binary_search_by(|row| (row.created_at, row.id.as_str()).cmp(&(at, id)))
    }

    /// Adds a row in order.
    fn insert(&mut self, row: Row) {
        let slot = self
            .position(&row.id, row.created_at)
            .unwrap_or_else(|slot| slot);
        self.live.insert(row.id.clone(), row.created_at);
        self.rows.insert(slot, row);
    }

    /// Removes a row, leaving a tombstone.
    fn remove(&mut self, id: &str) -> Option<Row> {
        let at = self.live.remove(id)?;
        let index = self.position(id, at).ok()?;
        self.tombstones.insert(id.to_owned(), at);
        Some(self.rows.remove(index))
    }

    /// Replaces a live row's JSON.
    fn replace(&mut self, id: &str, json: String) -> bool {
        let Some(at) = self.live.get(id).copied() else {
            return false;
        };
        let Ok(index) = self.position(id, at) else {
            return false;
        };
        self.rows[index].json = json;
        true
    }
}

// === impl Store ===

impl Store {
    /// `users` users, `organizations` organizations, and `memberships` memberships spread over
    /// them (membership `i` joins organization `i % organizations` and a user chosen so that no
    /// pair repeats), all with `created_at` in the past and ties among them.
    pub(crate) fn generate(users: usize, organizations: usize, memberships: usize) -> Self {
        let mut store = Store::empty();
        for i in 0..users {
            store.add_user(generated_at(i));
        }
        let user_ids = store.users.ids();
        for i in 0..organizations {
            let creator = user_ids.get(i % users.max(1)).cloned();
            store.add_organization(generated_at(i), creator.as_deref());
        }
        let org_ids = store.organizations.ids();
        let per_org = memberships.div_ceil(organizations.max(1));
        assert!(
            per_org <= users,
            "more memberships than distinct (organization, user) pairs"
        );
        for i in 0..memberships {
            let (org, round) = (i % organizations, i / organizations);
            let user = (org * 7 + round * (users / per_org.max(1)).max(1)) % users;
            store.add_membership(generated_at(i), &org_ids[org], &user_ids[user]);
        }
        store
    }

    /// No objects.
    fn empty() -> Self {
        let template = |example: &str| {
            let mut event: Value = serde_json::from_str(example).expect("Clerk example payload");
            event["data"].take()
        };
        Store {
            users: Table::default(),
            organizations: Table::default(),
            memberships: Table::default(),
            made: 0,
            clock: EPOCH_MS,
            templates: [
                template(USER_EXAMPLE),
                template(ORGANIZATION_EXAMPLE),
                template(MEMBERSHIP_EXAMPLE),
            ],
        }
    }

    /// The table of `kind`.
    pub(crate) fn table(&self, kind: Kind) -> &Table {
        match kind {
            Kind::User => &self.users,
            Kind::Organization => &self.organizations,
            Kind::OrganizationMembership => &self.memberships,
        }
    }

    /// A new user, newer than everything so far; returns its id.
    pub(crate) fn create_user(&mut self) -> String {
        self.add_user(self.clock + STEP_MS)
    }

    /// A new organization, newer than everything so far; returns its id.
    pub(crate) fn create_organization(&mut self) -> String {
        self.add_organization(self.clock + STEP_MS, None)
    }

    /// A new membership of `user_id` in `organization_id`; returns its id.
    pub(crate) fn create_membership(&mut self, organization_id: &str, user_id: &str) -> String {
        self.add_membership(self.clock + STEP_MS, organization_id, user_id)
    }

    /// Deletes an object (and, for a user or an organization, its memberships). False when there
    /// was no such live object.
    pub(crate) fn delete(&mut self, kind: Kind, id: &str) -> bool {
        let removed = match kind {
            Kind::User => self.users.remove(id),
            Kind::Organization => self.organizations.remove(id),
            Kind::OrganizationMembership => self.memberships.remove(id),
        };
        if removed.is_some() && kind != Kind::OrganizationMembership {
            let orphans: Vec<String> = self
                .memberships
                .rows
                .iter()
                .filter(|row| {
                    row.user_id.as_deref() == Some(id) || row.organization_id.as_deref() == Some(id)
                })
                .map(|row| row.id.clone())
                .collect();
            for orphan in orphans {
                self.memberships.remove(&orphan);
            }
        }
        removed.is_some()
    }

    /// Changes an object (its public metadata) and bumps its `updated_at`.
    pub(crate) fn update(&mut self, kind: Kind, id: &str) -> bool {
        let Some(row) = self.table(kind).get(id) else {
            return false;
        };
        let mut object: Value = serde_json::from_str(&row.json).expect("stored JSON");
        self.clock += 1;
        object["updated_at"] = json!(self.clock);
        object["public_metadata"] = json!({"revision": self.clock});
        let json = object.to_string();
        match kind {
            Kind::User => self.users.replace(id, json),
            Kind::Organization => self.organizations.replace(id, json),
            Kind::OrganizationMembership => self.memberships.replace(id, json),
        }
    }

    /// Adds a user created at `at`.
    fn add_user(&mut self, at: i64) -> String {
        let n = self.next(at);
        let id = fresh_id("user", n);
        let email_id = fresh_id("idn", n);
        let mut user = self.templates[0].clone();
        let fields = [
            ("id", json!(id)),
            ("first_name", json!(format!("First{n}"))),
            ("last_name", json!(format!("Last{n}"))),
            ("username", json!(format!("user{n}"))),
            ("primary_email_address_id", json!(email_id)),
            ("email_addresses", json!([email(&email_id, n, at)])),
            ("created_at", json!(at)),
            ("updated_at", json!(at)),
            ("last_sign_in_at", Value::Null),
            ("last_active_at", Value::Null),
            ("legal_accepted_at", Value::Null),
        ];
        set(&mut user, fields);
        self.users.insert(Row {
            id: id.clone(),
            created_at: at,
            organization_id: None,
            user_id: None,
            json: user.to_string(),
        });
        id
    }

    /// Adds an organization created at `at`.
    fn add_organization(&mut self, at: i64, creator: Option<&str>) -> String {
        let n = self.next(at);
        let id = fresh_id("org", n);
        let mut org = self.templates[1].clone();
        let fields = [
            ("id", json!(id)),
            ("name", json!(format!("Organization {n}"))),
            ("slug", json!(format!("organization-{n}"))),
            ("created_by", json!(creator.unwrap_or(""))),
            ("created_at", json!(at)),
            ("updated_at", json!(at)),
        ];
        set(&mut org, fields);
        self.organizations.insert(Row {
            id: id.clone(),
            created_at: at,
            organization_id: None,
            user_id: None,
            json: org.to_string(),
        });
        id
    }

    /// Adds a membership created at `at` (the organization and user must exist).
    fn add_membership(&mut self, at: i64, organization_id: &str, user_id: &str) -> String {
        let n = self.next(at);
        let id = fresh_id("orgmem", n);
        let organization: Value =
            serde_json::from_str(&self.organizations.get(organization_id).expect("org").json)
                .expect("stored JSON");
        let user: Value = serde_json::from_str(&self.users.get(user_id).expect("user").json)
            .expect("stored JSON");
        let mut membership = self.templates[2].clone();
        let public_user_data = json!({
            "user_id": user_id,
            "first_name": user["first_name"],
            "last_name": user["last_name"],
            "profile_image_url": user["image_url"],
            "image_url": user["image_url"],
            "has_image": user["has_image"],
            "identifier": user["email_addresses"][0]["email_address"],
            "username": user["username"],
        });
        let fields = [
            ("id", json!(id)),
            ("organization", organization),
            ("public_user_data", public_user_data),
            ("created_at", json!(at)),
            ("updated_at", json!(at)),
        ];
        set(&mut membership, fields);
        self.memberships.insert(Row {
            id: id.clone(),
            created_at: at,
            organization_id: Some(organization_id.to_owned()),
            user_id: Some(user_id.to_owned()),
            json: membership.to_string(),
        });
        id
    }

    /// Counts an object created at `at`: returns its serial number, and keeps the clock at the
    /// newest `created_at`.
    fn next(&mut self, at: i64) -> u64 {
        self.clock = self.clock.max(at);
        self.made += 1;
        self.made
    }
}

/// The `created_at` of the `i`-th generated object of a kind.
fn generated_at(i: usize) -> i64 {
    let i = i as i64;
    let tied = i % 7 == 1;
    EPOCH_MS + (i - i64::from(tied)) * STEP_MS
}

/// An EmailAddress object.
fn email(id: &str, n: u64, at: i64) -> Value {
    json!({
        "id": id,
        "object": "email_address",
        "email_address": format!("user{n}@example.com"),
        "reserved": false,
        "verification": {
            "status": "verified",
            "strategy": "email_code",
            "attempts": null,
            "expire_at": null,
        },
        "linked_to": [],
        "created_at": at,
        "updated_at": at,
    })
}

/// Sets `fields` on an object.
fn set<const N: usize>(object: &mut Value, fields: [(&str, Value); N]) {
    for (name, value) in fields {
        object[name] = value;
    }
}

/// A Clerk-like id: `prefix_` and 27 base-62 characters, unique per `n` (the first 11 encode a
/// bijection of it), in no particular order (so nothing can lean on ids sorting like `created_at`).
fn fresh_id(prefix: &str, n: u64) -> String {
    let mut id = format!("{prefix}_");
    for (mut state, digits) in [
        (splitmix(n), 11),
        (splitmix(!n), 11),
        (splitmix(n ^ 0x5A5A), 5),
    ] {
        for _ in 0..digits {
            id.push(char::from(BASE62[(state % 62) as usize]));
            state /= 62;
        }
    }
    id
}

/// SplitMix64: a bijection on u64 with good mixing.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
