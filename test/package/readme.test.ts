import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { expect } from "chai";

/**
 * The README shows the examples as excerpts: a code block after `<!-- excerpt: <file> -->` must be
 * a run of consecutive lines of that file, verbatim, so what readers copy is what the package test
 * type-checks and runs (test/package/tarball.test.ts).
 */

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const MARKER = /<!-- excerpt: (\S+) -->\n```[a-z]*\n([\s\S]*?)\n```/g;

/** The marked excerpts of a Markdown file: the file each names, and its lines. */
function excerpts(markdown: string): { file: string; lines: string[] }[] {
  return [...markdown.matchAll(MARKER)].map((match) => ({ file: match[1], lines: match[2].split("\n") }));
}

/** Whether `lines` occur as consecutive lines of `text`. */
function containsLines(text: string, lines: readonly string[]): boolean {
  const all = text.split("\n");
  for (let start = 0; start + lines.length <= all.length; start++) {
    if (lines.every((line, i) => all[start + i] === line)) return true;
  }
  return false;
}

describe("README excerpts of the examples", () => {
  const readme = readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");

  it("shows the Express seller and the buyer script as excerpts of examples/", () => {
    const files = excerpts(readme).map((e) => e.file);
    expect(files).to.include.members(["examples/seller-express.cjs", "examples/buyer.mjs"]);
  });

  it("every excerpt is a verbatim run of lines of its file", () => {
    for (const { file, lines } of excerpts(readme)) {
      const text = readFileSync(path.join(REPO_ROOT, file), "utf8");
      expect(
        containsLines(text, lines),
        `README excerpt of ${file} differs from the file:\n${lines.join("\n")}`,
      ).to.equal(true);
    }
  });

  it("detects an excerpt that differs from its file", () => {
    const text = readFileSync(path.join(REPO_ROOT, "examples", "buyer.mjs"), "utf8");
    const [first] = excerpts(readme).filter((e) => e.file === "examples/buyer.mjs");
    expect(containsLines(text, first.lines)).to.equal(true);
    expect(
      containsLines(text, [...first.lines.slice(0, -1), `${first.lines[first.lines.length - 1]} // edited`]),
    ).to.equal(false);
  });

  it("no snippet in README.md or docs/ imports paychan from its sources instead of the package", () => {
    const documents = ["README.md", ...readdirSync(path.join(REPO_ROOT, "docs")).map((f) => path.join("docs", f))];
    for (const document of documents) {
      const text = readFileSync(path.join(REPO_ROOT, document), "utf8");
      expect(text, document).to.not.match(/(from |require\()["'](\.\.?\/)+src\//);
    }
  });
});
