#!/usr/bin/env python3
"""Turns bench/out/results.json into bench/RESULTS.md: every figure per target, ratios to
Crier, and Crier's goals from issue 7 beside what was measured (reported, not asserted)."""

import json
import statistics
import sys

ORDER = ["crier", "raw", "baseline", "yaws"]


def fmt(v, d=1, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}{unit}"
        return f"{v:,.{d}f}{unit}"
    return f"{v:,}{unit}"


def ms(us, d=2):
    return "n/a" if us is None else f"{us / 1000:.{d}f}"


def ratio(v, ref):
    if v is None or not ref:
        return "n/a"
    return f"{v / ref:.2f}x"


def targets(res):
    names = list(res["targets"])
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else 99, n))


def label(res, name, path=None):
    lab = res["targets"][name].get("label", name)
    if name == "crier" and path:
        return f"{lab} ({'handler' if path == '/sse' else 'topic'})"
    if path:
        return f"{lab} {path}"
    return lab


def idle_section(res, out):
    out.append("## 1. Idle memory per stream\n")
    out.append(
        "Server RSS growth (`VmRSS` of the server process, user space) divided by the streams "
        "open, measured from a fresh server with no streams. *Marginal* is the slope from the "
        "first to the last step, which leaves out what a VM reserves up front. `/sse` streams "
        "are each owned by a waiting process (or task); `/sub` streams are subscribed to a topic "
        "(Crier: handed to Rust, no process). Kernel memory is shown apart: socket buffer pages "
        "from `/proc/net/sockstat` (idle sockets hold none) and the growth of the kernel slab "
        "(`/proc/meminfo` Slab), both for the two ends of each loopback connection, and noisy "
        "because other work runs on the machine.\n")
    steps = res["params"]["idle_steps"]
    hdr = ["target", "mode"] + [f"{s:,} streams (B/stream)" for s in steps] + [
        "marginal (B/stream)", "x Crier", "kernel slab, both ends (B/conn)", "1M streams, extrapolated (GiB)"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    ref = {}
    for path in ("/sse", "/sub"):
        key = "idle_sse" if path == "/sse" else "idle_sub"
        c = res["targets"].get("crier", {}).get(key, {})
        ref[path] = c.get("marginal_per_conn")
    for name in targets(res):
        for path in ("/sse", "/sub"):
            key = "idle_sse" if path == "/sse" else "idle_sub"
            r = res["targets"][name].get(key)
            if not r:
                continue
            mode = {"/sse": "owned", "/sub": "subscribed"}[path]
            if "error" in r:
                out.append(f"| {label(res, name, path)} | {mode} | failed: {r['error'][:80]} |")
                continue
            by = {s["target_conns"]: s for s in r["steps"]}
            cells = []
            for s in steps:
                st = by.get(s)
                if not st:
                    cells.append("n/a")
                else:
                    v = fmt(st["per_conn"], 0)
                    if st["opened"] < s:
                        v += f" ({st['opened']:,} opened)"
                    cells.append(v)
            marg = r.get("marginal_per_conn")
            last = r["steps"][-1] if r["steps"] else {}
            ext = marg * 1e6 / 2**30 if marg else None
            out.append("| " + " | ".join([label(res, name, path), mode] + cells + [
                fmt(marg, 0), ratio(marg, ref[path]), fmt(last.get("slab_per_conn"), 0), fmt(ext, 2)]) + " |")
    out.append("")
    out.append(
        "Scale past about 19,000 streams is not measured: a process may open at most 20,000 "
        "files here. The last column multiplies the measured marginal cost per stream by one "
        "million; it is an extrapolation.\n")
    out.append("![memory per stream](plots/memory_per_conn.png)\n")


def fanout_section(res, out):
    p = res["params"]
    out.append("## 2. Fan-out\n")
    out.append(
        f"Subscribers of one topic receive {p['events']} events, each carrying its publish time "
        f"(CLOCK_REALTIME, ns). *paced*: one event every max({p['interval_us']} us, "
        f"{p.get('pace_us_per_sub', 0)} us x subscribers), so that one event's fan-out fits in "
        "the interval on this machine; *b2b*: "
        f"{p['events']} separate publishes back to back; *burst*: one publish of {p['events']} "
        "events, where each target uses its own best batch (raw: one shared buffer; gen_tcp "
        "baseline and Yaws: one message per subscriber holding all events, one send; Crier: "
        "`broadcast/3` takes one event, so its burst is the same 200 calls as b2b and relies on "
        "Rust coalescing the queue into one write). Latency is publish to receipt by the client "
        "process, so it includes the client's own queueing: client and server share the 2 "
        "cores. Events/s is delivered events over the time from the first publish to the last "
        "receipt. CPU per event is the server's thread run time over the phase (sum of "
        "`/proc/<pid>/task/*/schedstat`, ns) divided by delivered events; the user-space part "
        "comes from utime in `/proc/<pid>/stat` (10 ms ticks, so coarse when the total is "
        "small).\n")
    for n in p["fanout_subscribers"]:
        key = f"fanout_{n}"
        iv = next((res["targets"][t].get(key, {}).get("interval_us") for t in res["targets"]
                   if res["targets"][t].get(key, {}).get("interval_us")), None)
        out.append(f"### {n:,} subscribers\n")
        if iv:
            out.append(f"Paced interval: {iv / 1000:g} ms.\n")
        hdr = ["target", "mode", "delivered", "events/s", "p50 ms", "p99 ms", "max ms",
               "CPU us/event", "user us/event", "events/s x Crier", "CPU x Crier", "p99 x Crier"]
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "---|" * len(hdr))
        cr = res["targets"].get("crier", {}).get(key, {}).get("modes", {})
        for name in targets(res):
            r = res["targets"][name].get(key)
            if not r:
                continue
            if "error" in r:
                out.append(f"| {label(res, name)} | | failed: {r['error'][:80]} |")
                continue
            for mode, m in r["modes"].items():
                c = cr.get(mode, {})
                deliv = f"{m['delivered']:,}/{m['expected']:,}"
                out.append("| " + " | ".join([
                    label(res, name), mode, deliv, fmt(m.get("events_per_s"), 0),
                    ms(m.get("p50_us")), ms(m.get("p99_us")), ms(m.get("max_us")),
                    fmt(m.get("us_per_event"), 2), fmt(m.get("user_us_per_event"), 2),
                    ratio(m.get("events_per_s"), c.get("events_per_s")),
                    ratio(m.get("us_per_event"), c.get("us_per_event")),
                    ratio(m.get("p99_us"), c.get("p99_us"))]) + " |")
        out.append("")
        for mode in ("paced", "b2b", "burst"):
            out.append(f"![latency CDF {n} {mode}](plots/latency_cdf_{n}_{mode}.png)")
        out.append("")


