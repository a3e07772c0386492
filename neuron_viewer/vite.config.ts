/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The activation server serves dist/ at / and the API at /api/v1. In development, `npm run dev`
// proxies /api to a running `mechscope serve` (MECHSCOPE_URL, default http://127.0.0.1:8000).
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: { "/api": process.env.MECHSCOPE_URL ?? "http://127.0.0.1:8000" },
  },
  test: {
    environment: "happy-dom",
    globals: true,
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
