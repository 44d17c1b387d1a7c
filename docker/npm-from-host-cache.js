// npm-from-host-cache.js HOST_CACHE CACHE: puts into the build's npm cache (CACHE, a cache
// mount) each package of package-lock.json that the host's npm cache (HOST_CACHE, which
// `cargo xtask setup` fills; an empty stage where the engine cannot hand it over) holds,
// by the `integrity` the lock pins: npm's cache is content-addressed, and npm checks the
// digest again when it reads the file. Only those files are copied, never the rest of a
// developer's cache. Prints how many it copied.
"use strict";
const fs = require("fs");
const path = require("path");
const [host, cache] = process.argv.slice(2);
const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
let copied = 0;
for (const pkg of Object.values(lock.packages || {})) {
  for (const one of (pkg.integrity || "").split(/\s+/).filter(Boolean)) {
    const dash = one.indexOf("-");
    const hex = Buffer.from(one.slice(dash + 1), "base64").toString("hex");
    const rel = path.join("_cacache", "content-v2", one.slice(0, dash), hex.slice(0, 2), hex.slice(2, 4), hex.slice(4));
    const from = path.join(host, rel);
    const to = path.join(cache, rel);
    if (fs.existsSync(from) && !fs.existsSync(to)) {
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(from, to + ".part");
      fs.renameSync(to + ".part", to);
      copied += 1;
    }
  }
}
console.log(`from the host's npm cache: ${copied} package(s)`);
