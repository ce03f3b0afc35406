// Checks that this Node satisfies `engines.node` of .ci/node/package.json, the range its
// pinned tools need (the strictest, jsdom's); says what to install otherwise. Knows the
// forms that range uses: `^x.y.z` and `>=x.y.z`, joined by `||`.
import { readFileSync } from "node:fs";

const wanted = JSON.parse(readFileSync(new URL("node/package.json", import.meta.url)))
  .engines.node;
const version = process.versions.node.split(".").map(Number);
const parse = (text) => text.trim().split(".").map(Number);
const atLeast = (have, need) => {
  for (let i = 0; i < 3; i++) {
    if (have[i] !== need[i]) return have[i] > need[i];
  }
  return true;
};
const satisfies = (range) => {
  if (range.startsWith("^")) {
    const need = parse(range.slice(1));
    return version[0] === need[0] && atLeast(version, need);
  }
  if (range.startsWith(">=")) return atLeast(version, parse(range.slice(2)));
  throw new Error(`.ci/check-node.mjs cannot read the range ${range}`);
};
if (!wanted.split("||").some((range) => satisfies(range.trim()))) {
  console.error(
    `Node ${process.version} does not satisfy ${wanted} (engines.node in .ci/node/package.json), ` +
      "which the UI tests and the document checks need: install a Node in that range.",
  );
  process.exit(1);
}
