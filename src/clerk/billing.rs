//! Conversion of Clerk Billing JSON (`data` of `subscription.*`, `subscriptionItem.*` and
//! `paymentAttempt.*` events) into the typed proto messages.
//!
//! Every proto field is read from the Clerk JSON field of the same name through the lenient
//! accessors in [`super::json`]; `*_at` fields and dates are int64 milliseconds, amounts are
//! integers in the currency's smallest unit. One [`SubscriptionItem`] message serves the three
//! shapes Clerk sends items in (inside a subscription, as a standalone event, inside a payment
//! attempt, from the Backend API): fields a shape lacks stay absent. Where the Backend API sends
//! money objects for what webhooks send as integers, both are typed (`lifetime_paid` is filled from
//! either). Statuses are kept as sent and typed beside.

use super::json::{
    Object, bool_or_false, known_enum, objects, opt_bool, opt_f64, opt_i64, opt_object, opt_string,
    string_or_empty, timestamp_ms,
};
use crate::proto::{
    BillingAmount, BillingCredit, BillingCredits, BillingDiscounts, BillingFeature,
    BillingNextPayment, BillingPayee, BillingPayer, BillingPayerCredit, BillingPaymentFailedReason,
    BillingPaymentSource, BillingPlan, BillingProrationDiscount, BillingSeats, BillingTotals,
    BillingUnitPrice, BillingUnitPriceTier, BillingUnitTotal, BillingUnitTotalTier, PaymentAttempt,
    PaymentAttemptEvent, PaymentAttemptStatus, Subscription, SubscriptionEvent, SubscriptionItem,
    SubscriptionItemEvent, SubscriptionStatus, payment_attempt_event, subscription_event,
    subscription_item_event,
};

/// The typed change of a `subscription.{action}` event, or `None` for an unknown action.
pub(super) fn subscription_event(action: &str, data: &Object<'_>) -> Option<SubscriptionEvent> {
    use subscription_event::Change;
    let change: fn(Subscription) -> Change = match action {
        "created" => Change::Created,
        "updated" => Change::Updated,
        "active" => Change::Active,
        "pastDue" => Change::PastDue,
        _ => return None,
    };
    Some(SubscriptionEvent {
        change: Some(change(subscription_from_json(data))),
    })
}

/// The typed change of a `subscriptionItem.{action}` event, or `None` for an unknown action.
pub(super) fn subscription_item_event(
    action: &str,
    data: &Object<'_>,
) -> Option<SubscriptionItemEvent> {
    use subscription_item_event::Change;
    let change: fn(SubscriptionItem) -> Change = match action {
        "updated" => Change::Updated,
        "active" => Change::Active,
        "canceled" => Change::Canceled,
        "upcoming" => Change::Upcoming,
        "ended" => Change::Ended,
        "abandoned" => Change::Abandoned,
        "incomplete" => Change::Incomplete,
        "pastDue" => Change::PastDue,
        "freeTrialEnding" => Change::FreeTrialEnding,
        "created" => Change::Created,
        _ => return None,
    };
    Some(SubscriptionItemEvent {
        change: Some(change(subscription_item_from_json(data))),
    })
}

/// The typed change of a `paymentAttempt.{action}` event, or `None` for an unknown action.
pub(super) fn payment_attempt_event(
    action: &str,
    data: &Object<'_>,
) -> Option<PaymentAttemptEvent> {
    use payment_attempt_event::Change;
    let change: fn(PaymentAttempt) -> Change = match action {
        "created" => Change::Created,
        "updated" => Change::Updated,
        _ => return None,
    };
    Some(PaymentAttemptEvent {
        change: Some(change(payment_attempt_from_json(data))),
    })
}

/// The `status` of a subscription or subscription item as a [`SubscriptionStatus`] number.
fn subscription_status(obj: &Object<'_>) -> i32 {
    known_enum(
        obj,
        "status",
        "SUBSCRIPTION_STATUS_",
        SubscriptionStatus::from_str_name,
    )
}

