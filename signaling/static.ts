/**
 * Serves the built demo from a directory, or a short page saying it is not built. Only GET and HEAD, only files
 * under the root (no traversal), no directory listings. Checked per request, so a demo built after the server
 * started is served without a restart.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
};

/** The page served at `/` when there is no built demo. */
export const NOT_BUILT_PAGE = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>dynamesh signalling server</title>
<h1>dynamesh signalling server</h1>
<p>The signalling server is running, but the demo is not built. Run <code>npm start</code> (which builds it) or build
it yourself and restart the server with <code>--static &lt;dir&gt;</code>.</p>
<p>Health: <a href="/healthz">/healthz</a> · Metrics: <a href="/metrics">/metrics</a></p>
</html>
`;

/** Answers `request` from the files under `root`, or with {@link NOT_BUILT_PAGE} when `root` has no `index.html`. */
export async function serveStatic(request: IncomingMessage, response: ServerResponse, root: string | undefined) {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    return send(response, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { Allow: 'GET, HEAD' });
  }
  let pathname: string;
  try {
    pathname = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
  } catch {
    return send(response, 400, 'text/plain; charset=utf-8', 'bad request\n');
  }
  if (pathname.includes('\0')) return send(response, 400, 'text/plain; charset=utf-8', 'bad request\n');
  const base = root === undefined ? undefined : resolve(root);
  if (base === undefined || !(await isFile(join(base, 'index.html')))) {
    if (pathname === '/' || pathname === '/index.html') {
      return send(response, 200, CONTENT_TYPES['.html'], NOT_BUILT_PAGE, {}, request.method === 'HEAD');
    }
    return send(response, 404, 'text/plain; charset=utf-8', 'not found\n');
  }
  let file = resolve(base, `.${pathname}`);
  if (file !== base && !file.startsWith(base + sep))
    return send(response, 404, 'text/plain; charset=utf-8', 'not found\n');
  let info = await stat(file).catch(() => null);
  if (info?.isDirectory() === true) {
    file = join(file, 'index.html');
    info = await stat(file).catch(() => null);
  }
  if (info === null || !info.isFile()) return send(response, 404, 'text/plain; charset=utf-8', 'not found\n');
  response.writeHead(200, {
    'Content-Type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
    'Content-Length': info.size,
    // Vite puts content-hashed files under assets/; everything else may change with the next build.
    'Cache-Control': pathname.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  });
  if (request.method === 'HEAD') return void response.end();
  const stream = createReadStream(file);
  stream.on('error', () => response.destroy());
  stream.pipe(response);
}

function send(
  response: ServerResponse,
  status: number,
  contentType: string | undefined,
  body: string,
  headers: Record<string, string> = {},
  headOnly = false,
): void {
  response.writeHead(status, {
    'Content-Type': contentType ?? 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  response.end(headOnly ? undefined : body);
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isFile() === true;
}
