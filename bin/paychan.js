#!/usr/bin/env node
"use strict";

const fs = require("node:fs");
const path = require("node:path");

// In a checkout of the repository the CLI runs the TypeScript sources (register.js transpiles each
// file as it is loaded; type checking is `npm run lint`), so what runs is always what was just
// edited. The installed package ships no sources: there it runs the compiled JavaScript in dist/,
// which needs only the package's production dependencies.
const sources = path.join(__dirname, "..", "src", "cli", "index.ts");
if (fs.existsSync(sources)) {
  require("./register.js");
  require(sources).main(process.argv.slice(2));
} else {
  require("../dist/cli/index.js").main(process.argv.slice(2));
}
