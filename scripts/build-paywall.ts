import { build } from "esbuild";
import path from "node:path";

/**
 * Bundles the paywall page's script (src/browser/paywall.ts and what it imports from
 * src/protocol and viem) into one file that paychan serves itself at /.paychan/paywall.js:
 * dist/browser/paywall.js. `npm run build` runs it (scripts/build-package.ts), so the package
 * ships it; the browser test runs it before starting the server.
 */

const REPO_ROOT = path.resolve(__dirname, "..");

/** Where the bundle goes, and where the server looks for it in a source checkout. */
export const PAYWALL_BUNDLE = path.join(REPO_ROOT, "dist", "browser", "paywall.js");

/** Writes the bundle to `outFile` and returns its size in bytes. */
export async function buildPaywallScript(outFile = PAYWALL_BUNDLE): Promise<number> {
  const result = await build({
    entryPoints: [path.join(REPO_ROOT, "src", "browser", "paywall.ts")],
    outfile: outFile,
    bundle: true,
    format: "iife",
    platform: "browser",
    // Browsers with EIP-6963 wallets, BigInt, WebCrypto AES-GCM and IndexedDB durability hints.
    target: ["chrome109", "firefox115", "safari16"],
    minify: true,
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
  });
  return Object.values(result.metafile.outputs).reduce((sum, output) => sum + output.bytes, 0);
}

if (require.main === module) {
  buildPaywallScript().then(
    (bytes) => process.stdout.write(`paywall script: ${path.relative(REPO_ROOT, PAYWALL_BUNDLE)} (${bytes} bytes)\n`),
    (error: unknown) => {
      process.stderr.write(`build-paywall: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
