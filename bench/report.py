#!/usr/bin/env python3
"""Parsing and reporting for bench/run.sh (Python standard library only).

Sub-commands used by run.sh:

  report.py cpu PID...           utime+stime of the processes, summed, in clock ticks
  report.py rss PID...           VmRSS of the processes, summed, in KiB
  report.py freeports N          N free TCP ports on 127.0.0.1 (below the ephemeral range)
  report.py summarize OUTDIR     read OUTDIR/runs.tsv + raw outputs, print the table and
                                 write OUTDIR/results.md

runs.tsv has one line per measured run, tab-separated:

  phase  scenario  target  round  tool  raw_file  proxy_ticks  backend_ticks

where the tick columns are the CPU (utime+stime, in clock ticks) the proxy and the backend
spent during the run ("-" when there is no such process, e.g. the proxy of "direct").
The parsing functions are unit-tested in bench/test_report.py on recorded outputs.
"""

import json
import os
import random
import re
import socket
import statistics
import sys

# ---------------------------------------------------------------------------------------------
# Parsers for the tools' outputs
# ---------------------------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _duration_ms(text):
    """'345.67us' / '1.20ms' / '2.00s' / '1.00m' -> milliseconds."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(text):
    """Parse `wrk --latency` output.

    Returns a dict: requests, seconds, rps, p50_ms, p99_ms (None without --latency),
    socket_errors (connect+read+write+timeout), non_2xx; None if wrk did not report a total.
    """
    total = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", text, re.M)
    if not total:
        return None
    requests = int(total.group(1))
    seconds = _duration_ms(total.group(2) + total.group(3)) / 1000.0
    rps_m = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    rps = float(rps_m.group(1)) if rps_m else (requests / seconds if seconds else 0.0)
    pct = {}
    dist = text.split("Latency Distribution", 1)
    if len(dist) == 2:
        for m in re.finditer(r"^\s*(\d+)%\s+([0-9.]+(?:us|ms|s|m|h))\s*$", dist[1], re.M):
            pct[int(m.group(1))] = _duration_ms(m.group(2))
    errors = 0
    err_m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if err_m:
        errors = sum(int(g) for g in err_m.groups())
    non2xx_m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": rps,
        "p50_ms": pct.get(50),
        "p99_ms": pct.get(99),
        "socket_errors": errors,
        "non_2xx": int(non2xx_m.group(1)) if non2xx_m else 0,
    }


def parse_h2load(text):
    """Parse h2load output: requests succeeded, rps, failed+errored+timeout; None if absent."""
    fin = re.search(r"^finished in ([0-9.]+)(us|ms|s|m|h), ([0-9.]+) req/s", text, re.M)
    req = re.search(
        r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout", text, re.M)
    if not fin or not req:
        return None
    seconds = _duration_ms(fin.group(1) + fin.group(2)) / 1000.0
    done, succeeded = int(req.group(3)), int(req.group(4))
    # h2load's req/s counts every *done* request over the exact duration (the printed one is
    # rounded): scale it to the succeeded ones.
    rps = float(fin.group(3)) * succeeded / done if done else 0.0
    mean = re.search(r"^time for request:\s+\S+\s+\S+\s+([0-9.]+(?:us|ms|s))", text, re.M)
    return {
        "requests": succeeded,
        "seconds": seconds,
        "rps": rps,
        "mean_ms": _duration_ms(mean.group(1)) if mean else None,
        "p50_ms": None,
        "p99_ms": None,
        "socket_errors": int(req.group(5)) + int(req.group(6)) + int(req.group(7)),
        "non_2xx": 0,
    }


def parse_iperf3(text):
    """Parse `iperf3 -J` client output: gbps received, bytes, seconds; None on error/garbage."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if doc.get("error"):
        return None
    rec = doc.get("end", {}).get("sum_received") or {}
    if "bits_per_second" not in rec:
        return None
    sent = doc.get("end", {}).get("sum_sent") or {}
    return {
        "gbps": rec["bits_per_second"] / 1e9,
        "bytes": int(rec.get("bytes", 0)),
        "seconds": float(rec.get("seconds", 0.0)),
        "retransmits": sent.get("retransmits"),
    }


