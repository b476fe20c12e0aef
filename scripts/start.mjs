#!/usr/bin/env node
// `npm start`: installs what is missing, builds the demo when its sources changed, then runs the signalling server
// (port 8787 on 127.0.0.1 unless PORT, --port or --host say otherwise) serving the demo at `/`. Every argument goes to
// the server: `npm start -- --redis redis://127.0.0.1:6379` runs it as one process of a service on Redis (README).
// Plain JavaScript with no dependencies, because it must run before `npm ci` has.
import { spawnSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

function newest(path) {
  if (!existsSync(path)) return 0;
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let latest = stat.mtimeMs;
  for (const entry of readdirSync(path)) latest = Math.max(latest, newest(join(path, entry)));
  return latest;
}

if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
  console.log('dynamesh: installing dependencies (npm ci)…');
  run(npm, ['ci', '--no-audit', '--no-fund']);
}

const built = join(root, 'dist', 'index.html');
const sources = ['demo', 'client', 'worker', 'signaling/events.ts', 'vite.config.ts'].map((p) => newest(join(root, p)));
if (!existsSync(built) || Math.max(...sources) > statSync(built).mtimeMs) {
  console.log('dynamesh: building the demo (vite build)…');
  run(npm, ['exec', '--', 'vite', 'build', '--logLevel', 'warn']);
}

const server = spawn(process.execPath, ['--import', 'tsx', 'signaling/cli.ts', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.kill(signal));
server.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 0 : 1)));
