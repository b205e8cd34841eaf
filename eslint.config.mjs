import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * Layers run one way: protocol → store, chain → shared (config, logging) → the roles (server,
 * settler, client, browser) → cli. A folder may import only the layers below it, and a role never
 * imports another role. browser (the paywall page's script) runs in a web page: it imports only
 * protocol, and nothing imports it (the server serves its bundle as a file). Each entry names what
 * a folder must not import.
 */
const LAYERS = {
  protocol: ["store", "chain", "shared", "server", "settler", "client", "browser", "cli"],
  store: ["chain", "shared", "server", "settler", "client", "browser", "cli"],
  chain: ["store", "shared", "server", "settler", "client", "browser", "cli"],
  shared: ["server", "settler", "client", "browser", "cli"],
  server: ["settler", "client", "browser", "cli"],
  "server/x402": ["settler", "client", "browser", "cli"],
  "server/mcp": ["settler", "client", "browser", "cli"],
  settler: ["server", "client", "browser", "cli"],
  client: ["store", "server", "settler", "browser", "cli"],
  "client/x402": ["store", "server", "settler", "browser", "cli"],
  "client/mcp": ["store", "server", "settler", "browser", "cli"],
  // The paychan/mcp entry: re-exports the server's and the client's MCP parts, side by side.
  mcp: ["settler", "browser", "cli"],
  browser: ["store", "chain", "shared", "server", "settler", "client", "cli"],
  cli: ["browser"],
};

// A nested folder (server/x402, client/x402) reaches src/ through one more "../"; its entry comes
// after its parent's, so its rule is the one that applies to its files.
const layerRules = Object.entries(LAYERS).map(([folder, forbidden]) => ({
  files: [`src/${folder}/**/*.ts`],
  rules: {
    "no-restricted-imports": [
      "error",
      {
        patterns: [
          {
            regex: `^(\\.\\./){${folder.split("/").length}}(${forbidden.join("|")})(/|$)`,
            message: `src/${folder} may not import ${forbidden.join(", ")} (layers: protocol → store, chain → shared → server, settler, client, browser → cli).`,
          },
        ],
      },
    ],
  },
}));

export default tseslint.config(
  {
    ignores: ["node_modules/", "artifacts/", "cache/", "typechain-types/", "coverage/", "deployments/", "dist/"],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "error",
    },
  },
  {
    files: ["**/*.js", "**/*.cjs"],
    languageOptions: {
      sourceType: "commonjs",
      globals: {
        require: "readonly",
        module: "writable",
        process: "readonly",
        __dirname: "readonly",
        console: "readonly",
      },
    },
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
  {
    files: ["**/*.mjs"],
    languageOptions: {
      sourceType: "module",
      globals: { process: "readonly", console: "readonly", fetch: "readonly" },
    },
  },
  ...layerRules,
);
