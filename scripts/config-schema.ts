import { writeFileSync } from "node:fs";
import path from "node:path";
import prettier from "prettier";
import { configJsonSchema } from "../src/shared/config";

/**
 * Writes paychan.config.schema.json, the JSON Schema of paychan.config.json, from the zod schema
 * that validates the file (src/shared/config.ts):
 *
 *   npm run build:schema
 *
 * Run it after changing the schema; test/shared/configSchema.test.ts fails while the committed
 * file differs from what this writes. Editors read the file through the config's `$schema` key.
 */

const SCHEMA_FILE = path.join(__dirname, "..", "paychan.config.schema.json");

async function main(): Promise<void> {
  // Formatted as `npm run lint` expects every JSON file of the repository to be.
  const options = await prettier.resolveConfig(SCHEMA_FILE);
  const text = await prettier.format(JSON.stringify(configJsonSchema()), { ...options, filepath: SCHEMA_FILE });
  writeFileSync(SCHEMA_FILE, text);
  process.stdout.write(`wrote ${path.relative(process.cwd(), SCHEMA_FILE)}\n`);
}

void main().catch((error: unknown) => {
  process.stderr.write(`config-schema: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
