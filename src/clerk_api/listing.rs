//! A resumable pass over every object of one [`Kind`], and what it does about objects created and
//! deleted while it runs.
//!
//! Every listing asks for the oldest objects first (`order_by=+created_at`), so objects created
//! during the pass land at its end, where the pass still finds them.
//!
//! **Users** page by keyset: `starting_after=<last id seen>`, which the spec recommends (a large
//! `offset` gets slower and eventually times out) and which does not drift when other users come or
//! go. The pass ends at a page shorter than `limit`, as the spec says. The one weak point is a
//! cursor user deleted between two pages; the spec does not say what Clerk does then, so the pass
//! copes with each possibility: a `400`/`404`/`422` to the cursor, or a short page after a cursor
//! user that a lookup then finds gone, makes it re-anchor on time instead, with
//! `created_at_after=<the last seen created_at - 1>` kept for the rest of the pass (objects at that
//! very millisecond that were already yielded are skipped by id). A server that simply continues
//! after a deleted cursor needs nothing.
//!
//! **Organizations and memberships** only page by `offset`, which drifts: each deletion of an
//! object already passed shifts the rest one place towards the start, so a plain `offset += limit`
//! would skip objects. So pages overlap: each one starts `overlap` places (`limit / 50`, 1 to 10)
//! before where the first unseen object is expected, and the pass checks that the page begins at or
//! before the last object it yielded (the page's first object is one of the last few yielded, or
//! older than the last one). When it does not, more than `overlap` objects were deleted behind the
//! pass, and it steps back, doubling the distance, until the page does (offset 0 always does). Only
//! objects after the last yielded one (by `created_at`, then by id among those it remembers) are
//! yielded, so the overlap is not yielded twice.
//!
//! What no listing can see: an object created with a back-dated `created_at` (Clerk's create calls
//! accept one) behind the pass, or created and deleted between two pages. The webhooks cover the
//! live traffic; for the rest, the pass reports the total count at its start and end. It calls
//! itself complete ([`PassReport::complete`]) only when the two agree, it yielded at least as many
//! objects as the end count, and no page broke the ordering it relies on.
//!
//! The [`Cursor`] holds all of this state: the kind and page size, where the next page starts, the
//! last dozen objects yielded (ids and `created_at`), the counts and the statistics. It is a few
//! hundred bytes of JSON, saved after each page; [`Client::resume`](super::Client::resume) picks
//! the pass up from it without fetching any page again beyond the normal overlap.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::{Client, Error, Kind, Lookup, MAX_PAGE_LIMIT, MIN_PAGE_LIMIT, client::Reply};

/// The cursor format; a cursor of another version is refused.
const CURSOR_VERSION: u32 = 1;
/// How many of the last yielded objects the cursor remembers (at least the largest overlap).
const RECENT: usize = 12;
/// The most step-backs one page may take; doubling from 1, offset 0 is reached long before.
const MAX_STEP_BACKS: u32 = 48;
/// The ordering every listing asks for: oldest first.
const OLDEST_FIRST: &str = "+created_at";

/// Where a pass stands; serializable, to be saved after each page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The format version, [`CURSOR_VERSION`].
    v: u32,
    /// What is listed.
    kind: Kind,
    /// Objects per page.
    limit: u32,
    /// Offset listings: the offset where the first object not yet yielded is expected.
    #[serde(default)]
    next_offset: u64,
    /// Users: the `starting_after` of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    /// Users: the `created_at_after` in force since a cursor user was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_after: Option<i64>,
    /// The last objects yielded, oldest first: the last one is the frontier of the pass.
    recent: Vec<Seen>,
    /// The total count when the pass started.
    start_total: Option<u64>,
    /// The total count when the pass ended.
    end_total: Option<u64>,
    /// Objects yielded so far.
    objects: u64,
    /// Pages fetched so far.
    pages: u64,
    /// Pages fetched again further back because the offset drifted.
    step_backs: u64,
    /// Times the users' `starting_after` cursor was lost.
    lost_cursors: u64,
    /// Pages that broke the ordering the pass relies on.
    anomalies: u64,
    /// Whether the pass is over.
    finished: bool,
}

