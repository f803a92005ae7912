//! Single-object lookups, to confirm that an object is really gone before its deletion is
//! recorded, and total counts.
//!
//! Users and organizations have their own `GET` (`/users/{id}`, `/organizations/{id}`). A
//! membership has none in the spec, and its id (`orgmem_...`) is not an address anything can be
//! fetched by, so a membership is looked up through its organization's member list filtered to its
//! user: `GET /organizations/{organization_id}/memberships?user_id={user_id}`. It exists when that
//! list holds an entry with its id. A `404` for the organization means the organization, and so the
//! membership, is gone; a deleted user's memberships are removed with it, so the list is then
//! empty. A user who left and rejoined has a new membership with a new id: the old one is reported
//! gone. The answer only counts as an absence when the list is consistent with its filter (every
//! entry belongs to that user); otherwise the lookup fails rather than report a false absence.
//!
//! Absence is only ever concluded from Clerk's own `404` (with its error body) or from such a list,
//! never from a `404` another server sent (see [`Error::UnexpectedNotFound`]).

use serde_json::Value;

use super::{Client, Error, Kind, client::Reply};

/// Entries asked for in a membership lookup; one user has at most one membership per organization.
const MEMBERSHIP_LOOKUP_LIMIT: &str = "10";

/// An object to look up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// A user, by id.
    User {
        /// `user_...`.
        id: String,
    },
    /// An organization, by id.
    Organization {
        /// `org_...`.
        id: String,
    },
    /// An organization membership, by its id and the two ids it joins.
    OrganizationMembership {
        /// `orgmem_...`.
        id: String,
        /// The organization's `org_...`.
        organization_id: String,
        /// The member's `user_...`.
        user_id: String,
    },
}

// === impl Lookup ===

impl Lookup {
    /// A user lookup.
    pub fn user(id: impl Into<String>) -> Self {
        Lookup::User { id: id.into() }
    }

    /// An organization lookup.
    pub fn organization(id: impl Into<String>) -> Self {
        Lookup::Organization { id: id.into() }
    }

    /// The lookup of a raw object of `kind` (a listed one, or a webhook's `data`): a membership's
    /// organization and user come from `organization.id` and `public_user_data.user_id`. `None`
    /// when a needed id is missing.
    pub fn of(kind: Kind, object: &Value) -> Option<Self> {
        let id = object.get("id")?.as_str()?.to_owned();
        Some(match kind {
            Kind::User => Lookup::User { id },
            Kind::Organization => Lookup::Organization { id },
            Kind::OrganizationMembership => Lookup::OrganizationMembership {
                id,
                organization_id: object.pointer("/organization/id")?.as_str()?.to_owned(),
                user_id: object
                    .pointer("/public_user_data/user_id")?
                    .as_str()?
                    .to_owned(),
            },
        })
    }

    /// The kind of object looked up.
    pub fn kind(&self) -> Kind {
        match self {
            Lookup::User { .. } => Kind::User,
            Lookup::Organization { .. } => Kind::Organization,
            Lookup::OrganizationMembership { .. } => Kind::OrganizationMembership,
        }
    }

    /// The id of the object looked up.
    pub fn id(&self) -> &str {
        match self {
            Lookup::User { id } | Lookup::Organization { id } => id,
            Lookup::OrganizationMembership { id, .. } => id,
        }
    }
}

// === impl Client ===

impl Client {
    /// The object as Clerk has it now, or `None` when Clerk says it does not exist (see the module
    /// docs for memberships).
    ///
    /// # Errors
    /// Any request [`Error`]; in particular [`Error::UnexpectedNotFound`] for a `404` that Clerk
    /// did not send, and [`Error::UnexpectedResponse`] for a membership list that ignored its
    /// filter.
    pub async fn get(&self, lookup: &Lookup) -> Result<Option<Value>, Error> {
        match lookup {
            Lookup::User { id } => self.get_object(&["users", id]).await,
            Lookup::Organization { id } => self.get_object(&["organizations", id]).await,
            Lookup::OrganizationMembership {
                id,
                organization_id,
                user_id,
            } => self.get_membership(id, organization_id, user_id).await,
        }
    }

    /// Clerk's total count of objects of `kind`: `GET /users/count` for users, the `total_count` of
    /// a one-object page for the others.
    ///
    /// # Errors
    /// Any request [`Error`].
    pub async fn count(&self, kind: Kind) -> Result<u64, Error> {
        let url = match kind {
            Kind::User => self.endpoint(&["users", "count"]),
            _ => {
                let mut url = self.endpoint(&[kind.list_path()]);
                url.query_pairs_mut().append_pair("limit", "1");
                url
            }
        };
        let path = url.path().to_owned();
        match self.fetch(&url).await? {
            Reply::Json(value) => value.get("total_count").and_then(Value::as_u64),
            Reply::NotFound => None,
        }
        .ok_or(Error::UnexpectedResponse {
            path,
            what: "no total_count",
        })
    }

    /// `GET` of one object by path.
    async fn get_object(&self, segments: &[&str]) -> Result<Option<Value>, Error> {
        match self.fetch(&self.endpoint(segments)).await? {
            Reply::Json(value) if value.is_object() => Ok(Some(value)),
            Reply::Json(_) => Err(Error::UnexpectedResponse {
                path: self.endpoint(segments).path().to_owned(),
                what: "the object is not a JSON object",
            }),
            Reply::NotFound => Ok(None),
        }
    }

    /// A membership, through its organization's member list filtered to its user.
    async fn get_membership(
        &self,
        id: &str,
        organization_id: &str,
        user_id: &str,
    ) -> Result<Option<Value>, Error> {
        let mut url = self.endpoint(&["organizations", organization_id, "memberships"]);
        url.query_pairs_mut()
            .append_pair("user_id", user_id)
            .append_pair("limit", MEMBERSHIP_LOOKUP_LIMIT);
        let unexpected = |what| Error::UnexpectedResponse {
            path: url.path().to_owned(),
            what,
        };
        let mut body = match self.fetch(&url).await? {
            Reply::Json(body) => body,
            Reply::NotFound => return Ok(None),
        };
        let Some(Value::Array(entries)) = body.get_mut("data").map(Value::take) else {
            return Err(unexpected("the membership list has no data array"));
        };
        let filtered = entries.iter().all(|entry| {
            entry
                .pointer("/public_user_data/user_id")
                .and_then(Value::as_str)
                == Some(user_id)
        });
        if !filtered {
            return Err(unexpected("the membership list ignored its user_id filter"));
        }
        Ok(entries
            .into_iter()
            .find(|entry| entry.get("id").and_then(Value::as_str) == Some(id)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lookups_come_from_raw_objects() {
        let membership = json!({
            "id": "orgmem_1",
            "organization": {"id": "org_1"},
            "public_user_data": {"user_id": "user_1"},
        });
        assert_eq!(
            Lookup::of(Kind::OrganizationMembership, &membership),
            Some(Lookup::OrganizationMembership {
                id: "orgmem_1".into(),
                organization_id: "org_1".into(),
                user_id: "user_1".into(),
            })
        );
        assert_eq!(
            Lookup::of(Kind::User, &json!({"id": "user_1"})),
            Some(Lookup::user("user_1"))
        );
        assert_eq!(
            Lookup::of(Kind::OrganizationMembership, &json!({"id": "x"})),
            None
        );
        assert_eq!(Lookup::organization("org_1").kind(), Kind::Organization);
        assert_eq!(Lookup::organization("org_1").id(), "org_1");
    }
}