def parse_proc_stat(text):
    """utime+stime (fields 14 and 15 of /proc/PID/stat), in clock ticks.

    The command name (field 2) is in parentheses and may contain spaces and ')' itself,
    so the fields are counted after the *last* ')'.
    """
    rest = text[text.rindex(")") + 1:].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return int(rest[14 - 3]) + int(rest[15 - 3])


def parse_vmrss_kib(text):
    """VmRSS from /proc/PID/status, in KiB (0 for a zombie/kernel thread without one)."""
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def parse_keyvals(text):
    """key=value lines (the idle-connection records run.sh writes)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


# ---------------------------------------------------------------------------------------------
# /proc readers and port picking (used by run.sh between runs)
# ---------------------------------------------------------------------------------------------

def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                total += parse_proc_stat(f.read())
        except (OSError, ValueError, IndexError):
            pass  # a process that is gone counts as 0; run.sh checks liveness itself
    return total


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += parse_vmrss_kib(f.read())
        except OSError:
            pass
    return total


def free_ports(count, low=20000, high=30000):
    """Ports on 127.0.0.1 that can be bound now (SO_REUSEADDR, as servers do) and are not
    listening. Kept below the ephemeral range so client connections never take them."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_low = int(f.read().split()[0])
        high = min(high, eph_low)
    except (OSError, ValueError):
        pass
    found = []
    start = random.randrange(low, high - 1000)
    port = start
    while len(found) < count:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            found.append(port)
        except OSError:
            pass
        finally:
            s.close()
        port += 1
        if port >= high:
            port = low
        if port == start:
            raise SystemExit("no free ports")
    return found


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

# Scenario id -> (title, kind). kind: "req" (wrk/h2load), "bulk" (iperf3), "idle".
SCENARIOS = {
    "idle_tcp": ("Idle keep-alive connections through a TCP listener (RSS per connection)", "idle"),
    "idle_http": ("Idle keep-alive connections through an HTTP listener (RSS per connection)",
                  "idle"),
    "tcp_rr": ("TCP (L4) request/response, keep-alive, 50 connections (wrk through a tcp "
               "listener)", "req"),
    "tcp_conn": ("TCP (L4) new connection per request (wrk -H 'Connection: close' through a tcp "
                 "listener)", "req"),
    "tcp_bulk": ("TCP (L4) bulk, one iperf3 stream", "bulk"),
    "http_ka": ("HTTP keep-alive, 50 connections (wrk)", "req"),
    "http_conn": ("HTTP new connection per request (wrk -H 'Connection: close')", "req"),
    "https_ka": ("HTTPS keep-alive, TLS 1.3, 50 connections (wrk on https)", "req"),
    "h2": ("HTTP/2 over TLS (h2load -c50 -m10)", "req"),
}
SCENARIO_ORDER = list(SCENARIOS)

TARGET_ORDER = ["direct", "weir", "weir+log", "weir+splice", "haproxy", "haproxy+splice",
                "nginx"]
TARGET_NAMES = {"direct": "direct", "weir": "weir", "weir+log": "weir (access log on)",
                "weir+splice": "weir (splice = true)",
                "haproxy": "HAProxy", "haproxy+splice": "HAProxy (splice)", "nginx": "NGINX"}
PEERS = [("haproxy", "HAProxy"), ("haproxy+splice", "HAProxy (splice)"), ("nginx", "NGINX")]

PHASE_TITLES = {
    "1": "Phase one: 1 worker; backend + proxy on core 0, load generator on core 1",
    "2": "Phase two: proxies on both cores (weir workers=2, HAProxy nbthread 2, NGINX 2 "
         "workers); backend on core 0, load generator on core 1",
}


