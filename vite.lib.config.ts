import { defineConfig, type Plugin } from 'vite';

/**
 * The library build (`vite build -c vite.lib.config.ts`): `dist-lib/index.js` (ESM, what `import 'dynamesh'` loads)
 * and `dist-lib/worker.js` (the node's module worker), both self-contained.
 *
 * Dependencies are bundled, not left external. simple-peer ships CommonJS (its prebuilt bundle), which an app's Vite
 * dev server only converts when its optimizer finds it; and the worker file is fetched by URL, so its bare imports
 * would reach the optimizer only after the page had started, forcing a re-optimisation and a reload. With nothing
 * external, both files run as they are, in a consumer's dev server and in its build, with no configuration.
 *
 * The worker is bundled by Vite's own worker pipeline and then referenced as `new URL('./worker.js',
 * import.meta.url)`: the one form that a consuming Vite recognises, both when it pre-bundles `dynamesh` (it points
 * the URL back into `node_modules`) and when it builds the app (it bundles the worker and emits it with the app).
 */
const WORKER_FILE = 'worker.js';

/**
 * With a relative base, Vite writes the worker reference as
 * `new URL(/* @vite-ignore *\/ new URL("worker.js", import.meta.url).href, "" + import.meta.url)`, which keeps a
 * consuming bundler from seeing it; this restores the plain form. Failing the build when the shape changes (another
 * Vite) beats shipping a library whose worker a consumer's build silently leaves out.
 */
function relativeWorkerUrl(): Plugin {
  const file = WORKER_FILE.replace('.', '\\.');
  const emitted = new RegExp(
    String.raw`new URL\(\s*(?:/\*\s*@vite-ignore\s*\*/\s*)?new URL\(\s*(["'])(?:\./)?${file}\1\s*,\s*import\.meta\.url\s*\)\.href\s*,\s*(["'])\2\s*\+\s*import\.meta\.url\s*\)`,
    'g',
  );
  return {
    name: 'dynamesh:relative-worker-url',
    apply: 'build',
    renderChunk(code, chunk) {
      if (chunk.fileName !== 'index.js') return null;
      let count = 0;
      const out = code.replace(emitted, () => {
        count += 1;
        return `new URL('./${WORKER_FILE}', import.meta.url)`;
      });
      if (count !== 1) this.error(`expected one worker URL in ${chunk.fileName}, found ${count}`);
      return { code: out, map: null };
    },
  };
}

export default defineConfig({
  // Relative, so nothing in the output names a path of this repository or a server root.
  base: './',
  publicDir: false,
  plugins: [relativeWorkerUrl()],
  build: {
    outDir: 'dist-lib',
    emptyOutDir: true,
    target: 'es2022',
    // A library ships readable code: the app's build minifies it along with everything else.
    minify: false,
    sourcemap: false,
    lib: { entry: 'client/index.ts', formats: ['es'], fileName: () => 'index.js' },
  },
  worker: {
    format: 'es',
    rolldownOptions: { output: { entryFileNames: WORKER_FILE } },
  },
});