/// Converts the `data` of a `subscription.*` event.
pub(super) fn subscription_from_json(data: &Object<'_>) -> Subscription {
    Subscription {
        id: string_or_empty(data, "id"),
        status: string_or_empty(data, "status"),
        known_status: subscription_status(data),
        active_at: timestamp_ms(data, "active_at"),
        canceled_at: timestamp_ms(data, "canceled_at"),
        ended_at: timestamp_ms(data, "ended_at"),
        past_due_at: timestamp_ms(data, "past_due_at"),
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
        latest_payment_id: opt_string(data, "latest_payment_id"),
        payer_id: string_or_empty(data, "payer_id"),
        payer: opt_object(data, "payer").map(payer),
        payment_source_id: opt_string(data, "payment_source_id"),
        items: subscription_items(data),
        instance_id: opt_string(data, "instance_id"),
        next_payment: opt_object(data, "next_payment").map(next_payment),
        eligible_for_free_trial: opt_bool(data, "eligible_for_free_trial"),
    }
}

/// A subscription's items: `items` in webhooks, `subscription_items` in the Backend API.
fn subscription_items(data: &Object<'_>) -> Vec<SubscriptionItem> {
    let items = objects(data, "items", subscription_item_from_json);
    if items.is_empty() {
        objects(data, "subscription_items", subscription_item_from_json)
    } else {
        items
    }
}

/// Converts a `next_payment` object (of a subscription or an item).
fn next_payment(obj: &Object<'_>) -> BillingNextPayment {
    BillingNextPayment {
        amount: amount_at(obj, "amount"),
        date: timestamp_ms(obj, "date"),
        per_unit_totals: objects(obj, "per_unit_totals", unit_total),
        totals: opt_object(obj, "totals").map(totals),
    }
}

/// Converts a subscription item, in any of the shapes Clerk sends.
pub(super) fn subscription_item_from_json(data: &Object<'_>) -> SubscriptionItem {
    let item = SubscriptionItem {
        id: string_or_empty(data, "id"),
        status: string_or_empty(data, "status"),
        known_status: subscription_status(data),
        is_free_trial: bool_or_false(data, "is_free_trial"),
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
        period_start: timestamp_ms(data, "period_start"),
        period_end: timestamp_ms(data, "period_end"),
        interval: opt_string(data, "interval"),
        plan_id: opt_string(data, "plan_id"),
        plan: opt_object(data, "plan").map(plan),
        payer: opt_object(data, "payer").map(payer),
        subscription_id: opt_string(data, "subscription_id"),
        seats: opt_object(data, "seats").map(seats),
        ended_at: timestamp_ms(data, "ended_at"),
        price_id: opt_string(data, "price_id"),
        payer_id: opt_string(data, "payer_id"),
        instance_id: opt_string(data, "instance_id"),
        ..SubscriptionItem::default()
    };
    with_payment_details(data, item)
}

/// Fills the fields only items inside a payment attempt carry: amounts, credits, dates.
fn with_payment_details(data: &Object<'_>, item: SubscriptionItem) -> SubscriptionItem {
    SubscriptionItem {
        canceled_at: timestamp_ms(data, "canceled_at"),
        past_due_at: timestamp_ms(data, "past_due_at"),
        amount: opt_object(data, "amount").map(amount),
        lifetime_paid: opt_i64(data, "lifetime_paid")
            .or_else(|| amount_at(data, "lifetime_paid").and_then(|money| money.amount)),
        lifetime_paid_money: amount_at(data, "lifetime_paid"),
        next_payment: opt_object(data, "next_payment").map(next_payment),
        payment_method: opt_object(data, "payment_method").map(payment_source),
        totals: opt_object(data, "totals").map(totals),
        next_payment_amount: opt_i64(data, "next_payment_amount"),
        next_payment_date: timestamp_ms(data, "next_payment_date"),
        credit: opt_object(data, "credit").map(credit),
        credits: opt_object(data, "credits").map(credits),
        proration_date: opt_string(data, "proration_date"),
        plan_period: opt_string(data, "plan_period"),
        ..item
    }
}

