// Checks the documents in docs/ and the README the way a reader's tools would read them:
// every Mermaid diagram parses, and docs/asyncapi.yaml is a valid AsyncAPI 3 document.
// Run with the packages of .ci/node installed: `node .ci/check-docs.mjs`.
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(join(import.meta.dirname, 'node', 'package.json'));
const { JSDOM } = require('jsdom');
// Mermaid sanitizes labels with DOMPurify, which needs a DOM; jsdom is one without a browser.
const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import(require.resolve('mermaid'));
const { Parser } = await import(require.resolve('@asyncapi/parser'));

let failures = 0;
const fail = (message) => {
  failures += 1;
  console.error(`FAIL ${message}`);
};

const files = ['README.md', ...readdirSync('docs').filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
mermaid.initialize({ startOnLoad: false });
let diagrams = 0;
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  for (const match of text.matchAll(/^```mermaid\n([\s\S]*?)^```$/gm)) {
    const line = text.slice(0, match.index).split('\n').length;
    diagrams += 1;
    try {
      await mermaid.parse(match[1]);
    } catch (error) {
      fail(`${file}:${line}: Mermaid: ${String(error.message).split('\n').slice(0, 3).join(' ')}`);
    }
  }
}
console.log(`mermaid: ${diagrams} diagrams in ${files.length} files checked`);

const { document, diagnostics } = await new Parser().parse(readFileSync('docs/asyncapi.yaml', 'utf8'));
for (const d of diagnostics) {
  const where = `docs/asyncapi.yaml ${d.path.join('.')}`;
  // Severity 0 is an error, 1 a warning: both fail; hints and information are printed.
  if (d.severity <= 1) fail(`${where}: ${d.message}`);
  else console.log(`note ${where}: ${d.message}`);
}
if (document) {
  console.log(
    `asyncapi: ${document.channels().length} channels, ${document.operations().length} operations, ` +
      `${document.components().messages().length} messages`,
  );
} else {
  fail('docs/asyncapi.yaml did not parse');
}
if (failures > 0) {
  console.error(`${failures} problem(s) in the documents`);
  process.exit(1);
}
