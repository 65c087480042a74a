"""Drives the Tillbridge Commerce emulator with PyMagento (PyPI `pymagento`), unchanged.

Usage: check.py BASE_URL TOKEN ORDER_ENTITY_ID
The emulator is seeded by the Rust test (source `store-01`, stock 2, SKUs TEE-S and MUG, and an
order placed through the storefront). Prints one line per step; exits non-zero at the first
failed expectation.
"""
import sys

from magento import Magento
from magento.exceptions import MagentoException
from magento.queries import make_field_value_query


def expect(cond, what):
    if not cond:
        print(f"FAIL {what}")
        sys.exit(1)
    print(f"ok   {what}")


def main():
    base_url, token, order_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
    m = Magento(token=token, base_url=base_url, batch_page_size=2)  # scope "all": /rest/all/V1/...

    # Sources
    sources = list(m.get_sources())
    expect({s["source_code"] for s in sources} >= {"default", "store-01"}, "get_sources lists every source (paged by 2)")
    src = m.get_source("store-01")
    expect(src["name"] == "Leeds Briggate" and src["enabled"] is True, "get_source returns the source")
    expect(m.get_source("nowhere") is None, "get_source of an unknown code is None (404)")
    m.save_source({"source_code": "york", "name": "York Stonegate", "enabled": True, "country_id": "GB", "postcode": "YO1 8AS"})
    expect(m.get_source("york")["postcode"] == "YO1 8AS", "save_source creates a source")

    # Stock-source links
    links = list(m.get_stock_source_links())
    expect(any(l["source_code"] == "store-01" and l["stock_id"] == 2 for l in links), "get_stock_source_links")

    # Source items
    m.save_source_items([
        {"sku": "TEE-S", "source_code": "york", "quantity": 6, "status": 1},
        {"sku": "MUG", "source_code": "york", "quantity": 0, "status": 0},
    ])
    items = list(m.get_source_items(sku="TEE-S"))
    expect(sorted((i["source_code"], i["quantity"]) for i in items) == [("store-01", 20), ("york", 6)],
           "save_source_items then get_source_items(sku=...)")
    by_source = list(m.get_source_items(source_code="york"))
    expect(len(by_source) == 2, "get_source_items(source_code=...) pages through both items")
    in_query = list(m.get_source_items(skus=["TEE-S", "MUG"]))
    expect(len(in_query) == 4, "get_source_items(skus=[...]) uses an `in` filter")
    m.delete_source_items([{"sku": "MUG", "source_code": "york"}])
    expect(len(list(m.get_source_items(source_code="york"))) == 1, "delete_source_items")
    try:
        m.save_source_items([{"sku": "", "source_code": "york", "quantity": 1, "status": 1}])
        expect(False, "an invalid source item is refused")
    except MagentoException as e:
        expect(str(e).startswith('Validation Failed: "sku" can not be empty.') or 'Validation Failed' in str(e),
               f"an invalid source item raises MagentoException ({e})")

    # Orders
    orders = list(m.get_orders())
    expect(len(orders) == 1 and orders[0]["entity_id"] == order_id, "get_orders")
    order = m.get_order(order_id)
    expect(order["increment_id"] == "000000042" and order["status"] == "pending", "get_order")
    expect(m.get_order_by_increment_id("000000042")["entity_id"] == order_id, "get_order_by_increment_id")
    expect(m.get_order_by_increment_id("nope") is None, "get_order_by_increment_id of an unknown id is None")
    expect(list(m.get_orders(status="pending"))[0]["entity_id"] == order_id, "get_orders(status=...)")
    last = m.get_last_orders(limit=1)
    expect(len(last) == 1, "get_last_orders sorts by increment_id")
    expect(m.get_total_orders_count() == 1, "get_total_orders_count")
    order_items = list(m.get_orders_items(sku="TEE-S"))
    expect(len(order_items) == 1 and order_items[0]["qty_ordered"] == 2, "get_orders_items(sku=...)")
    expect(m.get_order_item(order_items[0]["item_id"])["sku"] == "TEE-S", "get_order_item")
    expect(m.sku_was_bought("MUG") is True, "sku_was_bought (fields=items[sku])")
    expect(m.hold_order(order_id) is True, "hold_order")
    expect(m.get_order(order_id)["status"] == "holded", "a held order shows status holded")
    expect(m.unhold_order(order_id) is True, "unhold_order")

    # Invoice, shipment, credit memo
    invoice_id = m.create_order_invoice(order_id, notify=False)
    expect(int(invoice_id) > 0, "create_order_invoice returns the invoice id")
    invoice = m.get_invoice(int(invoice_id))
    expect(invoice["order_id"] == order_id and invoice["total_qty"] == 3, "get_invoice")
    expect(len(list(m.get_order_invoices(order_id))) == 1, "get_order_invoices")
    expect(m.get_invoice_by_increment_id(invoice["increment_id"])["entity_id"] == invoice["entity_id"],
           "get_invoice_by_increment_id")
    shipment_id = m.ship_order(order_id, {
        "items": [{"order_item_id": order_items[0]["item_id"], "qty": 2}],
        "tracks": [{"track_number": "1Z999", "title": "UPS", "carrier_code": "ups"}],
        "arguments": {"extension_attributes": {"source_code": "store-01"}},
    })
    shipment = m.get_shipment(shipment_id)
    expect(shipment["extension_attributes"]["source_code"] == "store-01" and shipment["tracks"][0]["track_number"] == "1Z999",
           "ship_order then get_shipment")
    expect(len(list(m.get_order_shipments(order_id))) == 1, "get_order_shipments")
    expect(m.get_shipment(999) is None, "get_shipment of an unknown id is None")
    try:
        got = m.ship_order(order_id, {"items": [{"order_item_id": order_items[0]["item_id"], "qty": 5}]})
        expect(False, f"shipping more than ordered is refused (got {got!r}: {m.get_shipment(got)})")
    except MagentoException as e:
        expect("Shipment Document Validation Error(s)" in str(e) or "shipment" in str(e).lower(),
               f"ship_order raises MagentoException ({e!s:.60})")
    memo_id = m.post_json_api(f"/V1/order/{order_id}/refund", json={
        "items": [{"order_item_id": order_items[0]["item_id"], "qty": 1}],
        "arguments": {"shipping_amount": 0, "extension_attributes": {"return_to_stock_items": [order_items[0]["item_id"]]}},
    })
    memos = list(m.get_credit_memos())
    expect(len(memos) == 1 and memos[0]["entity_id"] == memo_id, "refund then get_credit_memos")
    expect(m.get_order(order_id)["items"][0]["qty_refunded"] == 1, "the order shows the refund")

    # Async bulk + bulk status
    r = m.post_api("/V1/inventory/source-items", json=[{"sourceItems": [{"sku": "MUG", "source_code": "store-01", "quantity": 9, "status": 1}]}],
                   async_bulk=True, throw=True)
    bulk_uuid = r.json()["bulk_uuid"]
    status = m.get_bulk_status(bulk_uuid)
    expect(status["operation_count"] == 1 and status["operations_list"][0]["status"] == 4, "get_bulk_status (open)")
    expect(m.get_bulk_operation_status_count(bulk_uuid, 4) == 1, "get_bulk_operation_status_count")
    expect(m.get_bulk_detailed_status(bulk_uuid)["operations_list"][0]["topic_name"].startswith("async.magento.inventoryapi"),
           "get_bulk_detailed_status")
    print("all pymagento checks passed")


if __name__ == "__main__":
    main()