/// An object the pass yielded: enough to recognize it and its place in the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    /// Its id.
    id: String,
    /// Its `created_at` (ms).
    at: i64,
}

/// How a finished pass went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassReport {
    /// What was listed.
    pub kind: Kind,
    /// Clerk's total count when the pass started.
    pub total_at_start: u64,
    /// Clerk's total count when the pass ended.
    pub total_at_end: u64,
    /// Objects yielded (the overlap between pages is not yielded twice).
    pub objects: u64,
    /// Pages fetched, step-backs included.
    pub pages: u64,
    /// Pages fetched again further back because objects were deleted behind the pass.
    pub step_backs: u64,
    /// Times the users' `starting_after` cursor was deleted and the pass re-anchored on time.
    pub lost_cursors: u64,
    /// Pages that were not in `created_at` order, or whose place could not be confirmed.
    pub anomalies: u64,
    /// Whether the pass can be trusted to have seen every object that existed throughout it: the
    /// counts at start and end agree, `objects` reaches the end count, and there were no anomalies.
    /// When false, objects may have been missed: run another pass.
    pub complete: bool,
}

/// A pass over one kind of object; see the module docs.
#[derive(Debug)]
pub struct Listing {
    /// The client that fetches.
    client: Client,
    /// Where the pass stands.
    cursor: Cursor,
}

/// One page as fetched: the objects and their keys.
#[derive(Debug)]
struct Fetched {
    /// The objects, as Clerk sent them.
    objects: Vec<Value>,
    /// Their ids and `created_at`, in the same order.
    keys: Vec<Seen>,
    /// `total_count`, for the kinds whose listing has one.
    total_count: Option<u64>,
}

// === impl Listing ===

impl Listing {
    /// A pass from `cursor`.
    pub(crate) fn new(client: Client, cursor: Cursor) -> Self {
        Listing { client, cursor }
    }

    /// The next page of objects not yet yielded, or `None` when the pass is over (then
    /// [`Listing::report`] says how it went). Pages are never empty. After an error the cursor is
    /// where it was, so calling again (or resuming a saved cursor) retries the same page.
    ///
    /// # Errors
    /// The [`Error`] of a request that failed for good.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Value>>, Error> {
        while !self.cursor.finished {
            let mut cursor = self.cursor.clone();
            let objects = match cursor.kind {
                Kind::User => users_step(&self.client, &mut cursor).await?,
                Kind::Organization | Kind::OrganizationMembership => {
                    offset_step(&self.client, &mut cursor).await?
                }
            };
            self.cursor = cursor;
            if let Some(report) = self.cursor.report() {
                tracing::info!(kind = %report.kind, objects = report.objects, pages = report.pages,
                    total_at_start = report.total_at_start, total_at_end = report.total_at_end,
                    step_backs = report.step_backs, lost_cursors = report.lost_cursors,
                    anomalies = report.anomalies, complete = report.complete,
                    "Clerk listing finished");
            }
            if !objects.is_empty() {
                return Ok(Some(objects));
            }
        }
        Ok(None)
    }

    /// Where the pass stands: save it after each page to resume there.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The cursor, giving up the listing.
    pub fn into_cursor(self) -> Cursor {
        self.cursor
    }

    /// How the pass went, once it is over.
    pub fn report(&self) -> Option<PassReport> {
        self.cursor.report()
    }
}

/// Fetches the next users page by keyset (see the module docs).
async fn users_step(client: &Client, cursor: &mut Cursor) -> Result<Vec<Value>, Error> {
    if cursor.start_total.is_none() {
        cursor.start_total = Some(client.count(Kind::User).await?);
    }
    loop {
        let after = cursor.after.clone();
        let url = users_url(client, cursor, after.as_deref());
        let page = match fetch_page(client, Kind::User, &url).await {
            Ok(Some(page)) => page,
            Ok(None) if after.is_some() => {
                cursor.lose_after();
                continue;
            }
            Err(Error::Rejected {
                status: 400 | 422, ..
            }) if after.is_some() => {
                cursor.lose_after();
                continue;
            }
            Ok(None) => return Err(not_found(&url)),
            Err(error) => return Err(error),
        };
        cursor.pages += 1;
        if page.objects.len() < cursor.limit as usize {
            if let Some(id) = &after
                && client.get(&Lookup::user(id.as_str())).await?.is_none()
            {
                // A short page after a deleted cursor user proves nothing: re-anchor on time.
                cursor.lose_after();
                continue;
            }
            cursor.finished = true;
            cursor.end_total = Some(client.count(Kind::User).await?);
        }
        if let Some(last) = page.keys.last() {
            cursor.after = Some(last.id.clone());
        }
        return Ok(cursor.take_new(page));
    }
}

