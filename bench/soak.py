"""The soak driver behind bench/soak.sh: starts `gridreg serve`, runs the mixed load, samples the
server once a second, checks the log and every acknowledged publish at the end, and writes the
report. Standard library only."""

import argparse
import csv
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time

SLOW_TARGET = 2000
SLOW_FROM = "127.0.0.2"
JUNK_FROM = "127.0.0.3"
BIG_COUNT = int(os.environ.get("SOAK_BIG_COUNT", "32"))
BIG_SIZE = 100 << 20
PUBLISHERS = 2
PACKAGES_PER_PUBLISHER = 2
PUBLISH_EVERY = 0.5
PULLERS = 2
PULL_FIRST = int(os.environ.get("SOAK_PULL_FIRST", "0"))
# SOAK_VERSIONS_PER_PACKAGE=N starts a new package every N versions, so no chain (and no
# bundle) grows long; 0 (the default) keeps four packages whose chains grow all run long.
VERSIONS_PER_PACKAGE = int(os.environ.get("SOAK_VERSIONS_PER_PACKAGE", "0"))


def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_custom_section(wasm, name, payload):
    """`wasm` with a custom section appended (allowed anywhere in a module or component)."""
    body = leb(len(name)) + name.encode() + payload
    return wasm + b"\x00" + leb(len(body)) + body


