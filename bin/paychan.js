#!/usr/bin/env node
"use strict";

// The paychan CLI runs the TypeScript sources directly through ts-node in transpile-only mode:
// no build step, and start-up pays only for transpiling (type checking is `npm run test:ts`).
const path = require("node:path");

require("ts-node").register({
  transpileOnly: true,
  project: path.join(__dirname, "..", "tsconfig.json"),
});

require("../src/cli/index.ts").main(process.argv.slice(2));
