"""Benchmark: requests/s, p50 and p99 at concurrency 1, 16 and 64.

Measures, in one run on this machine:
  (a) one echo replica called directly (loopback TCP),
  (b) the gateway with 1 and 2 echo replicas,
  (c) nginx as reverse proxy to the same 2 replicas (the cost of one proxy hop),
  (d) examples/digits through the gateway with batching on and off.
Writes the table and the targets to bench/out/RESULTS.md (untracked; pass
--output bench/RESULTS.md to update the figures kept in git). Installs wrk and nginx
from Debian if they are missing. Ctrl-C stops every process it started and removes
its temporary directories. Usage: python bench/run.py [--duration-s 8] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "post.lua"
CONCURRENCY = (1, 16, 64)
STARTED: list[subprocess.Popen] = []  # killed on the way out, whatever happens
TEMP_DIRS: list[Path] = []  # removed on the way out, whatever happens
DEFAULT_OUTPUT = ROOT / "bench" / "out" / "RESULTS.md"
ECHO_BODY = '{"message": "hello"}'


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if not shutil.which(tool)
               and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", *missing], check=True, env=env,
                       stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, body: str, path: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url + path, data=body.encode(), headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url}{path} did not answer within {timeout_s}s")


def _to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, path: str, body: str, connections: int, duration_s: float) -> dict[str, float]:
    env = {**os.environ, "WRK_PATH": path, "WRK_BODY": body}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(duration_s)}s", "--latency", "-s", str(LUA), url]
    subprocess.run([*cmd[:3], "-d1s", *cmd[4:]], env=env, capture_output=True)  # warm-up
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        p50 = _to_ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
        p99 = _to_ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    except (AttributeError, KeyError) as exc:
        raise RuntimeError(f"cannot read wrk's output:\n{out}") from exc
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


class Serve:
    """`steady serve` in the background for one scenario."""

    def __init__(self, target: str, replicas: int, *extra: str) -> None:
        self.port = free_port()
        self.state_dir = Path(tempfile.mkdtemp(prefix="steady-bench-"))
        TEMP_DIRS.append(self.state_dir)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "steadyserve.cli", "serve", target, "--replicas", str(replicas),
             "--port", str(self.port), "--state-dir", str(self.state_dir), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        STARTED.append(self.proc)
        self.url = f"http://127.0.0.1:{self.port}"

    def replica_endpoints(self) -> list[str]:
        table = json.loads((self.state_dir / "routes.json").read_text())
        return [r["endpoint"] for s in table["services"].values() for r in s["replicas"]]

    def wait_ready(self, replicas: int, path: str, body: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(self.replica_endpoints_safe()) < replicas:
            time.sleep(0.1)
        wait_http(self.url, body, path)

    def replica_endpoints_safe(self) -> list[str]:
        try:
            return self.replica_endpoints()
        except (OSError, ValueError):
            return []

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)
        shutil.rmtree(self.state_dir, ignore_errors=True)


def nginx_proxy(endpoints: list[str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="steady-nginx-"))
    TEMP_DIRS.append(workdir)
    servers = "\n".join(f"    server {e};" for e in endpoints)
    # As root, nginx workers drop to an unprivileged user that cannot open the
    # replicas' sockets in the private state dir; keep the bench's own user.
    user = "user root;" if os.geteuid() == 0 else ""
    (workdir / "nginx.conf").write_text(f"""
{user}
worker_processes 2;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream replicas {{
{servers}
    keepalive 256;
  }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", str(workdir), "-c", str(workdir / "nginx.conf"),
                             "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    STARTED.append(proc)
    return proc, f"http://127.0.0.1:{port}", workdir


def measure(label: str, url: str, path: str, body: str, duration_s: float, results: dict) -> None:
    for c in CONCURRENCY:
        r = wrk(url, path, body, c, duration_s)
        results[(label, c)] = r
        print(f"{label:<34} c={c:<3} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:.2f} ms"
              f"  p99 {r['p99_ms']:.2f} ms  non-2xx {r['non_2xx']} {r['socket_errors']}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration-s", type=int, default=8)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="Markdown file for the results (default: bench/out/RESULTS.md, untracked)")
    args = parser.parse_args()
    ensure_tools()
    os.chdir(ROOT)
    results: dict[tuple[str, int], dict[str, float]] = {}
    digits_body = json.dumps({"pixels": [int(v) for v in __import__("sklearn.datasets").datasets.load_digits().data[0]]})

    # (a) one replica, directly
    port = free_port()
    direct = subprocess.Popen([sys.executable, "-m", "steadyserve.replica.main", "--target", "examples/echo",
                               "--id", "direct", "--endpoint", f"tcp:127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    STARTED.append(direct)
    wait_http(f"http://127.0.0.1:{port}", ECHO_BODY, "/echo")
    measure("(a) echo, 1 replica direct", f"http://127.0.0.1:{port}", "/echo", ECHO_BODY, args.duration_s, results)
    direct.send_signal(signal.SIGTERM)
    direct.wait(30)

    # (b) gateway with 1 replica
    # nginx has no admission control: let the replicas take all 64 connections (they refuse beyond it).
    one = Serve("examples/echo", 1, "--max-ongoing", "64")
    one.wait_ready(1, "/echo", ECHO_BODY)
    measure("(b) echo, gateway + 1 replica", one.url, "/echo", ECHO_BODY, args.duration_s, results)
    one.stop()

    # (b) gateway with 2 replicas, then (c) nginx in front of the same 2 replicas
    two = Serve("examples/echo", 2, "--max-ongoing", "64")
    two.wait_ready(2, "/echo", ECHO_BODY)
    measure("(b) echo, gateway + 2 replicas", two.url, "/echo", ECHO_BODY, args.duration_s, results)
    nginx, nginx_url, nginx_dir = nginx_proxy(two.replica_endpoints())
    try:
        print(f"nginx config: {nginx_dir / 'nginx.conf'}", flush=True)
        wait_http(nginx_url, ECHO_BODY, "/echo")
        measure("(c) echo, nginx + same 2 replicas", nginx_url, "/echo", ECHO_BODY, args.duration_s, results)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(30)
        shutil.rmtree(nginx_dir, ignore_errors=True)
        two.stop()

    # (d) digits with batching on and off
    for label, extra in (("(d) digits, batching on", ()), ("(d) digits, batching off", ("--no-batching",))):
        digits = Serve("examples/digits", 2, *extra)
        digits.wait_ready(2, "/predict", digits_body)
        measure(label + ", 2 replicas", digits.url, "/predict", digits_body, args.duration_s, results)
        digits.stop()

    write_results(results, args.duration_s, args.output.resolve())
    return 0


def write_results(results: dict, duration_s: float, results_file: Path) -> None:
    def get(label: str, c: int) -> dict[str, float]:
        return next(v for (k, cc), v in results.items() if k.startswith(label) and cc == c)

    gw2, ngx = get("(b) echo, gateway + 2", 64)["rps"], get("(c)", 64)["rps"]
    added_p50 = get("(b) echo, gateway + 1", 16)["p50_ms"] - get("(a)", 16)["p50_ms"]
    batch_ratio = get("(d) digits, batching on", 64)["rps"] / get("(d) digits, batching off", 64)["rps"]
    targets = [
        ("gateway + 2 replicas echo throughput >= 0.8 x nginx + same replicas (c=64)",
         f"{gw2 / ngx:.2f} x", gw2 / ngx >= 0.8),
        ("gateway adds <= 0.5 ms to p50 at c=16 versus direct (1 replica)", f"{added_p50:+.2f} ms", added_p50 <= 0.5),
        ("digits with batching >= 3 x without (c=64)", f"{batch_ratio:.2f} x", batch_ratio >= 3.0),
    ]
    lines = [
        "# Benchmark results",
        "",
        f"Command: `python bench/run.py --duration-s {duration_s:g}"
        f"{'' if results_file == DEFAULT_OUTPUT else ' --output ' + _shown_path(results_file)}`, run on"
        f" {time.strftime('%Y-%m-%d')} on this project's dev machine ({os.cpu_count()} cores; wrk -t1,"
        " keep-alive, load generator on the same machine). Gateway: 2 processes; nginx: 2 workers.",
        "",
        "| scenario | conc. | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (label, c), r in results.items():
        lines.append(f"| {label} | {c} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} |")
    lines += ["", "## Targets (ratios from this one run)", "", "| target | measured | met |", "|---|---:|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'NO'} |" for t, m, ok in targets]
    results_file.parent.mkdir(parents=True, exist_ok=True)
    # Sections other scripts write (bench/batching.py, bench/overload.py) stay as they are.
    kept = ""
    if results_file.exists():
        old = results_file.read_text()
        others = [m.start() for m in re.finditer(r"^## ", old, re.M) if not old.startswith("## Targets", m.start())]
        kept = old[others[0]:] if others else ""
    results_file.write_text("\n".join(lines) + "\n" + ("\n" + kept if kept else ""))
    print("\n".join(lines[-5:]))
    print(f"results written to {results_file}")


def _shown_path(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def run() -> int:
    try:
        return main()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping what the benchmark started", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        for proc in STARTED:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for directory in TEMP_DIRS:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
