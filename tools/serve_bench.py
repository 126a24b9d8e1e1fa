#!/usr/bin/env python3
"""Generation throughput of `wgllm serve` under concurrent requests (issues 6 and 11, docs/perf.md).

Starts `wgllm serve -m MODEL --parallel P` on a free port of 127.0.0.1 (or measures a server already
running at --url), waits for /health, sends a warm-up request and a short warm-up batch at the largest
concurrency (it builds the batched pipelines), then for each C of --concurrency fires C greedy chat requests
at once (max_tokens --max-tokens, each its own prompt, so no prefix is shared) and prints per C:
  aggregate tok/s    = the completion tokens of all C requests / the batch's wall time (first request sent
                       to last answer received),
  per-request tok/s  = the mean over the requests of completion tokens / that request's own time (prompt
                       included),
and the aggregate as a multiple of C=1's; from a wgllm server's /metrics, the steps the batch took, the mean
time inside a step and the share of the wall time spent stepping (the rest: HTTP, templating, tokenizing,
the scheduler between steps). Requests carry "ignore_eos" for servers that know it (llama.cpp's;
wgllm ignores unknown fields); a synthetic model (`wgllm bench --synthetic ... --write-gguf`) never ends a
greedy reply early, so every request generates max_tokens. Requests that stopped short are counted and
reported; with --strict they fail the run.

Only the Python 3 standard library, so that it runs on a machine without network or node.

  python3 tools/serve_bench.py -m MODEL.gguf [--concurrency 1,4,8,16] [--max-tokens 128] [--parallel P]
          [--ctx-size N] [--rounds R] [--wgllm build/wgllm] [--prefix "mpirun -np 2 --bind-to none"]
          [--json FILE] [--strict] [-- extra wgllm serve flags, e.g. --mesh]
  python3 tools/serve_bench.py --synthetic llama-3.2-1b:q4_0 [--write-gguf FILE] ...
  python3 tools/serve_bench.py --url http://127.0.0.1:8080 ...

--synthetic SHAPE:TYPE writes the model first with `wgllm bench --synthetic SHAPE:TYPE --write-gguf FILE`
(FILE: --write-gguf, else a temporary file removed at the end). --parallel defaults to the largest C.
Exit status: 0 when every request succeeded (and, with --strict, generated max_tokens and a server this script
started counted its steps), 1 otherwise, 2 for bad usage.
"""

import argparse
import http.client
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def log(message):
    print(message, file=sys.stderr, flush=True)