def tile_path(kind, index, width):
    """C2SP tlog-tiles path of tile `index` (`x001/x234/067`), partial when width < 256."""
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    path = f"/tile/{kind}/" + "/".join(reversed(groups))
    return path if width == 256 else f"{path}.p/{width}"


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Soak:
    def __init__(self, args):
        self.args = args
        self.bin = args.bin
        self.work = args.work
        self.hello = open(args.fixture, "rb").read()
        self.port = self.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = []  # (package, version)
        self.publish_failures = []
        self.pull_times = []  # (t, seconds, slow connections open)
        self.pull_failures = []
        self.reads = {"ok": 0, "bad": []}
        self.oversize = {"refused": 0, "bad": []}
        self.junk = {"201": 0, "429": 0, "other": []}
        self.slow_open = 0
        self.slow_opened = 0
        self.slow_closed_by_server = 0
        self.samples = []  # dicts
        self.big = {}
        self.t0 = None

    @staticmethod
    def free_port():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def now(self):
        return time.monotonic() - self.t0

    # --- processes -------------------------------------------------------------------------

    def env(self, name):
        home = os.path.join(self.work, "clients", name)
        os.makedirs(home, exist_ok=True)
        e = dict(os.environ)
        e.update(
            GRIDREG_CONFIG=os.path.join(home, "config.toml"),
            GRIDREG_STATE_DIR=os.path.join(home, "state"),
            GRIDREG_REGISTRY=self.url,
            NO_COLOR="1",
        )
        return home, e

    def cli(self, name, *argv, timeout=600):
        home, e = self.env(name)
        return subprocess.run(
            [self.bin, *argv],
            cwd=home,
            env=e,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_server(self):
        data = os.path.join(self.work, "data")
        self.server_log = open(os.path.join(self.work, "serve.log"), "w")
        self.flags = [
            "--max-blob-size", "128MiB",
            # 32 publishes of 100 MiB from one address hold 3.2 GiB of pending uploads at once.
            "--max-pending-uploads-per-client", "4GiB",
            # So that the uploads nothing names are collected within the run.
            "--upload-ttl", "2m",
        ]
        self.server = subprocess.Popen(
            [self.bin, "serve", "--data", data, "--addr", f"127.0.0.1:{self.port}", *self.flags],
            stdout=self.server_log,
            stderr=self.server_log,
            env=dict(os.environ, RUST_LOG="warn"),
        )
        for _ in range(600):
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("the server did not come up")

    def get(self, path, source=None, timeout=30):
        c = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    # --- load ------------------------------------------------------------------------------

    def publisher(self, i):
        name = f"publisher{i}"
        home, _ = self.env(name)
        n = 0
        while not self.stop.is_set():
            package = f"soak:p{i * PACKAGES_PER_PUBLISHER + n % PACKAGES_PER_PUBLISHER}"
            version = f"1.{n // PACKAGES_PER_PUBLISHER}.0"
            if VERSIONS_PER_PACKAGE:
                # Short chains: a new package every VERSIONS_PER_PACKAGE versions.
                k, v = divmod(n // PACKAGES_PER_PUBLISHER, VERSIONS_PER_PACKAGE)
                package = f"{package}-n{k}"
                version = f"1.{v}.0"
            path = os.path.join(home, "c.wasm")
            with open(path, "wb") as f:
                f.write(with_custom_section(self.hello, "soak", f"{package}@{version}".encode()))
            t = time.monotonic()
            r = self.cli(name, "publish", path, "--package", package, "--version", version,
                         "--key", self.key)
            if r.returncode == 0:
                with self.lock:
                    self.acked.append((package, version))
            else:
                with self.lock:
                    self.publish_failures.append((package, version, r.stderr.strip()[-300:]))
            n += 1
            self.stop.wait(max(0.0, PUBLISH_EVERY - (time.monotonic() - t)))

    def puller(self, i):
        name = f"puller{i}"
        while not self.stop.is_set():
            with self.lock:
                # SOAK_PULL_FIRST=N pulls only the first N acknowledged releases (to tell
                # caches that grow with what is pulled from other growth).
                pool = self.acked[:PULL_FIRST] if PULL_FIRST else self.acked
                choice = random.choice(pool) if pool else None
            if choice is None:
                self.stop.wait(0.2)
                continue
            package, version = choice
            t = time.monotonic()
            r = self.cli(name, "pull", f"{package}@{version}", "--verify", "-o", "out.wasm")
            dt = time.monotonic() - t
            with self.lock:
                if r.returncode == 0:
                    self.pull_times.append((self.now(), dt, self.slow_open))
                else:
                    self.pull_failures.append((package, version, r.stderr.strip()[-300:]))
            self.stop.wait(0.1)

    def reader(self):
        while not self.stop.is_set():
            try:
                status, body = self.get("/healthz")
                size = json.loads(body)["log_size"]
                with self.lock:
                    first = self.acked[0][0] if self.acked else "soak:p0"
                paths = ["/v1/log/checkpoint", "/checkpoint", "/v1/packages?q=soak",
                         f"/v1/bundles/{first}"]
                if size > 2:
                    a = random.randrange(size)
                    t = a // 256
                    width = min(256, size - t * 256)
                    paths += [
                        tile_path("0", t, width),
                        tile_path("entries", t, width),
                        f"/v1/log/entries?start={a}&end={min(size, a + 1000)}",
                        f"/v1/log/proof/inclusion?index={a}&size={size}",
                        f"/v1/log/proof/consistency?from={random.randrange(1, size)}&to={size}",
                    ]
                for p in paths:
                    status, _ = self.get(p)
                    with self.lock:
                        if status == 200:
                            self.reads["ok"] += 1
                        else:
                            self.reads["bad"].append((p, status))
            except (OSError, http.client.HTTPException, IndexError, ValueError) as e:
                with self.lock:
                    self.reads["bad"].append(("?", repr(e)))
            self.stop.wait(0.05)

    def slow_clients(self):
        """Holds up to SLOW_TARGET half-sent heads, opening at most 500 a second."""
        import selectors

        sel = selectors.DefaultSelector()
        open_ = set()
        while not self.stop.is_set():
            tick = time.monotonic()
            budget = 50
            while len(open_) < SLOW_TARGET and budget > 0:
                budget -= 1
                s = socket.socket()
                s.setblocking(True)
                s.settimeout(2)
                try:
                    s.bind((SLOW_FROM, 0))
                    s.connect(("127.0.0.1", self.port))
                    s.sendall(b"GET /v1/log/checkpoint HTTP/1.1\r\nhost: x\r\nx-slow: ")
                except OSError:
                    s.close()
                    break
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
                open_.add(s)
                self.slow_opened += 1
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    s.close()
                    open_.discard(s)
                    self.slow_closed_by_server += 1
            self.slow_open = len(open_)
            # At most 50 new connections per 0.1 s.
            time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
        for s in list(open_):
            s.close()
        self.slow_open = 0

    def oversized(self):
        """An upload declaring more than --max-blob-size, and a 4 MiB record: refused, never read."""
        while not self.stop.is_set():
            for method, path, length in (
                ("PUT", "/v1/content/sha256:" + "ab" * 32, 200 << 20),
                ("POST", "/v1/records", 4 << 20),
            ):
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                    s.settimeout(15)
                    # Only the head: the answer must come without the body being read.
                    s.sendall(f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {length}\r\n"
                              "content-type: application/octet-stream\r\n\r\n".encode())
                    answer = s.recv(64)
                    s.close()
                    status = int(answer[9:12]) if answer[:5] == b"HTTP/" else 0
                    with self.lock:
                        if status in (400, 413):
                            self.oversize["refused"] += 1
                        else:
                            self.oversize["bad"].append((path, answer[:40]))
                except OSError as e:
                    with self.lock:
                        self.oversize["bad"].append((path, repr(e)))
            self.stop.wait(1.0)

    def junk_uploads(self):
        """Valid 64 KiB modules uploaded and never named by any release."""
        import hashlib

        n = 0
        while not self.stop.is_set():
            body = with_custom_section(b"\0asm\x01\0\0\0", "junk",
                                       n.to_bytes(8, "big") + os.urandom(65528))
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                               source_address=(JUNK_FROM, 0))
                c.request("PUT", f"/v1/content/{digest}", body=body,
                          headers={"content-type": "application/wasm"})
                status = c.getresponse().status
                c.close()
            except (OSError, http.client.HTTPException) as e:
                status = repr(e)
            with self.lock:
                if status in (200, 201):
                    self.junk["201"] += 1
                elif status == 429:
                    self.junk["429"] += 1
                else:
                    self.junk["other"].append(status)
            n += 1
            self.stop.wait(0.2)

    def big_publishes(self, files):
        """32 publishes of a 100 MiB component at once, each its own package."""
        results = [None] * len(files)

        def one(i, path):
            t = time.monotonic()
            r = self.cli(f"big{i}", "publish", path, "--package", f"soak:big{i}",
                         "--version", "1.0.0", "--key", self.key)
            results[i] = (r.returncode, time.monotonic() - t, r.stderr.strip()[-300:])
            if r.returncode == 0:
                with self.lock:
                    self.acked.append((f"soak:big{i}", "1.0.0"))

        started = self.now()
        threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(files)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Then the first reads of those releases, whose WIT is extracted from the 100 MiB of
        # content on first read: 32 at once of one release, and one of each of the 32.
        statuses = []

        def read(package):
            try:
                status, _ = self.get(f"/v1/packages/{package}/1.0.0", timeout=300)
            except OSError as e:
                status = repr(e)
            with self.lock:
                statuses.append(status)

        packages = ["soak:big0"] * BIG_COUNT + [f"soak:big{i}" for i in range(BIG_COUNT)]
        readers = [threading.Thread(target=read, args=(p,)) for p in packages]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        self.big = {"started": started, "ended": self.now(), "results": results,
                    "reads": statuses}

    def sampler(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                status, _ = self.get("/healthz", timeout=10)
                latency = time.monotonic() - t if status == 200 else float("inf")
            except OSError:
                latency = float("inf")
            status = {}
            with open(f"/proc/{self.server.pid}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                        status[key] = int(value.split()[0])
            with open(f"/proc/{self.server.pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("AnonHugePages:"):
                        status["AnonHugePages"] = int(line.split()[1])
            rss = status.get("VmRSS", 0) * 1024
            fds = len(os.listdir(f"/proc/{self.server.pid}/fd"))
            self.samples.append({
                "t": round(self.now(), 1), "rss": rss, "rss_anon": status.get("RssAnon", 0) * 1024,
                "rss_file": status.get("RssFile", 0) * 1024, "threads": status.get("Threads", 0),
                "anon_huge": status.get("AnonHugePages", 0) * 1024,
                "fds": fds,
                "healthz_ms": round(latency * 1000, 2), "slow_open": self.slow_open,
                "acked": len(self.acked),
            })
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    # --- the run ---------------------------------------------------------------------------

    def run(self):
        a = self.args
        print(f"soak: {a.seconds} s; writing {BIG_COUNT} components of {BIG_SIZE >> 20} MiB", flush=True)
        files = []
        for i in range(BIG_COUNT):
            path = os.path.join(self.work, f"big{i}.wasm")
            filler = i.to_bytes(4, "big") * (BIG_SIZE // 4 - len(self.hello))
            with open(path, "wb") as f:
                f.write(with_custom_section(self.hello, "filler", filler))
            files.append(path)
        self.start_server()
        self.key = os.path.join(self.work, "soak.key")
        for argv in (["keygen", "--name", "soak", "-o", self.key],
                     ["namespace", "claim", "soak", "--key", self.key]):
            r = self.cli("setup", *argv)
            if r.returncode != 0:
                raise SystemExit(f"gridreg {' '.join(argv)}: {r.stderr}")
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self.sampler)]
        threads += [threading.Thread(target=self.publisher, args=(i,)) for i in range(PUBLISHERS)]
        threads += [threading.Thread(target=self.puller, args=(i,)) for i in range(PULLERS)]
        threads += [threading.Thread(target=f) for f in
                    (self.reader, self.slow_clients, self.oversized, self.junk_uploads)]
        for t in threads:
            t.start()
        # The 32 large publishes a minute in, so the last five minutes show the steady state.
        time.sleep(min(60, a.seconds / 10))
        big = threading.Thread(target=self.big_publishes, args=(files,))
        if files:
            big.start()
        deadline = self.t0 + a.seconds
        while time.monotonic() < deadline:
            time.sleep(1)
            if self.server.poll() is not None:
                print("the server exited", file=sys.stderr)
                break
        self.stop.set()
        if files:
            big.join()
        for t in threads:
            t.join()
        self.end_checks()
        self.server.terminate()
        self.server.wait(timeout=60)
        self.report()

    def end_checks(self):
        r = self.cli("monitor", "log", "monitor", timeout=1800)
        self.monitor = (r.returncode, (r.stdout + r.stderr).strip()[-600:])
        lost = []
        t = time.monotonic()

        def check(part, i):
            for package, version in part:
                r = self.cli(f"final{i}", "pull", f"{package}@{version}", "--verify", "-o", "out.wasm")
                if r.returncode != 0:
                    with self.lock:
                        lost.append((package, version, r.stderr.strip()[-300:]))

        threads = [threading.Thread(target=check, args=(self.acked[i::2], i)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.final_pulls = time.monotonic() - t
        self.lost = lost

    def report(self):
        a = self.args
        s = self.samples
        with open(a.samples, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(s[0].keys()))
            w.writeheader()
            w.writerows(s)
        mib = lambda b: b / (1 << 20)
        health = [x["healthz_ms"] for x in s]
        loaded = [x["healthz_ms"] for x in s if x["slow_open"] >= 1000]
        pulls = [dt * 1000 for (_, dt, _) in self.pull_times]
        pulls_loaded = [dt * 1000 for (_, dt, so) in self.pull_times if so >= 1000]
        in_burst = lambda t: self.big and self.big["started"] <= t <= self.big["ended"] + 5
        pulls_calm = [dt * 1000 for (t, dt, so) in self.pull_times if so >= 1000 and not in_burst(t)]
        big_window = [x for x in s if self.big and self.big["started"] <= x["t"] <= self.big["ended"] + 5]
        last5 = [x for x in s if x["t"] >= s[-1]["t"] - 300]
        first_half = [x for x in last5 if x["t"] < last5[0]["t"] + 60]
        final_min = [x for x in last5 if x["t"] >= s[-1]["t"] - 60]
        big_ok = sum(1 for r in self.big.get("results", []) if r and r[0] == 0)
        big_times = [r[1] for r in self.big.get("results", []) if r]
        lines = [
            f"### {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {a.seconds} s",
            "",
            f"Server flags: `{' '.join(self.flags)}` (else defaults: --max-connections 1024, "
            "--max-connections-per-client 256, --read-timeout 10s, --max-audit-memory 1GiB).",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| acknowledged publishes | {len(self.acked)} (failed: {len(self.publish_failures)}) |",
            f"| acknowledged publishes lost (final `pull --verify` of each, {self.final_pulls:.0f} s) | {len(self.lost)} |",
            f"| `gridreg log monitor` at the end | exit {self.monitor[0]} |",
            f"| verified pulls during the run | {len(pulls)} (failed: {len(self.pull_failures)}) |",
            f"| pull --verify p50 / p99 / max, while >= 1,000 slow connections open | "
            f"{pct(pulls_loaded, 50):.0f} / {pct(pulls_loaded, 99):.0f} / {max(pulls_loaded, default=float('nan')):.0f} ms ({len(pulls_loaded)} pulls) |",
            f"| the same outside the large publishes (from their start to 5 s after their reads) | "
            f"{pct(pulls_calm, 50):.0f} / {pct(pulls_calm, 99):.0f} / {max(pulls_calm, default=float('nan')):.0f} ms ({len(pulls_calm)} pulls) |",
            f"| `/healthz` p50 / p99 / max, all samples | {pct(health, 50):.1f} / {pct(health, 99):.1f} / {max(health):.1f} ms ({len(health)}) |",
            f"| `/healthz` p99 / max while >= 1,000 slow connections open | {pct(loaded, 99):.1f} / {max(loaded, default=float('nan')):.1f} ms ({len(loaded)}) |",
            f"| slow connections open (client side: connected, not yet closed by the server) mean / max | "
            f"{statistics.mean(x['slow_open'] for x in s):.0f} / {max(x['slow_open'] for x in s)} |",
            f"| slow connections opened / closed by the server | {self.slow_opened} / {self.slow_closed_by_server} |",
            f"| 32 x 100 MiB publishes: acknowledged, time | {big_ok} of {BIG_COUNT}, "
            f"{min(big_times, default=0):.1f}–{max(big_times, default=0):.1f} s |",
            f"| then {2 * BIG_COUNT} first reads of those releases (WIT extracted from the content): 200 | "
            f"{sum(1 for x in self.big.get('reads', []) if x == 200)} of {len(self.big.get('reads', []))} |",
            f"| RSS peak during those publishes and reads | {mib(max((x['rss'] for x in big_window), default=0)):.0f} MiB |",
            f"| RSS peak, whole run | {mib(max(x['rss'] for x in s)):.0f} MiB |",
            f"| RSS last 5 min: min / max; first minute mean -> last minute mean | "
            f"{mib(min(x['rss'] for x in last5)):.0f} / {mib(max(x['rss'] for x in last5)):.0f} MiB; "
            f"{mib(statistics.mean(x['rss'] for x in first_half)):.0f} -> {mib(statistics.mean(x['rss'] for x in final_min)):.0f} MiB |",
            f"| open files last 5 min: min / max; first minute mean -> last minute mean | "
            f"{min(x['fds'] for x in last5)} / {max(x['fds'] for x in last5)}; "
            f"{statistics.mean(x['fds'] for x in first_half):.0f} -> {statistics.mean(x['fds'] for x in final_min):.0f} |",
            f"| reads (proofs, pages, tiles, search, bundles): ok / not 200 | {self.reads['ok']} / {len(self.reads['bad'])} |",
            f"| oversized bodies refused / otherwise answered | {self.oversize['refused']} / {len(self.oversize['bad'])} |",
            f"| never-named uploads: 201 / 429 / other | {self.junk['201']} / {self.junk['429']} / {len(self.junk['other'])} |",
            "",
        ]
        problems = (
            [f"publish failed: {x}" for x in self.publish_failures[:5]]
            + [f"pull failed: {x}" for x in self.pull_failures[:5]]
            + [f"lost: {x}" for x in self.lost[:5]]
            + [f"read: {x}" for x in self.reads["bad"][:5]]
            + [f"oversized: {x}" for x in self.oversize["bad"][:5]]
            + [f"junk upload: {x}" for x in self.junk["other"][:5]]
            + [f"big publish: {r}" for r in self.big.get("results", []) if r and r[0] != 0][:5]
            + [f"big release read: {x}" for x in self.big.get("reads", []) if x != 200][:5]
        )
        if self.monitor[0] != 0:
            problems.append(f"log monitor: {self.monitor[1]}")
        if problems:
            lines += ["Problems seen (first of each kind):", ""]
            lines += [f"- `{p}`" for p in problems]
            lines.append("")
        text = "\n".join(lines)
        print(text)
        with open(a.report, "w") as f:
            f.write(text + "\n")
        ok = not self.lost and self.monitor[0] == 0
        sys.exit(0 if ok else 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--seconds", type=int, default=600)
    p.add_argument("--fixture", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--samples", required=True)
    Soak(p.parse_args()).run()


if __name__ == "__main__":
    main()