def close_section(res, out):
    p = res["params"]
    out.append("## 3. Close detection\n")
    out.append(
        f"{p['close_conns']:,} idle `/sse` streams, each owned by a process (task) waiting for "
        "news of its client. The clients close all at once (FIN); each records its close time "
        "and the server records when the owner was told, per stream id, both CLOCK_REALTIME. "
        f"A stream not reported within {p['close_wait_s']} s counts as never told (until a "
        "write).\n")
    hdr = ["target", "closed", "told", "never told", "p50 ms", "p99 ms", "max ms", "p99 x Crier"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    ref = res["targets"].get("crier", {}).get("close", {}).get("p99_us")
    for name in targets(res):
        r = res["targets"][name].get("close")
        if not r:
            continue
        if "error" in r:
            out.append(f"| {label(res, name)} | failed: {r['error'][:80]} |")
            continue
        out.append("| " + " | ".join([
            label(res, name), fmt(r["closed_by_client"]), fmt(r["told"]), fmt(r["never_told"]),
            ms(r["p50_us"]), ms(r["p99_us"]), ms(r["max_us"]), ratio(r["p99_us"], ref)]) + " |")
    out.append("")


def percall_section(res, out):
    r = res["targets"].get("crier", {}).get("percall")
    if not r:
        return
    out.append("## 4. Per-call cost from Elixir (Crier)\n")
    if "error" in r:
        out.append(f"Failed: {r['error']}\n")
        return
    out.append(
        "Each caller is a handler process that owns an SSE stream (held open by the load "
        "generator). `chunk/2` writes a 5-byte comment on the caller's own stream; `broadcast/3` "
        f"sends a 1-byte event to a topic with {r.get('broadcast_subscribers', '?')} subscribers. "
        "Every call is timed alone with `:erlang.monotonic_time/1`, so with many callers a time "
        "can include being scheduled out. *wall/call* is the whole run's wall time over all "
        "calls. *long_schedule* counts the VM's `system_monitor` reports of a process or port "
        "running over 5 ms without yielding during the run (a blocked scheduler shows up here; "
        "so does the OS preempting a scheduler thread when the machine is loaded); *in NIF* "
        "counts those where the process was scheduled in or out in a `Crier.Native` function.\n")
    hdr = ["call", "callers", "calls", "median us", "p90 us", "p99 us", "max us", "mean us",
           "wall/call us", "long_schedule", "in NIF", "longest ms", "where (scheduled in)"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for k, v in r.items():
        if not isinstance(v, dict) or "op" not in v:
            if isinstance(v, dict) and "error" in v:
                out.append(f"| {k} | failed: {v['error'][:100]} |")
            continue
        out.append("| " + " | ".join([
            f"`{v['op']}`", fmt(v["callers"]), fmt(v["calls"]), fmt(v["median_us"], 2),
            fmt(v["p90_us"], 2), fmt(v["p99_us"], 2), fmt(v["max_us"], 0), fmt(v["mean_us"], 2),
            fmt(v["wall_us_per_call"], 2), fmt(v["long_schedule"]),
            fmt(v.get("long_schedule_in_nif")), fmt(v.get("long_schedule_max_ms")),
            v.get("long_schedule_top", "")]) + " |")
    out.append("")


def churn_section(res, out):
    p = res["params"]
    out.append("## 5. Connection churn\n")
    rounds = p.get("churn_rounds")
    out.append(
        f"{p['churn_concurrency']} client tasks connect, read the SSE response head and "
        f"disconnect, in a loop. "
        + (f"Every target is started at once and measured in turns: {rounds} rounds of "
           f"{p['churn_round_secs']} s each, forward then backward, so a change in the "
           "machine's load falls on all alike; conn/s is a target's median round, and its "
           "ratio to the baseline the median of the per-round ratios. "
           if rounds else f"For {p['churn_secs']} s. ")
        + "RSS and open fds of the server are read after a warm-up of the same load (before) "
        "and after the load, once the server counts no open stream (after).\n")
    hdr = ["target", "path", "conn/s", "rounds (conn/s)", "errors", "RSS before MB",
           "RSS peak MB", "RSS after MB", "fds before", "fds after", "open after",
           "x gen_tcp baseline"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    base = res["targets"].get("baseline", {}).get("churn_sse", {})
    for name in targets(res):
        for key in ("churn_sse", "churn_sub"):
            r = res["targets"][name].get(key)
            if not r:
                continue
            if "error" in r:
                out.append(f"| {label(res, name)} | | failed: {r['error'][:80]} |")
                continue
            mb = lambda b: "n/a" if b is None else f"{b / 2**20:.1f}"
            against = base.get("rounds") or []
            mine = r.get("rounds") or []
            if mine and len(against) == len(mine) and all(against):
                vs = f"{statistics.median(m / b for m, b in zip(mine, against)):.2f}x"
            else:
                vs = ratio(r["per_s"], base.get("per_s"))
            out.append("| " + " | ".join([
                label(res, name), r["path"], fmt(r["per_s"], 0),
                " ".join(f"{v / 1000:.1f}k" for v in mine), fmt(r["errors"]),
                mb(r["before"]["rss"]), mb(r.get("peak_rss")), mb(r["after"]["rss"]),
                fmt(r["before"]["fds"]), fmt(r["after"]["fds"]), fmt(r.get("open_after")),
                vs]) + " |")
    out.append("")


PROTOCOL_LABELS = {"h1": "HTTP/1.1, TCP", "h1tls": "HTTP/1.1, TLS",
                   "h2conn": "HTTP/2, a connection per stream",
                   "h2one": "HTTP/2, all streams on one connection"}


def protocol_label(name):
    if name.startswith("h2mux"):
        return f"HTTP/2, {name[len('h2mux'):]} streams per connection"
    return PROTOCOL_LABELS.get(name, name)


def spread(values, d=2):
    """'lo-hi' over rounds, or '' for one round."""
    v = [x for x in values if x is not None]
    if len(v) < 2:
        return ""
    return f" ({min(v):.{d}f}-{max(v):.{d}f})"


def protocols_section(res, out):
    c = res["targets"].get("crier", {})
    keys = [k for k in c if k.startswith("h2fanout_")]
    tc = c.get("tlschurn")
    if not keys and not tc:
        return
    p = res["params"]
    out.append("## 7 and 8. TLS and HTTP/2 (Crier)\n")
    skipped = [label(res, n) for n in targets(res) if n != "crier"]
    out.append(
        "The same Crier server (BEAM and NIF, `crier_server.exs`) listens on a plain port and, "
        "beside it in the same VM, on a TLS port (a self-signed ECDSA P-256 certificate made "
        "for the run with `openssl`; rustls with ring, TLS 1.3; HTTP/2 or HTTP/1.1 by ALPN); a "
        "publish goes to the subscribers of both. The load generator speaks HTTP/1.1 on TCP, "
        "HTTP/1.1 over TLS (tokio-rustls) and HTTP/2 over TLS (the `h2` crate), through the "
        "same event counting. "
        + (f"Not run for {', '.join(skipped)}: they serve no TLS or HTTP/2 here. " if skipped else "")
        + "\n")
    for key in keys:
        r = c[key]
        if "error" in r:
            out.append(f"Protocol fan-out failed: {r['error']}\n")
            continue
        n, rounds = r["subscribers"], r["rounds"]
        out.append(f"### Fan-out to {n:,} subscribers by protocol\n")
        out.append(
            f"{p['events']} events to {n:,} `/sub` subscribers, *paced* (one every "
            f"{r['interval_us'] / 1000:g} ms: each event is its own write, TLS record or DATA "
            f"frame) and *b2b* (back to back: queued events go out together), over each "
            f"protocol in turn, each on a fresh server; {len(rounds)} round"
            f"{'s' if len(rounds) != 1 else ''} with the protocols in a rotating order. "
            "Figures are medians over rounds (range in brackets). CPU is the server process's "
            "thread run time per delivered event, as in section 2 (it includes the BEAM's "
            "schedulers spinning while idle, most of a paced run); memory is the server's RSS "
            "growth per stream once all are open, from a fresh server (TLS: rustls's session "
            "and buffers; HTTP/2: h2's connection and stream state).\n")
        hdr = ["protocol", "connections", "paced CPU us/event", "x HTTP/1.1",
               "b2b CPU us/event", "x HTTP/1.1", "b2b events/s", "paced p50 ms", "paced p99 ms",
               "RSS B/stream", "x HTTP/1.1", "all delivered"]
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "---|" * len(hdr))
        med = r["median"]
        ref = med.get("h1", {})
        per = r.get("streams_per_conn", 1)
        for name in r["variants"]:
            m = med.get(name)
            if not m:
                continue
            pm, bm = m["modes"].get("paced", {}), m["modes"].get("b2b", {})
            got = [rnd[name] for rnd in rounds if name in rnd]
            conns = m.get("connections") or (n if not name.startswith("h2mux") else -(-n // per))
            out.append("| " + " | ".join([
                protocol_label(name), fmt(conns),
                fmt(pm.get("us_per_event"), 2) + spread(g["modes"]["paced"].get("us_per_event") for g in got),
                ratio(pm.get("us_per_event"), ref.get("modes", {}).get("paced", {}).get("us_per_event")),
                fmt(bm.get("us_per_event"), 2) + spread(g["modes"]["b2b"].get("us_per_event") for g in got),
                ratio(bm.get("us_per_event"), ref.get("modes", {}).get("b2b", {}).get("us_per_event")),
                fmt(bm.get("events_per_s"), 0), ms(pm.get("p50_us")), ms(pm.get("p99_us")),
                fmt(m.get("rss_per_stream"), 0), ratio(m.get("rss_per_stream"), ref.get("rss_per_stream")),
                "yes" if m.get("complete") else "no"]) + " |")
        out.append("")
        for mode in ("paced", "b2b"):
            out.append(f"![latency CDF by protocol {n} {mode}](plots/protocols_latency_cdf_{n}_{mode}.png)")
        out.append("")
    if tc:
        out.append("### TLS handshake cost (churn)\n")
        if "error" in tc:
            out.append(f"Failed: {tc['error']}\n")
            return
        rounds = tc["rounds"]
        out.append(
            f"{tc['concurrency']} client tasks connect, read the response head of `/sse` and "
            f"close, in a loop, for {tc['secs']} s, over plain TCP and over TLS (a full TLS 1.3 "
            "handshake each time: the client resumes no session), against the same server, "
            f"{len(rounds)} rounds alternating which goes first; medians over rounds (range in "
            "brackets). Server CPU is its thread run time over the run divided by connections. "
            "The client's handshakes share the 2 cores, so connections/s falls with the "
            "client's cost too; CPU per connection is the server's alone.\n")
        hdr = ["transport", "connections/s", "x TCP", "server CPU us/conn", "x TCP",
               "head p50 ms", "head p99 ms", "errors"]
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "---|" * len(hdr))
        med = tc["median"]
        for kind, lab in (("tcp", "plain TCP (connects/s)"), ("tls", "TLS (handshakes/s)")):
            m = med[kind]
            out.append("| " + " | ".join([
                lab, fmt(m["per_s"], 0) + spread((rnd[kind]["per_s"] for rnd in rounds), 0),
                ratio(m["per_s"], med["tcp"]["per_s"]),
                fmt(m["cpu_us_per_conn"], 0) + spread((rnd[kind]["cpu_us_per_conn"] for rnd in rounds), 0),
                ratio(m["cpu_us_per_conn"], med["tcp"]["cpu_us_per_conn"]),
                ms(m["head_p50_us"]), ms(m["head_p99_us"]),
                fmt(sum(rnd[kind]["errors"] for rnd in rounds))]) + " |")
        extra = [rnd["tls"]["cpu_us_per_conn"] - rnd["tcp"]["cpu_us_per_conn"] for rnd in rounds
                 if rnd["tls"].get("cpu_us_per_conn") and rnd["tcp"].get("cpu_us_per_conn")]
        if extra:
            mid = sorted(extra)[len(extra) // 2] if len(extra) % 2 else sum(sorted(extra)[len(extra) // 2 - 1:len(extra) // 2 + 1]) / 2
            out.append(
                f"\nA TLS connection costs the server about {mid:,.0f} us of CPU more than a plain "
                f"one (median over rounds of the difference within a round; per round: "
                f"{', '.join(f'{e:,.0f}' for e in extra)} us).\n")
        out.append("")


def goals_section(res, out):
    t = res["targets"]
    c, raw = t.get("crier", {}), t.get("raw", {})
    if not c:
        return
    out.append("## Crier's goals (issue 7) against this run\n")
    out.append("Measured in this run; a goal is a target, not a test.\n")
    out.append("| goal | measured | within goal |")
    out.append("|---|---|---|")

    def row(goal, val, ok):
        out.append(f"| {goal} | {val} | {'n/a' if ok is None else ('yes' if ok else 'no')} |")

    sub = c.get("idle_sub", {}).get("marginal_per_conn")
    row("subscribed stream <= 1 KiB user space", f"{fmt(sub, 0)} B", None if sub is None else sub <= 1024)
    own = c.get("idle_sse", {}).get("marginal_per_conn")
    row("process-owned stream <= 4 KiB user space", f"{fmt(own, 0)} B", None if own is None else own <= 4096)
    cl = c.get("close", {})
    if cl and "error" not in cl:
        row("close detection p99 < 5 ms at 10k idle, none missed",
            f"p99 {ms(cl.get('p99_us'))} ms, {cl.get('never_told')} never told at {cl.get('conns'):,}",
            None if cl.get("p99_us") is None else cl["p99_us"] < 5000 and cl["never_told"] == 0)
    for n in res["params"]["fanout_subscribers"]:
        key = f"fanout_{n}"
        cm = c.get(key, {}).get("modes", {})
        rm = raw.get(key, {}).get("modes", {})
        for mode in ("b2b", "paced"):
            a, b = cm.get(mode, {}).get("us_per_event"), rm.get(mode, {}).get("us_per_event")
            row(f"CPU/event within 1.15x of raw ({n:,} subs, {mode})",
                f"{fmt(a, 2)} vs {fmt(b, 2)} us ({ratio(a, b)})", None if not a or not b else a / b <= 1.15)
            u = cm.get(mode, {}).get("user_us_per_event")
            row(f"user CPU/event < 2.5 us ({n:,} subs, {mode})", f"{fmt(u, 2)} us", None if u is None else u < 2.5)
        a, b = cm.get("paced", {}).get("p99_us"), rm.get("paced", {}).get("p99_us")
        row(f"paced p99 within 1.2x of raw ({n:,} subs)", f"{ms(a)} vs {ms(b)} ms ({ratio(a, b)})",
            None if not a or not b else a / b <= 1.2)
        bu = cm.get("burst", {}).get("events_per_s")
        bb = t.get("bandit", {}).get(key, {}).get("modes", {}).get("burst", {}).get("events_per_s")
        if bb:
            row(f"burst events/s >= 10x Bandit's ({n:,} subs; Bandit's burst is one chunk holding all events)",
                f"{fmt(bu, 0)} vs {fmt(bb, 0)} events/s ({ratio(bu, bb)})", bu / bb >= 10 if bu else None)
            b2 = t.get("bandit", {}).get(key, {}).get("modes", {}).get("b2b", {}).get("events_per_s")
            if b2:
                row(f"burst events/s >= 10x Bandit's ({n:,} subs; Bandit writing one chunk per event, b2b)",
                    f"{fmt(bu, 0)} vs {fmt(b2, 0)} events/s ({ratio(bu, b2)})", bu / b2 >= 10 if bu else None)
        else:
            row(f"burst events/s >= 10x Bandit's ({n:,} subs)",
                f"{fmt(bu, 0)} events/s; no `bandit` target in this run", None)
    pc = c.get("percall", {})
    for k, v in pc.items():
        if isinstance(v, dict) and v.get("op") == "chunk":
            nif = v.get("long_schedule_in_nif", v["long_schedule"])
            row(f"chunk/2 median < 2 us, no scheduler blocked ({v['callers']:,} callers)",
                f"{fmt(v['median_us'], 2)} us; {v['long_schedule']} long_schedule reports, "
                f"{nif} in a Crier NIF", v["median_us"] < 2 and nif == 0)
    out.append("")


def main():
    # --protocols-only: the TLS and HTTP/2 section alone (bench/PROTOCOLS.md, for a run of
    # just those scenarios: `bench/run --only crier --scenarios h2fanout,tlschurn`).
    args = [x for x in sys.argv[1:] if x != "--protocols-only"]
    only_protocols = len(args) < len(sys.argv) - 1
    src, dst = args[0], args[1]
    with open(src) as f:
        res = json.load(f)
    m, v = res["machine"], res["versions"]
    out = ["# Crier benchmark results" + (": TLS and HTTP/2" if only_protocols else "") + "\n"]
    out.append(
        f"Run {res['started']} to {res.get('finished', '(unfinished)')}, "
        f"{'quick (small counts)' if res['quick'] else 'full'}, by `bench/run"
        f"{''.join(' ' + x for x in res['args']) if 'args' in res else (' --quick' if res['quick'] else '')}`. "
        "How it is measured: [README.md](README.md). "
        + ("Raw data: [protocols.json](protocols.json).\n" if only_protocols
           else "Raw data: [results.json](results.json).\n"))
    machine_line = ("**Machine:** " + f"{m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, {m['os']}, "
                    f"Linux {m['kernel']}, open-file limit {m['fd_limit']:,} per process. The load "
                    "generator runs on the same machine and shares the cores with the server.")
    if res.get("loadavg_start"):
        la0, la1 = res["loadavg_start"], res.get("loadavg_end") or ["?"]
        end = la1[0] if isinstance(la1[0], str) else f"{la1[0]:.1f}"
        machine_line += (f" Load average (1 min) at the start {la0[0]:.1f}, at the end {end}: "
                         "other work may have shared the machine, and targets run one after "
                         "another, so a target may have had more of that noise than another.")
    out.append(machine_line + "\n")
    out.append("**Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items()) + "\n")
    out.append("**Targets:** " + ", ".join(label(res, n) for n in targets(res)) + ". "
               "Ratios are to Crier in the same run (below 1x means less than Crier).\n")
    if only_protocols:
        out.append("These figures were taken apart from a complete run: `RESULTS.md` keeps the last "
                   "complete run (with its peers), and a complete `bench/run` writes this section "
                   "there too.\n")
        protocols_section(res, out)
        with open(dst, "w") as f:
            f.write("\n".join(out))
        return
    idle_section(res, out)
    fanout_section(res, out)
    close_section(res, out)
    percall_section(res, out)
    churn_section(res, out)
    protocols_section(res, out)
    goals_section(res, out)
    with open(dst, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
