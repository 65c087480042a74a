"""Drive the Square emulator with Square's own Python SDK (PyPI `squareup`), unchanged but for
its base URL, and assert on the typed models it parses.

Run by `tests/square-emulator/tests/sdk.rs` after it seeds the emulator:
    SQUARE_BASE_URL=http://127.0.0.1:PORT SQUARE_TOKEN=... python3 check.py

The SDK builds typed models from every response (pydantic); on top of that, each raw body is
validated strictly with the SDK's response model (`model_validate`), so a field of the wrong
type fails here even where the SDK's lenient construction would let it through.
"""

import os
import sys

from square import Square
from square.types.batch_get_inventory_counts_response import BatchGetInventoryCountsResponse
from square.types.create_order_response import CreateOrderResponse
from square.types.get_payment_response import GetPaymentResponse
from square.types.list_locations_response import ListLocationsResponse
from square.types.search_orders_response import SearchOrdersResponse

CHECKS = 0


def check(cond, what):
    global CHECKS
    CHECKS += 1
    if not cond:
        print(f"SDK CHECK FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def strict(model, raw_response):
    """Validate a raw JSON body with the SDK's pydantic model (raises on a type mismatch)."""
    # A pager's `response` is the SDK's HttpResponse; that keeps the httpx response in
    # `_response` (the SDK offers no public accessor for the raw body).
    http = getattr(raw_response, "response", None) or raw_response
    return model.model_validate(http._response.json())


def main():
    base = os.environ["SQUARE_BASE_URL"]
    client = Square(token=os.environ["SQUARE_TOKEN"], base_url=base)

    # Locations: sorted by name, inactive ones included.
    locs = client.locations.list().locations
    check([l.name for l in locs] == ["Closed shop", "Leeds", "York"], f"location names {locs}")
    leeds = next(l for l in locs if l.name == "Leeds")
    check(leeds.id == "LEEDS0000001" and leeds.currency == "GBP" and leeds.status == "ACTIVE",
          f"leeds {leeds}")
    check(next(l for l in locs if l.name == "Closed shop").status == "INACTIVE", "inactive shop")
    strict(ListLocationsResponse, client.locations.with_raw_response.list())

    # Catalog: the pager follows cursors (the emulator serves 2 objects a page here).
    variations = list(client.catalog.list(types="ITEM_VARIATION"))
    check(len(variations) == 4, f"{len(variations)} variations")
    by_id = {v.id: v for v in variations}
    tee = by_id["VARTEES"].item_variation_data
    check(tee.sku == "TEE-S" and tee.price_money.amount == 1200 and tee.price_money.currency == "GBP",
          f"tee {tee}")
    items = list(client.catalog.list(types="ITEM"))
    check(sorted(i.item_data.name for i in items) == ["Mug", "Tee"], "item names")
    found = client.catalog.search(
        object_types=["ITEM_VARIATION"],
        query={"exact_query": {"attribute_name": "sku", "attribute_value": "mug"}},
    )
    check(sorted(o.id for o in found.objects) == ["VARMUG", "VARMUG2"], "SKU search is case-insensitive and finds duplicates")

    # Inventory counts (pager, newest first) and changes.
    counts = list(client.inventory.batch_get_counts(location_ids=["LEEDS0000001", "YORK00000001"], limit=1))
    qty = {(c.catalog_object_id, c.location_id): c.quantity for c in counts}
    check(qty[("VARTEES", "LEEDS0000001")] == "8", f"TEE-S at Leeds after selling 2: {qty}")
    check(qty[("VARMUG", "YORK00000001")] == "2.5", f"fractional stock kept as a decimal string: {qty}")
    stamps = [c.calculated_at for c in counts]
    check(stamps == sorted(stamps, reverse=True), f"counts newest first: {stamps}")
    strict(BatchGetInventoryCountsResponse,
           client.inventory.batch_get_counts(location_ids=["LEEDS0000001"]))
    changes = list(client.inventory.batch_get_changes(location_ids=["LEEDS0000001"], limit=2))
    kinds = [c.type for c in changes]
    check(kinds.count("PHYSICAL_COUNT") == 2 and kinds.count("ADJUSTMENT") == 1, f"change kinds {kinds}")
    sold = next(c.adjustment for c in changes if c.type == "ADJUSTMENT")
    check(sold.from_state == "IN_STOCK" and sold.to_state == "SOLD" and sold.quantity == "2"
          and sold.source.product == "SQUARE_POS" and sold.total_price_money.amount == 2400,
          f"sale adjustment {sold}")

    # SearchOrders by updated_at: the POS sale with its inclusive VAT.
    query = {
        "filter": {"date_time_filter": {"updated_at": {"start_at": "2026-01-01T00:00:00Z"}}},
        "sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"},
    }
    res = client.orders.search(location_ids=["LEEDS0000001"], query=query, limit=10)
    check(len(res.orders) == 1, f"{len(res.orders)} orders")
    sale = res.orders[0]
    check(sale.state == "COMPLETED" and sale.version is None and sale.source.name == "Square Point of Sale",
          f"sale {sale.state} {sale.version} {sale.source}")
    check(sale.total_money.amount == 2400 and sale.total_tax_money.amount == 400,
          f"sale totals {sale.total_money} {sale.total_tax_money}")
    line = sale.line_items[0]
    check(line.quantity == "2" and line.catalog_object_id == "VARTEES"
          and line.applied_taxes[0].applied_money.amount == 400, f"line {line}")
    check(sale.tenders[0].type == "CARD" and sale.tenders[0].amount_money.amount == 2400, "card tender")
    strict(SearchOrdersResponse,
           client.orders.with_raw_response.search(location_ids=["LEEDS0000001"], query=query))

    # A web order for collection, paid externally so it shows on the till.
    created = client.orders.create(
        idempotency_key="sdk-100000042",
        order={
            "location_id": "LEEDS0000001",
            "reference_id": "100000042",
            "line_items": [{"catalog_object_id": "VARTEEM", "quantity": "1",
                            "base_price_money": {"amount": 1200, "currency": "GBP"}}],
            "fulfillments": [{"type": "PICKUP", "state": "PROPOSED",
                              "pickup_details": {"recipient": {"display_name": "Ada Lovelace"},
                                                 "schedule_type": "ASAP"}}],
        },
    ).order
    check(created.state == "OPEN" and created.version == 1 and created.reference_id == "100000042",
          f"created {created.state} {created.version}")
    check(created.fulfillments[0].state == "PROPOSED" and created.fulfillments[0].pickup_details.placed_at,
          "pickup proposed and placed")
    check(created.net_amount_due_money.amount == 1200, "amount due")
    again = strict(CreateOrderResponse, client.orders.with_raw_response.create(
        idempotency_key="sdk-100000042",
        order={
            "location_id": "LEEDS0000001",
            "reference_id": "100000042",
            "line_items": [{"catalog_object_id": "VARTEEM", "quantity": "1",
                            "base_price_money": {"amount": 1200, "currency": "GBP"}}],
            "fulfillments": [{"type": "PICKUP", "state": "PROPOSED",
                              "pickup_details": {"recipient": {"display_name": "Ada Lovelace"},
                                                 "schedule_type": "ASAP"}}],
        },
    ))
    check(again.order.id == created.id, "same idempotency key replays the first order")
    payment = client.payments.create(
        source_id="EXTERNAL",
        idempotency_key="sdk-pay-100000042",
        amount_money={"amount": 1200, "currency": "GBP"},
        order_id=created.id,
        external_details={"type": "OTHER", "source": "Adobe Commerce", "source_id": "100000042"},
    ).payment
    check(payment.status == "COMPLETED" and payment.source_type == "EXTERNAL"
          and payment.external_details.source == "Adobe Commerce" and payment.order_id == created.id,
          f"payment {payment}")
    paid = client.orders.get(order_id=created.id).order
    check(paid.version == 2 and paid.net_amount_due_money.amount == 0
          and paid.tenders[0].type == "OTHER" and paid.tenders[0].payment_id == payment.id,
          f"paid order {paid.version} {paid.tenders}")
    updated = client.orders.update(
        order_id=created.id,
        idempotency_key="sdk-accept-100000042",
        order={"location_id": "LEEDS0000001", "version": paid.version,
               "fulfillments": [{"uid": paid.fulfillments[0].uid, "state": "RESERVED"}]},
    ).order
    check(updated.fulfillments[0].state == "RESERVED" and updated.version == 3
          and updated.fulfillments[0].pickup_details.accepted_at, "accepted")
    strict(GetPaymentResponse, client.payments.with_raw_response.get(payment_id=payment.id))

    # Square's error envelope reaches the SDK's ApiError.
    from square.core.api_error import ApiError
    try:
        client.orders.get(order_id="NO-SUCH-ORDER")
        check(False, "missing order must raise")
    except ApiError as e:
        check(e.status_code == 404 and e.body["errors"][0]["code"] == "NOT_FOUND", f"404 body {e.body}")
    bad = Square(token="not-the-token", base_url=base)
    try:
        bad.locations.list()
        check(False, "a wrong token must raise")
    except ApiError as e:
        check(e.status_code == 401 and e.body["errors"][0]["category"] == "AUTHENTICATION_ERROR", "401")

    print(f"SDK CHECK OK: {CHECKS} checks")


if __name__ == "__main__":
    main()
