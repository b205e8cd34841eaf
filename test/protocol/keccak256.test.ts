import { spawnSync } from "node:child_process";
import path from "node:path";
import { expect } from "chai";
import { keccak256, toBytes } from "viem";
import {
  KECCAK_BACKEND,
  KECCAK256_BLOCK_BYTES,
  keccak256Into,
  keccak256IntoAnyLength,
  keccak256Short,
} from "../../src/protocol/keccak256";
import { createRandom } from "../helpers/random";

const random = createRandom(0x6ecc_a256);
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
// viem's keccak256 is @noble/hashes keccak_256: an independent, streaming implementation.
const reference = (bytes: Uint8Array): string => keccak256(bytes).slice(2);

describe("keccak256 (single block)", () => {
  it("matches known vectors", () => {
    expect(hex(keccak256Short(new Uint8Array(0)))).to.equal(
      "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
    );
    expect(hex(keccak256Short(toBytes("Voucher(uint256 channelId,uint96 cumulativeAmount)")))).to.equal(
      "be6849c7243c454cfa57c6baf0ec66e2ea30a84133e4d1785cf751c28a37aec4", // VOUCHER_TYPEHASH_WORD in the contract
    );
  });

  it("matches the reference for every length 0..135 at several offsets", () => {
    for (let length = 0; length < KECCAK256_BLOCK_BYTES; length++) {
      for (let trial = 0; trial < 8; trial++) {
        const offset = trial % 5;
        const buffer = random.bytes(offset + length + 3);
        const input = buffer.slice(offset, offset + length);
        const out = new Uint8Array(40).fill(0xee);
        keccak256Into(buffer, offset, length, out, trial);
        expect(hex(out.subarray(trial, trial + 32)), `length ${length}`).to.equal(reference(input));
        // Bytes around the output are untouched.
        expect(out.subarray(0, trial).every((b) => b === 0xee)).to.equal(true);
        expect(out.subarray(trial + 32).every((b) => b === 0xee)).to.equal(true);
        expect(hex(keccak256Short(input))).to.equal(reference(input));
      }
    }
  });

  it("does not carry state between calls", () => {
    const a = random.bytes(135);
    const first = hex(keccak256Short(a));
    keccak256Short(random.bytes(100));
    expect(hex(keccak256Short(a))).to.equal(first);
  });

  it("rejects inputs that do not fit one block and out-of-range windows", () => {
    const out = new Uint8Array(32);
    expect(() => keccak256Short(new Uint8Array(136))).to.throw(RangeError);
    expect(() => keccak256Into(new Uint8Array(10), 5, 6, out, 0)).to.throw(RangeError);
    expect(() => keccak256Into(new Uint8Array(10), -1, 2, out, 0)).to.throw(RangeError);
    expect(() => keccak256Into(new Uint8Array(10), 0, 10, out, 1)).to.throw(RangeError);
  });
});

describe("keccak256 (any length)", () => {
  it("matches the reference for every length 0..700 (several blocks, every boundary) at several offsets", () => {
    for (let length = 0; length <= 700; length++) {
      const offset = length % 7;
      const buffer = random.bytes(offset + length + 5);
      const input = buffer.slice(offset, offset + length);
      const out = new Uint8Array(36).fill(0xee);
      keccak256IntoAnyLength(buffer, offset, length, out, 2);
      expect(hex(out.subarray(2, 34)), `length ${length}`).to.equal(reference(input));
      expect([out[0], out[1], out[34], out[35]]).to.deep.equal([0xee, 0xee, 0xee, 0xee]);
    }
  });

  it("agrees with the single-block function and does not carry state between calls", () => {
    const a = random.bytes(224);
    const first = new Uint8Array(32);
    keccak256IntoAnyLength(a, 0, 224, first, 0);
    keccak256Short(random.bytes(100));
    const again = new Uint8Array(32);
    keccak256IntoAnyLength(a, 0, 224, again, 0);
    expect(hex(again)).to.equal(hex(first));
    const short = random.bytes(135);
    keccak256IntoAnyLength(short, 0, 135, again, 0);
    expect(hex(again)).to.equal(hex(keccak256Short(short)));
  });

  it("rejects out-of-range windows", () => {
    const out = new Uint8Array(32);
    expect(() => keccak256IntoAnyLength(new Uint8Array(300), 5, 296, out, 0)).to.throw(RangeError);
    expect(() => keccak256IntoAnyLength(new Uint8Array(10), -1, 2, out, 0)).to.throw(RangeError);
    expect(() => keccak256IntoAnyLength(new Uint8Array(300), 0, 300, out, 1)).to.throw(RangeError);
  });
});

describe("keccak256 permutation backends", () => {
  it("runs the WebAssembly permutation here", () => {
    expect(KECCAK_BACKEND).to.equal("wasm");
  });

  it("gives the same hashes with the JavaScript fallback (PAYCHAN_KECCAK=js, in a child process)", () => {
    const inputs = [0, 1, 31, 32, 64, 96, 135, 136, 137, 300].map((length) => hex(random.bytes(length)));
    const child = spawnSync(
      process.execPath,
      [
        "-r",
        "./bin/register.js",
        "-e",
        `const k = require("./src/protocol/keccak256");
         const out = new Uint8Array(32);
         const hashes = JSON.parse(process.env.INPUTS).map((h) => {
           const bytes = Buffer.from(h, "hex");
           k.keccak256IntoAnyLength(bytes, 0, bytes.length, out, 0);
           return Buffer.from(out).toString("hex");
         });
         process.stdout.write(JSON.stringify({ backend: k.KECCAK_BACKEND, hashes }));`,
      ],
      {
        cwd: path.resolve(__dirname, "../.."),
        env: { ...process.env, PAYCHAN_KECCAK: "js", INPUTS: JSON.stringify(inputs) },
      },
    );
    expect(child.stderr.toString()).to.equal("");
    const result = JSON.parse(child.stdout.toString()) as { backend: string; hashes: string[] };
    expect(result.backend).to.equal("js");
    expect(result.hashes).to.deep.equal(inputs.map((h) => reference(Buffer.from(h, "hex"))));
  });
});
