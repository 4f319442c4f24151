"""Routes the alerts of examples/alerts/betrace.rules.yaml through
examples/alerts/alertmanager.yaml with `amtool config routes test`, each with the very
labels its promtool test (tests/alerts/betrace.rules.test.yaml) expects it to carry, and
checks the receivers: critical rules and lost violations to the pager (and chat, or the
rule's owner), compliance rules to their owners, the rest to chat. Every alert of the rules
file must be routed by at least one case here.

usage: routes.py AMTOOL"""

import re
import subprocess
import sys

RULES = "examples/alerts/betrace.rules.yaml"
TEST = "tests/alerts/betrace.rules.test.yaml"
CONFIG = "examples/alerts/alertmanager.yaml"

# (labels that pick one expected alert of the promtool test, the receivers it must reach)
CASES = [
    ({"alertname": "BetraceRuleViolated", "betrace_rule_id": "payment-retry-idempotent"}, "pager,chat-incidents"),
    ({"alertname": "BetraceRuleViolated", "betrace_rule_id": "hipaa-phi-access-authenticated"}, "pager,owner-privacy-office"),
    ({"alertname": "BetraceRuleViolated", "betrace_rule_id": "soc2-admin-actions-audited"}, "owner-security-compliance"),
    ({"alertname": "BetraceRuleViolated", "betrace_rule_id": "llm-token-limit-respected"}, "chat-incidents"),
    ({"alertname": "BetraceComplianceBelowTarget", "betrace_rule_id": "gdpr-erasure-within-30-days"}, "owner-privacy-office"),
    ({"alertname": "BetraceComplianceBelowTarget", "betrace_rule_id": "inventory-deducted-after-payment"}, "chat-incidents"),
    # a critical rule's compliance rate pages no one: it goes to chat
    ({"alertname": "BetraceComplianceBelowTarget", "betrace_rule_id": "refunds-within-charged-amount"}, "chat-incidents"),
    ({"alertname": "BetraceSignalsLost", "instance": "collector-0:8888"}, "pager,chat-incidents"),
    # waiting is not lost yet: chat, not the pager
    ({"alertname": "BetraceSignalsWaiting"}, "chat-incidents"),
    ({"alertname": "BetraceInvalidSpans"}, "chat-incidents"),
    ({"alertname": "BetraceRuleReloadFailed"}, "chat-incidents"),
    ({"alertname": "BetraceTracesJudgedEarly"}, "chat-incidents"),
    ({"alertname": "BetraceRulesDiffer"}, "chat-incidents"),
]
# Labels no test alert has: an owner without a receiver of its own.
EXTRA = [
    ({"alertname": "BetraceComplianceBelowTarget", "severity": "warning", "betrace_rule_id": "x", "owner": "legal"}, "owner-compliance"),
]


def expected_alerts():
    out = []
    for m in re.finditer(r"exp_labels: \{([^}]*)\}", open(TEST).read()):
        labels = {}
        for kv in m.group(1).split(","):
            k, v = kv.split(":", 1)
            labels[k.strip()] = v.strip().strip('"')
        out.append(labels)
    return out


def main(amtool):
    alerts = expected_alerts()
    problems = []
    cases = []
    for pick, receivers in CASES:
        found = [a for a in alerts if all(a.get(k) == v for k, v in pick.items())]
        if not found:
            problems.append(f"no alert of {TEST} has the labels {pick}")
            continue
        cases.append((found[0], receivers))
    cases += EXTRA
    for name in sorted(set(re.findall(r"^\s*- alert: (\w+)", open(RULES).read(), re.M)) - {c[0]["alertname"] for c in cases}):
        problems.append(f"alert {name} of {RULES} has no routing case")
    for labels, receivers in cases:
        args = [amtool, "config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={receivers}"]
        args += [f"{k}={v}" for k, v in sorted(labels.items())]
        run = subprocess.run(args, capture_output=True, text=True)
        got = run.stdout.strip().splitlines()[0] if run.stdout.strip() else run.stderr.strip()
        if run.returncode != 0:
            problems.append(f"{labels}: routed to {got}, should reach {receivers}")
    for p in problems:
        print("alerts: " + p)
    status = "ok" if not problems else f"FAILED ({len(problems)} problems)"
    print(f"alerts {status}: {len(cases)} alerts routed by {CONFIG} (amtool config routes test), each to its receivers")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