class Server:
    """`[prefix] wgllm serve ... --port 0` as a child process; its stderr is kept (and shown on failure)."""

    def __init__(self, argv, start_timeout):
        self.argv = argv
        log("serve_bench: " + shlex.join(argv))
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self.lines = []
        self.listening = threading.Event()
        self.url = None
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + start_timeout
        while not self.listening.wait(0.1):
            if self.proc.poll() is not None:
                self.fail(f"wgllm serve exited with status {self.proc.returncode} before listening")
            if time.monotonic() > deadline:
                self.fail(f"wgllm serve did not listen within {start_timeout:.0f} s")

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"listening on (http://[^/\s]+)/", line)
            if m and not self.url:
                self.url = m.group(1)
                self.listening.set()

    def log_text(self):
        return "".join(self.lines)

    def fail(self, message):
        self.stop()
        log(self.log_text())
        raise SystemExit(f"serve_bench: {message}")

    def stop(self):
        if self.proc.poll() is None:
            # mpirun passes SIGTERM on to its ranks; wgllm serve exits 0 on it.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def request(url, path, body, timeout, method="POST"):
    """One HTTP request on its own connection: (status, parsed JSON or text)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        res = conn.getresponse()
        text = res.read().decode("utf-8", "replace")
        try:
            return res.status, json.loads(text)
        except ValueError:
            return res.status, text
    finally:
        conn.close()


def wait_healthy(url, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            status, body = request(url, "/health", None, 5, method="GET")
            if status == 200:
                return body
            last = f"{status} {body}"
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise SystemExit(f"serve_bench: {url}/health did not answer 200 within {timeout:.0f} s (last: {last})")


def chat_body(index, nonce, max_tokens):
    prompt = (f"Request {index}, run {nonce}: write a long story about the number {index}, "
              f"with many characters and places, and never stop.")
    return {"messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": max_tokens,
            "ignore_eos": True, "stream": False}


def run_batch(url, concurrency, max_tokens, nonce, timeout):
    """C requests released together; the batch's wall time and each request's (tokens, seconds, finish)."""
    results = [None] * concurrency
    barrier = threading.Barrier(concurrency + 1)

    def one(i):
        body = chat_body(i, nonce, max_tokens)
        barrier.wait()
        t0 = time.perf_counter()
        try:
            status, reply = request(url, "/v1/chat/completions", body, timeout)
        except OSError as e:
            status, reply = None, str(e)
        seconds = time.perf_counter() - t0
        if status != 200 or not isinstance(reply, dict):
            results[i] = {"error": f"{status}: {reply}", "seconds": seconds}
            return
        results[i] = {"tokens": reply["usage"]["completion_tokens"], "seconds": seconds,
                      "finish": reply["choices"][0].get("finish_reason")}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, results


def server_counters(url):
    """wgllm serve's step counters from /metrics ({} when the server has none, e.g. another engine)."""
    try:
        status, text = request(url, "/metrics", None, 10, method="GET")
    except OSError:
        return {}
    if status != 200 or not isinstance(text, str):
        return {}
    found = {}
    for name in ("wgllm_steps_total", "wgllm_step_seconds_total"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        if m:
            found[name] = float(m.group(1))
    return found


def parse_list(text):
    try:
        values = [int(x) for x in text.split(",") if x]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of positive integers like 1,4,8,16")
    return values


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("-m", "--model", help="the GGUF model to serve")
    source.add_argument("--synthetic", metavar="SHAPE:TYPE", help="serve a synthetic model (wgllm bench's)")
    source.add_argument("--url", help="measure a server already running there (http://HOST:PORT)")
    p.add_argument("--write-gguf", help="with --synthetic: keep the model in this file")
    p.add_argument("--concurrency", type=parse_list, default=[1, 4, 8, 16], help="default 1,4,8,16")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=1, help="batches per concurrency (the mean is reported)")
    p.add_argument("--parallel", type=int, help="wgllm serve --parallel (default: the largest concurrency)")
    p.add_argument("--ctx-size", type=int, default=512, help="wgllm serve -c (default 512)")
    p.add_argument("--wgllm", default=os.environ.get("WGLLM_BINARY", "build/wgllm"))
    p.add_argument("--prefix", default="", help="a command that runs wgllm, e.g. 'mpirun -np 2 --bind-to none'")
    p.add_argument("--start-timeout", type=float, default=600, help="seconds for the server to load (600)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per request (600)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--strict", action="store_true",
                   help="a request that stops before max_tokens, or a wgllm server whose /metrics miss steps, "
                        "fails the run")
    a = p.parse_args(argv)
    if a.max_tokens < 1 or a.rounds < 1:
        p.error("--max-tokens and --rounds must be at least 1")
    if a.write_gguf and not a.synthetic:
        p.error("--write-gguf goes with --synthetic")
    if a.url and (extra or a.prefix):
        p.error("--url measures a running server: no --prefix or extra serve flags")

    temp_model = None
    model = a.model
    if a.synthetic:
        model = a.write_gguf
        if not model:
            fd, temp_model = tempfile.mkstemp(prefix="serve-bench-", suffix=".gguf")
            os.close(fd)
            model = temp_model
        cmd = [a.wgllm, "bench", "--synthetic", a.synthetic, "--write-gguf", model, "-p", "0", "-n", "1", "-r",
               "1"]
        log("serve_bench: " + shlex.join(cmd))
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            raise SystemExit(f"serve_bench: writing the synthetic model {a.synthetic} failed")

    server = None
    try:
        url = a.url.rstrip("/") if a.url else None
        if not url:
            parallel = a.parallel or max(a.concurrency)
            serve = shlex.split(a.prefix) + [a.wgllm, "serve", "-m", model, "--port", "0", "--parallel",
                                             str(parallel), "-c", str(a.ctx_size)] + extra
            server = Server(serve, a.start_timeout)
            url = server.url
        health = wait_healthy(url, a.start_timeout)
        served = ""
        if server:
            m = re.search(r"serving (.*)", server.log_text())
            served = m.group(1) if m else ""
        log(f"serve_bench: {url} healthy ({health}){'; serving ' + served if served else ''}")

        nonce = f"{os.getpid()}-{int(time.time())}"
        failures = 0
        warm_wall, warm = run_batch(url, 1, a.max_tokens, nonce + "-warm", a.timeout)
        warm_batch = run_batch(url, max(a.concurrency), min(a.max_tokens, 16), nonce + "-warmbatch", a.timeout)[1]
        for r in warm + warm_batch:
            if "error" in r:
                log(f"serve_bench: warm-up request failed: {r['error']}")
                failures += 1
        log(f"serve_bench: warm-up request {warm_wall:.2f} s")

        rows = []
        for c in a.concurrency:
            walls, tokens, per_request, short = [], 0, [], 0
            before = server_counters(url)
            for r_i in range(a.rounds):
                wall, results = run_batch(url, c, a.max_tokens, f"{nonce}-c{c}-r{r_i}", a.timeout)
                walls.append(wall)
                for r in results:
                    if "error" in r:
                        log(f"serve_bench: C={c}: request failed: {r['error']}")
                        failures += 1
                        continue
                    tokens += r["tokens"]
                    per_request.append(r["tokens"] / r["seconds"])
                    short += r["tokens"] < a.max_tokens
            row = {"concurrency": c, "requests": c * a.rounds, "completion_tokens": tokens,
                   "wall_s": sum(walls), "aggregate_tok_s": tokens / sum(walls),
                   "per_request_tok_s": sum(per_request) / len(per_request) if per_request else 0.0,
                   "stopped_short": short}
            after = server_counters(url)
            if len(before) == 2 and len(after) == 2:
                # The engine's share: steps taken and the time inside them, against the batch's wall time
                # (the rest is HTTP, templating, tokenizing and the scheduler between steps).
                steps = after["wgllm_steps_total"] - before["wgllm_steps_total"]
                inside = after["wgllm_step_seconds_total"] - before["wgllm_step_seconds_total"]
                row["steps"] = int(steps)
                row["ms_per_step"] = 1000 * inside / steps if steps else 0.0
                row["stepping_share"] = inside / sum(walls)
            rows.append(row)
            log(f"serve_bench: C={c}: {row['aggregate_tok_s']:.1f} tok/s aggregate")

        base = next((r["aggregate_tok_s"] for r in rows if r["concurrency"] == 1), None)
        print(f"model: {a.synthetic or a.model or url}; max_tokens {a.max_tokens}; rounds {a.rounds}"
              f"{'; serving ' + served if served else ''}")
        print("| concurrent | requests | completion tokens | wall s | aggregate tok/s | per-request tok/s |"
              " vs 1 | stopped short | steps | ms per step | in steps |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            ratio = f"{r['aggregate_tok_s'] / base:.2f}x" if base else ""
            stepping = (f" {r['steps']} | {r['ms_per_step']:.2f} | {100 * r['stepping_share']:.0f}% |"
                        if "steps" in r else " | | |")
            print(f"| {r['concurrency']} | {r['requests']} | {r['completion_tokens']} | {r['wall_s']:.2f} |"
                  f" {r['aggregate_tok_s']:.1f} | {r['per_request_tok_s']:.1f} | {ratio} | {r['stopped_short']} |"
                  + stepping)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"model": a.synthetic or a.model or url, "serving": served, "max_tokens": a.max_tokens,
                           "rounds": a.rounds, "server": server.argv if server else url, "results": rows,
                           "failed_requests": failures}, f, indent=2)
        short = sum(r["stopped_short"] for r in rows)
        if a.strict and short:
            log(f"serve_bench: {short} requests stopped before {a.max_tokens} tokens (--strict)")
            return 1
        # Each request's tokens after its first take a step each (its first comes from its prompt's pass).
        uncounted = [r["concurrency"] for r in rows
                     if server and ("steps" not in r or r["steps"] < a.rounds * (a.max_tokens - 1))]
        if a.strict and uncounted:
            log(f"serve_bench: /metrics counted too few steps (or none) at C = {uncounted} (--strict)")
            return 1
        return 1 if failures else 0
    finally:
        if server:
            server.stop()
        if temp_model:
            os.remove(temp_model)


if __name__ == "__main__":
    sys.exit(main())
