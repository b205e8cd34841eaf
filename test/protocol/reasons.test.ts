import { expect } from "chai";
import { readFileSync } from "node:fs";
import path from "node:path";
import { REASONS, isReasonCode, statusOf, type ReasonCode } from "../../src/protocol/reasons";
import { RELAY_ERRORS, type RelayErrorCode } from "../../src/protocol/relayErrors";

const ERRORS_MD = path.join(__dirname, "..", "..", "docs", "errors.md");

interface Row {
  readonly code: string;
  readonly status: number;
  readonly meaning: string;
  readonly fix: string;
}

/**
 * The rows of the first markdown table in docs/errors.md whose header starts with "code", after
 * the heading `after` when given.
 */
function parseTable(markdown: string, after?: string): Row[] {
  const lines = markdown.split("\n").map((line) => line.trim());
  const from = after === undefined ? 0 : lines.indexOf(after);
  if (from < 0) throw new Error(`docs/errors.md has no heading "${after}"`);
  const start = lines.findIndex((line, i) => i > from && /^\|\s*code\s*\|/.test(line));
  if (start < 0) throw new Error("docs/errors.md has no table with a code column");
  const header = splitRow(lines[start]);
  expect(header).to.deep.equal(["code", "HTTP status", "meaning", "how to fix (client-side)"]);
  expect(lines[start + 1]).to.match(/^\|(\s*-+\s*\|)+$/);
  const rows: Row[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    const cells = splitRow(line);
    expect(cells, line).to.have.length(4);
    const code = /^`([a-z_]+)`$/.exec(cells[0]);
    if (!code) throw new Error(`code cell must be one backquoted code: ${cells[0]}`);
    rows.push({ code: code[1], status: Number(cells[1]), meaning: cells[2], fix: cells[3] });
  }
  return rows;
}

/** Splits a table row on pipes that are not escaped as "\|". */
function splitRow(line: string): string[] {
  return line
    .replace(/^\|/, "")
    .replace(/\|$/, "")
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim());
}

describe("reason codes", () => {
  const rows = parseTable(readFileSync(ERRORS_MD, "utf8"));
  const relayRows = parseTable(readFileSync(ERRORS_MD, "utf8"), "## Relay errors");

  it("docs/errors.md has exactly one row per REASONS code, with its HTTP status", () => {
    const documented = rows.map((r) => r.code);
    expect(new Set(documented).size, "duplicate rows").to.equal(documented.length);
    expect(documented).to.have.members(Object.keys(REASONS));
    for (const row of rows) {
      expect(isReasonCode(row.code), row.code).to.equal(true);
      expect(row.status, row.code).to.equal(REASONS[row.code as ReasonCode]);
    }
  });

  it("every row explains the meaning and a client-side fix", () => {
    for (const row of rows) {
      expect(row.meaning.length, `${row.code} meaning`).to.be.greaterThan(20);
      expect(row.fix.length, `${row.code} fix`).to.be.greaterThan(10);
    }
  });

  it("maps every payment verdict to 402 (store_unavailable, settlement_unavailable alone to 503, unknown_stream to 404) and recognizes only known codes", () => {
    const unavailable: readonly ReasonCode[] = ["store_unavailable", "settlement_unavailable"];
    for (const code of Object.keys(REASONS) as ReasonCode[]) {
      expect(statusOf(code), code).to.equal(unavailable.includes(code) ? 503 : code === "unknown_stream" ? 404 : 402);
      expect(isReasonCode(code)).to.equal(true);
    }
    for (const value of ["", "toString", "__proto__", "hasOwnProperty", "MALFORMED_HEADER", 402, null, undefined]) {
      expect(isReasonCode(value), String(value)).to.equal(false);
    }
  });

  it("the relay section has exactly one row per RELAY_ERRORS code, with its HTTP status, meaning and fix", () => {
    const documented = relayRows.map((r) => r.code);
    expect(new Set(documented).size, "duplicate rows").to.equal(documented.length);
    expect(documented).to.have.members(Object.keys(RELAY_ERRORS));
    for (const row of relayRows) {
      const { status, fix } = RELAY_ERRORS[row.code as RelayErrorCode];
      expect(row.status, row.code).to.equal(status);
      expect(row.meaning.length, `${row.code} meaning`).to.be.greaterThan(20);
      expect(row.fix.length, `${row.code} fix`).to.be.greaterThan(10);
      expect(fix.length, `${row.code} fix sent by the relay`).to.be.greaterThan(10);
      expect([400, 413, 422, 429, 500, 502, 503, 504], row.code).to.include(status);
    }
  });
});
