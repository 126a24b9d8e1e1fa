// Starts `wgllm serve` (WGLLM_BINARY, else build/wgllm) on a free port of 127.0.0.1 and stops it again.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const binary = process.env.WGLLM_BINARY || path.join(repoRoot, "build/wgllm");

export async function startServer(args = [], env = {}) {
  const child = spawn(binary, ["serve", "--port", "0", ...args], {
    stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env },
  });
  let log = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`wgllm serve did not start within 60 s:\n${log}`)), 60000);
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const m = log.match(/listening on (http:\/\/[\d.]+:\d+)\//);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`wgllm serve exited with ${code}:\n${log}`));
    });
  });
  return {
    url,
    pid: child.pid,
    exited: () => child.exitCode ?? child.signalCode,  // null while it runs
    log: () => log,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
      child.kill("SIGTERM");
      return exited;
    },
  };
}
