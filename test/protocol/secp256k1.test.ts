import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";

const REPO_ROOT = path.resolve(__dirname, "../..");
const REGISTER = path.join(REPO_ROOT, "bin", "register.js");
const PROTOCOL = path.join(REPO_ROOT, "src", "protocol");

/**
 * Runs a script in a fresh process in which `secp256k1/bindings` throws on load, as it does on a
 * platform without a prebuilt binary or when the optional dependency was not installed.
 */
function runWithoutBinding(
  dir: string,
  script: string,
  env: NodeJS.ProcessEnv = {},
): { status: number | null; stdout: string; stderr: string } {
  const block = path.join(dir, "block-binding.js");
  writeFileSync(
    block,
    `const Module = require("node:module");
     const load = Module._load;
     Module._load = function (request, ...rest) {
       if (request === "secp256k1/bindings") throw new Error("No native build was found (blocked by the test)");
       return load.call(this, request, ...rest);
     };`,
  );
  const file = path.join(dir, "script.ts");
  writeFileSync(file, script);
  const child = spawnSync(process.execPath, ["-r", REGISTER, "-r", block, file], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    env: { ...process.env, PAYCHAN_SECP256K1: "", ...env },
  });
  return { status: child.status, stdout: child.stdout, stderr: child.stderr };
}

describe("secp256k1 backend selection without the native binding", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-secp256k1-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const script = `
    import { createSignerRecoverer } from ${JSON.stringify(path.join(PROTOCOL, "recoverSigner"))};
    import { ReceiptSigner } from ${JSON.stringify(path.join(PROTOCOL, "receipt"))};
    import { isNativeSecp256k1Available, SECP256K1_FALLBACK_WARNING } from ${JSON.stringify(path.join(PROTOCOL, "secp256k1"))};
    const warnings: string[] = [];
    process.on("warning", (w: Error & { code?: string }) => { if (w.code === SECP256K1_FALLBACK_WARNING) warnings.push(w.message); });
    const key = "0x${"11".repeat(32)}";
    const recoverer = createSignerRecoverer();
    const signer = new ReceiptSigner(key, 31337, "0x${"22".repeat(20)}");
    let forced = "";
    try { createSignerRecoverer({ backend: "native" }); } catch (error) { forced = String(error); }
    setImmediate(() => process.stdout.write(JSON.stringify({
      available: isNativeSecp256k1Available(), recoverer: recoverer.backend, receipts: signer.backend, warnings, forced,
    })));`;

  it("falls back to pure JS with one process warning, and refuses a forced native backend", () => {
    const { status, stdout, stderr } = runWithoutBinding(dir, script);
    expect(status, stderr).to.equal(0);
    const result = JSON.parse(stdout) as {
      available: boolean;
      recoverer: string;
      receipts: string;
      warnings: string[];
      forced: string;
    };
    expect(result.available).to.equal(false);
    expect(result.recoverer).to.equal("js");
    expect(result.receipts).to.equal("js");
    // Both users of the binding share one loader: one warning, not one per object.
    expect(result.warnings).to.have.length(1);
    expect(result.warnings[0]).to.include("pure-JS");
    expect(result.forced).to.match(/native secp256k1 backend unavailable: .*blocked by the test/);
    // The warning reaches stderr, where an operator sees it.
    expect(stderr).to.include("PAYCHAN_SECP256K1_FALLBACK");
  });

  it("stays quiet when PAYCHAN_SECP256K1=js chooses pure JS on purpose", () => {
    const { status, stdout, stderr } = runWithoutBinding(dir, script, { PAYCHAN_SECP256K1: "js" });
    expect(status, stderr).to.equal(0);
    const result = JSON.parse(stdout) as { recoverer: string; receipts: string; warnings: string[] };
    expect(result.recoverer).to.equal("js");
    expect(result.receipts).to.equal("js");
    expect(result.warnings).to.deep.equal([]);
    expect(stderr).to.equal("");
  });

  it("throws when PAYCHAN_SECP256K1=native forces a binding that is missing", () => {
    const { status, stderr } = runWithoutBinding(dir, script, { PAYCHAN_SECP256K1: "native" });
    expect(status).to.not.equal(0);
    expect(stderr).to.match(/native secp256k1 backend unavailable/);
  });
});
