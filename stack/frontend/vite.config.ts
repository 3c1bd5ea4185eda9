import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// In development the Vite server plays the part nginx plays in production:
// it forwards /api/* to the API with the /api prefix stripped.
const apiTarget = process.env.IRIS_API_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      "/api": {
        target: apiTarget,
        changeOrigin: true,
        rewrite: (path) => path.replace(/^\/api/, ""),
      },
    },
  },
  build: {
    // The nginx config gives everything under /assets/ a year-long immutable cache,
    // which is only safe because Vite puts a content hash in every file name there.
    assetsDir: "assets",
    sourcemap: false,
  },
  test: {
    environment: "jsdom",
    setupFiles: ["./src/test-setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
