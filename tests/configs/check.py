"""Starts every collector configuration the repository documents against the collector the
documents describe (go-shim/builder-config.yaml built with ocb, target/otelcol-betrace): the
files of examples/ (examples/deploy/ too) and every collector configuration in a ```yaml
block of README.md, docs/*.md and the components' READMEs, the Helm values of
docs/deploy.md included. Each must start ("Everything is ready") and stop cleanly with not
one warning or error in its log — a deprecated component alias ("otlp" for "otlp_grpc"),
an exporter that is never defined, a component this build lacks all fail it.

A block is a collector configuration when its top-level keys are the collector's
(receivers, processors, exporters, connectors, extensions, service); one that names
components but has no service section is a fragment, and fails: a documented configuration
is whole. A block with `mode:` and `config:` is Helm values for the community
opentelemetry-collector chart: its `config` is merged over the chart's default
configuration (tests/configs/helm-chart-defaults.yaml) as Helm merges values (maps merged
key by key, lists replaced, a key set to null removed), and that is started. ocb manifests
(`dist:`) and rule files are not collector configurations.

The paths the documents name for rule files (/etc/betrace/rules) are the playbook library
here (examples/rules); the environment variables they read are set to loopback ports.

usage: check.py COLLECTOR [FILE.md|FILE.yaml ...]   (default: every document)
"""

import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPONENT_KEYS = {"receivers", "processors", "exporters", "connectors", "extensions"}
TOP_KEYS = COMPONENT_KEYS | {"service"}
# A file of examples/ that is meant to be merged over another (a second --config).
OVERLAYS = {"examples/victorialogs.yaml": ["examples/collector.yaml"],
            "examples/deploy/tier2-storage.yaml": ["examples/deploy/tier2.yaml"]}
# What the documents' paths and variables stand for here.
PATHS = {"/etc/betrace/rules": os.path.join(ROOT, "examples/rules")}
ENV = {
    "MY_POD_IP": "127.0.0.1",
    "BETRACE_RULES": os.path.join(ROOT, "examples/rules"),
    "BETRACE_TIER1_HTTP": "4318",
    "BETRACE_OTLP_GRPC": "4317",
    "BETRACE_BACKEND1": "127.0.0.1:14317",
    "BETRACE_BACKEND2": "127.0.0.1:24317",
    "BETRACE_BACKEND3": "127.0.0.1:34317",
    "BETRACE_METRICS_PORT": "18888",
    "BETRACE_NAME": "configs-test",
    "BETRACE_STORAGE": os.path.join(tempfile.gettempdir(), "betrace-configs-test-storage"),
}
# The collector's console log: time, level, caller, message.
BAD_LINE = re.compile(r"^\S+\t(warn|error|dpanic|panic|fatal)\t", re.M)
# The only warnings allowed: what is absent here, not wrong in the configuration — gRPC
# cannot reach the second-tier backends this test does not run (BETRACE_BACKEND1..3 of
# examples/deploy/tier1.yaml), and the dns resolver cannot resolve the Kubernetes service
# of the Helm values (*.svc.cluster.local) outside a cluster.
ABSENT_BACKENDS = re.compile(r'grpc: addrConn.createTransport failed to connect to \{Addr: "127\.0\.0\.1:(14317|24317|34317)"'
                             r'|failed to resolve\t.*"error": "lookup [\w.-]+\.svc\.cluster\.local: no such host"')
READY = "Everything is ready"


def documents():
    docs = ["README.md"] + sorted(glob.glob("docs/*.md")) + sorted(glob.glob("go-shim/*/*/README.md"))
    yamls = sorted(glob.glob("examples/*.yaml") + glob.glob("examples/deploy/**/*.yaml", recursive=True))
    return docs + yamls


def yaml_blocks(path):
    """The ```yaml blocks of a Markdown file, with the line each starts at."""
    text = open(os.path.join(ROOT, path)).read()
    for m in re.finditer(r"^```yaml\n(.*?)^```", text, re.M | re.S):
        yield text.count("\n", 0, m.start()) + 2, m.group(1)


