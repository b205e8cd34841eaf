"use strict";

// Lets plain `node` run paychan's TypeScript sources: `node -r ./bin/register.js file.ts`.
// Each .ts file is transpiled as it is loaded (TypeScript's transpileModule with the project's
// compiler options: types stripped, no type check, which is `npm run lint`'s job), with an inline
// source map so that stack traces point into the .ts sources.
//
// Not ts-node, although it does the same for these sources: its entry point loads node:repl, and
// node:repl loads node:domain, which from then on wraps the construction and every emit of every
// EventEmitter in the process. The server emits several events per socket read and write; the
// benchmark's server children spent 40-80 µs more CPU per proxied request under ts-node.
const fs = require("node:fs");
const path = require("node:path");
const ts = require("typescript");

const TSCONFIG = path.join(__dirname, "..", "tsconfig.json");

function compilerOptions() {
  const { config, error } = ts.readConfigFile(TSCONFIG, ts.sys.readFile);
  if (error) throw new Error(`${TSCONFIG}: ${ts.flattenDiagnosticMessageText(error.messageText, "\n")}`);
  const { options } = ts.convertCompilerOptionsFromJson(config.compilerOptions, path.dirname(TSCONFIG));
  // No outDir: the source map then names the .ts file next to the code it maps (with tsconfig's
  // outDir, it would name a path relative to that directory, wrong for files outside the project).
  return {
    ...options,
    outDir: undefined,
    sourceMap: false,
    inlineSourceMap: true,
    inlineSources: false,
    declaration: false,
  };
}

if (!require.extensions[".ts"]) {
  const options = compilerOptions();
  require.extensions[".ts"] = (module, filename) => {
    const source = fs.readFileSync(filename, "utf8");
    const { outputText } = ts.transpileModule(source, { compilerOptions: options, fileName: filename });
    module._compile(outputText, filename);
  };
  process.setSourceMapsEnabled(true);
}
