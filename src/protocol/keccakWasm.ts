/**
 * Keccak-f[1600] as a WebAssembly function, assembled here at load time (no build step, no
 * binary in the repository): 64-bit lanes and native `i64.rotl` instead of the pairs of 32-bit
 * halves JavaScript needs. The permutation runs over the 200-byte state at address 0 of the
 * module's memory, lane i little-endian at bytes 8i..8i+7, which is exactly the layout of an
 * `Int32Array` view of that memory in keccak256.ts (lane i = words 2i, 2i + 1).
 *
 * Returns undefined where WebAssembly is unavailable (e.g. `node --jitless`); keccak256.ts then
 * keeps its JavaScript permutation.
 */

/** Rotation offset of lane x + 5y (the ρ step). */
const RHO = [0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14];

/** The 24 round constants (the ι step). */
const ROUND_CONSTANTS = [
  0x0000000000000001n,
  0x0000000000008082n,
  0x800000000000808an,
  0x8000000080008000n,
  0x000000000000808bn,
  0x0000000080000001n,
  0x8000000080008081n,
  0x8000000000008009n,
  0x000000000000008an,
  0x0000000000000088n,
  0x0000000080008009n,
  0x000000008000000an,
  0x000000008000808bn,
  0x800000000000008bn,
  0x8000000000008089n,
  0x8000000000008003n,
  0x8000000000008002n,
  0x8000000000000080n,
  0x000000000000800an,
  0x800000008000000an,
  0x8000000080008081n,
  0x8000000000008080n,
  0x0000000080000001n,
  0x8000000080008008n,
];

/** Where the round constants live in memory (after the 200-byte state). */
const RC_ADDRESS = 256;

// Opcodes used.
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const LOCAL_TEE = 0x22;
const I32_CONST = 0x41;
const I64_CONST = 0x42;
const I64_LOAD = 0x29;
const I64_STORE = 0x37;
const I64_AND = 0x83;
const I64_XOR = 0x85;
const I64_ROTL = 0x89;
const I32_ADD = 0x6a;
const I32_SHL = 0x74;
const I32_LT_U = 0x49;
const LOOP = 0x03;
const BR_IF = 0x0d;
const END = 0x0b;
const VOID = 0x40;

function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

/** The function body of the permutation (without its size prefix). */
function permutationBody(): number[] {
  // Locals: a0..a24 (0..24), b0..b24 (25..49), c0..c4 (50..54), d (55): i64; round (56): i32.
  const A = (i: number) => i;
  const B = (i: number) => 25 + i;
  const C = (x: number) => 50 + x;
  const D = 55;
  const ROUND = 56;
  const code: number[] = [];
  const get = (local: number) => code.push(LOCAL_GET, ...uleb(local));
  const set = (local: number) => code.push(LOCAL_SET, ...uleb(local));
  const rotl = (by: number) => {
    if (by !== 0) code.push(I64_CONST, by, I64_ROTL); // 1..63 encode as one signed-LEB byte
  };

  for (let i = 0; i < 25; i++) {
    code.push(I32_CONST, 0, I64_LOAD, 3, ...uleb(8 * i));
    set(A(i));
  }
  code.push(I32_CONST, 0);
  set(ROUND);
  code.push(LOOP, VOID);
  // θ: column parities, then each lane ^= c[x-1] ^ rotl(c[x+1], 1).
  for (let x = 0; x < 5; x++) {
    get(A(x));
    for (let y = 1; y < 5; y++) {
      get(A(x + 5 * y));
      code.push(I64_XOR);
    }
    set(C(x));
  }
  for (let x = 0; x < 5; x++) {
    get(C((x + 4) % 5));
    get(C((x + 1) % 5));
    rotl(1);
    code.push(I64_XOR);
    set(D);
    for (let y = 0; y < 5; y++) {
      get(A(x + 5 * y));
      get(D);
      code.push(I64_XOR);
      set(A(x + 5 * y));
    }
  }
  // ρ and π: b[y + 5((2x + 3y) mod 5)] = rotl(a[x + 5y], ρ).
  for (let x = 0; x < 5; x++) {
    for (let y = 0; y < 5; y++) {
      get(A(x + 5 * y));
      rotl(RHO[x + 5 * y]);
      set(B(y + 5 * ((2 * x + 3 * y) % 5)));
    }
  }
  // χ: a[x + 5y] = b[x + 5y] ^ (~b[x + 1 + 5y] & b[x + 2 + 5y]).
  for (let y = 0; y < 5; y++) {
    for (let x = 0; x < 5; x++) {
      get(B(x + 5 * y));
      get(B(((x + 1) % 5) + 5 * y));
      code.push(I64_CONST, 0x7f, I64_XOR); // ~b = b ^ -1
      get(B(((x + 2) % 5) + 5 * y));
      code.push(I64_AND, I64_XOR);
      set(A(x + 5 * y));
    }
  }
  // ι: a0 ^= RC[round].
  get(A(0));
  get(ROUND);
  code.push(I32_CONST, 3, I32_SHL, I64_LOAD, 3, ...uleb(RC_ADDRESS), I64_XOR);
  set(A(0));
  // Next round while round < 24.
  get(ROUND);
  code.push(I32_CONST, 1, I32_ADD, LOCAL_TEE, ...uleb(ROUND), I32_CONST, 24, I32_LT_U, BR_IF, 0, END);
  for (let i = 0; i < 25; i++) {
    code.push(I32_CONST, 0);
    get(A(i));
    code.push(I64_STORE, 3, ...uleb(8 * i));
  }
  code.push(END);
  // Local declarations: 56 i64, then 1 i32.
  return [2, 56, 0x7e, 1, 0x7f, ...code];
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

function moduleBytes(): Uint8Array<ArrayBuffer> {
  const body = permutationBody();
  const name = (text: string) => [text.length, ...Array.from(text, (c) => c.charCodeAt(0))];
  return Uint8Array.from([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00, // "\0asm", version 1
    ...section(1, [1, 0x60, 0, 0]), // one type: () -> ()
    ...section(3, [1, 0]), // one function of type 0
    ...section(5, [1, 0x00, 1]), // one memory, one page
    ...section(7, [2, ...name("m"), 0x02, 0, ...name("f"), 0x00, 0]), // exports m (memory), f
    ...section(10, [1, ...uleb(body.length), ...body]), // the code
  ]);
}

/** The permutation and its state view, or undefined without WebAssembly. */
export function createWasmKeccakF1600(): { state: Int32Array; permute: () => void } | undefined {
  if (typeof WebAssembly !== "object") return undefined;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()));
    const memory = instance.exports.m as WebAssembly.Memory;
    new BigUint64Array(memory.buffer, RC_ADDRESS, 24).set(ROUND_CONSTANTS);
    return { state: new Int32Array(memory.buffer, 0, 50), permute: instance.exports.f as () => void };
  } catch {
    return undefined;
  }
}