/// Converts a `plan` object (the short shape of subscriptions, the long one of payment attempts).
fn plan(obj: &Object<'_>) -> BillingPlan {
    BillingPlan {
        id: string_or_empty(obj, "id"),
        slug: string_or_empty(obj, "slug"),
        name: string_or_empty(obj, "name"),
        is_recurring: bool_or_false(obj, "is_recurring"),
        amount: opt_i64(obj, "amount"),
        currency: string_or_empty(obj, "currency"),
        unit_prices: objects(obj, "unit_prices", unit_price),
        instance_id: opt_string(obj, "instance_id"),
        product_id: opt_string(obj, "product_id"),
        description: opt_string(obj, "description"),
        is_default: opt_bool(obj, "is_default"),
        is_prorated: opt_bool(obj, "is_prorated"),
        period: opt_string(obj, "period"),
        interval: opt_i64(obj, "interval"),
        has_base_fee: opt_bool(obj, "has_base_fee"),
        annual_monthly_amount: opt_i64(obj, "annual_monthly_amount"),
        publicly_visible: opt_bool(obj, "publicly_visible"),
        ..plan_terms(obj)
    }
}

/// The parts of a plan only the Backend API sends: prices as money, who may subscribe, the free
/// trial and the features.
fn plan_terms(obj: &Object<'_>) -> BillingPlan {
    BillingPlan {
        fee: amount_at(obj, "fee"),
        annual_monthly_fee: amount_at(obj, "annual_monthly_fee"),
        annual_fee: amount_at(obj, "annual_fee"),
        for_payer_type: opt_string(obj, "for_payer_type"),
        free_trial_enabled: opt_bool(obj, "free_trial_enabled"),
        free_trial_days: opt_i64(obj, "free_trial_days"),
        features: objects(obj, "features", feature),
        avatar_url: opt_string(obj, "avatar_url"),
        ..BillingPlan::default()
    }
}

/// Converts one entry of a plan's `features`.
fn feature(obj: &Object<'_>) -> BillingFeature {
    BillingFeature {
        id: string_or_empty(obj, "id"),
        name: string_or_empty(obj, "name"),
        description: opt_string(obj, "description"),
        slug: string_or_empty(obj, "slug"),
        avatar_url: opt_string(obj, "avatar_url"),
    }
}

/// Converts one entry of a plan's `unit_prices`.
fn unit_price(obj: &Object<'_>) -> BillingUnitPrice {
    BillingUnitPrice {
        name: string_or_empty(obj, "name"),
        block_size: opt_i64(obj, "block_size"),
        tiers: objects(obj, "tiers", unit_price_tier),
    }
}

/// Converts one entry of a unit price's `tiers`.
fn unit_price_tier(obj: &Object<'_>) -> BillingUnitPriceTier {
    BillingUnitPriceTier {
        starts_at_block: opt_i64(obj, "starts_at_block"),
        ends_after_block: opt_i64(obj, "ends_after_block"),
        amount_per_block: opt_i64(obj, "amount_per_block"),
        currency: string_or_empty(obj, "currency"),
        fee_per_block: amount_at(obj, "fee_per_block"),
    }
}

/// Converts a `seats` object.
fn seats(obj: &Object<'_>) -> BillingSeats {
    BillingSeats {
        quantity: opt_i64(obj, "quantity"),
        tiers: objects(obj, "tiers", unit_total_tier),
    }
}

/// Converts one entry of the `tiers` of a per-unit total or of seats.
fn unit_total_tier(obj: &Object<'_>) -> BillingUnitTotalTier {
    BillingUnitTotalTier {
        quantity: opt_i64(obj, "quantity"),
        fee_per_block: amount_at(obj, "fee_per_block"),
        total: amount_at(obj, "total"),
    }
}

/// Converts a `payer` object.
fn payer(obj: &Object<'_>) -> BillingPayer {
    BillingPayer {
        id: string_or_empty(obj, "id"),
        user_id: opt_string(obj, "user_id"),
        first_name: opt_string(obj, "first_name"),
        last_name: opt_string(obj, "last_name"),
        email: opt_string(obj, "email"),
        organization_id: opt_string(obj, "organization_id"),
        organization_name: opt_string(obj, "organization_name"),
        image_url: opt_string(obj, "image_url"),
        created_at: timestamp_ms(obj, "created_at"),
        updated_at: timestamp_ms(obj, "updated_at"),
        instance_id: opt_string(obj, "instance_id"),
        credits_balance: amount_at(obj, "credits_balance"),
    }
}

