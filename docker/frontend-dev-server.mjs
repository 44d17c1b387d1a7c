// The Vite dev server on a port it shares: in the dev stack the frontend runs in the port
// holder's network namespace, and a new container binds the same port beside the old one
// (SO_REUSEPORT, which Vite's own listen does not set), so a swap loses no request. Vite
// runs in middleware mode on this server, its HMR WebSocket too; vite.config.ts (the proxy
// to the backend) applies as with `vite`.
import { createServer as createHttpServer } from "node:http";
import { createServer } from "vite";

const host = process.env.JARVIS_FRONTEND_HOST || "0.0.0.0";
const port = Number(process.env.JARVIS_FRONTEND_PORT) || 5173;
const http = createHttpServer();
const vite = await createServer({
  appType: "spa",
  // HMR's WebSocket on this server (Vite 8's `server.ws.server`), so on the page's port.
  server: { middlewareMode: true, ws: { server: http } },
  // Its own optimized-deps cache: during a swap two servers run, and the shared
  // node_modules/.vite of one must not be rewritten under the other.
  cacheDir: "/tmp/vite",
});
http.on("request", vite.middlewares);
http.on("error", (e) => {
  console.error(`[jarvis-frontend-dev] cannot serve yet: cannot listen on ${host}:${port}: ${e.message}`);
  process.exit(1);
});
http.listen({ host, port, reusePort: true }, () => {
  // The line a swap waits for (xtask's SERVING_LINE).
  console.log(`[jarvis-frontend-dev] vite listening on http://${host}:${port}`);
});

// A stop closes the listener (what is queued moves to the next container), lets what was
// accepted finish, and ends within the engine's grace.
function stop() {
  http.close(() => process.exit(0));
  http.closeIdleConnections();
  vite.close();
  setTimeout(() => process.exit(0), 3000).unref();
}
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