/// Fetches the next page of an offset listing, stepping back while the offset drifted (see the
/// module docs).
async fn offset_step(client: &Client, cursor: &mut Cursor) -> Result<Vec<Value>, Error> {
    let overlap = overlap(cursor.limit);
    let mut back = if cursor.recent.is_empty() { 0 } else { overlap };
    let mut step_backs = 0;
    loop {
        let offset = cursor.next_offset.saturating_sub(back);
        let url = offset_url(client, cursor, offset);
        let page = fetch_page(client, cursor.kind, &url)
            .await?
            .ok_or_else(|| not_found(&url))?;
        let total = page
            .total_count
            .ok_or_else(|| unexpected(&url, "no total_count"))?;
        cursor.start_total.get_or_insert(total);
        cursor.pages += 1;
        let placed = offset == 0 || cursor.precedes_frontier(page.keys.first());
        if !placed && step_backs < MAX_STEP_BACKS {
            step_backs += 1;
            cursor.step_backs += 1;
            back = (back.max(1) * 2).min(cursor.next_offset);
            continue;
        }
        if !placed {
            cursor.anomalies += 1;
        }
        cursor.next_offset = offset + page.objects.len() as u64;
        if page.objects.len() < cursor.limit as usize {
            cursor.finished = true;
            cursor.end_total = Some(total);
        }
        return Ok(cursor.take_new(page));
    }
}

/// The pages' overlap for a page size: 2 % of it, 1 to 10 objects, always less than the page.
fn overlap(limit: u32) -> u64 {
    u64::from((limit / 50).clamp(1, 10).min(limit.saturating_sub(1)))
}

/// `GET /users?limit=..&order_by=+created_at[&starting_after=..][&created_at_after=..]`.
fn users_url(client: &Client, cursor: &Cursor, after: Option<&str>) -> Url {
    let mut url = client.endpoint(&[Kind::User.list_path()]);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("limit", &cursor.limit.to_string());
        query.append_pair("order_by", OLDEST_FIRST);
        if let Some(after) = after {
            query.append_pair("starting_after", after);
        }
        if let Some(created_after) = cursor.created_after {
            query.append_pair("created_at_after", &created_after.to_string());
        }
    }
    url
}

/// `GET /<kind>?limit=..&offset=..&order_by=+created_at`.
fn offset_url(client: &Client, cursor: &Cursor, offset: u64) -> Url {
    let mut url = client.endpoint(&[cursor.kind.list_path()]);
    url.query_pairs_mut()
        .append_pair("limit", &cursor.limit.to_string())
        .append_pair("offset", &offset.to_string())
        .append_pair("order_by", OLDEST_FIRST);
    url
}

