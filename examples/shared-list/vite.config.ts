import { defineConfig } from 'vite';

// The shared-list example: `npm run example:list` serves it on 127.0.0.1:5174 from the library's sources.
export default defineConfig({
  root: 'examples/shared-list',
  worker: { format: 'es' },
  server: { host: '127.0.0.1', port: 5174, strictPort: true },
  build: { outDir: '../../dist-example', emptyOutDir: true, target: 'es2022' },
});