/// Converts a `payee` object.
fn payee(obj: &Object<'_>) -> BillingPayee {
    BillingPayee {
        id: string_or_empty(obj, "id"),
        gateway_type: string_or_empty(obj, "gateway_type"),
        gateway_external_id: string_or_empty(obj, "gateway_external_id"),
        gateway_status: string_or_empty(obj, "gateway_status"),
    }
}

/// Converts an amount object (`amount`, `subtotal`, `total`, ...).
fn amount(obj: &Object<'_>) -> BillingAmount {
    BillingAmount {
        amount: opt_i64(obj, "amount"),
        amount_formatted: string_or_empty(obj, "amount_formatted"),
        currency: string_or_empty(obj, "currency"),
        currency_symbol: string_or_empty(obj, "currency_symbol"),
    }
}

/// The amount object at `key`, when there is one.
fn amount_at(obj: &Object<'_>, key: &str) -> Option<BillingAmount> {
    opt_object(obj, key).map(amount)
}

/// Converts a `totals` object.
fn totals(obj: &Object<'_>) -> BillingTotals {
    BillingTotals {
        subtotal: amount_at(obj, "subtotal"),
        tax_total: amount_at(obj, "tax_total"),
        grand_total: amount_at(obj, "grand_total"),
        per_unit_totals: objects(obj, "per_unit_totals", unit_total),
        base_fee: amount_at(obj, "base_fee"),
        credits: opt_object(obj, "credits").map(credits),
        discounts: opt_object(obj, "discounts").map(discounts),
    }
}

/// Converts a `discounts` object.
fn discounts(obj: &Object<'_>) -> BillingDiscounts {
    let proration = |proration: &Object<'_>| BillingProrationDiscount {
        amount: amount_at(proration, "amount"),
        cycle_days_passed: opt_i64(proration, "cycle_days_passed"),
        cycle_days_total: opt_i64(proration, "cycle_days_total"),
        cycle_passed_percent: opt_f64(proration, "cycle_passed_percent"),
    };
    BillingDiscounts {
        proration: opt_object(obj, "proration").map(proration),
        total: amount_at(obj, "total"),
    }
}

/// Converts one entry of `per_unit_totals`.
fn unit_total(obj: &Object<'_>) -> BillingUnitTotal {
    BillingUnitTotal {
        name: string_or_empty(obj, "name"),
        amount: opt_i64(obj, "amount"),
        quantity: opt_i64(obj, "quantity"),
        total: opt_i64(obj, "total"),
        currency: string_or_empty(obj, "currency"),
        block_size: opt_i64(obj, "block_size"),
        tiers: objects(obj, "tiers", unit_total_tier),
    }
}

/// Converts a `payment_source` object.
fn payment_source(obj: &Object<'_>) -> BillingPaymentSource {
    BillingPaymentSource {
        id: string_or_empty(obj, "id"),
        gateway: string_or_empty(obj, "gateway"),
        gateway_external_id: string_or_empty(obj, "gateway_external_id"),
        gateway_external_account_id: opt_string(obj, "gateway_external_account_id"),
        payment_method: string_or_empty(obj, "payment_method"),
        status: string_or_empty(obj, "status"),
        card_type: opt_string(obj, "card_type"),
        last4: opt_string(obj, "last4"),
        ..payment_method_details(obj)
    }
}

/// The parts of a payment method only the Backend API sends.
fn payment_method_details(obj: &Object<'_>) -> BillingPaymentSource {
    BillingPaymentSource {
        payer_id: opt_string(obj, "payer_id"),
        payment_type: opt_string(obj, "payment_type"),
        is_default: opt_bool(obj, "is_default"),
        wallet_type: opt_string(obj, "wallet_type"),
        expiry_year: opt_i64(obj, "expiry_year"),
        expiry_month: opt_i64(obj, "expiry_month"),
        created_at: timestamp_ms(obj, "created_at"),
        updated_at: timestamp_ms(obj, "updated_at"),
        is_removable: opt_bool(obj, "is_removable"),
        ..BillingPaymentSource::default()
    }
}

