"""A small shop instrumented with the OpenTelemetry SDK, for trying BeTrace end to end.

It runs the flows of the BeTrace seeds — checkout and payment, an admin action, reading a
patient record — as real traces exported over OTLP/HTTP, several services per trace.
Switches inject the seeds' incidents, each breaking one rule of examples/rules:

  retry-new-intent     a payment retry with a new payment_intent_id (payment-retry-idempotent)
  ship-before-confirm  shipment before payment confirmation (shipment-after-payment-confirmed)
  admin-without-audit  an admin action without an audit log (soc2-admin-actions-audited)
  phi-without-auth     PHI read without authentication (hipaa-phi-access-authenticated)

  python shop.py --endpoint http://127.0.0.1:4318 --traces 10 --incident retry-new-intent

--record FILE writes what was sent (every span, and the violations each incident should
raise) as JSON, for tests to check the collector's output against.
"""

import argparse
import json
import random
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult

INCIDENTS = {
    "retry-new-intent": ("checkout", "payment-retry-idempotent"),
    "ship-before-confirm": ("checkout", "shipment-after-payment-confirmed"),
    "admin-without-audit": ("admin", "soc2-admin-actions-audited"),
    "phi-without-auth": ("patient", "hipaa-phi-access-authenticated"),
}


class Recorder(SpanExporter):
    """Keeps what was exported, for --record."""

    def __init__(self):
        self.spans = []

    def export(self, spans: "list[ReadableSpan]") -> SpanExportResult:
        for s in spans:
            self.spans.append({
                "trace_id": format(s.context.trace_id, "032x"),
                "span_id": format(s.context.span_id, "016x"),
                "parent_span_id": format(s.parent.span_id, "016x") if s.parent else "",
                "name": s.name,
                "service": s.resource.attributes.get("service.name"),
                "attributes": {k: v for k, v in s.attributes.items()},
            })
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


class Shop:
    def __init__(self, endpoint: str, recorder: Recorder):
        self.providers = {}
        self.endpoint = endpoint
        self.recorder = recorder

    def tracer(self, service: str) -> trace.Tracer:
        """One provider per service: each span carries its service's resource."""
        if service not in self.providers:
            p = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "demo"}))
            p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{self.endpoint}/v1/traces")))
            p.add_span_processor(SimpleSpanProcessor(self.recorder))
            self.providers[service] = p
        return self.providers[service].get_tracer("betrace-demo-shop")

    def span(self, service, name, **attributes):
        return self.tracer(service).start_as_current_span(name, attributes=attributes)

    def checkout(self, order: str, incident: str = "") -> int:
        amount = round(random.uniform(10, 900), 2)
        intent = f"pi_{random.randrange(10**6)}"
        with self.span("frontend", "POST /checkout", **{"http.route": "/checkout"}) as root:
            with self.span("frontend", "checkout.initiate", order_id=order, checkout_id=f"co_{order}"):
                pass
            with self.span("frontend", "cart.validated", cart_id=f"cart_{order}"):
                pass
            with self.span("inventory", "inventory.reserve", order_id=order):
                pass
            with self.span("payments", "payment.charge", order_id=order, payment_intent_id=intent, attempt=1, amount=amount):
                pass
            if incident == "retry-new-intent":
                with self.span("payments", "payment.charge", order_id=order, payment_intent_id=intent + "_retry", attempt=2, amount=amount):
                    pass
            if incident == "ship-before-confirm":
                with self.span("fulfilment", "shipment.initiate", order_id=order, shipment_id=f"sh_{order}"):
                    pass
            with self.span("payments", "payment.confirm", order_id=order):
                pass
            with self.span("inventory", "inventory.deduct", order_id=order, sku="sku-1"):
                pass
            if incident != "ship-before-confirm":
                with self.span("fulfilment", "shipment.initiate", order_id=order, shipment_id=f"sh_{order}"):
                    pass
            with self.span("frontend", "order.complete", order_id=order):
                pass
            with self.span("notifications", "email.confirmation_sent", order_id=order):
                pass
            return root.get_span_context().trace_id

    def admin(self, incident: str = "") -> int:
        with self.span("admin", "POST /api/v1/admin/users", **{"http.route": "/api/v1/admin/users"}) as root:
            with self.span("admin", "auth.validated"):
                pass
            # The role check records its result: a refused check is no check.
            with self.span("admin", "auth.check_admin_role", granted=True):
                pass
            with self.span("admin", "csrf.validated"):
                pass
            with self.span("admin", "api.request", endpoint="/api/v1/admin/users", method="POST", **{"user.id": "admin_1"}):
                pass
            with self.span("admin", "admin.action", action="disable_user", **{"user.id": "admin_1"}):
                pass
            if incident != "admin-without-audit":
                with self.span("audit", "audit.log", action="disable_user"):
                    pass
            return root.get_span_context().trace_id

    def patient(self, incident: str = "") -> int:
        with self.span("ehr", "GET /patients/{id}", **{"http.route": "/patients/{id}"}) as root:
            if incident != "phi-without-auth":
                with self.span("ehr", "auth.user_authenticated", **{"user.id": "dr_3"}):
                    pass
            patient = f"p_{random.randrange(1000)}"
            with self.span("ehr", "phi.access", data_type="phi", **{"patient.id": patient}):
                pass
            # The audit record names the access and its patient, as the seeds instrument it
            # (hipaa-phi-access-audited joins it to the access by patient.id).
            with self.span("audit", "audit.log", action="phi_access", **{"user.id": "dr_3", "patient.id": patient}):
                pass
            return root.get_span_context().trace_id

    def shutdown(self):
        for p in self.providers.values():
            p.force_flush()
            p.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default="http://127.0.0.1:4318", help="OTLP/HTTP endpoint of the collector")
    ap.add_argument("--traces", type=int, default=5, help="healthy traces of each flow")
    ap.add_argument("--incident", action="append", default=[], choices=sorted(INCIDENTS), help="inject an incident (repeatable)")
    ap.add_argument("--record", help="write what was sent, and the expected violations, as JSON")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    random.seed(args.seed)

    recorder = Recorder()
    shop = Shop(args.endpoint, recorder)
    expected = []
    for i in range(args.traces):
        shop.checkout(f"ord_{i}")
        shop.admin()
        shop.patient()
    for incident in args.incident:
        flow, rule = INCIDENTS[incident]
        run = {"checkout": lambda: shop.checkout("ord_incident", incident), "admin": lambda: shop.admin(incident), "patient": lambda: shop.patient(incident)}[flow]
        expected.append({"incident": incident, "rule_id": rule, "trace_id": format(run(), "032x")})
        time.sleep(0.01)
    shop.shutdown()

    traces = len({s["trace_id"] for s in recorder.spans})
    print(f"shop: sent {traces} traces, {len(recorder.spans)} spans, {len(expected)} injected incidents")
    if args.record:
        with open(args.record, "w") as f:
            json.dump({"spans": recorder.spans, "expected": expected}, f, indent=1)


if __name__ == "__main__":
    main()
