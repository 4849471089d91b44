/// <reference types="vitest/config" />
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

// The Tauri shell loads ui/dist from disk under CSP `default-src 'self'`:
// everything is bundled, nothing is inlined (no inline <script>, no data: fonts).
export default defineConfig({
  root,
  base: "./",
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  test: {
    root,
    environment: "jsdom",
    include: ["tests/**/*.test.ts"],
    setupFiles: ["tests/setup.ts"],
    pool: "threads",
    maxWorkers: 2,
    // Bounds on a hang only (a busy machine must not fail a test); every wait polls
    // for what it expects (see tests/setup.ts for vi.waitFor's).
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