/// Converts a `failed_reason` object.
fn failed_reason(obj: &Object<'_>) -> BillingPaymentFailedReason {
    BillingPaymentFailedReason {
        code: string_or_empty(obj, "code"),
        decline_code: string_or_empty(obj, "decline_code"),
    }
}

/// Converts a proration `credit` object.
fn credit(obj: &Object<'_>) -> BillingCredit {
    BillingCredit {
        amount: amount_at(obj, "amount"),
        cycle_days_remaining: opt_i64(obj, "cycle_days_remaining"),
        cycle_days_total: opt_i64(obj, "cycle_days_total"),
        cycle_remaining_percent: opt_f64(obj, "cycle_remaining_percent"),
    }
}

/// Converts a `credits` object.
fn credits(obj: &Object<'_>) -> BillingCredits {
    let payer = |payer: &Object<'_>| BillingPayerCredit {
        applied_amount: amount_at(payer, "applied_amount"),
        remaining_balance: amount_at(payer, "remaining_balance"),
    };
    BillingCredits {
        proration: opt_object(obj, "proration").map(credit),
        payer: opt_object(obj, "payer").map(payer),
        total: amount_at(obj, "total"),
    }
}

/// Converts the `data` of a `paymentAttempt.*` event.
pub(super) fn payment_attempt_from_json(data: &Object<'_>) -> PaymentAttempt {
    let attempt = PaymentAttempt {
        id: string_or_empty(data, "id"),
        instance_id: string_or_empty(data, "instance_id"),
        payment_id: string_or_empty(data, "payment_id"),
        statement_id: opt_string(data, "statement_id"),
        invoice_id: opt_string(data, "invoice_id"),
        gateway_external_id: opt_string(data, "gateway_external_id"),
        status: string_or_empty(data, "status"),
        known_status: known_enum(
            data,
            "status",
            "PAYMENT_ATTEMPT_STATUS_",
            PaymentAttemptStatus::from_str_name,
        ),
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
        paid_at: timestamp_ms(data, "paid_at"),
        failed_at: timestamp_ms(data, "failed_at"),
        failed_reason: opt_object(data, "failed_reason").map(failed_reason),
        billing_date: timestamp_ms(data, "billing_date"),
        charge_type: string_or_empty(data, "charge_type"),
        ..PaymentAttempt::default()
    };
    with_charge(data, attempt)
}

