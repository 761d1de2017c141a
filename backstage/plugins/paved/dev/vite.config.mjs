// Builds the browser test's page (dev/index.html) into dist-page/. esbuild compiles the JSX
// (no @vitejs/plugin-react: it needs Vite 8, which does not install here).
import { fileURLToPath } from 'node:url';

export default {
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  esbuild: { jsx: 'automatic' },
  logLevel: 'warn',
  // Some Backstage and Material UI modules read process.env.NODE_ENV and global.
  define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis' },
  build: {
    outDir: fileURLToPath(new URL('../dist-page', import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 8000,
    sourcemap: false,
    rollupOptions: {
      // Material UI's "use client" lines mean nothing outside React Server Components.
      onwarn(w, warn) {
        if (w.code !== 'MODULE_LEVEL_DIRECTIVE' && w.code !== 'INVALID_ANNOTATION') warn(w);
      },
    },
  },
};
