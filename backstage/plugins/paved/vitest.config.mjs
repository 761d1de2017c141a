// Component tests in jsdom. esbuild compiles the JSX (no @vitejs/plugin-react: it needs Vite 8).
export default {
  esbuild: { jsx: 'automatic' },
  test: {
    // jsdom cannot parse the @layer rules Backstage UI injects; its complaint is noise here.
    onConsoleLog: log => !log.includes('Could not parse CSS stylesheet'),
    environment: 'jsdom',
    // testing-library unmounts after each test through the global afterEach.
    globals: true,
    include: ['src/**/*.test.{ts,tsx}'],
    // Backstage's components read matchMedia and friends; jsdom lacks some of them.
    setupFiles: ['./src/setupTests.ts'],
    // Packages whose ESM imports directories (fine for bundlers, not for Node): Vite transforms them.
    server: { deps: { inline: [/material-ui-popup-state/] } },
  },
};
