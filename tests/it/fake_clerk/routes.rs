//! The fake's answers, following the Backend API spec (bapi-2026-05-12):
//!
//! - `GET /users`: a bare array; `limit` (default 10, 1 to 500, else 422), `offset`, `order_by`
//!   (default `-created_at`), `created_at_after`, and `starting_after`, which returns the users
//!   after that one and is a 422 with an `order_by` other than `created_at`/`+created_at`/
//!   `-created_at` or with a non-zero `offset`. A `starting_after` naming a deleted or unknown user
//!   is answered as the test chose ([`DeletedCursor`]): the spec leaves it open.
//! - `GET /users/count`: `{object: "total_count", total_count}`.
//! - `GET /users/{id}`, `GET /organizations/{id}` (ids only, not slugs): the object, or a 404 with
//!   Clerk's error body.
//! - `GET /organizations`, `GET /organization_memberships`: `{data, total_count}`, `limit`,
//!   `offset`, `order_by` (default `-created_at`).
//! - `GET /organizations/{id}/memberships`: the same, for one organization (404 when it does not
//!   exist), filtered by `user_id` (repeatable).
//!
//! Orderings by a field other than `created_at` (valid in the spec, never used by the client) sort
//! by id: deterministic, not Clerk's.

use clerk_bridge::clerk_api::Kind;
use hyper::StatusCode;
use serde_json::json;

use super::store::{Row, Store, Table};

/// The most a `limit` may be.
const MAX_LIMIT: usize = 500;
/// `limit` when none is given.
const DEFAULT_LIMIT: usize = 10;
/// The `order_by` fields `/users` accepts.
const USER_ORDER_FIELDS: &[&str] = &[
    "created_at",
    "updated_at",
    "email_address",
    "web3wallet",
    "first_name",
    "last_name",
    "phone_number",
    "username",
    "last_active_at",
    "last_sign_in_at",
];
/// The `order_by` fields `/organizations` accepts.
const ORGANIZATION_ORDER_FIELDS: &[&str] = &["name", "created_at", "members_count"];
/// The `order_by` fields the membership lists accept.
const MEMBERSHIP_ORDER_FIELDS: &[&str] = &[
    "phone_number",
    "email_address",
    "created_at",
    "first_name",
    "last_name",
    "username",
];

/// What the fake does with a `starting_after` naming a user that does not exist (any more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeletedCursor {
    /// 404 with Clerk's error body.
    NotFound,
    /// 422.
    Unprocessable,
    /// An empty page (the dangerous one: it looks like the end).
    Empty,
    /// The users after where it was (keyset on its remembered `created_at`).
    Continue,
}

/// An answer: status and JSON body.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status.
    pub(crate) status: StatusCode,
    /// The JSON body.
    pub(crate) body: String,
}

/// A request's query, decoded.
pub(crate) type Query = [(String, String)];

/// How a listing is ordered and cut.
#[derive(Debug)]
struct Paging {
    /// Objects per page.
    limit: usize,
    /// Objects skipped.
    offset: usize,
    /// Newest first.
    descending: bool,
    /// Ordered by `created_at` (else by id).
    by_created_at: bool,
}

/// Answers a GET of `path` (below `/v1`).
pub(crate) fn answer(store: &Store, deleted: DeletedCursor, path: &str, query: &Query) -> Answer {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match segments.as_slice() {
        ["users"] => list_users(store, deleted, query),
        ["users", "count"] => Ok(ok(
            json!({"object": "total_count", "total_count": store.users.rows().len()}).to_string(),
        )),
        ["users", id] => get(&store.users, id),
        ["organizations"] => list(
            &store.organizations,
            query,
            ORGANIZATION_ORDER_FIELDS,
            |_| true,
        ),
        ["organizations", id] => get(&store.organizations, id),
        ["organizations", id, "memberships"] => organization_memberships(store, id, query),
        ["organization_memberships"] => {
            list(&store.memberships, query, MEMBERSHIP_ORDER_FIELDS, |_| true)
        }
        _ => Err(not_found()),
    };
    result.unwrap_or_else(|refusal| refusal)
}

/// `GET /users`.
fn list_users(store: &Store, deleted: DeletedCursor, query: &Query) -> Result<Answer, Answer> {
    let paging = paging(query, USER_ORDER_FIELDS)?;
    let created_after = match param(query, "created_at_after") {
        Some(value) => Some(
            value
                .parse::<i64>()
                .map_err(|_| invalid("created_at_after"))?,
        ),
        None => None,
    };
    let rows: Vec<&Row> = ordered(&store.users, &paging)
        .filter(|row| created_after.is_none_or(|after| row.created_at > after))
        .collect();
    let start = match param(query, "starting_after") {
        None => paging.offset,
        Some(_) if !paging.by_created_at => return Err(invalid("order_by")),
        Some(_) if paging.offset != 0 => return Err(invalid("offset")),
        Some(id) => match cursor_at(&store.users, deleted, id)? {
            Some(at) => rows.partition_point(|row| {
                let key = (row.created_at, row.id.as_str());
                if paging.descending {
                    key >= (at, id)
                } else {
                    key <= (at, id)
                }
            }),
            None => rows.len(),
        },
    };
    let page = rows.iter().skip(start).take(paging.limit).copied();
    Ok(ok(array(page)))
}

