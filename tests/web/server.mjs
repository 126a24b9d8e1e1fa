// A static file server for the browser tests: named folders under URL prefixes, the headers a page with
// SharedArrayBuffer would need (COOP/COEP, as `wgllm serve` sends), and a log of every request so that a
// test can tell whether the page fetched a model.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm', '.json': 'application/json', '.css': 'text/css', '.ts': 'text/plain',
};

// routes: {'/pkg/': '/abs/dir', ...}. Returns {url, log, close()}.
export async function serve(routes) {
  const log = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    log.push({method: req.method, path: url.pathname});
    const prefix = Object.keys(routes).find((p) => url.pathname.startsWith(p));
    const rel = prefix && decodeURIComponent(url.pathname.slice(prefix.length));
    const file = prefix && path.resolve(routes[prefix], rel || 'index.html');
    if (!file || !file.startsWith(path.resolve(routes[prefix])) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, {'content-type': 'text/plain'});
      res.end('not found');
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
      'content-length': fs.statSync(file).size,
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cache-control': 'no-store',
    });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    log,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