/// GETs one page and checks its shape: a bare array for users, `{data, total_count}` for the
/// others; every object with a string `id` and an integer `created_at`. `None` for Clerk's 404.
async fn fetch_page(client: &Client, kind: Kind, url: &Url) -> Result<Option<Fetched>, Error> {
    let value = match client.fetch(url).await? {
        Reply::Json(value) => value,
        Reply::NotFound => return Ok(None),
    };
    let (objects, total_count) = match (kind, value) {
        (Kind::User, Value::Array(objects)) => (objects, None),
        (Kind::User, _) => return Err(unexpected(url, "the user list is not an array")),
        (_, Value::Object(mut body)) => {
            let total = body.get("total_count").and_then(Value::as_u64);
            match body.remove("data") {
                Some(Value::Array(objects)) => (objects, total),
                _ => return Err(unexpected(url, "the list has no data array")),
            }
        }
        (_, _) => return Err(unexpected(url, "the list is not an object")),
    };
    let keys = objects
        .iter()
        .map(|object| {
            key(object).ok_or_else(|| unexpected(url, "an object lacks id or created_at"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    tracing::debug!(kind = %kind, objects = objects.len(), total_count, "Clerk page fetched");
    Ok(Some(Fetched {
        objects,
        keys,
        total_count,
    }))
}

/// An object's id and `created_at`.
fn key(object: &Value) -> Option<Seen> {
    Some(Seen {
        id: object.get("id")?.as_str()?.to_owned(),
        at: object.get("created_at")?.as_i64()?,
    })
}

/// [`Error::UnexpectedResponse`] for `url`.
fn unexpected(url: &Url, what: &'static str) -> Error {
    Error::UnexpectedResponse {
        path: url.path().to_owned(),
        what,
    }
}

/// The error for a listing that answered Clerk's 404.
fn not_found(url: &Url) -> Error {
    Error::Rejected {
        path: url.path().to_owned(),
        status: 404,
        code: None,
        trace_id: None,
    }
}

// === impl Cursor ===

impl Cursor {
    /// The start of a pass.
    pub(crate) fn start(kind: Kind, limit: u32) -> Self {
        Cursor {
            v: CURSOR_VERSION,
            kind,
            limit,
            next_offset: 0,
            after: None,
            created_after: None,
            recent: Vec::new(),
            start_total: None,
            end_total: None,
            objects: 0,
            pages: 0,
            step_backs: 0,
            lost_cursors: 0,
            anomalies: 0,
            finished: false,
        }
    }

    /// What the pass lists.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the pass is over.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Objects yielded so far.
    pub fn objects(&self) -> u64 {
        self.objects
    }

    /// How the pass went, once it is over.
    pub fn report(&self) -> Option<PassReport> {
        let (Some(start), Some(end), true) = (self.start_total, self.end_total, self.finished)
        else {
            return None;
        };
        Some(PassReport {
            kind: self.kind,
            total_at_start: start,
            total_at_end: end,
            objects: self.objects,
            pages: self.pages,
            step_backs: self.step_backs,
            lost_cursors: self.lost_cursors,
            anomalies: self.anomalies,
            complete: start == end && self.objects >= end && self.anomalies == 0,
        })
    }

    /// Refuses a cursor this version cannot continue.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.v != CURSOR_VERSION {
            return Err(Error::InvalidCursor("it is from another version"));
        }
        if !(MIN_PAGE_LIMIT..=MAX_PAGE_LIMIT).contains(&self.limit) {
            return Err(Error::InvalidCursor("its page limit is out of range"));
        }
        if self.recent.len() > RECENT {
            return Err(Error::InvalidCursor("it remembers too many objects"));
        }
        let users_only = self.after.is_some() || self.created_after.is_some();
        if users_only && self.kind != Kind::User {
            return Err(Error::InvalidCursor("it mixes paging styles"));
        }
        Ok(())
    }

    /// Whether `first` (a page's first object) is at or before the frontier: one of the last
    /// objects yielded, or older than the last one.
    fn precedes_frontier(&self, first: Option<&Seen>) -> bool {
        let Some(frontier) = self.recent.last() else {
            return true;
        };
        first.is_some_and(|first| first.at < frontier.at || self.remembers(&first.id))
    }

    /// Whether `id` is among the last objects yielded.
    fn remembers(&self, id: &str) -> bool {
        self.recent.iter().any(|seen| seen.id == id)
    }

    /// Keeps the objects of `page` that come after the frontier, records them, and notes an
    /// anomaly when the page is not in `created_at` order.
    fn take_new(&mut self, page: Fetched) -> Vec<Value> {
        if page.keys.windows(2).any(|pair| pair[0].at > pair[1].at) {
            self.anomalies += 1;
        }
        let frontier = self.recent.last().map(|seen| seen.at);
        let mut new = Vec::with_capacity(page.objects.len());
        for (object, key) in page.objects.into_iter().zip(page.keys) {
            let after = match frontier {
                None => true,
                Some(at) => key.at > at || (key.at == at && !self.remembers(&key.id)),
            };
            if after {
                new.push(object);
                self.recent.push(key);
            }
        }
        let excess = self.recent.len().saturating_sub(RECENT);
        self.recent.drain(..excess);
        self.objects += new.len() as u64;
        new
    }

    /// The users' cursor is gone: from now on, anchor on the frontier's `created_at` instead.
    fn lose_after(&mut self) {
        self.lost_cursors += 1;
        self.after = None;
        self.created_after = self.recent.last().map(|seen| seen.at - 1);
        tracing::debug!(
            lost_cursors = self.lost_cursors,
            "Clerk user cursor lost; re-anchoring on time"
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page(objects: &[(&str, i64)]) -> Fetched {
        let objects: Vec<Value> = objects
            .iter()
            .map(|(id, at)| json!({"id": id, "created_at": at}))
            .collect();
        let keys = objects.iter().map(|o| key(o).unwrap()).collect();
        Fetched {
            objects,
            keys,
            total_count: None,
        }
    }

    fn ids(objects: &[Value]) -> Vec<&str> {
        objects.iter().map(|o| o["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn only_objects_after_the_frontier_are_yielded_ties_by_id() {
        let mut cursor = Cursor::start(Kind::Organization, 3);
        let first = cursor.take_new(page(&[("a", 1), ("b", 2), ("c", 2)]));
        assert_eq!(ids(&first), ["a", "b", "c"]);
        let second = cursor.take_new(page(&[("c", 2), ("d", 2), ("e", 3)]));
        assert_eq!(ids(&second), ["d", "e"]);
        assert_eq!(cursor.objects, 5);
        assert_eq!(cursor.anomalies, 0);
        cursor.take_new(page(&[("g", 5), ("f", 4)]));
        assert_eq!(cursor.anomalies, 1);
    }

    #[test]
    fn a_page_is_placed_when_it_starts_at_or_before_the_frontier() {
        let mut cursor = Cursor::start(Kind::Organization, 3);
        cursor.take_new(page(&[("a", 1), ("b", 2), ("c", 3)]));
        let seen = |id: &str, at| Seen { id: id.into(), at };
        assert!(cursor.precedes_frontier(Some(&seen("c", 3))));
        assert!(cursor.precedes_frontier(Some(&seen("z", 1))));
        assert!(!cursor.precedes_frontier(Some(&seen("d", 4))));
        assert!(!cursor.precedes_frontier(Some(&seen("x", 3))));
        assert!(!cursor.precedes_frontier(None));
    }

    #[test]
    fn the_cursor_stays_small_and_round_trips() {
        let mut cursor = Cursor::start(Kind::OrganizationMembership, 500);
        let many: Vec<(String, i64)> = (0..500)
            .map(|i| (format!("orgmem_{i:027}"), 1_700_000_000_000 + i))
            .collect();
        let many: Vec<(&str, i64)> = many.iter().map(|(id, at)| (id.as_str(), *at)).collect();
        cursor.take_new(page(&many));
        let json = serde_json::to_string(&cursor).unwrap();
        assert!(json.len() < 1024, "{} bytes: {json}", json.len());
        let back: Cursor = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cursor);
        back.check().unwrap();
    }

    #[test]
    fn completeness_needs_equal_counts_enough_objects_and_no_anomaly() {
        let mut cursor = Cursor::start(Kind::Organization, 10);
        cursor.take_new(page(&[("a", 1), ("b", 2)]));
        assert_eq!(cursor.report(), None);
        cursor.finished = true;
        cursor.start_total = Some(2);
        cursor.end_total = Some(2);
        assert!(cursor.report().unwrap().complete);
        cursor.end_total = Some(3);
        assert!(!cursor.report().unwrap().complete);
        cursor.start_total = Some(3);
        assert!(!cursor.report().unwrap().complete, "2 objects of 3");
    }

    #[test]
    fn overlap_is_two_percent_within_bounds() {
        assert_eq!(overlap(10), 1);
        assert_eq!(overlap(100), 2);
        assert_eq!(overlap(500), 10);
    }
}
