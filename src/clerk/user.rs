//! Conversion of Clerk's user JSON (`data` of `user.*` events, and the `user` embedded in session
//! events) into the typed proto messages.
//!
//! Every proto field is read from the Clerk JSON field of the same `snake_case` name, through the
//! lenient accessors in [`super::json`]: a missing, `null` or wrongly typed field leaves the proto
//! field absent (or at its default for non-optional scalars) and never fails the conversion.
//! All `*_at` fields are Clerk's int64 milliseconds, converted to `Timestamp`s.
//!
//! OAuth accounts are the exception to "same name": Clerk has sent Google accounts in an older
//! shape (`object: "google_account"`, `google_id`, `given_name`, `family_name`, `picture`, with the
//! identification id as `id`) and in a mix of the old and the current shape (the account id then in
//! `external_account_id`). Every shape fills the same typed fields, so consumers key linked
//! accounts the same way whatever the payload's age.
//!
//! A user's `organization_memberships` are typed beside the [`User`], on the message that holds it
//! (`UserEvent`, or `Session` for the embedded user), by [`memberships_of_user`]: `User` cannot
//! hold an `OrganizationMembership` without an import cycle between the proto files.
//!
//! The conversion keeps Clerk's order of list entries. The primary email address is the entry whose
//! id equals `primary_email_address_id`, not necessarily the first, so nothing here reorders lists.

use super::json::{
    Object, bool_or_false, first_string, known_enum, objects, opt_bool, opt_i64, opt_object,
    opt_string, opt_struct, string_or_empty, strings, timestamp_ms,
};
use super::organization::memberships_of_user;
use crate::proto::{
    ClerkError, DeletedUser, EmailAddress, EnterpriseAccount, ExternalAccount, IdentificationLink,
    Passkey, PhoneNumber, SamlAccount, ScimUserMetadata, SsoConnection, User, UserEvent,
    Verification, VerificationStatus, Web3Wallet, user_event::Change,
};

/// The `object` of an OAuth account in the legacy Google shape.
const LEGACY_GOOGLE_OBJECT: &str = "google_account";

/// The provider of Google accounts, as the current shape names it.
const GOOGLE_PROVIDER: &str = "oauth_google";

/// The typed change of a `user.{action}` event, with the user's memberships beside it, or `None`
/// for an action this version does not know.
pub(crate) fn user_event(action: &str, data: &Object<'_>) -> Option<UserEvent> {
    let change = match action {
        "created" => Change::Created(user_from_json(data)),
        "updated" => Change::Updated(user_from_json(data)),
        "deleted" => Change::Deleted(deleted_user_from_json(data)),
        _ => return None,
    };
    Some(UserEvent {
        change: Some(change),
        organization_memberships: memberships_of_user(data),
    })
}

/// Converts the `data` object of a `user.created` or `user.updated` event into a [`User`].
pub(crate) fn user_from_json(data: &Object<'_>) -> User {
    let user = User {
        id: string_or_empty(data, "id"),
        external_id: opt_string(data, "external_id"),
        username: opt_string(data, "username"),
        first_name: opt_string(data, "first_name"),
        last_name: opt_string(data, "last_name"),
        locale: opt_string(data, "locale"),
        image_url: opt_string(data, "image_url"),
        has_image: bool_or_false(data, "has_image"),
        public_metadata: opt_struct(data, "public_metadata"),
        private_metadata: opt_struct(data, "private_metadata"),
        unsafe_metadata: opt_struct(data, "unsafe_metadata"),
        birthday: opt_string(data, "birthday"),
        gender: opt_string(data, "gender"),
        profile_image_url: opt_string(data, "profile_image_url"),
        ..User::default()
    };
    let user = with_identifiers(data, user);
    let user = with_security(data, user);
    with_activity(data, user)
}

/// Converts the `data` object of a `user.deleted` event into a [`DeletedUser`].
pub(crate) fn deleted_user_from_json(data: &Object<'_>) -> DeletedUser {
    DeletedUser {
        id: string_or_empty(data, "id"),
        external_id: opt_string(data, "external_id"),
    }
}

/// Fills the user's identifiers and linked accounts: primary ids and every list.
fn with_identifiers(data: &Object<'_>, user: User) -> User {
    User {
        primary_email_address_id: opt_string(data, "primary_email_address_id"),
        primary_phone_number_id: opt_string(data, "primary_phone_number_id"),
        primary_web3_wallet_id: opt_string(data, "primary_web3_wallet_id"),
        email_addresses: objects(data, "email_addresses", email_address),
        phone_numbers: objects(data, "phone_numbers", phone_number),
        web3_wallets: objects(data, "web3_wallets", web3_wallet),
        passkeys: objects(data, "passkeys", passkey),
        external_accounts: objects(data, "external_accounts", external_account),
        saml_accounts: objects(data, "saml_accounts", saml_account),
        enterprise_accounts: objects(data, "enterprise_accounts", enterprise_account),
        ..user
    }
}

