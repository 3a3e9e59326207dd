// Resets, creates a proxy through shakedown's toxiproxy-compatible API with
// the real toxiproxy-node-client library, adds a latency toxic to it, and
// prints the proxy's listen address on stdout.
//
// Usage: node latency.js API_URL UPSTREAM [LATENCY_MS]
"use strict";
const { Toxiproxy } = require("toxiproxy-node-client");

async function main() {
  const [apiUrl, upstream, latencyArg] = process.argv.slice(2);
  if (!apiUrl || !upstream) {
    throw new Error("usage: node latency.js API_URL UPSTREAM [LATENCY_MS]");
  }
  const latency = Number(latencyArg ?? "300");
  const toxiproxy = new Toxiproxy(apiUrl);
  await toxiproxy.getVersion();
  // An empty POST (no body, no content type), which the API's guard must let through.
  await toxiproxy.reset();
  const proxy = await toxiproxy.createProxy({ name: "echo", listen: "127.0.0.1:0", upstream });
  const toxic = await proxy.addToxic({
    name: "slow",
    type: "latency",
    stream: "downstream",
    toxicity: 1,
    attributes: { latency, jitter: 0 },
  });
  // Read back both through the library, so its parsing of our answers is exercised too.
  const fetched = await toxiproxy.get("echo");
  const again = await fetched.getToxic(toxic.name);
  if (again.attributes.latency !== latency) {
    throw new Error(`toxic read back with latency ${again.attributes.latency}, wanted ${latency}`);
  }
  process.stdout.write(`${fetched.listen}\n`);
}

main().catch((err) => {
  process.stderr.write(`latency.js: ${err.stack || err}\n`);
  process.exit(1);
});
