/**
 * The benches' HTTP client: node:http on a keep-alive agent. Global fetch (undici's WHATWG layer)
 * cost about twice the CPU per 150 KiB post, charged to the same process as the server under test
 * (bench/http.ts runs clients and server together); a real deployment's clients run elsewhere.
 */
import http from "node:http";

/** One keep-alive agent per bench run, with a socket per concurrent client. */
export function keepAliveAgent(clients: number): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: clients });
}

/** POSTs `body` as JSON with a bearer token; resolves to the status code once the answer is read. */
export function postJson(agent: http.Agent, url: string, token: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: "POST",
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        },
      },
      (res) => {
        res.on("data", () => {});
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}
