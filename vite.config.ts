import { defineConfig } from 'vite';

// The demo page: `vite build` writes it to dist/, which the signalling server serves at `/`.
export default defineConfig({
  root: 'demo',
  base: './',
  build: { outDir: '../dist', emptyOutDir: true, target: 'es2022' },
  worker: { format: 'es' },
  server: { host: '127.0.0.1' },
});
