#!/usr/bin/env python3
"""Runs the Crier benchmark scenarios against every target and writes bench/out/results.json
and bench/RESULTS.md. Started by bench/run (which builds what this needs).

Every target speaks the endpoint contract in bench/README.md. Managed targets are started
fresh for each scenario; `--target name=URL[,pid=N]` adds a server that is already running
(memory and CPU figures need its OS pid).

All traffic stays on loopback; every wait is bounded.
"""

import argparse
import datetime
import http.client as httpc
import json
import math
import os
import platform
import queue
import re
import shlex
import statistics
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
OUT = os.path.join(BENCH, "out")
LOADGEN = os.path.join(BENCH, "target", "release", "loadgen")
RAW = os.path.join(BENCH, "target", "release", "raw_server")
YAWS_EBIN = None  # found at start
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
PER_PROC = 5000  # connections per load generator process (under the 20,000 fd limit)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ---------------------------------------------------------------- /proc readings

def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]), int(fields[12])  # utime, stime


def cpu_ns(pid):
    """Run time of all the process's threads in ns (schedstat: finer than the 10 ms ticks)."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return None
    return total


def nfds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def slab_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1]) * 1024
    return 0


def sock_mem_bytes():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                w = line.split()
                return int(w[w.index("mem") + 1]) * PAGE
    return 0


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "fd_limit": _fd_limit(),
    }


def _os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _fd_limit():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _cmd_out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception:
        return "?"


def versions(crier_dir=ROOT):
    try:
        with open(os.path.join(crier_dir, "COMMIT")) as f:
            crier = f.read().strip()
    except OSError:
        crier = _cmd_out(["git", "-C", crier_dir, "log", "-1", "--format=%h %cd", "--date=short"])
    otp = _cmd_out(["erl", "-noshell", "-eval",
                    'io:format("~s/~s", [erlang:system_info(otp_release), erlang:system_info(version)]), halt().'])
    ex = _cmd_out(["elixir", "--version"]).splitlines()
    return {
        "otp/erts": otp,
        "elixir": ex[-1] if ex else "?",
        "rustc": _cmd_out(["rustc", "--version"]),
        "yaws": _cmd_out(["dpkg-query", "-W", "-f=${Version}", "erlang-yaws"]),
        "crier": crier,
    }


# ---------------------------------------------------------------- HTTP to targets

def http(base, method, path, timeout=30, refused_retries=3):
    u = urllib.parse.urlsplit(base)
    for attempt in range(refused_retries + 1):
        c = httpc.HTTPConnection(u.hostname, u.port, timeout=timeout)
        try:
            c.request(method, path, headers={"content-length": "0"} if method == "POST" else {})
            r = c.getresponse()
            body = r.read()
            return r.status, body
        except ConnectionRefusedError:
            # A refused connect never reached the server, so even a POST may be sent again.
            # Seen once (a running Crier's plain port, under load): logged, not hidden.
            if attempt == refused_retries:
                raise
            log(f"  {method} {base}{path}: connection refused, retrying")
            time.sleep(0.5)
        finally:
            c.close()


def stats(base):
    st, body = http(base, "GET", "/stats", timeout=30)
    if st != 200:
        raise RuntimeError(f"/stats answered {st}")
    return json.loads(body)


def wait_stat(base, key, want, timeout, cmp=lambda v, w: v >= w):
    end = time.time() + timeout
    v = None
    while time.time() < end:
        try:
            v = stats(base).get(key)
            if v is not None and cmp(v, want):
                return v
        except (OSError, RuntimeError, ValueError):
            pass
        time.sleep(0.1)
    return v


# ---------------------------------------------------------------- load generator processes

class Src:
    """Hands each load generator process its own source-address block 127.<net>.<id>.x."""

    def __init__(self):
        self.k = 0

    def next(self):
        self.k += 1
        return 1 + (self.k // 250) % 250, self.k % 250


SRC = Src()


class Loadgen:
    def __init__(self, args, progress=False, name="lg"):
        net, pid = SRC.next()
        cmd = [LOADGEN] + args + ["--src-net", str(net), "--proc-id", str(pid)]
        if progress and sys.stderr.isatty():
            cmd.append("--progress")
        self.proc_id = pid
        self.errlog = open(os.path.join(OUT, "logs", f"{name}-{net}-{pid}.err"), "w")
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=None if progress else self.errlog, text=True, bufsize=1)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                self.q.put(json.loads(line))
            except ValueError:
                pass
        self.q.put(None)

    def send(self, cmd):
        try:
            self.p.stdin.write(cmd + "\n")
            self.p.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def expect(self, typ, timeout):
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                raise TimeoutError(f"loadgen: no {typ} within {timeout}s")
            try:
                m = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if m is None:
                raise RuntimeError(f"loadgen exited (rc={self.p.poll()}) waiting for {typ}")
            if m.get("type") == typ:
                return m

    def stop(self):
        self.send("exit")
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.errlog.close()


def hold_group(url, n, max_secs, name, extra=(), unit=1):
    """Open n connections over ceil(n/PER_PROC) processes; return (loadgens, opened, failures).

    `extra` goes to every load generator (e.g. `--proto h2 --cert F`); each process gets a
    whole number of `unit` streams (an HTTP/2 connection's worth) but the last."""
    # At least two processes, so the client can use both cores of this machine.
    units = math.ceil(n / unit)
    procs = min(units, max(2, math.ceil(n / PER_PROC)))
    lgs, left = [], n
    for i in range(procs):
        k = min(left, unit * (units // procs + (1 if i < units % procs else 0)))
        left -= k
        lgs.append(Loadgen(["hold", "--url", url, "--conns", str(k), "--max-secs", str(max_secs)]
                           + list(extra), progress=(i == 0), name=name))
    opened, fails = 0, {}
    for lg in lgs:
        r = lg.expect("ready", 200)
        opened += r["opened"]
        for k, v in r.get("fail_reasons", {}).items():
            fails[k] = fails.get(k, 0) + v
    return lgs, opened, fails


def stop_all(lgs):
    for lg in lgs:
        lg.stop()


# ---------------------------------------------------------------- histograms

def merge_hist(reports):
    h = {}
    for r in reports:
        for v, c in r["hist_us"]:
            h[v] = h.get(v, 0) + c
    return sorted(h.items())


def pct(hist, q):
    total = sum(c for _, c in hist)
    if total == 0:
        return None
    want = q * total
    acc = 0
    for v, c in hist:
        acc += c
        if acc >= want:
            return v
    return hist[-1][0]


def pct_list(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def compact_cdf(hist, points=200):
    """A few hundred (latency_us, fraction) points for plotting."""
    total = sum(c for _, c in hist)
    if not total:
        return []
    out, acc, step, last = [], 0, max(1, total // points), -1
    for v, c in hist:
        acc += c
        if acc - last >= step or acc == total:
            out.append((v, acc / total))
            last = acc
    return out


# ---------------------------------------------------------------- targets

class Target:
    """A server under test. `start()` gives (base_url, pid or None)."""

    def __init__(self, name, label, sse=True, sub=True):
        self.name, self.label, self.sse, self.sub = name, label, sse, sub
        self.proc = None
        self.pid = None
        self.base = None
        # https://IP:PORT of the same server's TLS listener (HTTP/1.1 and HTTP/2 by ALPN),
        # for targets that have one.
        self.tls_base = None

    def speaks_tls(self):
        """Whether this target can serve HTTPS and HTTP/2 next to its plain port."""
        return False

    def start(self):
        raise NotImplementedError

    def stop(self):
        pass


class Managed(Target):
    def __init__(self, name, label, cmd, cwd=BENCH, env=None, port=None, startup=60, tls_env=None):
        super().__init__(name, label)
        self.cmd, self.cwd, self.env, self.port, self.startup = cmd, cwd, env or {}, port, startup
        # Environment that makes the server open a TLS listener too ("tls listening on ...").
        self.tls_env = tls_env
        self.n = 0

    def speaks_tls(self):
        return self.tls_env is not None

    def start(self):
        self.n += 1
        port = self.port() if callable(self.port) else None
        cmd = [c.replace("{port}", str(port)) for c in self.cmd]
        logpath = os.path.join(OUT, "logs", f"server-{self.name}-{self.n}.log")
        self.log = open(logpath, "w")
        env = dict(os.environ)
        env.update(self.env)
        env.update(self.tls_env or {})
        self.tls_base = None
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        end = time.time() + self.startup
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {logpath}")
            with open(logpath) as f:
                text = f.read()
            m = re.search(r"^listening on ([0-9.]+):(\d+)(?: pid (\d+))?", text, re.M)
            if m:
                self.base = f"http://{m.group(1)}:{m.group(2)}"
                self.pid = int(m.group(3)) if m.group(3) else self.proc.pid
                t = re.search(r"^tls listening on ([0-9.]+):(\d+)", text, re.M)
                if t:
                    self.tls_base = f"https://{t.group(1)}:{t.group(2)}"
                elif self.tls_env:
                    self.stop()
                    raise RuntimeError(f"{self.name} started without its TLS listener; see {logpath}")
                break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"{self.name} did not start within {self.startup}s; see {logpath}")
        wait_stat(self.base, "open", 0, 30)
        time.sleep(1.0)  # let the VM settle before the first reading
        return self.base, self.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None
        time.sleep(1.0)  # let the kernel release the sockets


class External(Target):
    def __init__(self, name, url, pid):
        super().__init__(name, f"{name} (by URL)")
        self.base, self.pid = url.rstrip("/"), pid

    def start(self):
        wait_stat(self.base, "open", 0, 60, cmp=lambda v, w: v == w)
        return self.base, self.pid


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def make_targets(args):
    max_secs = str(args.max_secs)
    env = {"BENCH_MAX_SECS": max_secs}
    t = {}
    if "crier" in args.only:
        t["crier"] = Managed("crier", "Crier",
                             ["mix", "run", "--no-compile", os.path.join(BENCH, "crier_server.exs")],
                             cwd=args.crier_dir, env=dict(env, MIX_ENV=args.mix_env), startup=120,
                             tls_env=({"BENCH_TLS_CERTFILE": args.cert[0], "BENCH_TLS_KEYFILE": args.cert[1]}
                                      if args.cert else None))
    if "raw" in args.only:
        t["raw"] = Managed("raw", "raw tokio", [RAW, "--listen", "127.0.0.1:0", "--max-secs", max_secs])
    if "baseline" in args.only:
        t["baseline"] = Managed("baseline", "gen_tcp baseline",
                                ["elixir", "--erl", "+P 1000000", os.path.join(BENCH, "baseline_server.exs")],
                                env=env)
    if "yaws" in args.only:
        t["yaws"] = Managed("yaws", "Yaws 2.1.1",
                            ["erl", "+P", "1000000", "-noshell", "-pa", YAWS_EBIN, "-pa",
                             os.path.join(OUT, "ebin"), "-s", "crier_bench_yaws", "start", "{port}",
                             os.path.join(OUT, "yawslog")],
                            env=env, port=free_port)
    for spec in args.target_cmd:
        # A peer started by a command of yours, fresh for each scenario like the managed
        # targets; it must print "listening on IP:PORT [pid N]".
        name, _, cmd = spec.partition("=")
        t[name] = Managed(name, f"{name} (peer)", shlex.split(cmd), cwd=os.getcwd(), env=env, startup=120)
    for spec in args.target:
        name, _, rest = spec.partition("=")
        parts = rest.split(",")
        url, pid = parts[0], None
        for p in parts[1:]:
            if p.startswith("pid="):
                pid = int(p[4:])
        t[name] = External(name, url, pid)
    return t


# ---------------------------------------------------------------- scenarios

def scen_idle(tgt, path, steps, a):
    base, pid = tgt.start()
    url = base + path
    res = {"path": path, "steps": []}
    lgs = []
    try:
        rss0 = rss_bytes(pid) if pid else None
        sk0 = sock_mem_bytes()
        slab0 = slab_bytes()
        fds0 = nfds(pid) if pid else None
        have = 0
        for n in steps:
            more, fails = n - have, {}
            g, opened, fails = hold_group(url, more, a.max_secs, f"idle-{tgt.name}")
            lgs += g
            have += opened
            key = "open"
            got = wait_stat(base, key, have, 60)
            time.sleep(a.settle)
            rss = rss_bytes(pid) if pid else None
            sk = sock_mem_bytes()
            slab = slab_bytes()
            step = {
                "target_conns": n, "opened": have, "server_open": got, "failures": fails,
                "rss": rss, "rss0": rss0,
                "per_conn": (rss - rss0) / have if pid and have else None,
                "sock_mem_per_conn": (sk - sk0) / have if have else None,
                "slab_per_conn": (slab - slab0) / have if have else None,
                "fds": nfds(pid) if pid else None, "fds0": fds0,
            }
            log(f"  idle {tgt.name}{path} {have} open: "
                + (f"{step['per_conn']:.0f} B/conn user space" if step["per_conn"] is not None else "no pid")
                + f", socket buffers {step['sock_mem_per_conn']:.0f} B/conn, slab {step['slab_per_conn']:.0f} B/conn (both ends)")
            res["steps"].append(step)
            first = res["steps"][0]
            if pid and len(res["steps"]) > 1 and have > first["opened"]:
                res["marginal_per_conn"] = (rss - first["rss"]) / (have - first["opened"])
            if opened < more:
                log(f"  only {opened}/{more} opened: {fails}; stopping this ladder")
                break
    finally:
        stop_all(lgs)
        tgt.stop()
    return res


def fanout_phase(base, pid, lgs, opened, mode, interval, a):
    """One publish of a.events events to the subscribers the load generators `lgs` hold:
    deliveries, latency and the server's CPU per delivered event."""
    for lg in lgs:
        lg.send("reset")
    for lg in lgs:
        lg.expect("reset", 30)
    time.sleep(0.5)
    c0 = cpu_ticks(pid) if pid else None
    n0 = cpu_ns(pid) if pid else None
    t0 = time.time()
    st, body = http(base, "POST",
                    f"/publish?n={a.events}&mode={mode}&interval_us={interval}",
                    timeout=300)
    t_pub = time.time() - t0
    for lg in lgs:
        lg.send(f"wait {a.events} {int(a.fanout_timeout * 1000)} {int(a.idle_ms)}")
    reps = [lg.expect("report", a.fanout_timeout + 30) for lg in lgs]
    c1 = cpu_ticks(pid) if pid else None
    n1 = cpu_ns(pid) if pid else None
    hist = merge_hist(reps)
    delivered = sum(r["events"] for r in reps)
    first_pub = min((r["first_pub_ns"] for r in reps if r["first_pub_ns"]), default=0)
    last_recv = max((r["last_recv_ns"] for r in reps), default=0)
    span = (last_recv - first_pub) / 1e9 if first_pub and last_recv > first_pub else None
    m = {
        "publish_status": st,
        "publish_call_s": t_pub,
        "expected": a.events * opened,
        "delivered": delivered,
        "complete_conns": sum(r["complete"] for r in reps),
        "gaps": sum(r["gaps"] for r in reps),
        "disconnected": sum(r["disconnected"] for r in reps),
        "span_s": span,
        "events_per_s": delivered / span if span else None,
        "p50_us": pct(hist, 0.50), "p99_us": pct(hist, 0.99), "max_us": hist[-1][0] if hist else None,
        "cdf": compact_cdf(hist),
    }
    if pid:
        du, ds = (c1[0] - c0[0]) / TICK, (c1[1] - c0[1]) / TICK
        run_s = (n1 - n0) / 1e9 if n0 is not None and n1 is not None else du + ds
        m.update(cpu_user_s=du, cpu_sys_s=ds, cpu_run_s=run_s,
                 us_per_event=run_s * 1e6 / delivered if delivered else None,
                 user_us_per_event=du * 1e6 / delivered if delivered else None,
                 sys_us_per_event=ds * 1e6 / delivered if delivered else None)
    return m


def scen_fanout(tgt, n, a):
    base, pid = tgt.start()
    url = base + "/sub"
    # Pace so that one event's fan-out fits in the interval on this machine (about 20 us of
    # server plus client CPU per delivery on 2 cores): otherwise "paced" is just a backlog.
    interval = max(a.interval_us, n * a.pace_us_per_sub)
    res = {"subscribers": n, "interval_us": interval, "modes": {}}
    lgs = []
    try:
        lgs, opened, fails = hold_group(url, n, a.max_secs, f"fanout-{tgt.name}")
        subs = wait_stat(base, "subscribers", opened, 60)
        res.update(opened=opened, server_subscribers=subs, failures=fails)
        time.sleep(a.settle)
        for mode in a.modes:
            m = fanout_phase(base, pid, lgs, opened, mode, interval, a)
            res["modes"][mode] = m
            log(f"  fanout {tgt.name} {n} {mode}: {m['delivered']}/{m['expected']} delivered, "
                f"{(m['events_per_s'] or 0):,.0f} ev/s, p50 {m['p50_us']} us, p99 {m['p99_us']} us"
                + (f", {m['us_per_event']:.2f} us CPU/event" if m.get("us_per_event") else ""))
            time.sleep(1.0)
        res["server_after"] = stats(base)
    finally:
        stop_all(lgs)
        tgt.stop()
    return res


def scen_close(tgt, n, a):
    base, pid = tgt.start()
    url = base + "/sse"
    res = {"conns": n}
    lgs = []
    try:
        lgs, opened, fails = hold_group(url, n, a.max_secs, f"close-{tgt.name}")
        got = wait_stat(base, "open", opened, 60)
        http(base, "POST", "/reset")
        time.sleep(a.settle)
        for lg in lgs:
            lg.send("close")
        closes = {}
        for lg in lgs:
            r = lg.expect("closed", 120)
            for i, t in r["closes"]:
                closes[f"p{lg.proc_id}c{i}"] = t
        told = wait_stat(base, "closed_told", len(closes), a.close_wait)
        _, body = http(base, "GET", "/closes", timeout=60)
        seen = {}
        for line in body.decode().splitlines():
            w = line.split()
            if len(w) == 2:
                seen[w[0]] = int(w[1])
        delays = [(seen[i] - t) / 1000.0 for i, t in closes.items() if i in seen]
        res.update(
            opened=opened, server_open=got, failures=fails, closed_by_client=len(closes),
            told=len(delays), never_told=len(closes) - len(delays), wait_s=a.close_wait,
            p50_us=pct_list(delays, 0.5), p99_us=pct_list(delays, 0.99),
            max_us=max(delays) if delays else None, min_us=min(delays) if delays else None,
            server_told_counter=told,
            open_after=stats(base).get("open"),
        )
        log(f"  close {tgt.name}: {res['told']}/{len(closes)} told, p50 {res['p50_us']} us, "
            f"p99 {res['p99_us']} us")
    finally:
        stop_all(lgs)
        tgt.stop()
    return res


def churn_run(url, secs, pid, a, name, extra=()):
    """Two churn load generators of a.churn_conc tasks each for `secs` s; returns their
    reports, the server's RSS read every 5 s, and its CPU run time (s) over the run."""
    n0 = cpu_ns(pid) if pid else None
    lgs = [Loadgen(["churn", "--url", url, "--concurrency", str(a.churn_conc),
                    "--secs", str(secs), "--max-secs", str(secs + 60)] + list(extra),
                   progress=(i == 0), name=name) for i in range(2)]
    mid_rss = []
    end = time.time() + secs
    while time.time() < end:
        time.sleep(min(5, max(0.1, end - time.time())))
        if pid:
            mid_rss.append(rss_bytes(pid))
    reps = [lg.expect("churn", secs + 90) for lg in lgs]
    for lg in lgs:
        lg.stop()
    n1 = cpu_ns(pid) if pid else None
    return reps, mid_rss, (n1 - n0) / 1e9 if n0 is not None and n1 is not None else None


def scen_churn(tgts, path, a):
    """Connection churn on `path` for every target in `tgts` (name -> target, each serving
    `path`), measured in turns: all are started fresh and warmed up, then take short rounds
    one after another, forward and then backward, so that a change in the machine's load
    (other work on a shared machine) falls on every target alike. A target's conn/s is the
    median of its rounds; its ratio to another is the median of the per-round ratios."""
    started = {}
    res = {}
    try:
        for name, tgt in tgts.items():
            base, pid = tgt.start()
            started[name] = (tgt, base, pid)
        for name, (tgt, base, pid) in started.items():
            # Warm up once so that lazily made tables and code are loaded before "before".
            churn_run(base + path, 3, None, a, "churn-warm")
            wait_stat(base, "open", 0, 30, cmp=lambda v, w: v == w)
        time.sleep(a.settle)
        for name, (tgt, base, pid) in started.items():
            res[name] = {"path": path, "secs": a.churn_round_secs * a.churn_rounds,
                         "round_secs": a.churn_round_secs, "rounds": [], "reports": [],
                         "before": {"rss": rss_bytes(pid) if pid else None,
                                    "fds": nfds(pid) if pid else None},
                         "peak_rss": None}
        order = list(started)
        for k in range(a.churn_rounds):
            for name in (order if k % 2 == 0 else order[::-1]):
                tgt, base, pid = started[name]
                r = res[name]
                reps, mid_rss, _ = churn_run(base + path, a.churn_round_secs, pid, a,
                                             f"churn-{name}")
                secs = max(x["secs"] for x in reps)
                r["rounds"].append(sum(x["cycles"] for x in reps) / secs if secs else 0)
                r["reports"].extend(reps)
                if pid:
                    r["peak_rss"] = max([r["peak_rss"] or 0, rss_bytes(pid)] + mid_rss)
            log(f"  churn{path} round {k + 1}/{a.churn_rounds}: " + ", ".join(
                f"{n} {res[n]['rounds'][-1]:,.0f}/s" for n in order))
        for name, (tgt, base, pid) in started.items():
            r = res[name]
            reps = r.pop("reports")
            fails = {}
            for x in reps:
                for key, v in x["fail_reasons"].items():
                    fails[key] = fails.get(key, 0) + v
            hist = merge_hist(reps)
            r.update(cycles=sum(x["cycles"] for x in reps), errors=sum(x["errors"] for x in reps),
                     fail_reasons=fails, head_p50_us=pct(hist, 0.5), head_p99_us=pct(hist, 0.99))
            r["open_after"] = wait_stat(base, "open", 0, 30, cmp=lambda v, w: v == w)
        time.sleep(a.settle)
        for name, (tgt, base, pid) in started.items():
            r = res[name]
            r["after"] = {"rss": rss_bytes(pid) if pid else None, "fds": nfds(pid) if pid else None}
        for name in res:
            r = res[name]
            r["per_s"] = statistics.median(r["rounds"]) if r["rounds"] else None
            log(f"  churn {name}{path}: {r['per_s']:,.0f} conn/s (median of {len(r['rounds'])} "
                f"rounds), rss {r['before']['rss']} -> {r['after']['rss']}, "
                f"fds {r['before']['fds']} -> {r['after']['fds']}")
    finally:
        for tgt, _, _ in started.values():
            tgt.stop()
    return res


# HTTP/1.1 on TCP, HTTP/1.1 over TLS, HTTP/2 with a connection per stream, with K streams
# per connection and with all n streams on one: (name, over TLS, load generator arguments,
# streams per connection). The first is the reference of the ratios.
def protocol_variants(a, n):
    h2 = lambda k: ["--proto", "h2", "--streams-per-conn", str(k)]
    return [
        ("h1", False, [], 1),
        ("h1tls", True, [], 1),
        ("h2conn", True, h2(1), 1),
        (f"h2mux{a.h2_streams_per_conn}", True, h2(a.h2_streams_per_conn), a.h2_streams_per_conn),
        ("h2one", True, h2(n), n),
    ]


def median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    k = len(v) // 2
    return v[k] if len(v) % 2 else (v[k - 1] + v[k]) / 2


def scen_h2fanout(tgt, n, a):
    """Fan-out to n `/sub` subscribers over each protocol, on a fresh server each time (the
    same server binary, both listeners open), a.proto_rounds rounds with the protocols in a
    rotating order; figures are medians over rounds."""
    variants = [v for v in protocol_variants(a, n) if not a.protocols or v[0] in a.protocols]
    interval = max(a.interval_us, n * a.pace_us_per_sub)
    res = {"subscribers": n, "interval_us": interval, "rounds": [], "modes": a.proto_modes,
           "variants": [v[0] for v in variants], "streams_per_conn": a.h2_streams_per_conn}
    for r in range(a.proto_rounds):
        rnd = {}
        for name, tls, extra, unit in variants[r % len(variants):] + variants[:r % len(variants)]:
            base, pid = tgt.start()
            lgs = []
            try:
                url = (tgt.tls_base if tls else base) + "/sub"
                if tls:
                    extra = extra + ["--cert", a.cert[0]]
                rss0 = rss_bytes(pid) if pid else None
                lgs, opened, fails = hold_group(url, n, a.max_secs, f"h2fanout-{name}", extra, unit)
                subs = wait_stat(base, "subscribers", opened, 60)
                time.sleep(a.settle)
                v = {"opened": opened, "server_subscribers": subs, "failures": fails, "modes": {},
                     "connections": math.ceil(n / unit),
                     "rss_per_stream": (rss_bytes(pid) - rss0) / opened if pid and opened else None}
                for mode in a.proto_modes:
                    m = fanout_phase(base, pid, lgs, opened, mode, interval, a)
                    v["modes"][mode] = m
                    log(f"  h2fanout {tgt.name} {n} {name} {mode} (round {r + 1}): "
                        f"{m['delivered']}/{m['expected']} delivered, "
                        f"{(m['events_per_s'] or 0):,.0f} ev/s, p99 {m['p99_us']} us"
                        + (f", {m['us_per_event']:.2f} us CPU/event" if m.get("us_per_event") else "")
                        + (f", {v['rss_per_stream']:,.0f} B/stream" if v["rss_per_stream"] else ""))
                rnd[name] = v
            finally:
                stop_all(lgs)
                tgt.stop()
        res["rounds"].append(rnd)
    med = {}
    for name, _, _, unit in variants:
        got = [rnd[name] for rnd in res["rounds"] if name in rnd]
        med[name] = {
            "connections": math.ceil(n / unit),
            "rss_per_stream": median(g["rss_per_stream"] for g in got),
            "complete": all(m["delivered"] == m["expected"] for g in got for m in g["modes"].values()),
            "modes": {mode: {k: median(g["modes"][mode].get(k) for g in got)
                             for k in ("us_per_event", "user_us_per_event", "events_per_s",
                                       "p50_us", "p99_us")}
                      for mode in a.proto_modes},
        }
    res["median"] = med
    return res


def scen_tlschurn(tgt, a):
    """Connect, (shake hands,) read the head, close: plain TCP and TLS against the same
    server, a.tls_churn_rounds rounds alternating which goes first; medians over rounds of
    connections/s and the server's CPU per connection."""
    base, pid = tgt.start()
    kinds = [("tcp", base + "/sse", []), ("tls", tgt.tls_base + "/sse", ["--cert", a.cert[0]])]
    res = {"secs": a.tls_churn_secs, "rounds": [], "concurrency": 2 * a.churn_conc}
    try:
        for _, url, extra in kinds:  # warm both paths up
            churn_run(url, 2, pid, a, "tlschurn-warm", extra)
        wait_stat(base, "open", 0, 30, cmp=lambda v, w: v == w)
        for r in range(a.tls_churn_rounds):
            rnd = {}
            for kind, url, extra in (kinds if r % 2 == 0 else kinds[::-1]):
                reps, _, cpu_s = churn_run(url, a.tls_churn_secs, pid, a, f"tlschurn-{kind}", extra)
                wait_stat(base, "open", 0, 30, cmp=lambda v, w: v == w)
                cycles = sum(x["cycles"] for x in reps)
                secs = max(x["secs"] for x in reps)
                fails = {}
                for x in reps:
                    for k, v in x["fail_reasons"].items():
                        fails[k] = fails.get(k, 0) + v
                hist = merge_hist(reps)
                rnd[kind] = {"cycles": cycles, "errors": sum(x["errors"] for x in reps),
                             "fail_reasons": fails, "per_s": cycles / secs if secs else None,
                             "cpu_s": cpu_s, "cpu_us_per_conn": cpu_s * 1e6 / cycles if cpu_s and cycles else None,
                             "head_p50_us": pct(hist, 0.5), "head_p99_us": pct(hist, 0.99)}
                log(f"  tlschurn {tgt.name} {kind} (round {r + 1}): {rnd[kind]['per_s']:,.0f} conn/s, "
                    f"errors {rnd[kind]['errors']}, "
                    + (f"{rnd[kind]['cpu_us_per_conn']:.0f} us server CPU/conn" if rnd[kind]["cpu_us_per_conn"] else ""))
            res["rounds"].append(rnd)
        res["median"] = {kind: {k: median(rnd[kind][k] for rnd in res["rounds"])
                                for k in ("per_s", "cpu_us_per_conn", "head_p50_us", "head_p99_us")}
                         for kind, _, _ in kinds}
        res["errors"] = sum(rnd[k]["errors"] for rnd in res["rounds"] for k in rnd)
    finally:
        tgt.stop()
    return res


def make_cert():
    """A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, made for this run
    in bench/out/tls/ (never committed): (certfile, keyfile)."""
    d = os.path.join(OUT, "tls")
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    return cert, key


def scen_percall(tgt, a):
    """Crier only: chunk/2 and broadcast/3 cost from Elixir, measured inside the server."""
    base, pid = tgt.start()
    res = {}
    lgs = []
    subs = []
    try:
        # A few subscribers on the topic that broadcast/3 calls go to, so they do fan out.
        subs, nsub, _ = hold_group(base + "/sub?topic=percall", a.percall_subs, a.max_secs, "percall-sub")
        res["broadcast_subscribers"] = nsub
        for callers in a.percall_callers:
            lgs, opened, fails = hold_group(base + "/hold", callers, a.max_secs, "percall")
            wait_stat(base, "holders", opened, 60)
            calls = max(a.percall_min_calls, a.percall_total // max(1, opened))
            for op in ("chunk", "broadcast"):
                st, body = http(base, "POST", f"/percall?op={op}&calls={calls}", timeout=600)
                if st != 200:
                    res[f"{op}_{callers}"] = {"error": body.decode(errors="replace")[:500]}
                    continue
                r = json.loads(body)
                r.update(callers=opened, calls_per_caller=calls)
                res[f"{op}_{callers}"] = r
                log(f"  percall {op} x{opened} callers: median {r.get('median_us')} us, "
                    f"p99 {r.get('p99_us')} us, long_schedule {r.get('long_schedule')}")
            stop_all(lgs)
            lgs = []
            wait_stat(base, "holders", 0, 30, cmp=lambda v, w: v == w)
        res["server_after"] = stats(base)
    finally:
        stop_all(lgs)
        stop_all(subs)
        tgt.stop()
    return res


# ---------------------------------------------------------------- main

def main():
    global YAWS_EBIN
    # On SIGTERM unwind normally, so every scenario's `finally` stops its server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--target", action="append", default=[],
                    help="extra running server: name=http://127.0.0.1:PORT[,pid=N]")
    ap.add_argument("--target-cmd", action="append", default=[],
                    help="extra server started fresh per scenario: name='command that prints "
                         "\"listening on IP:PORT [pid N]\"'")
    ap.add_argument("--version-note", action="append", default=[],
                    help="NAME=TEXT added to the versions in RESULTS.md (e.g. for a peer)")
    ap.add_argument("--only", default="crier,raw,baseline,yaws",
                    help="managed targets to run (comma list)")
    ap.add_argument("--scenarios", default="idle,fanout,close,churn,percall,h2fanout,tlschurn")
    ap.add_argument("--proto-rounds", type=int, default=None,
                    help="rounds of the h2fanout and tlschurn scenarios (default 1 and 2 quick, 3 full)")
    ap.add_argument("--protocols", default="",
                    help="h2fanout's protocols (comma list of h1,h1tls,h2conn,h2mux200,h2one; default all)")
    ap.add_argument("--mix-env", default="prod")
    ap.add_argument("--crier-dir", default=ROOT,
                    help="a compiled Crier checkout to run (bench/run builds a snapshot of HEAD)")
    ap.add_argument("--out", default=os.path.join(OUT, "results.json"))
    a = ap.parse_args()
    a.only = a.only.split(",")
    a.scenarios = a.scenarios.split(",")
    a.protocols = [p for p in a.protocols.split(",") if p]
    a.modes = ["paced", "b2b", "burst"]
    a.events = 200
    a.interval_us = 5000
    a.pace_us_per_sub = 20
    a.settle = 2.0
    a.idle_ms = 5000
    a.fanout_timeout = 120
    a.close_wait = 10
    a.max_secs = 1800
    a.churn_conc = 32
    a.percall_subs = 10
    a.proto_modes = ["paced", "b2b"]
    a.h2_streams_per_conn = 200  # under Crier's default h2_max_concurrent_streams (256)
    if a.quick:
        a.idle_steps = [500, 1000, 2000]
        a.fanout_ns = [1000]
        a.close_n = 1000
        a.churn_rounds, a.churn_round_secs = 5, 3
        a.settle = 1.0
        a.close_wait = 5
        a.percall_callers = [1, 1000]
        a.percall_total = 20000
        a.percall_min_calls = 20
        a.proto_subs = 1000
        a.proto_rounds_default = 1
        a.tls_churn_secs = 4
        a.tls_churn_rounds = 2
    else:
        a.idle_steps = [5000, 10000, 19000]
        a.fanout_ns = [5000, 19000]
        a.close_n = 10000
        a.churn_rounds, a.churn_round_secs = 10, 6
        a.percall_callers = [1, 10000]
        a.percall_total = 1000000
        a.percall_min_calls = 100
        a.proto_subs = 5000
        a.proto_rounds_default = 3
        a.tls_churn_secs = 15
        a.tls_churn_rounds = 3

    a.churn_secs = a.churn_rounds * a.churn_round_secs
    if a.proto_rounds:
        a.tls_churn_rounds = a.proto_rounds
    else:
        a.proto_rounds = a.proto_rounds_default
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    a.cert = make_cert() if {"h2fanout", "tlschurn"} & set(a.scenarios) else None
    ydirs = sorted(d for d in os.listdir("/usr/lib") if d.startswith("yaws-")) if os.path.isdir("/usr/lib") else []
    YAWS_EBIN = os.path.join("/usr/lib", ydirs[-1], "ebin") if ydirs else ""
    targets = make_targets(a)
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {
        "quick": a.quick, "started": started.isoformat(timespec="seconds"),
        "args": [x for x in sys.argv[1:] if x not in ("--crier-dir", a.crier_dir, "--mix-env", a.mix_env)],
        "machine": machine(), "versions": versions(a.crier_dir),
        "loadavg_start": os.getloadavg(),
        "notes": [n for n in a.version_note],
        "params": {"events": a.events, "interval_us": a.interval_us, "pace_us_per_sub": a.pace_us_per_sub, "idle_steps": a.idle_steps,
                   "fanout_subscribers": a.fanout_ns, "close_conns": a.close_n,
                   "close_wait_s": a.close_wait, "churn_secs": a.churn_secs,
                   "churn_rounds": a.churn_rounds, "churn_round_secs": a.churn_round_secs,
                   "churn_concurrency": 2 * a.churn_conc, "conns_per_loadgen": PER_PROC,
                   "proto_subscribers": a.proto_subs, "proto_rounds": a.proto_rounds,
                   "proto_modes": a.proto_modes, "h2_streams_per_conn": a.h2_streams_per_conn,
                   "tls_churn_secs": a.tls_churn_secs, "tls_churn_rounds": a.tls_churn_rounds},
        "targets": {},
    }

    def save():
        with open(a.out + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(a.out + ".tmp", a.out)

    for name, tgt in targets.items():
        r = results["targets"].setdefault(name, {"label": tgt.label})
        r["loadavg_at_start"] = os.getloadavg()
        log(f"== {tgt.label}")

        def attempt(key, fn, *args):
            try:
                r[key] = fn(*args)
            except Exception as e:  # one failing scenario must not end the run
                log(f"  {key} failed: {e!r}")
                with open(os.path.join(OUT, "logs", f"failed-{name}-{key}.txt"), "w") as f:
                    traceback.print_exc(file=f)
                r[key] = {"error": repr(e)}
                tgt.stop()
            save()

        if "idle" in a.scenarios:
            attempt("idle_sse", scen_idle, tgt, "/sse", a.idle_steps, a)
            attempt("idle_sub", scen_idle, tgt, "/sub", a.idle_steps, a)
        if "fanout" in a.scenarios:
            for n in a.fanout_ns:
                attempt(f"fanout_{n}", scen_fanout, tgt, n, a)
        if "close" in a.scenarios:
            attempt("close", scen_close, tgt, a.close_n, a)
        if "percall" in a.scenarios and name == "crier":
            attempt("percall", scen_percall, tgt, a)
        tls_scen = [k for k in ("h2fanout", "tlschurn") if k in a.scenarios]
        if tls_scen and not tgt.speaks_tls():
            log(f"  {', '.join(tls_scen)}: skipped, {tgt.label} serves no TLS/HTTP/2 here")
        elif tls_scen:
            if "h2fanout" in a.scenarios:
                attempt(f"h2fanout_{a.proto_subs}", scen_h2fanout, tgt, a.proto_subs, a)
            if "tlschurn" in a.scenarios:
                attempt("tlschurn", scen_tlschurn, tgt, a)
    if "churn" in a.scenarios and targets:
        # Every target in turns, in one stage (see scen_churn); /sub is Crier's alone.
        log("== churn, all targets in turns")
        for key, path, names in (("churn_sse", "/sse", list(targets)),
                                 ("churn_sub", "/sub", [n for n in targets if n == "crier"])):
            if not names:
                continue
            try:
                for name, r in scen_churn({n: targets[n] for n in names}, path, a).items():
                    results["targets"][name][key] = r
            except Exception as e:  # one failing scenario must not end the run
                log(f"  {key} failed: {e!r}")
                with open(os.path.join(OUT, "logs", f"failed-{key}.txt"), "w") as f:
                    traceback.print_exc(file=f)
                for n in names:
                    results["targets"][n][key] = {"error": repr(e)}
                    targets[n].stop()
            save()
    for n in a.version_note:
        k, _, v = n.partition("=")
        results["versions"][k] = v
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results["loadavg_end"] = os.getloadavg()
    save()
    log(f"results in {a.out}")


if __name__ == "__main__":
    main()