/// Fills the user's sign-in security settings: factors, bans, lockouts and permissions.
fn with_security(data: &Object<'_>, user: User) -> User {
    User {
        password_enabled: bool_or_false(data, "password_enabled"),
        two_factor_enabled: bool_or_false(data, "two_factor_enabled"),
        totp_enabled: bool_or_false(data, "totp_enabled"),
        backup_code_enabled: bool_or_false(data, "backup_code_enabled"),
        mfa_enabled_at: timestamp_ms(data, "mfa_enabled_at"),
        mfa_disabled_at: timestamp_ms(data, "mfa_disabled_at"),
        banned: bool_or_false(data, "banned"),
        locked: bool_or_false(data, "locked"),
        lockout_expires_in_seconds: opt_i64(data, "lockout_expires_in_seconds"),
        verification_attempts_remaining: opt_i64(data, "verification_attempts_remaining"),
        delete_self_enabled: bool_or_false(data, "delete_self_enabled"),
        create_organization_enabled: bool_or_false(data, "create_organization_enabled"),
        create_organizations_limit: opt_i64(data, "create_organizations_limit"),
        password_last_updated_at: timestamp_ms(data, "password_last_updated_at"),
        deprovisioned: bool_or_false(data, "deprovisioned"),
        bypass_client_trust: bool_or_false(data, "bypass_client_trust"),
        requires_password_reset: opt_bool(data, "requires_password_reset"),
        scim: opt_object(data, "scim").map(scim),
        ..user
    }
}

/// Fills the user's lifecycle and activity times.
fn with_activity(data: &Object<'_>, user: User) -> User {
    User {
        last_sign_in_at: timestamp_ms(data, "last_sign_in_at"),
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
        last_active_at: timestamp_ms(data, "last_active_at"),
        legal_accepted_at: timestamp_ms(data, "legal_accepted_at"),
        ..user
    }
}

/// The `verification` object of `obj`, or `None` when Clerk sends null or something else.
fn verification_of(obj: &Object<'_>) -> Option<Verification> {
    verification_at(obj, "verification")
}

/// The verification object at `key`, or `None` when Clerk sends null or something else.
pub(super) fn verification_at(obj: &Object<'_>, key: &str) -> Option<Verification> {
    opt_object(obj, key).map(verification)
}

/// Converts a verification object.
fn verification(obj: &Object<'_>) -> Verification {
    Verification {
        status: string_or_empty(obj, "status"),
        known_status: known_enum(
            obj,
            "status",
            "VERIFICATION_STATUS_",
            VerificationStatus::from_str_name,
        ),
        strategy: opt_string(obj, "strategy"),
        attempts: opt_i64(obj, "attempts"),
        expire_at: timestamp_ms(obj, "expire_at"),
        external_verification_redirect_url: opt_string(obj, "external_verification_redirect_url"),
        verified_at: timestamp_ms(obj, "verified_at"),
        error: opt_object(obj, "error").map(clerk_error),
        verified_at_client: opt_string(obj, "verified_at_client"),
        nonce: opt_string(obj, "nonce"),
        message: opt_string(obj, "message"),
        channel: opt_string(obj, "channel"),
    }
}

/// Converts an error object (a verification's `error`).
fn clerk_error(obj: &Object<'_>) -> ClerkError {
    ClerkError {
        message: string_or_empty(obj, "message"),
        long_message: string_or_empty(obj, "long_message"),
        code: string_or_empty(obj, "code"),
        meta: opt_struct(obj, "meta"),
    }
}

/// Converts a user's `scim` object.
fn scim(obj: &Object<'_>) -> ScimUserMetadata {
    ScimUserMetadata {
        directory_id: string_or_empty(obj, "directory_id"),
        directory_enabled: bool_or_false(obj, "directory_enabled"),
        external_id: opt_string(obj, "external_id"),
    }
}

/// Converts one entry of a `linked_to` list.
fn identification_link(obj: &Object<'_>) -> IdentificationLink {
    IdentificationLink {
        r#type: string_or_empty(obj, "type"),
        id: string_or_empty(obj, "id"),
    }
}

/// Converts one entry of `email_addresses`.
fn email_address(obj: &Object<'_>) -> EmailAddress {
    EmailAddress {
        id: string_or_empty(obj, "id"),
        email_address: string_or_empty(obj, "email_address"),
        reserved: bool_or_false(obj, "reserved"),
        verification: verification_of(obj),
        linked_to: objects(obj, "linked_to", identification_link),
        matches_sso_connection: opt_bool(obj, "matches_sso_connection"),
        created_at: timestamp_ms(obj, "created_at"),
        updated_at: timestamp_ms(obj, "updated_at"),
    }
}

/// Converts one entry of `phone_numbers`.
fn phone_number(obj: &Object<'_>) -> PhoneNumber {
    PhoneNumber {
        id: string_or_empty(obj, "id"),
        phone_number: string_or_empty(obj, "phone_number"),
        reserved_for_second_factor: bool_or_false(obj, "reserved_for_second_factor"),
        default_second_factor: bool_or_false(obj, "default_second_factor"),
        reserved: bool_or_false(obj, "reserved"),
        verification: verification_of(obj),
        linked_to: objects(obj, "linked_to", identification_link),
        backup_codes: strings(obj, "backup_codes"),
        created_at: timestamp_ms(obj, "created_at"),
        updated_at: timestamp_ms(obj, "updated_at"),
    }
}

/// Converts one entry of `web3_wallets`.
fn web3_wallet(obj: &Object<'_>) -> Web3Wallet {
    Web3Wallet {
        id: string_or_empty(obj, "id"),
        web3_wallet: string_or_empty(obj, "web3_wallet"),
        verification: verification_of(obj),
        created_at: timestamp_ms(obj, "created_at"),
        updated_at: timestamp_ms(obj, "updated_at"),
    }
}

/// Converts one entry of `passkeys`.
fn passkey(obj: &Object<'_>) -> Passkey {
    Passkey {
        id: string_or_empty(obj, "id"),
        name: string_or_empty(obj, "name"),
        last_used_at: timestamp_ms(obj, "last_used_at"),
        verification: verification_of(obj),
    }
}

