#!/usr/bin/env python3
"""Summarise scripts/bench.sh runs: medians, ratios and the performance targets.

    scripts/bench-report.py --runs runs.tsv --machine machine.txt [--scale full|small] [--out FILE]

runs.tsv has one line per measured push (header line first): round, tool
(ours|docker|skopeo), scenario (cold|unchanged|changed|big), rc, wall_s, user_s,
sys_s, maxrss_kib, dockerd_cpu_s, exports, compressed_bytes, layers, note.
machine.txt has "key<TAB>value" lines. The report is Markdown, printed to
stdout and written to --out. Only successful runs (rc 0) enter the medians.
The targets are those of shared/notes/performance.md, as ratios in this run.
"""

import argparse
import csv
import statistics
import sys

TOOLS = ["ours", "docker", "skopeo"]
TOOL_NAMES = {
    "ours": "idpbuilder-push",
    "docker": "docker push",
    "skopeo": "skopeo copy",
}
SCENARIOS = ["cold", "unchanged", "changed", "big"]
SCENARIO_NAMES = {
    "cold": "cold push (empty repository, empty caches)",
    "unchanged": "unchanged image pushed again",
    "changed": "one changed app layer",
    "big": "cold push of one big layer of random bytes (once per tool)",
}
RSS_LIMIT_MIB = 64


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=2, unit=""):
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def load_runs(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for row in rows:
        row["ok"] = row["rc"] == "0"
        row["wall"] = num(row["wall_s"])
        user, sys_ = num(row["user_s"]), num(row["sys_s"])
        row["cpu"] = user + sys_ if user is not None and sys_ is not None else None
        kib = num(row["maxrss_kib"])
        row["rss_mib"] = kib / 1024 if kib is not None else None
        row["dcpu"] = num(row["dockerd_cpu_s"])
        row["exports_n"] = num(row["exports"])
        size = num(row["compressed_bytes"])
        row["size_mb"] = size / 1e6 if size is not None else None
    return rows


def summarise(rows):
    """(tool, scenario) -> medians (max for RSS and exports) of successful runs."""
    out = {}
    for tool in TOOLS:
        for scenario in SCENARIOS:
            runs = [r for r in rows if r["tool"] == tool and r["scenario"] == scenario]
            ok = [r for r in runs if r["ok"]]
            exports = [r["exports_n"] for r in ok if r["exports_n"] is not None]
            rss = [r["rss_mib"] for r in ok if r["rss_mib"] is not None]
            out[tool, scenario] = {
                "n": len(ok),
                "failed": len(runs) - len(ok),
                "wall": median(r["wall"] for r in ok),
                "cpu": median(r["cpu"] for r in ok),
                "rss": max(rss) if rss else None,
                "dcpu": median(r["dcpu"] for r in ok),
                "size": median(r["size_mb"] for r in ok),
                "exports": max(exports) if exports else None,
                "walls": [r["wall"] for r in ok],
            }
    return out


def load_machine(path):
    items = []
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("\t")
            if key:
                items.append((key, value))
    return items


def targets(s, rows):
    """[(target, measured, verdict)] for the targets of performance.md."""
    res = []

    def add(name, measured, ok):
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        res.append((name, measured, verdict))

    def cmp(value, limit, strict=False):
        if value is None:
            return None
        return value < limit if strict else value <= limit

    cold_o, cold_s, cold_d = s["ours", "cold"], s["skopeo", "cold"], s["docker", "cold"]
    r = ratio(cold_o["wall"], cold_s["wall"])
    add("cold push: wall <= 0.6x skopeo", f"{fmt(r)}x ({fmt(cold_o['wall'])} s vs {fmt(cold_s['wall'])} s)", cmp(r, 0.6))
    r = ratio(cold_o["wall"], cold_d["wall"])
    add("cold push: wall <= 0.4x docker push", f"{fmt(r)}x ({fmt(cold_o['wall'])} s vs {fmt(cold_d['wall'])} s)", cmp(r, 0.4))

    un = s["ours", "unchanged"]
    add("unchanged re-push: wall < 0.3 s", f"{fmt(un['wall'], 3)} s", cmp(un["wall"], 0.3, strict=True))
    ex = un["exports"]
    add(
        "unchanged re-push: no export request to the daemon",
        "n/a (not counted)" if ex is None else f"{int(ex)} export request(s) (max over rounds)",
        None if ex is None else ex == 0,
    )

    ch_o, ch_s = s["ours", "changed"], s["skopeo", "changed"]
    r = ratio(ch_o["wall"], ch_s["wall"])
    add("one changed layer: wall <= skopeo", f"{fmt(r)}x ({fmt(ch_o['wall'])} s vs {fmt(ch_s['wall'])} s)", cmp(r, 1.0))
    r = ratio(ch_o["cpu"], ch_s["cpu"])
    add("one changed layer: CPU <= 0.3x skopeo", f"{fmt(r)}x ({fmt(ch_o['cpu'])} s vs {fmt(ch_s['cpu'])} s)", cmp(r, 0.3))

    rss = [r["rss_mib"] for r in rows if r["tool"] == "ours" and r["ok"] and r["rss_mib"] is not None]
    peak = max(rss) if rss else None
    big = s["ours", "big"]
    scope = "all our runs, the big layer included" if big["n"] else "all our runs; no big-layer run"
    add(f"peak RSS < {RSS_LIMIT_MIB} MiB ({scope})", f"{fmt(peak, 1)} MiB", cmp(peak, RSS_LIMIT_MIB, strict=True))

    r = ratio(cold_o["size"], cold_d["size"])
    dev = abs(r - 1) if r is not None else None
    add(
        "compressed size within 15 % of docker push",
        f"{fmt(r, 3)}x ({fmt(cold_o['size'], 1)} MB vs {fmt(cold_d['size'], 1)} MB)",
        cmp(dev, 0.15),
    )
    return res


def render(rows, machine, scale):
    s = summarise(rows)
    lines = []
    w = lines.append
    rounds = sorted({int(r["round"]) for r in rows}) if rows else []
    w("## Benchmark: idpbuilder-push vs docker push vs skopeo copy")
    w("")
    if scale != "full":
        w(f"**Scale `{scale}`: a quick check of the benchmark itself, not the reference workload; "
          "its ratios say little.**")
        w("")
    w("Machine and software:")
    w("")
    for key, value in machine:
        w(f"- {key}: {value}")
    w("")
    w(f"Medians of {len(rounds)} round(s); the tools alternate, each round against fresh repositories "
      "and empty client caches (see scripts/bench.sh). CPU = user+sys of the client process tree; "
      "for `docker push` the work happens in dockerd, shown apart. Peak RSS = max over rounds. "
      "Size = sum of the compressed layer sizes in the pushed manifest. "
      "Exports = image export requests (`/images/get`) dockerd logged during the run (max).")
    w("")
    w("| scenario | tool | wall s | CPU s | peak RSS MiB | dockerd CPU s | size MB | exports | runs |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for scenario in SCENARIOS:
        if not any(s[tool, scenario]["n"] or s[tool, scenario]["failed"] for tool in TOOLS):
            continue
        for tool in TOOLS:
            m = s[tool, scenario]
            runs = f"{m['n']}" + (f" ({m['failed']} failed)" if m["failed"] else "")
            exports = "n/a" if m["exports"] is None else f"{int(m['exports'])}"
            w(f"| {scenario} | {TOOL_NAMES[tool]} | {fmt(m['wall'], 3 if scenario == 'unchanged' else 2)} | "
              f"{fmt(m['cpu'])} | {fmt(m['rss'], 1)} | {fmt(m['dcpu'])} | {fmt(m['size'], 1)} | {exports} | {runs} |")
    w("")
    w("Ratios of medians (ours / other; below 1 means idpbuilder-push is faster or smaller):")
    w("")
    w("| scenario | wall vs skopeo | wall vs docker push | CPU vs skopeo | size vs docker push |")
    w("|---|---:|---:|---:|---:|")
    for scenario in SCENARIOS:
        if not any(s[tool, scenario]["n"] for tool in TOOLS):
            continue
        o, sk, dk = s["ours", scenario], s["skopeo", scenario], s["docker", scenario]
        w(f"| {scenario} | {fmt(ratio(o['wall'], sk['wall']))}x | {fmt(ratio(o['wall'], dk['wall']))}x | "
          f"{fmt(ratio(o['cpu'], sk['cpu']))}x | {fmt(ratio(o['size'], dk['size']), 3)}x |")
    w("")
    w("Targets (shared/notes/performance.md):")
    w("")
    w("| target | measured | verdict |")
    w("|---|---|---|")
    for name, measured, verdict in targets(s, rows):
        w(f"| {name} | {measured} | {verdict} |")
    w("")
    if not any(r["scenario"] == "big" for r in rows):
        w("No big-layer run (--big-mib 0): the peak-RSS verdict covers the bench image only.")
    notes = [r for r in rows if r["note"]]
    if notes:
        w("")
        w("Notes:")
        w("")
        for r in notes:
            w(f"- round {r['round']}, {r['scenario']}, {TOOL_NAMES[r['tool']]}: {r['note']}")
    w("")
    w("<details><summary>All runs</summary>")
    w("")
    w("| round | scenario | tool | rc | wall s | user s | sys s | RSS MiB | dockerd CPU s | exports | size MB |")
    w("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    order = {t: i for i, t in enumerate(SCENARIOS)}
    for r in sorted(rows, key=lambda r: (int(r["round"]), order.get(r["scenario"], 9))):
        w(f"| {r['round']} | {r['scenario']} | {TOOL_NAMES.get(r['tool'], r['tool'])} | {r['rc']} | "
          f"{fmt(r['wall'], 3)} | {r['user_s']} | {r['sys_s']} | {fmt(r['rss_mib'], 1)} | "
          f"{r['dockerd_cpu_s']} | {r['exports']} | {fmt(r['size_mb'], 1)} |")
    w("")
    w("</details>")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True)
    p.add_argument("--machine", required=True)
    p.add_argument("--scale", default="full")
    p.add_argument("--out")
    args = p.parse_args()
    text = render(load_runs(args.runs), load_machine(args.machine), args.scale)
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