def merge(base, over):
    """Helm's merge of values: maps key by key, anything else replaced, null removes."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif k in out:
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def kind(doc):
    """'collector', 'fragment', 'helm' or None for a parsed YAML document."""
    if not isinstance(doc, dict):
        return None
    keys = set(doc)
    if "dist" in keys:
        return None  # an ocb manifest
    if "mode" in keys and "config" in keys:
        return "helm"
    if keys <= TOP_KEYS and "service" in keys:
        return "collector"
    if keys & COMPONENT_KEYS and keys <= TOP_KEYS:
        return "fragment"
    return None


def configs(paths):
    """(name, [config texts merged in order]) for every documented collector configuration;
    fragments are returned as errors."""
    chart = yaml.safe_load(open(os.path.join(ROOT, "tests/configs/helm-chart-defaults.yaml")))
    found, errors = [], []
    for path in paths:
        if path.endswith(".md"):
            for line, text in yaml_blocks(path):
                try:
                    doc = yaml.safe_load(text)
                except yaml.YAMLError as e:
                    errors.append(f"{path}:{line}: a yaml block that does not parse: {e}")
                    continue
                k = kind(doc)
                if k == "collector":
                    found.append((f"{path}:{line}", [text]))
                elif k == "helm":
                    merged = merge(chart["config"], doc["config"])
                    found.append((f"{path}:{line} (Helm values over the chart's defaults)", [yaml.safe_dump(merged)]))
                elif k == "fragment":
                    errors.append(f"{path}:{line}: a collector configuration without a service section: make it whole")
        else:
            doc = yaml.safe_load(open(os.path.join(ROOT, path)))
            k = kind(doc)
            if k in ("collector", "fragment") or path in OVERLAYS:
                texts = [open(os.path.join(ROOT, p)).read() for p in OVERLAYS.get(path, []) + [path]]
                found.append((path, texts))
    return found, errors


def start(collector, name, texts, out):
    """Starts the collector on the configuration, stops it once ready; returns the problems."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [collector]
        for i, text in enumerate(texts):
            for path, here in PATHS.items():
                text = text.replace(path, here)
            f = os.path.join(tmp, f"config-{i}.yaml")
            open(f, "w").write(text)
            args += ["--config", f]
        env = dict(os.environ, BETRACE_OUT=out, **ENV)
        log = os.path.join(tmp, "log")
        with open(log, "w") as lf:
            p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=lf, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        ready = False
        while time.time() < deadline and p.poll() is None:
            if READY in open(log).read():
                ready = True
                break
            time.sleep(0.1)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        text = open(log).read()
    problems = []
    if not ready:
        problems.append(f"did not start (exit {p.returncode})")
    elif p.returncode != 0:
        problems.append(f"exited {p.returncode} on SIGTERM")
    for m in BAD_LINE.finditer(text):
        line = text[m.end():].split("\n", 1)[0]
        if not ABSENT_BACKENDS.search(line):
            problems.append(m.group(0).strip() + " " + line)
    if problems and not ready:
        problems.append("log:\n    " + "\n    ".join(text.strip().splitlines()[-15:]))
    return problems


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    collector = os.path.abspath(sys.argv[1])
    os.chdir(ROOT)
    found, errors = configs(sys.argv[2:] or documents())
    out = tempfile.mkdtemp(prefix="betrace-configs-")
    passed = 0
    for name, texts in found:
        problems = start(collector, name, texts, out)
        if problems:
            errors.append(f"{name}: " + "\n  ".join(problems))
            print(f"configs: FAIL {name}")
        else:
            passed += 1
            print(f"configs: ok   {name}")
    for e in errors:
        print(f"configs: {e}", file=sys.stderr)
    print(f"configs: {passed} passed, {len(errors)} failed")
    if not found:
        sys.exit("configs: no collector configuration found")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
