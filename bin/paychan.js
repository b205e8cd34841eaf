#!/usr/bin/env node
"use strict";

// The paychan CLI runs the TypeScript sources directly (no build step): register.js transpiles
// each file as it is loaded, and start-up pays only for that (type checking is `npm run lint`).
require("./register.js");

require("../src/cli/index.ts").main(process.argv.slice(2));
