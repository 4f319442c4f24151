"""Sends collector file-exporter JSON lines to an OTLP/HTTP endpoint, one request per line,
as an exporter would: loads a stored corpus into a trace store.

usage: load_otlp.py URL (http://host:4318/v1/traces) DIR_OR_FILE…"""

import pathlib
import sys
import urllib.request


def main(url, *paths):
    files = []
    for p in map(pathlib.Path, paths):
        files.extend(sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p])
    sent = 0
    for f in files:
        with open(f, "rb") as lines:
            for line in lines:
                line = line.strip()
                if not line:
                    continue
                req = urllib.request.Request(url, data=line, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    if r.status != 200:
                        sys.exit(f"load_otlp: {url} answered {r.status}")
                sent += 1
    print(f"load_otlp: {sent} requests from {len(files)} files sent to {url}")


if __name__ == "__main__":
    main(*sys.argv[1:])