def _ticks(field):
    return None if field in ("-", "") else int(field)


def _cpu_per_unit(target, proxy_s, backend_s, units):
    """CPU µs per request (or per MiB): the proxy's ("cpu_us", none for "direct", which has
    no proxy), the backend's or iperf3 server's ("server_us"), and their sum ("total_us"): in
    phase one both share core 0, so the sum is what a request costs that core, whichever
    process the kernel charged for work it did on another's behalf (a send delivers into the
    receiving socket in the sender's time)."""
    def per(seconds):
        return None if seconds is None else seconds * 1e6 / units
    proxy = None if target == "direct" else per(proxy_s)
    server = per(backend_s)
    if target == "direct":
        total = server
    else:
        total = None if proxy is None or server is None else proxy + server
    return {"cpu_us": proxy, "server_us": server, "total_us": total}


def load_runs(outdir, clk_tck=None):
    """Read runs.tsv and the raw outputs; one dict per run with the parsed figures."""
    clk_tck = clk_tck or os.sysconf("SC_CLK_TCK")
    runs = []
    path = os.path.join(outdir, "runs.tsv")
    if not os.path.exists(path):
        return runs
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 8 or parts[0] == "phase":
                continue
            phase, scenario, target, rnd, tool, raw, pt, bt = parts[:8]
            raw_path = raw if os.path.isabs(raw) else os.path.join(outdir, raw)
            try:
                with open(raw_path, errors="replace") as rf:
                    text = rf.read()
            except OSError:
                text = ""
            run = {"phase": phase, "scenario": scenario, "target": target,
                   "round": int(rnd), "tool": tool, "raw": raw, "ok": False}
            proxy_s = None if _ticks(pt) is None else _ticks(pt) / clk_tck
            backend_s = None if _ticks(bt) is None else _ticks(bt) / clk_tck
            if tool in ("wrk", "h2load"):
                res = parse_wrk(text) if tool == "wrk" else parse_h2load(text)
                if res and res["requests"] > 0:
                    run.update(res, ok=True)
                    run.update(_cpu_per_unit(target, proxy_s, backend_s, res["requests"]))
            elif tool == "iperf3":
                res = parse_iperf3(text)
                if res and res["bytes"] > 0:
                    run.update(res, ok=True)
                    run.update(_cpu_per_unit(target, proxy_s, backend_s, res["bytes"] / (1 << 20)))
            elif tool == "idle":
                kv = parse_keyvals(text)
                try:
                    conns = int(kv["established"])
                    before, after = int(kv["rss_before_kib"]), int(kv["rss_after_kib"])
                except (KeyError, ValueError):
                    conns = 0
                if conns > 0:
                    run.update(ok=True, conns=conns, wanted=int(kv.get("wanted", conns)),
                               rss_before=before, rss_after=after,
                               kib_per_conn=(after - before) / conns)
            runs.append(run)
    return runs


