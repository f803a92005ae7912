//! Clerk's published examples of the billing families (subscriptions, subscription items, payment
//! attempts), decoded: typed fields are compared with the fixture's JSON.

use super::*;
use crate::proto::{
    BillingAmount, BillingPayer, BillingPlan, PaymentAttempt, PaymentAttemptStatus, Subscription,
    SubscriptionItem, SubscriptionStatus, payment_attempt_event, subscription_event,
    subscription_item_event,
};

/// Checks a typed payer against its JSON.
fn assert_payer(typed: &BillingPayer, json: &Value) {
    assert_eq!(typed.id, text(json, "id"));
    for (field, key) in [
        (&typed.user_id, "user_id"),
        (&typed.first_name, "first_name"),
        (&typed.last_name, "last_name"),
        (&typed.email, "email"),
        (&typed.organization_id, "organization_id"),
        (&typed.organization_name, "organization_name"),
        (&typed.image_url, "image_url"),
    ] {
        assert_eq!(field, &opt_text(json, key), "payer {key}");
    }
    assert_eq!(typed.created_at, time(json, "created_at"));
    assert_eq!(typed.updated_at, time(json, "updated_at"));
}

/// Checks a typed plan against its JSON, unit prices included.
fn assert_plan(typed: &BillingPlan, json: &Value) {
    assert_eq!(typed.id, text(json, "id"));
    assert_eq!(typed.slug, text(json, "slug"));
    assert_eq!(typed.name, text(json, "name"));
    assert_eq!(typed.is_recurring, flag(json, "is_recurring"));
    assert_eq!(typed.amount, int(json, "amount"));
    assert_eq!(typed.currency, text(json, "currency"));
    let prices = json["unit_prices"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    assert_eq!(typed.unit_prices.len(), prices.len());
    for (price, json) in typed.unit_prices.iter().zip(prices) {
        assert_eq!(price.name, text(json, "name"));
        assert_eq!(price.block_size, int(json, "block_size"));
        let tier = &json["tiers"][0];
        assert_eq!(price.tiers[0].starts_at_block, int(tier, "starts_at_block"));
        assert_eq!(
            price.tiers[0].ends_after_block,
            int(tier, "ends_after_block")
        );
        assert_eq!(
            price.tiers[0].amount_per_block,
            int(tier, "amount_per_block")
        );
        assert_eq!(price.tiers[0].currency, text(tier, "currency"));
    }
}

/// Checks a typed subscription item against its JSON (the fields subscriptions and standalone
/// item events carry).
fn assert_item(typed: &SubscriptionItem, json: &Value) {
    assert_eq!(typed.id, text(json, "id"));
    assert_eq!(typed.status, text(json, "status"));
    assert_ne!(typed.known_status(), SubscriptionStatus::Unspecified);
    assert_eq!(typed.is_free_trial, flag(json, "is_free_trial"));
    assert_eq!(typed.created_at, time(json, "created_at"));
    assert_eq!(typed.updated_at, time(json, "updated_at"));
    assert_eq!(typed.period_start, time(json, "period_start"));
    assert_eq!(typed.period_end, time(json, "period_end"));
    assert_eq!(typed.interval, opt_text(json, "interval"));
    assert_eq!(typed.plan_id, opt_text(json, "plan_id"));
    assert_eq!(typed.subscription_id, opt_text(json, "subscription_id"));
    assert_plan(typed.plan.as_ref().expect("a plan"), &json["plan"]);
    let seats = typed.seats.as_ref().map(|s| s.quantity);
    assert_eq!(seats, json.get("seats").map(|s| int(s, "quantity")));
    match &typed.payer {
        None => assert!(json.get("payer").is_none()),
        Some(payer) => assert_payer(payer, &json["payer"]),
    }
}

/// Checks a typed subscription against its JSON, items included.
fn assert_subscription(typed: &Subscription, json: &Value) {
    assert_eq!(typed.id, text(json, "id"));
    assert_eq!(typed.status, text(json, "status"));
    assert_ne!(typed.known_status(), SubscriptionStatus::Unspecified);
    for (field, key) in [
        (typed.active_at, "active_at"),
        (typed.canceled_at, "canceled_at"),
        (typed.ended_at, "ended_at"),
        (typed.past_due_at, "past_due_at"),
        (typed.created_at, "created_at"),
        (typed.updated_at, "updated_at"),
    ] {
        assert_eq!(field, time(json, key), "{key}");
    }
    assert_eq!(typed.latest_payment_id, opt_text(json, "latest_payment_id"));
    assert_eq!(typed.payer_id, text(json, "payer_id"));
    assert_eq!(typed.payment_source_id, opt_text(json, "payment_source_id"));
    assert_payer(typed.payer.as_ref().expect("a payer"), &json["payer"]);
    let items = json["items"].as_array().unwrap();
    assert_eq!(typed.items.len(), items.len());
    for (item, json) in typed.items.iter().zip(items) {
        assert_item(item, json);
    }
}

#[test]
fn subscription_fixtures_are_typed() {
    use subscription_event::Change;
    for event_type in [
        "subscription.created",
        "subscription.updated",
        "subscription.active",
        "subscription.pastDue",
    ] {
        let (event, data) = decoded(event_type);
        let Some(Payload::Subscription(typed)) = &event.payload else {
            panic!("{event_type}: {:?}", event.payload)
        };
        let subscription = match (typed.change.as_ref(), action(event_type)) {
            (Some(Change::Created(s)), "created")
            | (Some(Change::Updated(s)), "updated")
            | (Some(Change::Active(s)), "active")
            | (Some(Change::PastDue(s)), "pastDue") => s,
            other => panic!("{event_type}: {other:?}"),
        };
        assert_subscription(subscription, &data);
    }
}

/// The item of a subscription item event, and the event type suffix of its change.
fn item_of(event: &Event) -> (&'static str, &SubscriptionItem) {
    use subscription_item_event::Change;
    let Some(Payload::SubscriptionItem(typed)) = &event.payload else {
        panic!("not a subscription item event: {:?}", event.payload)
    };
    match typed.change.as_ref().expect("a change") {
        Change::Updated(i) => ("updated", i),
        Change::Active(i) => ("active", i),
        Change::Canceled(i) => ("canceled", i),
        Change::Upcoming(i) => ("upcoming", i),
        Change::Ended(i) => ("ended", i),
        Change::Abandoned(i) => ("abandoned", i),
        Change::Incomplete(i) => ("incomplete", i),
        Change::PastDue(i) => ("pastDue", i),
        Change::FreeTrialEnding(i) => ("freeTrialEnding", i),
        Change::Created(i) => ("created", i),
    }
}

#[test]
fn subscription_item_fixtures_are_typed() {
    let types: Vec<_> = all_fixtures()
        .iter()
        .map(|(event_type, _)| event_type)
        .filter(|t| t.starts_with("subscriptionItem."))
        .collect();
    assert_eq!(types.len(), 10);
    for event_type in types {
        let (event, data) = decoded(event_type);
        let (change, item) = item_of(&event);
        assert_eq!(change, action(event_type));
        assert_item(item, &data);
    }
}

/// Checks a typed amount against its JSON.
fn assert_amount(typed: Option<&BillingAmount>, json: &Value) {
    let typed = typed.expect("an amount");
    assert_eq!(typed.amount, int(json, "amount"));
    assert_eq!(typed.amount_formatted, text(json, "amount_formatted"));
    assert_eq!(typed.currency, text(json, "currency"));
    assert_eq!(typed.currency_symbol, text(json, "currency_symbol"));
}

/// Checks the money parts of a typed payment attempt against its JSON.
fn assert_charge(typed: &PaymentAttempt, json: &Value) {
    let payee = typed.payee.as_ref().expect("a payee");
    assert_eq!(payee.id, text(&json["payee"], "id"));
    assert_eq!(payee.gateway_type, text(&json["payee"], "gateway_type"));
    assert_eq!(payee.gateway_status, text(&json["payee"], "gateway_status"));
    assert_payer(typed.payer.as_ref().expect("a payer"), &json["payer"]);
    let totals = typed.totals.as_ref().expect("totals");
    assert_amount(totals.subtotal.as_ref(), &json["totals"]["subtotal"]);
    assert_amount(totals.tax_total.as_ref(), &json["totals"]["tax_total"]);
    assert_amount(totals.grand_total.as_ref(), &json["totals"]["grand_total"]);
    let source = typed.payment_source.as_ref().expect("a payment source");
    let source_json = &json["payment_source"];
    assert_eq!(source.id, text(source_json, "id"));
    assert_eq!(
        source.gateway_external_id,
        text(source_json, "gateway_external_id")
    );
    assert_eq!(source.payment_method, text(source_json, "payment_method"));
    assert_eq!(source.card_type, opt_text(source_json, "card_type"));
    assert_eq!(source.last4, opt_text(source_json, "last4"));
}

/// Checks the payment-only parts of a typed subscription item against its JSON.
fn assert_paid_item(typed: &SubscriptionItem, json: &Value) {
    assert_eq!(typed.id, text(json, "id"));
    assert_eq!(typed.plan_period, opt_text(json, "plan_period"));
    assert_eq!(typed.proration_date, opt_text(json, "proration_date"));
    assert_eq!(typed.lifetime_paid, int(json, "lifetime_paid"));
    assert_eq!(typed.next_payment_amount, int(json, "next_payment_amount"));
    assert_eq!(typed.next_payment_date, time(json, "next_payment_date"));
    assert_amount(typed.amount.as_ref(), &json["amount"]);
    let credit = typed.credit.as_ref().expect("a credit");
    assert_eq!(credit.cycle_remaining_percent, Some(0.5));
    assert_eq!(
        credit.cycle_days_total,
        int(&json["credit"], "cycle_days_total")
    );
    let credits = typed.credits.as_ref().expect("credits");
    let payer = credits.payer.as_ref().expect("a payer credit");
    let payer_json = &json["credits"]["payer"];
    assert_amount(payer.applied_amount.as_ref(), &payer_json["applied_amount"]);
    assert_amount(
        payer.remaining_balance.as_ref(),
        &payer_json["remaining_balance"],
    );
    assert_amount(credits.total.as_ref(), &json["credits"]["total"]);
    let plan = typed.plan.as_ref().expect("a plan");
    assert_eq!(plan.product_id, opt_text(&json["plan"], "product_id"));
    assert_eq!(plan.interval, int(&json["plan"], "interval"));
    assert_eq!(plan.annual_monthly_amount, Some(1800));
    assert_eq!(plan.publicly_visible, Some(true));
}

#[test]
fn payment_attempt_fixtures_are_typed() {
    use payment_attempt_event::Change;
    let statuses = [
        ("paymentAttempt.created", PaymentAttemptStatus::Pending),
        ("paymentAttempt.updated", PaymentAttemptStatus::Paid),
    ];
    for (event_type, status) in statuses {
        let (event, data) = decoded(event_type);
        let Some(Payload::PaymentAttempt(typed)) = &event.payload else {
            panic!("{event_type}: {:?}", event.payload)
        };
        let attempt = match (typed.change.as_ref(), action(event_type)) {
            (Some(Change::Created(a)), "created") | (Some(Change::Updated(a)), "updated") => a,
            other => panic!("{event_type}: {other:?}"),
        };
        assert_eq!(attempt.id, text(&data, "id"));
        assert_eq!(attempt.instance_id, text(&data, "instance_id"));
        assert_eq!(attempt.payment_id, text(&data, "payment_id"));
        assert_eq!(attempt.statement_id, opt_text(&data, "statement_id"));
        assert_eq!(
            attempt.gateway_external_id,
            opt_text(&data, "gateway_external_id")
        );
        assert_eq!(attempt.status, text(&data, "status"));
        assert_eq!(attempt.known_status(), status);
        assert_eq!(attempt.charge_type, text(&data, "charge_type"));
        for (field, key) in [
            (attempt.created_at, "created_at"),
            (attempt.updated_at, "updated_at"),
            (attempt.paid_at, "paid_at"),
            (attempt.failed_at, "failed_at"),
            (attempt.billing_date, "billing_date"),
        ] {
            assert_eq!(field, time(&data, key), "{event_type} {key}");
        }
        assert_eq!(attempt.failed_reason, None);
        assert_charge(attempt, &data);
        assert_eq!(attempt.subscription_items.len(), 1);
        assert_paid_item(
            &attempt.subscription_items[0],
            &data["subscription_items"][0],
        );
    }
}