/// Converts one entry of `external_accounts` (an OAuth account), in any shape Clerk has sent: the
/// current one, the legacy Google one and the mix of both (see [`account_ids`] and the names read
/// with [`first_string`]).
fn external_account(obj: &Object<'_>) -> ExternalAccount {
    let (id, identification_id) = account_ids(obj);
    ExternalAccount {
        id,
        provider: provider(obj),
        identification_id,
        provider_user_id: first_string(obj, &["provider_user_id", "google_id"]),
        approved_scopes: opt_string(obj, "approved_scopes"),
        email_address: opt_string(obj, "email_address"),
        first_name: first_string(obj, &["first_name", "given_name"]),
        last_name: first_string(obj, &["last_name", "family_name"]),
        image_url: first_string(obj, &["image_url", "avatar_url", "picture"]),
        external_account_id: opt_string(obj, "external_account_id"),
        avatar_url: opt_string(obj, "avatar_url"),
        email_address_verified: opt_bool(obj, "email_address_verified"),
        username: opt_string(obj, "username"),
        phone_number: opt_string(obj, "phone_number"),
        public_metadata: opt_struct(obj, "public_metadata"),
        label: opt_string(obj, "label"),
        verification: verification_of(obj),
        created_at: timestamp_ms(obj, "created_at"),
        updated_at: timestamp_ms(obj, "updated_at"),
    }
}

/// The account id and the identification id of an OAuth account. The current shape sends both as
/// `id` (`eac_...`) and `identification_id`; the mixed shape sends the identification id as `id`
/// and the account id as `external_account_id`; the legacy shape has only its identification id,
/// as `id`.
fn account_ids(obj: &Object<'_>) -> (String, Option<String>) {
    let id = opt_string(obj, "id");
    let account_id = opt_string(obj, "external_account_id").filter(|eac| !eac.is_empty());
    let legacy = opt_string(obj, "object").as_deref() == Some(LEGACY_GOOGLE_OBJECT);
    let identification_id = opt_string(obj, "identification_id").or_else(|| {
        let id_is_identification = legacy || account_id.is_some();
        id.clone().filter(|_| id_is_identification)
    });
    (account_id.or(id).unwrap_or_default(), identification_id)
}

/// The provider of an OAuth account: as sent, or `oauth_google` for the legacy Google shape, which
/// names the provider only in its `object`.
fn provider(obj: &Object<'_>) -> String {
    match opt_string(obj, "provider").filter(|p| !p.is_empty()) {
        Some(provider) => provider,
        None if opt_string(obj, "object").as_deref() == Some(LEGACY_GOOGLE_OBJECT) => {
            GOOGLE_PROVIDER.to_owned()
        }
        None => String::new(),
    }
}

/// Converts one entry of `saml_accounts`.
fn saml_account(obj: &Object<'_>) -> SamlAccount {
    SamlAccount {
        id: string_or_empty(obj, "id"),
        provider: string_or_empty(obj, "provider"),
        active: bool_or_false(obj, "active"),
        email_address: opt_string(obj, "email_address"),
        first_name: opt_string(obj, "first_name"),
        last_name: opt_string(obj, "last_name"),
        provider_user_id: opt_string(obj, "provider_user_id"),
        public_metadata: opt_struct(obj, "public_metadata"),
        verification: verification_of(obj),
        saml_connection: opt_object(obj, "saml_connection").map(sso_connection),
        last_authenticated_at: timestamp_ms(obj, "last_authenticated_at"),
    }
}

/// Converts one entry of `enterprise_accounts`.
fn enterprise_account(obj: &Object<'_>) -> EnterpriseAccount {
    EnterpriseAccount {
        id: string_or_empty(obj, "id"),
        protocol: opt_string(obj, "protocol"),
        provider: string_or_empty(obj, "provider"),
        active: bool_or_false(obj, "active"),
        email_address: opt_string(obj, "email_address"),
        first_name: opt_string(obj, "first_name"),
        last_name: opt_string(obj, "last_name"),
        provider_user_id: opt_string(obj, "provider_user_id"),
        public_metadata: opt_struct(obj, "public_metadata"),
        verification: verification_of(obj),
        enterprise_connection: opt_object(obj, "enterprise_connection").map(sso_connection),
        last_authenticated_at: timestamp_ms(obj, "last_authenticated_at"),
        enterprise_connection_id: opt_string(obj, "enterprise_connection_id"),
    }
}