/// The `created_at` to continue after for a `starting_after` id, or `None` for an empty page.
fn cursor_at(users: &Table, deleted: DeletedCursor, id: &str) -> Result<Option<i64>, Answer> {
    if let Some(row) = users.get(id) {
        return Ok(Some(row.created_at));
    }
    match deleted {
        DeletedCursor::NotFound => Err(not_found()),
        DeletedCursor::Unprocessable => Err(invalid("starting_after")),
        DeletedCursor::Empty => Ok(None),
        DeletedCursor::Continue => users.tombstone(id).map(Some).ok_or_else(not_found),
    }
}

/// `GET /organizations/{id}/memberships`.
fn organization_memberships(store: &Store, org: &str, query: &Query) -> Result<Answer, Answer> {
    if store.organizations.get(org).is_none() {
        return Err(not_found());
    }
    let users: Vec<&str> = query
        .iter()
        .filter(|(name, _)| name == "user_id")
        .map(|(_, value)| value.trim_start_matches('+'))
        .collect();
    list(&store.memberships, query, MEMBERSHIP_ORDER_FIELDS, |row| {
        row.organization_id.as_deref() == Some(org)
            && (users.is_empty() || users.contains(&row.user_id.as_deref().unwrap_or_default()))
    })
}

/// An offset listing answering `{data, total_count}`.
fn list(
    table: &Table,
    query: &Query,
    fields: &[&str],
    keep: impl Fn(&Row) -> bool,
) -> Result<Answer, Answer> {
    let paging = paging(query, fields)?;
    let rows: Vec<&Row> = ordered(table, &paging).filter(|row| keep(row)).collect();
    let page = rows.iter().skip(paging.offset).take(paging.limit).copied();
    Ok(ok(format!(
        r#"{{"data":{},"total_count":{}}}"#,
        array(page),
        rows.len()
    )))
}

/// `GET` of one object.
fn get(table: &Table, id: &str) -> Result<Answer, Answer> {
    table
        .get(id)
        .map(|row| ok(row.json.clone()))
        .ok_or_else(not_found)
}

/// Reads `limit`, `offset` and `order_by` (the first one, as Clerk does).
fn paging(query: &Query, fields: &[&str]) -> Result<Paging, Answer> {
    let limit = match param(query, "limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
            _ => return Err(invalid("limit")),
        },
    };
    let offset = match param(query, "offset") {
        None => 0,
        Some(text) => text.parse::<usize>().map_err(|_| invalid("offset"))?,
    };
    let order = param(query, "order_by").unwrap_or("-created_at");
    let (descending, field) = match order.as_bytes().first() {
        Some(b'-') => (true, &order[1..]),
        Some(b'+') => (false, &order[1..]),
        _ => (false, order),
    };
    if !fields.contains(&field) {
        return Err(invalid("order_by"));
    }
    Ok(Paging {
        limit,
        offset,
        descending,
        by_created_at: field == "created_at",
    })
}

/// A table's rows in the listing's order.
fn ordered<'t>(table: &'t Table, paging: &Paging) -> Box<dyn Iterator<Item = &'t Row> + 't> {
    let mut rows: Vec<&Row> = table.rows().iter().collect();
    if !paging.by_created_at {
        rows.sort_by(|a, b| a.id.cmp(&b.id));
    }
    if paging.descending {
        rows.reverse();
    }
    Box::new(rows.into_iter())
}

/// The first value of a query parameter.
pub(crate) fn param<'q>(query: &'q Query, name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A JSON array of rows.
fn array<'r>(rows: impl Iterator<Item = &'r Row>) -> String {
    let mut out = String::from("[");
    for (i, row) in rows.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&row.json);
    }
    out.push(']');
    out
}

/// 200 with `body`.
fn ok(body: String) -> Answer {
    Answer {
        status: StatusCode::OK,
        body,
    }
}

/// 404, as Clerk answers it.
fn not_found() -> Answer {
    clerk_error(StatusCode::NOT_FOUND, "resource_not_found", "not found")
}

/// 422 for a bad parameter.
fn invalid(param: &str) -> Answer {
    let mut answer = clerk_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "form_param_value_invalid",
        "is invalid",
    );
    let mut body: serde_json::Value = serde_json::from_str(&answer.body).expect("own JSON");
    body["errors"][0]["meta"] = json!({"param_name": param});
    answer.body = body.to_string();
    answer
}

/// An answer with Clerk's error body (`ClerkErrors`).
pub(crate) fn clerk_error(status: StatusCode, code: &str, message: &str) -> Answer {
    let body = json!({
        "errors": [{"message": message, "long_message": message, "code": code}],
        "clerk_trace_id": "fake-trace",
    });
    Answer {
        status,
        body: body.to_string(),
    }
}

/// The kind a listing path serves (for tests reading the request log).
pub(crate) fn listed_kind(path: &str) -> Option<Kind> {
    match path.trim_matches('/') {
        "users" => Some(Kind::User),
        "organizations" => Some(Kind::Organization),
        "organization_memberships" => Some(Kind::OrganizationMembership),
        _ => None,
    }
}