/// Fills who paid whom, how much, with what, and for which items.
fn with_charge(data: &Object<'_>, attempt: PaymentAttempt) -> PaymentAttempt {
    PaymentAttempt {
        payee: opt_object(data, "payee").map(payee),
        payer: opt_object(data, "payer").map(payer),
        totals: opt_object(data, "totals").map(totals),
        payment_source: opt_object(data, "payment_source").map(payment_source),
        subscription_items: objects(data, "subscription_items", subscription_item_from_json),
        ..attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clerk::json::object;
    use serde_json::json;

    /// A money object as the Backend API sends it.
    fn money(amount: i64) -> serde_json::Value {
        json!({"amount": amount, "amount_formatted": format!("{}.00", amount / 100),
               "currency": "USD", "currency_symbol": "$"})
    }

    #[test]
    fn backend_api_subscriptions_are_typed_too() {
        let data = object(json!({
            "object": "commerce_subscription", "id": "csub_1", "instance_id": "ins_1",
            "eligible_for_free_trial": false,
            "next_payment": {"date": 1_719_561_600_000_i64, "amount": money(2000)},
            "subscription_items": [{
                "id": "csub_item_1", "price_id": "cprice_1", "payer_id": "cpayer_1",
                "ended_at": 1_719_561_600_000_i64, "lifetime_paid": money(10_000),
                "payer": {"id": "cpayer_1", "credits_balance": money(500)},
                "payment_method": {"id": "cpm_1", "payment_type": "card", "expiry_year": 2030},
                "plan": {"id": "cplan_1", "fee": money(2000), "for_payer_type": "user",
                         "free_trial_enabled": true, "free_trial_days": 14,
                         "features": [{"id": "feat_1", "slug": "ai", "name": "AI"}]}
            }]
        }));
        let subscription = subscription_from_json(&data);
        assert_eq!(subscription.instance_id.as_deref(), Some("ins_1"));
        assert_eq!(subscription.eligible_for_free_trial, Some(false));
        let next = subscription.next_payment.as_ref().unwrap();
        assert_eq!(next.amount.as_ref().and_then(|a| a.amount), Some(2000));
        let item = &subscription.items[0];
        assert_eq!(
            (item.price_id.as_deref(), item.payer_id.as_deref()),
            (Some("cprice_1"), Some("cpayer_1"))
        );
        assert!(item.ended_at.is_some());
        assert_eq!(item.lifetime_paid, Some(10_000));
        assert_eq!(
            item.lifetime_paid_money
                .as_ref()
                .map(|m| m.currency.as_str()),
            Some("USD")
        );
        let payer = item.payer.as_ref().unwrap();
        assert_eq!(
            payer.credits_balance.as_ref().and_then(|m| m.amount),
            Some(500)
        );
        let method = item.payment_method.as_ref().unwrap();
        assert_eq!(
            (method.payment_type.as_deref(), method.expiry_year),
            (Some("card"), Some(2030))
        );
        let plan = item.plan.as_ref().unwrap();
        assert_eq!(plan.fee.as_ref().and_then(|m| m.amount), Some(2000));
        assert_eq!(plan.for_payer_type.as_deref(), Some("user"));
        assert_eq!(
            (plan.free_trial_enabled, plan.free_trial_days),
            (Some(true), Some(14))
        );
        assert_eq!(plan.features[0].slug, "ai");
        // The webhook shape: the number form, and no money object.
        let webhook = subscription_item_from_json(&object(json!({"lifetime_paid": 10_000})));
        assert_eq!(
            (webhook.lifetime_paid, webhook.lifetime_paid_money),
            (Some(10_000), None)
        );
    }

    #[test]
    fn every_item_action_has_its_change() {
        use subscription_item_event::Change;
        let data = object(json!({"id": "csub_item_1"}));
        let actions = [
            "updated",
            "active",
            "canceled",
            "upcoming",
            "ended",
            "abandoned",
            "incomplete",
            "pastDue",
            "freeTrialEnding",
            "created",
        ];
        let mut seen = std::collections::HashSet::new();
        for action in actions {
            let change = subscription_item_event(action, &data).and_then(|e| e.change);
            let Some(change) = change else {
                panic!("{action} has no change")
            };
            seen.insert(std::mem::discriminant(&change));
            let (Change::Updated(item)
            | Change::Active(item)
            | Change::Canceled(item)
            | Change::Upcoming(item)
            | Change::Ended(item)
            | Change::Abandoned(item)
            | Change::Incomplete(item)
            | Change::PastDue(item)
            | Change::FreeTrialEnding(item)
            | Change::Created(item)) = change;
            assert_eq!(item.id, "csub_item_1");
        }
        assert_eq!(seen.len(), actions.len());
        assert_eq!(subscription_item_event("past_due", &data), None);
        assert_eq!(subscription_event("pastdue", &data), None);
        assert_eq!(payment_attempt_event("refunded", &data), None);
    }

    #[test]
    fn failures_and_per_unit_totals_are_typed() {
        let data = object(json!({
            "status": "failed", "failed_at": 1_000, "paid_at": null,
            "failed_reason": {"code": "card_declined", "decline_code": "insufficient_funds"},
            "totals": {"grand_total": {"amount": "22"}, "per_unit_totals": [
                {"name": "seats", "amount": 100, "quantity": null, "total": 500}]}
        }));
        let attempt = payment_attempt_from_json(&data);
        assert_eq!(attempt.known_status(), PaymentAttemptStatus::Failed);
        assert_eq!(attempt.paid_at, None);
        let reason = attempt.failed_reason.expect("an object");
        assert_eq!(reason.decline_code, "insufficient_funds");
        let totals = attempt.totals.expect("an object");
        assert_eq!(totals.grand_total.map(|t| t.amount), Some(None));
        assert_eq!(totals.subtotal, None);
        let unit = &totals.per_unit_totals[0];
        assert_eq!((unit.quantity, unit.total), (None, Some(500)));
    }
}