/// Converts a `saml_connection` or `enterprise_connection` object.
fn sso_connection(obj: &Object<'_>) -> SsoConnection {
    SsoConnection {
        id: string_or_empty(obj, "id"),
        name: string_or_empty(obj, "name"),
        domain: opt_string(obj, "domain"),
        active: bool_or_false(obj, "active"),
        provider: opt_string(obj, "provider"),
        protocol: opt_string(obj, "protocol"),
        sync_user_attributes: opt_bool(obj, "sync_user_attributes"),
        created_at: timestamp_ms(obj, "created_at"),
        updated_at: timestamp_ms(obj, "updated_at"),
        domains: strings(obj, "domains"),
        allow_subdomains: opt_bool(obj, "allow_subdomains"),
        allow_idp_initiated: opt_bool(obj, "allow_idp_initiated"),
        disable_additional_identifications: opt_bool(obj, "disable_additional_identifications"),
        logo_public_url: opt_string(obj, "logo_public_url"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clerk::json::object;
    use prost_types::{Struct, Timestamp, Value as ProtoValue, value::Kind};
    use serde_json::{Value, json};

    /// The `Timestamp` of a Clerk time in these tests (all positive): milliseconds, except that the
    /// small values below 10^11 are seconds, as the decoder reads them.
    fn ts(time: i64) -> Option<Timestamp> {
        let millis = if time < 100_000_000_000 {
            time * 1000
        } else {
            time
        };
        Some(Timestamp {
            seconds: millis / 1000,
            nanos: i32::try_from(millis % 1000).unwrap() * 1_000_000,
        })
    }

    /// A `Struct` with string fields.
    fn strings(fields: &[(&str, &str)]) -> Option<Struct> {
        let fields = fields.iter().map(|(k, v)| {
            let value = ProtoValue {
                kind: Some(Kind::StringValue((*v).to_owned())),
            };
            ((*k).to_owned(), value)
        });
        Some(Struct {
            fields: fields.collect(),
        })
    }

    /// A verification object as Clerk sends it, with every field set.
    fn verification_json(status: &str, strategy: &str, expire_at: i64) -> Value {
        json!({
            "object": "verification_email_code", "status": status, "strategy": strategy,
            "attempts": 1, "expire_at": expire_at,
            "external_verification_redirect_url": "https://accounts.example.com/continue",
            "error": {"code": "oauth_denied", "message": "Denied", "long_message": "Denied by you",
                      "meta": {"reason": "user"}},
            "verified_at_client": "client_1", "nonce": "nonce_1", "message": "Sign this",
            "channel": "sms"
        })
    }

    /// The [`Verification`] that [`verification_json`] describes.
    fn verification_proto(status: &str, strategy: &str, expire_at: i64) -> Option<Verification> {
        Some(Verification {
            status: status.into(),
            known_status: VerificationStatus::Verified as i32,
            strategy: Some(strategy.into()),
            attempts: Some(1),
            expire_at: ts(expire_at),
            external_verification_redirect_url: Some(
                "https://accounts.example.com/continue".into(),
            ),
            verified_at: None,
            error: Some(ClerkError {
                code: "oauth_denied".into(),
                message: "Denied".into(),
                long_message: "Denied by you".into(),
                meta: strings(&[("reason", "user")]),
            }),
            verified_at_client: Some("client_1".into()),
            nonce: Some("nonce_1".into()),
            message: Some("Sign this".into()),
            channel: Some("sms".into()),
        })
    }

    /// A user with every field set: two addresses (the primary is the second), one of each account.
    ///
    /// Built from parts because one `json!` literal this big exceeds the macro recursion limit.
    /// The fields of a `json!` object literal, to combine fixtures.
    fn map(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(fields) => fields,
            other => panic!("not an object: {other}"),
        }
    }

    fn full_user_json() -> Value {
        let mut user = map(profile_json());
        let parts = [
            security_json(),
            provisioning_json(),
            identifiers_json(),
            accounts_json(),
        ];
        for part in parts {
            user.extend(map(part));
        }
        Value::Object(user)
    }

    /// The profile part of [`full_user_json`].
    fn profile_json() -> Value {
        json!({
            "object": "user", "id": "user_full", "external_id": "ext_42",
            "primary_email_address_id": "idn_email_2", "primary_phone_number_id": "idn_phone_1",
            "primary_web3_wallet_id": "idn_wallet_1", "username": "ada", "first_name": "Ada",
            "last_name": "Lovelace", "locale": "en-GB", "image_url": "https://img.clerk.com/ada",
            "has_image": true, "public_metadata": {"role": "admin"},
            "private_metadata": {"plan": "pro"}, "unsafe_metadata": {"theme": "dark"},
            "birthday": "1815-12-10", "gender": "female",
            "profile_image_url": "https://img.clerk.com/ada-old"
        })
    }

    /// The security and activity part of [`full_user_json`].
    fn security_json() -> Value {
        json!({
            "password_enabled": true, "two_factor_enabled": true, "totp_enabled": true,
            "backup_code_enabled": true, "mfa_enabled_at": 24_000, "mfa_disabled_at": 25_000,
            "last_sign_in_at": 26_000, "banned": true, "locked": true,
            "lockout_expires_in_seconds": 300, "verification_attempts_remaining": 2,
            "created_at": 1_716_883_200_000_i64, "updated_at": 1_716_883_500_123_i64,
            "delete_self_enabled": true, "create_organization_enabled": true,
            "create_organizations_limit": 3, "last_active_at": 27_000,
            "legal_accepted_at": 28_000
        })
    }

    /// The password, provisioning and trust part of [`full_user_json`].
    fn provisioning_json() -> Value {
        json!({
            "password_last_updated_at": 30_000, "deprovisioned": true,
            "bypass_client_trust": true, "requires_password_reset": true,
            "scim": {"directory_id": "dir_1", "directory_enabled": true, "external_id": "okta-9"}
        })
    }

    /// The email addresses, phone numbers, wallets and passkeys of [`full_user_json`].
    fn identifiers_json() -> Value {
        json!({
            "email_addresses": [
                {"id": "idn_email_1", "object": "email_address", "email_address": "old@example.com",
                 "reserved": true, "verification": null, "linked_to": [],
                 "matches_sso_connection": false, "created_at": 1_000, "updated_at": 2_000},
                {"id": "idn_email_2", "object": "email_address", "email_address": "ada@example.com",
                 "reserved": false,
                 "verification": verification_json("verified", "from_oauth_google", 3_000),
                 "linked_to": [{"type": "oauth_google", "id": "idn_google_1"}],
                 "matches_sso_connection": true, "created_at": 4_000, "updated_at": 5_000}
            ],
            "phone_numbers": [
                {"id": "idn_phone_1", "object": "phone_number", "phone_number": "+15555550100",
                 "reserved_for_second_factor": true, "default_second_factor": true, "reserved": true,
                 "verification": verification_json("verified", "phone_code", 6_000),
                 "linked_to": [{"type": "oauth_apple", "id": "idn_apple_1"}],
                 "backup_codes": ["code-1", "code-2"],
                 "created_at": 7_000, "updated_at": 8_000}
            ],
            "web3_wallets": [
                {"id": "idn_wallet_1", "object": "web3_wallet", "web3_wallet": "0xabc",
                 "verification": verification_json("verified", "web3_metamask_signature", 9_000),
                 "created_at": 10_000, "updated_at": 11_000}
            ],
            "passkeys": [
                {"id": "idn_passkey_1", "object": "passkey", "name": "Laptop",
                 "last_used_at": 12_000,
                 "verification": verification_json("verified", "passkey", 13_000)}
            ]
        })
    }

    /// The external, SAML and enterprise accounts of [`full_user_json`].
    fn accounts_json() -> Value {
        let external = json!({
            "id": "eac_1", "object": "external_account", "provider": "oauth_google",
            "identification_id": "idn_google_1", "provider_user_id": "g-123",
            "approved_scopes": "email profile", "email_address": "ada@example.com",
            "first_name": "Ada G", "last_name": "Lovelace G",
            "image_url": "https://img.example.com/g", "username": "ada_g",
            "avatar_url": "https://img.example.com/g-old", "email_address_verified": true,
            "phone_number": "+15555550101", "public_metadata": {"hd": "example.com"},
            "label": "work",
            "verification": verification_json("verified", "oauth_google", 14_000),
            "created_at": 15_000, "updated_at": 16_000
        });
        let saml = json!({
            "id": "samlacc_1", "object": "saml_account", "provider": "saml_okta",
            "active": true, "email_address": "ada@corp.example", "first_name": "Ada S",
            "last_name": "Lovelace S", "provider_user_id": "okta-1",
            "public_metadata": {"dept": "math"},
            "verification": verification_json("verified", "saml", 17_000),
            "last_authenticated_at": 29_000,
            "saml_connection": {
                "id": "samlc_1", "name": "Okta", "domain": "corp.example", "active": true,
                "provider": "saml_okta", "sync_user_attributes": true,
                "domains": ["corp.example", "corp.test"], "allow_subdomains": true,
                "allow_idp_initiated": false, "disable_additional_identifications": true,
                "created_at": 18_000, "updated_at": 19_000}
        });
        let enterprise = json!({
            "id": "eacc_1", "object": "enterprise_account", "protocol": "oauth",
            "provider": "oauth_custom_acme", "active": true,
            "email_address": "ada@acme.example", "first_name": "Ada E",
            "last_name": "Lovelace E", "provider_user_id": "acme-1",
            "public_metadata": {"team": "r&d"},
            "verification": verification_json("verified", "oauth_custom_acme", 20_000),
            "enterprise_connection": {
                "id": "ec_1", "name": "Acme SSO", "domain": "acme.example", "active": true,
                "provider": "oauth_custom_acme", "protocol": "oauth",
                "sync_user_attributes": false, "created_at": 21_000, "updated_at": 22_000,
                "logo_public_url": "https://img.example.com/acme"},
            "enterprise_connection_id": "ec_1",
            "last_authenticated_at": 23_000
        });
        json!({
            "external_accounts": [external],
            "saml_accounts": [saml],
            "enterprise_accounts": [enterprise]
        })
    }

    /// The email addresses [`full_user_json`] carries, in Clerk's order.
    fn expected_email_addresses() -> Vec<EmailAddress> {
        vec![
            EmailAddress {
                id: "idn_email_1".into(),
                email_address: "old@example.com".into(),
                reserved: true,
                verification: None,
                linked_to: vec![],
                matches_sso_connection: Some(false),
                created_at: ts(1_000),
                updated_at: ts(2_000),
            },
            EmailAddress {
                id: "idn_email_2".into(),
                email_address: "ada@example.com".into(),
                reserved: false,
                verification: verification_proto("verified", "from_oauth_google", 3_000),
                linked_to: vec![IdentificationLink {
                    r#type: "oauth_google".into(),
                    id: "idn_google_1".into(),
                }],
                matches_sso_connection: Some(true),
                created_at: ts(4_000),
                updated_at: ts(5_000),
            },
        ]
    }

    /// The phone numbers, wallets and passkeys [`full_user_json`] carries.
    fn expected_other_identifiers() -> (Vec<PhoneNumber>, Vec<Web3Wallet>, Vec<Passkey>) {
        let phone = PhoneNumber {
            backup_codes: vec!["code-1".into(), "code-2".into()],
            id: "idn_phone_1".into(),
            phone_number: "+15555550100".into(),
            reserved_for_second_factor: true,
            default_second_factor: true,
            reserved: true,
            verification: verification_proto("verified", "phone_code", 6_000),
            linked_to: vec![IdentificationLink {
                r#type: "oauth_apple".into(),
                id: "idn_apple_1".into(),
            }],
            created_at: ts(7_000),
            updated_at: ts(8_000),
        };
        let wallet = Web3Wallet {
            id: "idn_wallet_1".into(),
            web3_wallet: "0xabc".into(),
            verification: verification_proto("verified", "web3_metamask_signature", 9_000),
            created_at: ts(10_000),
            updated_at: ts(11_000),
        };
        let passkey = Passkey {
            id: "idn_passkey_1".into(),
            name: "Laptop".into(),
            last_used_at: ts(12_000),
            verification: verification_proto("verified", "passkey", 13_000),
        };
        (vec![phone], vec![wallet], vec![passkey])
    }

    /// The OAuth account [`full_user_json`] carries.
    fn expected_external_account() -> ExternalAccount {
        ExternalAccount {
            id: "eac_1".into(),
            provider: "oauth_google".into(),
            identification_id: Some("idn_google_1".into()),
            provider_user_id: Some("g-123".into()),
            approved_scopes: Some("email profile".into()),
            email_address: Some("ada@example.com".into()),
            first_name: Some("Ada G".into()),
            last_name: Some("Lovelace G".into()),
            image_url: Some("https://img.example.com/g".into()),
            username: Some("ada_g".into()),
            phone_number: Some("+15555550101".into()),
            public_metadata: strings(&[("hd", "example.com")]),
            label: Some("work".into()),
            verification: verification_proto("verified", "oauth_google", 14_000),
            created_at: ts(15_000),
            updated_at: ts(16_000),
            external_account_id: None,
            avatar_url: Some("https://img.example.com/g-old".into()),
            email_address_verified: Some(true),
        }
    }

    /// The SAML account [`full_user_json`] carries.
    fn expected_saml_account() -> SamlAccount {
        SamlAccount {
            id: "samlacc_1".into(),
            provider: "saml_okta".into(),
            active: true,
            email_address: Some("ada@corp.example".into()),
            first_name: Some("Ada S".into()),
            last_name: Some("Lovelace S".into()),
            provider_user_id: Some("okta-1".into()),
            public_metadata: strings(&[("dept", "math")]),
            verification: verification_proto("verified", "saml", 17_000),
            saml_connection: Some(SsoConnection {
                id: "samlc_1".into(),
                name: "Okta".into(),
                domain: Some("corp.example".into()),
                active: true,
                provider: Some("saml_okta".into()),
                protocol: None,
                sync_user_attributes: Some(true),
                created_at: ts(18_000),
                updated_at: ts(19_000),
                domains: vec!["corp.example".into(), "corp.test".into()],
                allow_subdomains: Some(true),
                allow_idp_initiated: Some(false),
                disable_additional_identifications: Some(true),
                logo_public_url: None,
            }),
            last_authenticated_at: ts(29_000),
        }
    }

    /// The enterprise account [`full_user_json`] carries.
    fn expected_enterprise_account() -> EnterpriseAccount {
        EnterpriseAccount {
            id: "eacc_1".into(),
            protocol: Some("oauth".into()),
            provider: "oauth_custom_acme".into(),
            active: true,
            email_address: Some("ada@acme.example".into()),
            first_name: Some("Ada E".into()),
            last_name: Some("Lovelace E".into()),
            provider_user_id: Some("acme-1".into()),
            public_metadata: strings(&[("team", "r&d")]),
            verification: verification_proto("verified", "oauth_custom_acme", 20_000),
            enterprise_connection: Some(SsoConnection {
                id: "ec_1".into(),
                name: "Acme SSO".into(),
                domain: Some("acme.example".into()),
                active: true,
                provider: Some("oauth_custom_acme".into()),
                protocol: Some("oauth".into()),
                sync_user_attributes: Some(false),
                created_at: ts(21_000),
                updated_at: ts(22_000),
                domains: vec![],
                allow_subdomains: None,
                allow_idp_initiated: None,
                disable_additional_identifications: None,
                logo_public_url: Some("https://img.example.com/acme".into()),
            }),
            last_authenticated_at: ts(23_000),
            enterprise_connection_id: Some("ec_1".into()),
        }
    }

    /// The [`User`] that [`full_user_json`] describes, written without `..Default::default()` so a
    /// new proto field fails to compile here until the conversion and this test cover it.
    fn expected_full_user() -> User {
        let (phone_numbers, web3_wallets, passkeys) = expected_other_identifiers();
        User {
            id: "user_full".into(),
            external_id: Some("ext_42".into()),
            primary_email_address_id: Some("idn_email_2".into()),
            primary_phone_number_id: Some("idn_phone_1".into()),
            primary_web3_wallet_id: Some("idn_wallet_1".into()),
            username: Some("ada".into()),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            locale: Some("en-GB".into()),
            image_url: Some("https://img.clerk.com/ada".into()),
            has_image: true,
            public_metadata: strings(&[("role", "admin")]),
            private_metadata: strings(&[("plan", "pro")]),
            unsafe_metadata: strings(&[("theme", "dark")]),
            email_addresses: expected_email_addresses(),
            phone_numbers,
            web3_wallets,
            passkeys,
            external_accounts: vec![expected_external_account()],
            saml_accounts: vec![expected_saml_account()],
            enterprise_accounts: vec![expected_enterprise_account()],
            password_enabled: true,
            two_factor_enabled: true,
            totp_enabled: true,
            backup_code_enabled: true,
            mfa_enabled_at: ts(24_000),
            mfa_disabled_at: ts(25_000),
            last_sign_in_at: ts(26_000),
            banned: true,
            locked: true,
            lockout_expires_in_seconds: Some(300),
            verification_attempts_remaining: Some(2),
            created_at: ts(1_716_883_200_000),
            updated_at: ts(1_716_883_500_123),
            delete_self_enabled: true,
            create_organization_enabled: true,
            create_organizations_limit: Some(3),
            last_active_at: ts(27_000),
            legal_accepted_at: ts(28_000),
            birthday: Some("1815-12-10".into()),
            gender: Some("female".into()),
            profile_image_url: Some("https://img.clerk.com/ada-old".into()),
            password_last_updated_at: ts(30_000),
            deprovisioned: true,
            bypass_client_trust: true,
            requires_password_reset: Some(true),
            scim: Some(ScimUserMetadata {
                directory_id: "dir_1".into(),
                directory_enabled: true,
                external_id: Some("okta-9".into()),
            }),
        }
    }

    #[test]
    fn every_field_of_a_full_user_is_carried() {
        let user = user_from_json(&object(full_user_json()));
        // Piecewise first, so a failure points at the part that differs.
        assert_eq!(user.email_addresses, expected_email_addresses());
        assert_eq!(user.external_accounts, vec![expected_external_account()]);
        assert_eq!(user.saml_accounts, vec![expected_saml_account()]);
        assert_eq!(
            user.enterprise_accounts,
            vec![expected_enterprise_account()]
        );
        assert_eq!(user, expected_full_user());
    }

    /// One Google account in the current shape: account id `eac_google`, identification
    /// `idn_google`.
    fn current_google_account() -> Value {
        json!({
            "object": "external_account", "id": "eac_google", "provider": "oauth_google",
            "identification_id": "idn_google", "provider_user_id": "107288021301459139452",
            "approved_scopes": "email openid profile", "email_address": "ada@gmail.com",
            "first_name": "Ada", "last_name": "Lovelace",
            "image_url": "https://lh3.googleusercontent.com/ada", "username": null,
            "public_metadata": {}, "label": null, "created_at": 1_757_805_877_448_i64,
            "updated_at": 1_757_805_877_448_i64,
            "verification": {"status": "verified", "strategy": "oauth_google", "attempts": null,
                             "expire_at": 1_757_806_477_448_i64}
        })
    }

    /// The same account in the legacy Google shape: named by its object, the identification id
    /// as `id`, no account id, Google's own field names.
    fn legacy_google_account() -> Value {
        json!({
            "object": "google_account", "id": "idn_google", "google_id": "107288021301459139452",
            "approved_scopes": "email openid profile", "email_address": "ada@gmail.com",
            "given_name": "Ada", "family_name": "Lovelace",
            "picture": "https://lh3.googleusercontent.com/ada", "username": null,
            "public_metadata": {}, "label": null,
            "verification": {"status": "verified", "strategy": "oauth_google", "attempts": null,
                             "expire_at": 1_757_806_477_448_i64}
        })
    }

    /// The same account in the mixed shape Clerk delivers: the legacy fields beside the current
    /// ones, the identification id as `id` and the account id in `external_account_id`, the image
    /// only as `avatar_url` (with an empty `picture`).
    fn mixed_google_account() -> Value {
        json!({
            "object": "google_account", "id": "idn_google", "external_account_id": "eac_google",
            "identification_id": "idn_google", "provider": "oauth_google",
            "provider_user_id": "107288021301459139452", "google_id": "107288021301459139452",
            "approved_scopes": "email openid profile", "email_address": "ada@gmail.com",
            "first_name": "Ada", "given_name": "Ada", "last_name": "Lovelace",
            "family_name": "Lovelace", "picture": "",
            "avatar_url": "https://lh3.googleusercontent.com/ada", "username": null,
            "public_metadata": {}, "label": null, "created_at": 1_757_805_877_448_i64,
            "updated_at": 1_757_805_877_448_i64,
            "verification": {"status": "verified", "strategy": "oauth_google", "attempts": null,
                             "expire_at": 1_757_806_477_448_i64}
        })
    }

    /// The mixed shape with only the legacy names for the provider's data (no `provider`,
    /// `provider_user_id`, `first_name`, `last_name`).
    fn mixed_google_account_with_legacy_names() -> Value {
        let mut account = map(mixed_google_account());
        for current in ["provider", "provider_user_id", "first_name", "last_name"] {
            account.remove(current);
        }
        account.insert(
            "picture".into(),
            json!("https://lh3.googleusercontent.com/ada"),
        );
        Value::Object(account)
    }

    /// What a consumer keys and stores a linked account by: account id, identification id,
    /// provider, provider user id, names, image, email address.
    fn linked_account_key(account: &ExternalAccount) -> [Option<&str>; 8] {
        [
            Some(account.id.as_str()),
            account.identification_id.as_deref(),
            Some(account.provider.as_str()),
            account.provider_user_id.as_deref(),
            account.first_name.as_deref(),
            account.last_name.as_deref(),
            account.image_url.as_deref(),
            account.email_address.as_deref(),
        ]
    }

    #[test]
    fn every_google_account_shape_gives_the_same_typed_account() {
        let current = external_account(&object(current_google_account()));
        assert_eq!(
            linked_account_key(&current),
            [
                Some("eac_google"),
                Some("idn_google"),
                Some("oauth_google"),
                Some("107288021301459139452"),
                Some("Ada"),
                Some("Lovelace"),
                Some("https://lh3.googleusercontent.com/ada"),
                Some("ada@gmail.com"),
            ]
        );
        for (shape, json) in [
            ("mixed", mixed_google_account()),
            (
                "mixed, legacy names",
                mixed_google_account_with_legacy_names(),
            ),
        ] {
            let account = external_account(&object(json));
            assert_eq!(
                linked_account_key(&account),
                linked_account_key(&current),
                "{shape}"
            );
            assert_eq!(account.external_account_id.as_deref(), Some("eac_google"));
            assert_eq!(account.verification, current.verification, "{shape}");
        }
    }

    #[test]
    fn a_legacy_google_account_is_typed_like_a_current_one() {
        let current = external_account(&object(current_google_account()));
        let legacy = external_account(&object(legacy_google_account()));
        // The legacy shape has no account id: its identification id is the only id it carries.
        assert_eq!(legacy.id, "idn_google");
        let [_, rest @ ..] = linked_account_key(&legacy);
        let [_, current_rest @ ..] = linked_account_key(&current);
        assert_eq!(rest, current_rest);
        assert_eq!(legacy.verification, current.verification);
        assert_eq!(legacy.external_account_id, None);
    }

    #[test]
    fn an_unknown_legacy_object_gets_no_provider() {
        let account = object(json!({"object": "facebook_account", "id": "idn_fb", "picture": "p"}));
        let account = external_account(&account);
        assert_eq!(
            (account.provider.as_str(), account.id.as_str()),
            ("", "idn_fb")
        );
        assert_eq!(account.identification_id, None);
        assert_eq!(account.image_url.as_deref(), Some("p"));
    }

    #[test]
    fn primary_email_is_found_by_id_not_position() {
        let user = user_from_json(&object(full_user_json()));
        let primary_id = user.primary_email_address_id.as_deref();
        let primary = user
            .email_addresses
            .iter()
            .find(|e| Some(e.id.as_str()) == primary_id);
        assert_eq!(
            primary.map(|e| e.email_address.as_str()),
            Some("ada@example.com")
        );
        assert_eq!(user.email_addresses[0].email_address, "old@example.com");
    }

    #[test]
    fn an_empty_object_gives_an_empty_user() {
        assert_eq!(user_from_json(&Object::default()), User::default());
        assert_eq!(
            deleted_user_from_json(&Object::default()),
            DeletedUser::default()
        );
    }

    #[test]
    fn wrong_types_leave_fields_absent() {
        let data = object(json!({
            "id": 7, "first_name": 5, "username": false, "image_url": ["x"], "has_image": "yes",
            "public_metadata": "x", "private_metadata": null, "unsafe_metadata": [1],
            "created_at": "yesterday", "updated_at": 1.5, "lockout_expires_in_seconds": "300",
            "email_addresses": {}, "phone_numbers": [1, "two", null],
            "external_accounts": [{"id": "eac_1", "verification": "verified",
                                   "public_metadata": 3, "created_at": null}],
            "saml_accounts": [{"id": "samlacc_1", "saml_connection": "okta", "active": 1}]
        }));
        let user = user_from_json(&data);
        let expected = User {
            external_accounts: vec![ExternalAccount {
                id: "eac_1".into(),
                ..Default::default()
            }],
            saml_accounts: vec![SamlAccount {
                id: "samlacc_1".into(),
                ..Default::default()
            }],
            ..User::default()
        };
        assert_eq!(user, expected);
    }

    #[test]
    fn nested_nulls_are_absent() {
        let data = object(json!({
            "email_addresses": [{"id": "idn_1", "verification": null, "linked_to": null,
                                 "matches_sso_connection": null}],
            "enterprise_accounts": [{"id": "eacc_1", "protocol": null,
                                     "enterprise_connection": null}]
        }));
        let user = user_from_json(&data);
        let email = &user.email_addresses[0];
        assert_eq!(
            (email.verification.as_ref(), email.matches_sso_connection),
            (None, None)
        );
        assert!(email.linked_to.is_empty());
        let account = &user.enterprise_accounts[0];
        assert_eq!(
            (
                account.protocol.as_ref(),
                account.enterprise_connection.as_ref()
            ),
            (None, None)
        );
    }

    #[test]
    fn verification_status_is_typed_beside_the_raw_string() {
        let cases = [
            ("unverified", VerificationStatus::Unverified),
            ("verified", VerificationStatus::Verified),
            ("transferable", VerificationStatus::Transferable),
            ("failed", VerificationStatus::Failed),
            ("expired", VerificationStatus::Expired),
            ("on_hold", VerificationStatus::Unspecified),
        ];
        for (raw, expected) in cases {
            let data = object(json!({"verification": {"status": raw, "verified_at": 5_000}}));
            let verification = verification_at(&data, "verification").expect("an object");
            assert_eq!(verification.status, raw);
            assert_eq!(verification.known_status(), expected, "{raw}");
            assert_eq!(verification.verified_at, ts(5_000));
        }
        let missing = verification(&Object::default());
        assert_eq!((missing.status.as_str(), missing.known_status), ("", 0));
    }

    #[test]
    fn user_actions_map_to_changes() {
        let data = object(json!({"id": "user_1"}));
        let change = |action| user_event(action, &data).and_then(|e| e.change);
        assert!(matches!(change("created"), Some(Change::Created(u)) if u.id == "user_1"));
        assert!(matches!(change("updated"), Some(Change::Updated(u)) if u.id == "user_1"));
        assert!(matches!(change("deleted"), Some(Change::Deleted(u)) if u.id == "user_1"));
        assert!(user_event("banned", &data).is_none());
    }

    #[test]
    fn deleted_user_keeps_id_and_external_id() {
        let data = object(json!({"object": "user", "id": "user_1", "deleted": true,
                                 "external_id": "ext_1"}));
        let expected = DeletedUser {
            id: "user_1".into(),
            external_id: Some("ext_1".into()),
        };
        assert_eq!(deleted_user_from_json(&data), expected);
        let without = object(json!({"id": "user_2", "deleted": true, "external_id": null}));
        assert_eq!(deleted_user_from_json(&without).external_id, None);
    }
}
