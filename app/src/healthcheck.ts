// Container health check: exit 0 only if GET /healthz on this container answers 200 within 2 s.
import { request } from "node:http";

const TIMEOUT_MS = 2000;
const port = Number(process.env.PORT ?? "3000");

const req = request({ host: "127.0.0.1", port, path: "/healthz", method: "GET", timeout: TIMEOUT_MS }, (res) => {
  res.resume();
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on("timeout", () => {
  req.destroy();
  process.exit(1);
});
req.on("error", () => process.exit(1));
req.end();
