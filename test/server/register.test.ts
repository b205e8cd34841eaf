import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";

const REPO_ROOT = path.resolve(__dirname, "../..");
const REGISTER = path.join(REPO_ROOT, "bin", "register.js");

/** Runs `node -r bin/register.js <file>` in a fresh process. */
function runTs(file: string): { status: number | null; stdout: string; stderr: string } {
  const child = spawnSync(process.execPath, ["-r", REGISTER, file], { cwd: REPO_ROOT, encoding: "utf8" });
  return { status: child.status, stdout: child.stdout, stderr: child.stderr };
}

describe("bin/register.js (TypeScript loader of the CLI, server and benchmarks)", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-register-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("runs the sources without loading node:repl or node:domain", () => {
    const file = path.join(dir, "loads.ts");
    writeFileSync(
      file,
      `import { toAtomic } from ${JSON.stringify(path.join(REPO_ROOT, "src", "protocol", "price"))};
       import { createPaymentServer } from ${JSON.stringify(path.join(REPO_ROOT, "src", "server", "app"))};
       const loaded: string[] = process.moduleLoadList.filter((m: string) => /\\b(domain|repl)\\b/.test(m));
       process.stdout.write(JSON.stringify({ atomic: toAtomic("$0.001", 6).toString(), app: typeof createPaymentServer, loaded }));`,
    );
    const { status, stdout, stderr } = runTs(file);
    expect(stderr).to.equal("");
    expect(status).to.equal(0);
    expect(JSON.parse(stdout)).to.deep.equal({ atomic: "1000", app: "function", loaded: [] });
  });

  it("reports errors at their line in the .ts source", () => {
    const file = path.join(dir, "throws.ts");
    // The import makes the emitted JavaScript longer than the source (interop helpers), and the
    // types are erased: without the source map the line would be wrong.
    writeFileSync(
      file,
      [
        `import path from "node:path";`,
        `interface Shape {`,
        `  readonly sides: number;`,
        `}`,
        `export function fail(shape: Shape): never {`,
        `  throw new Error(\`\${path.sep}\${shape.sides}\`);`,
        `}`,
        `fail({ sides: 3 });`,
      ].join("\n"),
    );
    const { status, stderr } = runTs(file);
    expect(status).to.equal(1);
    expect(stderr).to.include(`at fail (${file}:6:`);
    expect(stderr).to.include(`at Object.<anonymous> (${file}:8:`);
  });
});
