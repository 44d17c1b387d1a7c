import { defineConfig } from "vite";

// No @types/node dependency just for a few environment lookups.
declare const process: { env: Record<string, string | undefined> };

// The backend address differs between a native run and the dev container, hence the env var.
const backend = process.env.JARVIS_BACKEND_URL || "http://127.0.0.1:8000";

export default defineConfig({
  server: {
    host: process.env.JARVIS_FRONTEND_HOST || "127.0.0.1",
    // `cargo xtask dev-local` passes the project's frontend port (JARVIS_FRONTEND_PORT).
    port: Number(process.env.JARVIS_FRONTEND_PORT) || 5173,
    strictPort: true,
    proxy: {
      "/api": backend,
      "/health": backend,
    },
  },
});