def _median(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _spread(values):
    vals = [v for v in values if v is not None]
    return (min(vals), max(vals)) if vals else None


def _fmt(v, digits=0):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def _fmt_spread(sp, digits=0):
    if not sp:
        return "–"
    return f"{_fmt(sp[0], digits)}–{_fmt(sp[1], digits)}"


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def summarize_target(runs):
    """Median / spread of each figure over the rounds of one target in one scenario."""
    ok = [r for r in runs if r["ok"]]
    s = {"rounds": len(runs), "ok_rounds": len(ok)}
    for key in ("rps", "p50_ms", "p99_ms", "cpu_us", "server_us", "total_us", "gbps",
                "kib_per_conn", "rss_before", "rss_after", "conns", "wanted"):
        vals = [r.get(key) for r in ok]
        s[key] = _median(vals)
        s[key + "_spread"] = _spread(vals)
    s["errors"] = sum(r.get("socket_errors", 0) + r.get("non_2xx", 0) for r in ok)
    return s


def _req_table(stats, targets):
    lines = ["| target | req/s (median) | req/s min–max | ÷ direct | p50 ms | p99 ms "
             "| CPU µs/req | CPU min–max | backend µs/req | proxy + backend µs/req "
             "| errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    direct = stats.get("direct", {}).get("rps")
    for t in targets:
        s = stats[t]
        if not s["ok_rounds"]:
            lines.append(f"| {TARGET_NAMES.get(t, t)} | failed ({s['rounds']} runs, see raw/) "
                         "| | | | | | | | | |")
            continue
        cpu, spread = _fmt(s["cpu_us"], 1), _fmt_spread(s["cpu_us_spread"], 1)
        lines.append(
            f"| {TARGET_NAMES.get(t, t)} | {_fmt(s['rps'])} | {_fmt_spread(s['rps_spread'])} "
            f"| {_ratio(s['rps'], direct)} | {_fmt(s['p50_ms'], 3)} | {_fmt(s['p99_ms'], 3)} "
            f"| {cpu} | {spread} | {_fmt(s['server_us'], 1)} "
            f"| {_fmt(s['total_us'], 1)} | {s['errors']:,} |")
    if "weir" in stats and stats["weir"]["ok_rounds"]:
        w = stats["weir"]
        for peer, name in PEERS:
            p = stats.get(peer)
            if not p or not p["ok_rounds"]:
                continue
            lines.append(
                f"| *weir ÷ {name}* | {_ratio(w['rps'], p['rps'])} | | "
                f"| {_ratio(w['p50_ms'], p['p50_ms'])} | {_ratio(w['p99_ms'], p['p99_ms'])} "
                f"| {_ratio(w['cpu_us'], p['cpu_us'])} | "
                f"| {_ratio(w['server_us'], p['server_us'])} "
                f"| {_ratio(w['total_us'], p['total_us'])} | |")
    return lines


def _bulk_table(stats, targets):
    lines = ["| target | Gbit/s (median) | Gbit/s min–max | ÷ direct | CPU µs/MiB "
             "| CPU min–max | iperf3 server µs/MiB | proxy + server µs/MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    direct = stats.get("direct", {}).get("gbps")
    for t in targets:
        s = stats[t]
        if not s["ok_rounds"]:
            lines.append(f"| {TARGET_NAMES.get(t, t)} | failed ({s['rounds']} runs, see raw/) "
                         "| | | | | | |")
            continue
        cpu, spread = _fmt(s["cpu_us"], 1), _fmt_spread(s["cpu_us_spread"], 1)
        lines.append(
            f"| {TARGET_NAMES.get(t, t)} | {_fmt(s['gbps'], 2)} "
            f"| {_fmt_spread(s['gbps_spread'], 2)} | {_ratio(s['gbps'], direct)} "
            f"| {cpu} | {spread} | {_fmt(s['server_us'], 1)} "
            f"| {_fmt(s['total_us'], 1)} |")
    if "weir" in stats and stats["weir"]["ok_rounds"]:
        w = stats["weir"]
        for peer, name in PEERS:
            p = stats.get(peer)
            if p and p["ok_rounds"]:
                lines.append(f"| *weir ÷ {name}* | {_ratio(w['gbps'], p['gbps'])} | | "
                             f"| {_ratio(w['cpu_us'], p['cpu_us'])} | "
                             f"| {_ratio(w['server_us'], p['server_us'])} "
                             f"| {_ratio(w['total_us'], p['total_us'])} |")
    return lines


def _idle_table(stats, targets):
    lines = ["| target | connections held | proxy RSS before, MiB | RSS holding them, MiB "
             "| KiB per connection |",
             "|---|---:|---:|---:|---:|"]
    for t in targets:
        s = stats[t]
        if not s["ok_rounds"]:
            lines.append(f"| {TARGET_NAMES.get(t, t)} | failed (see raw/) | | | |")
            continue
        held = _fmt(s["conns"])
        if s["wanted"] and s["conns"] and s["conns"] < s["wanted"]:
            held += f" of {_fmt(s['wanted'])}"
        lines.append(f"| {TARGET_NAMES.get(t, t)} | {held} | {_fmt(s['rss_before'] / 1024, 1)} "
                     f"| {_fmt(s['rss_after'] / 1024, 1)} | {_fmt(s['kib_per_conn'], 2)} |")
    if "weir" in stats and stats["weir"]["ok_rounds"]:
        w = stats["weir"]
        for peer, name in PEERS:
            p = stats.get(peer)
            if p and p["ok_rounds"]:
                lines.append(f"| *weir ÷ {name}* | | | "
                             f"| {_ratio(w['kib_per_conn'], p['kib_per_conn'])} |")
    return lines


def build_report(runs, meta=None, skips=None):
    """The markdown report: one table per (phase, scenario) present in runs or skips."""
    meta = meta or {}
    skips = skips or []
    out = ["# weir side-by-side benchmark", ""]
    for key in ("machine", "versions", "mode", "started", "elapsed"):
        if key in meta:
            out.append(f"- {key}: {meta[key]}")
    if meta:
        out.append("")
    out += [
        "CPU columns are utime+stime from /proc over each run: the proxy's, and the backend's",
        "(or the iperf3 server's) over the same run. In phase one both share core 0, and their",
        "sum is what the traffic costs that core: the kernel charges work done on another",
        "process's behalf (a send delivering into the receiving socket, timers, wake-ups) to",
        "whichever process is running, so the split moves with scheduling; the sum does not.",
        "",
    ]
    phases = sorted({r["phase"] for r in runs} | {s[0] for s in skips})
    for phase in phases:
        out += [f"## {PHASE_TITLES.get(phase, 'Phase ' + phase)}", ""]
        scen_here = {r["scenario"] for r in runs if r["phase"] == phase} | {
            s[1] for s in skips if s[0] == phase}
        for scen in SCENARIO_ORDER + sorted(scen_here - set(SCENARIO_ORDER)):
            if scen not in scen_here:
                continue
            title, kind = SCENARIOS.get(scen, (scen, "req"))
            srun = [r for r in runs if r["phase"] == phase and r["scenario"] == scen]
            rounds = max((r["round"] for r in srun), default=0)
            out.append(f"### {title} — `{scen}`, {rounds} round(s), median")
            out.append("")
            tlist = [t for t in TARGET_ORDER if any(r["target"] == t for r in srun)]
            tlist += sorted({r["target"] for r in srun} - set(tlist))
            stats = {t: summarize_target([r for r in srun if r["target"] == t]) for t in tlist}
            if tlist:
                if kind == "bulk":
                    out += _bulk_table(stats, tlist)
                elif kind == "idle":
                    out += _idle_table(stats, tlist)
                else:
                    out += _req_table(stats, tlist)
                out.append("")
            for s in skips:
                if s[0] == phase and s[1] == scen:
                    out.append(f"- skipped {s[2]}: {s[3]}")
            if any(s[0] == phase and s[1] == scen for s in skips):
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def load_skips(outdir):
    skips = []
    path = os.path.join(outdir, "skips.tsv")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 4:
                    skips.append(tuple(parts[:4]))
    return skips


def load_meta(outdir):
    path = os.path.join(outdir, "meta.txt")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return parse_keyvals(f.read())


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "cpu":
        print(cpu_ticks(args))
    elif cmd == "rss":
        print(rss_kib(args))
    elif cmd == "freeports":
        print(" ".join(str(p) for p in free_ports(int(args[0]))))
    elif cmd == "summarize":
        outdir = args[0]
        text = build_report(load_runs(outdir), load_meta(outdir), load_skips(outdir))
        with open(os.path.join(outdir, "results.md"), "w") as f:
            f.write(text)
        print(text)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
