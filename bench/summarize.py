#!/usr/bin/env python3
"""Turn run.sh's raw data into the markdown table.

Usage: summarize.py RESULTS_DIR   (reads rounds.tsv, extra.tsv, settings.txt; prints markdown)

Figures are medians over the rounds of each (scenario, target); "CPU vs upstream" is the
median of the per-round ratios; peak RSS is the maximum over the rounds; errors and
non-2xx are summed. Ratios between targets are ratios of those medians (same run only).
"""
import csv
import os
import statistics
import sys

ORDER = {
    "small": ["direct", "nginx", "callout", "callout-routes"],
    "big-down": ["direct", "nginx", "callout"],
    "big-up": ["direct", "nginx", "callout"],
    "h2c": ["callout-h2c", "callout-h1", "nginx-h1"],
}


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(rows, key):
    vals = [num(r[key]) for r in rows if num(r[key]) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec=",.0f", none="-"):
    return none if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def main():
    out_dir = sys.argv[1]
    rows = list(csv.DictReader(open(os.path.join(out_dir, "rounds.tsv")), delimiter="\t"))
    extra = {}
    extra_path = os.path.join(out_dir, "extra.tsv")
    if os.path.exists(extra_path):
        for line in open(extra_path):
            if "\t" in line:
                k, v = line.rstrip("\n").split("\t", 1)
                extra[k] = v
    settings = open(os.path.join(out_dir, "settings.txt")).read().strip() if os.path.exists(
        os.path.join(out_dir, "settings.txt")) else ""

    groups = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["target"]), []).append(r)
    stats = {}
    for (sc, tg), rs in groups.items():
        rps = [num(r["rps"]) for r in rs]
        stats[(sc, tg)] = {
            "n": len(rs),
            "tool": rs[0]["tool"],
            "conns": rs[0]["conns"],
            "rps": med(rs, "rps"),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "mib_s": med(rs, "mib_s"),
            "p50": med(rs, "p50_us"),
            "p99": med(rs, "p99_us"),
            "cpu": med(rs, "proxy_cpu_us"),
            "cpu_user": med(rs, "proxy_user_us"),
            "cpu_sys": med(rs, "proxy_sys_us"),
            "up_cpu": med(rs, "upstream_cpu_us"),
            "cpu_vs_up": med(rs, "cpu_vs_upstream"),
            "rss": max((num(r["peak_rss_kib"]) or 0) for r in rs) / 1024,
            "errors": sum(int(r["errors"]) for r in rs),
            "non2xx": sum(int(r["non2xx"]) for r in rs),
            "steal": med(rs, "core0_steal_pct"),
        }

    p = print
    p("# callout benchmark")
    p()
    if settings:
        p("```")
        p(settings)
        p("```")
        p()
    p("req/s: median of rounds (min-max); p50/p99: medians of the rounds' exact percentiles;")
    p("proxy CPU: utime+stime of the proxy process (all threads, whole tree) over the measured")
    p("window / requests (for `direct`: the upstream itself); CPU vs upstream: median of the")
    p("per-round ratio proxy CPU / upstream CPU; RSS: peak VmRSS sampled every second; errors:")
    p("socket errors (connect+read+write+timeout) or failed requests; non-2xx: status >= 400;")
    p("MiB/s: bytes the load generator received (big-up: plus the 1 MiB bodies it sent).")
    p()
    p("| scenario | target | load | req/s | min-max | MiB/s | p50 ms | p99 ms | proxy CPU µs/req (user + sys) | upstream CPU µs/req | CPU vs upstream | peak RSS MiB | errors | non-2xx | rounds |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for sc, targets in ORDER.items():
        for tg in targets + sorted(t for (s, t) in stats if s == sc and t not in targets):
            s = stats.get((sc, tg))
            if not s:
                continue
            direct = tg == "direct"
            cpu = "-" if direct or s["cpu"] is None else f"{s['cpu']:.1f} ({s['cpu_user']:.1f} + {s['cpu_sys']:.1f})"
            up = f"{s['up_cpu']:.1f}" if s["up_cpu"] is not None else "-"
            if direct:
                up = f"{up} (itself)"
            p(
                f"| {sc} | {tg} | {s['tool']} c={s['conns']} | {fmt(s['rps'])} | "
                f"{fmt(s['rps_min'] / 1000, '.1f')}k-{fmt(s['rps_max'] / 1000, '.1f')}k | "
                f"{fmt(s['mib_s'], ',.1f')} | {fmt(s['p50'] and s['p50'] / 1000, '.2f')} | "
                f"{fmt(s['p99'] and s['p99'] / 1000, '.2f')} | {cpu} | {up} | "
                f"{'-' if direct else fmt(s['cpu_vs_up'], '.2f') + 'x'} | {s['rss']:.1f} | "
                f"{s['errors']} | {s['non2xx']} | {s['n']} |"
            )
    p()

    # Ratios within this run.
    lines = []
    for sc in ("small", "big-down", "big-up"):
        c, n, d = stats.get((sc, "callout")), stats.get((sc, "nginx")), stats.get((sc, "direct"))
        if not c:
            continue
        cells = [sc]
        cells.append(fmt(ratio(c["rps"], n and n["rps"]), ".2f"))
        cells.append(fmt(ratio(c["cpu"], n and n["cpu"]), ".2f"))
        cells.append(fmt(ratio(c["cpu_vs_up"], n and n["cpu_vs_up"]), ".2f"))
        cells.append(fmt(ratio(c["p99"], n and n["p99"]), ".2f"))
        cells.append(fmt(ratio(c["rss"], n and n["rss"]), ".2f"))
        cells.append(fmt(ratio(c["rps"], d and d["rps"]), ".2f"))
        cells.append(fmt(ratio(n and n["rps"], d and d["rps"]), ".2f"))
        lines.append("| " + " | ".join(cells) + " |")
    if lines:
        p("| scenario | callout/nginx req/s | callout/nginx CPU µs/req | callout/nginx CPU-vs-upstream | callout/nginx p99 | callout/nginx RSS | callout/direct req/s | nginx/direct req/s |")
        p("|---|---|---|---|---|---|---|---|")
        for line in lines:
            p(line)
        p()

    more = []
    h2, h1 = stats.get(("h2c", "callout-h2c")), stats.get(("h2c", "callout-h1"))
    if h2 and h1:
        more.append(("h2c: callout h2c / callout HTTP/1.1 (same h2load, same concurrency) req/s",
                     fmt(ratio(h2["rps"], h1["rps"]), ".2f")))
        more.append(("h2c: callout h2c / callout HTTP/1.1 CPU µs/req", fmt(ratio(h2["cpu"], h1["cpu"]), ".2f")))
    nh1 = stats.get(("h2c", "nginx-h1"))
    if h2 and nh1:
        more.append(("h2c: callout h2c / nginx HTTP/1.1 (h2load) req/s", fmt(ratio(h2["rps"], nh1["rps"]), ".2f")))
    r10, r1 = stats.get(("small", "callout-routes")), stats.get(("small", "callout"))
    if r10 and r1:
        n_routes = extra.get("routes", "?")
        more.append((f"routing: callout with {n_routes} named credentials / with 1, req/s",
                     fmt(ratio(r10["rps"], r1["rps"]), ".3f")))
        more.append((f"routing: callout with {n_routes} named credentials / with 1, CPU µs/req",
                     fmt(ratio(r10["cpu"], r1["cpu"]), ".3f")))
        more.append((f"routing: RSS with {n_routes} named credentials (MiB, peak under load)", f"{r10['rss']:.1f}"))
    for key, label in [
        ("callout_rss_at_start_mib", "callout (the one under load) RSS when ready, before any request (MiB)"),
        ("idle_rss_start_mib", "idle: callout RSS right after start (MiB)"),
        ("idle_rss_first_mib", "idle: callout RSS after its first proxied request (MiB)"),
        ("idle_rss_conns_mib", "idle: callout RSS with {n} idle keep-alive connections (MiB)"),
        ("idle_kib_per_conn", "idle: callout KiB per idle connection"),
        ("idle_cpu_ms_conns", "idle: callout CPU while holding them, ms over {hold} s"),
        ("idle_still_open", "idle: connections still open after the hold (of {n})"),
        ("idle_rss_after_close_mib", "idle: callout RSS after they closed (MiB)"),
        ("idle_nginx_rss_before_mib", "idle: fresh nginx proxy RSS after its first request (MiB; worker_connections sized for them)"),
        ("idle_nginx_rss_conns_mib", "idle: nginx proxy RSS with {n} idle connections (MiB)"),
        ("idle_nginx_kib_per_conn", "idle: nginx proxy KiB per idle connection"),
        ("idle_nginx_still_open", "idle: nginx connections still open after the hold (of {n})"),
    ] + [(k, k[len("label:"):]) for k in extra if k.startswith("label:")]:
        if key in extra:
            more.append((label.format(n=extra.get("idle_conns", "?"), hold=extra.get("idle_hold", "?"),
                                      routes=extra.get("routes", "?")), extra[key]))
    steals = [s["steal"] for s in stats.values() if s["steal"] is not None]
    if steals:
        more.append(("hypervisor steal on the server core (median of targets' medians, %)",
                     f"{statistics.median(steals):.1f}"))
    if more:
        p("| other figure | value |")
        p("|---|---|")
        for k, v in more:
            p(f"| {k} | {v} |")
        p()
    notes = extra.get("notes")
    if notes:
        p("Notes: " + notes)


if __name__ == "__main__":
    main()
