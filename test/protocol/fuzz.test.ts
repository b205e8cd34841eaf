import { expect } from "chai";
import express from "express";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { privateKeyToAccount } from "viem/accounts";
import {
  MAX_PAYMENT_HEADER_BYTES,
  channelIdHex,
  decodeHeader,
  decodePaymentSignature,
  encodeHeader,
  encodePaymentSignature,
  type ChannelOffer,
  type PaymentRequired,
  type SettleResponse,
} from "../../src/protocol/headers";
import { REASONS, isReasonCode, type ReasonCode } from "../../src/protocol/reasons";
import { verifyReceipt } from "../../src/protocol/receipt";
import { MAX_AMOUNT } from "../../src/protocol/voucher";
import { paywall } from "../../src/server/paywall";
import {
  CHAIN_ID,
  CONTRACT,
  PAYEE_KEY,
  RECEIPT_KEY,
  channelRecord,
  harness,
  payerChannel,
  signVoucher,
  word,
} from "../helpers/memoryStore";
import { createRandom } from "../helpers/random";

/**
 * Throws ≥ 10,000 random and mutated PAYMENT-SIGNATURE headers at the real paywall over real HTTP
 * (one keep-alive agent). Every answer must be 402/503 with a documented reason code whose
 * status matches, or a 200 that is paid by a validly signed voucher; never a 500, never a dropped
 * connection, never an unpaid 200. The PRNG is seeded, so a failure replays exactly.
 */

const SEED = 0x402;
const PRICE = 1_000n;
const CH = payerChannel();
/** A second channel, unknown to the engine until the gate fetches it. */
const CH2 = payerChannel(1n);
const RECEIPT_SIGNER = privateKeyToAccount(RECEIPT_KEY).address;
/** Decode-level reasons: these must agree exactly with a local decodePaymentSignature. */
const DECODE_REASONS = new Set<ReasonCode>([
  "malformed_header",
  "header_too_large",
  "unsupported_version",
  "invalid_payload",
]);

type Kind =
  | "none"
  | "random-bytes"
  | "random-base64"
  | "truncated"
  | "oversized"
  | "json-mutation"
  | "json-text-mutation"
  | "json-bitflip"
  | "base64-bitflip"
  | "random-signature"
  | "hex-case"
  | "unknown-channel"
  | "retry"
  | "fresh"
  | "fresh-failing"
  | "boundary";

interface Case {
  readonly kind: Kind;
  readonly header: string | undefined;
  readonly path?: string;
}

interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** Characters Node's HTTP client accepts in a header value. */
function isHeaderChar(code: number): boolean {
  return code === 9 || (code >= 0x20 && code <= 0x7e) || (code >= 0x80 && code <= 0xff);
}

describe("PAYMENT-SIGNATURE fuzzing through the paywall over HTTP", function () {
  // About 8 s of requests on an idle 2-core machine (FUZZ_REPORT=1 prints the time and the
  // statuses per class); the timeout only guards against a hang on a loaded one.
  this.timeout(60_000);

  it("answers ≥ 10,000 random and mutated headers with documented refusals and never an unpaid 200", async () => {
    const { int, pick, shuffle } = createRandom(SEED);

    const failing = new Set<bigint>();
    const h = harness({
      store: { failRecordVoucher: (v) => failing.has(v.amount) },
      gate: { fetchChannel: async (id) => (id === CH2 ? channelRecord({ channelId: id }) : undefined) },
    });
    let served = 0;
    const app = express();
    app.use(paywall({ gate: h.gate, decimals: 6, routes: { "GET /paid": PRICE.toString(), "/free": null } }));
    app.get("/paid", (_req, res) => {
      served++;
      res.json({ ok: true });
    });
    app.get("/free", (_req, res) => {
      res.json({ free: true });
    });
    const server = app.listen(0, "127.0.0.1");
    await new Promise<void>((resolve) => server.once("listening", resolve));
    const { port } = server.address() as AddressInfo;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const send = (c: Case) =>
      new Promise<Reply>((resolve, reject) => {
        const req = http.request(
          {
            host: "127.0.0.1",
            port,
            path: c.path ?? "/paid",
            agent,
            headers: c.header === undefined ? {} : { "payment-signature": c.header },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (chunk: Buffer) => chunks.push(chunk));
            res.on("end", () =>
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
            );
            res.on("error", reject);
          },
        );
        req.on("error", reject);
        req.end();
      });

    try {
      const offer: ChannelOffer = h.gate.offer(PRICE, "fixed");
      const voucherHeader = (amount: bigint, signature: string, channelId = CH) =>
        encodePaymentSignature(offer, {
          channelId: channelIdHex(channelId),
          amount: amount.toString(),
          signature: signature as `0x${string}`,
        });
      const validBody = (amount: bigint, signature = signVoucher(CH, amount)) =>
        decodeHeader<Record<string, unknown>>(voucherHeader(amount, signature));

      // Vouchers known to be validly signed by the channel's signer: amount → lowercase signature.
      const valid = new Map<bigint, string>();
      const V0 = PRICE;
      const V0_SIG = signVoucher(CH, V0);
      const V0_HEADER = voucherHeader(V0, V0_SIG);
      valid.set(V0, V0_SIG.toLowerCase());
      const first = await send({ kind: "fresh", header: V0_HEADER });
      expect(first.status).to.equal(200);

      let nextFresh = 2n;
      const fresh = (): bigint => {
        const amount = nextFresh++ * PRICE;
        valid.set(amount, signVoucher(CH, amount).toLowerCase());
        return amount;
      };

      const weird: unknown[] = [
        null,
        true,
        false,
        0,
        -1,
        -0,
        1e308,
        2 ** 53 + 1,
        3.5,
        "",
        "0",
        "-1",
        "1e3",
        "0x",
        "0X1",
        "10".repeat(20),
        (MAX_AMOUNT + 1n).toString(),
        MAX_AMOUNT.toString(),
        "1000",
        " 1000",
        [],
        [1],
        {},
        { a: 1 },
        "channel",
        "eip155:84532",
        "x".repeat(1500),
        "\u0000",
        "é✓",
        "__proto__",
      ];
      const paths: string[][] = [
        ["x402Version"],
        ["accepted"],
        ["accepted", "scheme"],
        ["accepted", "network"],
        ["accepted", "asset"],
        ["accepted", "payTo"],
        ["accepted", "extra"],
        ["accepted", "extra", "contract"],
        ["payload"],
        ["payload", "channelId"],
        ["payload", "amount"],
        ["payload", "signature"],
        ["extraField"],
      ];
      const randomHex = (chars: number) =>
        Array.from({ length: chars }, () => "0123456789abcdefABCDEF"[int(22)]).join("");
      const randomValue = (original: unknown): unknown => {
        const r = int(6);
        if (r === 0 && typeof original === "string") return original.toUpperCase();
        if (r === 1 && typeof original === "string") return original.replace("0x", pick(["0X", "0x00", "", "0x0"]));
        if (r === 2) return `0x${randomHex(int(140))}`;
        if (r === 3) return int(2) ? -int(1e9) : int(1e9);
        return pick(weird);
      };
      const setPath = (body: Record<string, unknown>, path: string[], remove: boolean) => {
        let node = body as Record<string, unknown> | undefined;
        for (const key of path.slice(0, -1)) {
          const child = node?.[key];
          if (typeof child !== "object" || child === null || Array.isArray(child)) return;
          node = child as Record<string, unknown>;
        }
        if (!node) return;
        const last = path[path.length - 1];
        if (remove) delete node[last];
        else node[last] = randomValue(node[last]);
      };

      const generators: [Kind, number, () => Case][] = [
        ["none", 50, () => ({ kind: "none", header: int(2) ? undefined : pick(["", " ", "\t"]) })],
        [
          "random-bytes",
          1500,
          () => {
            const length = int(3) === 0 ? int(8) : int(3000);
            let text = "";
            while (text.length < length) {
              const code = int(256);
              if (isHeaderChar(code)) text += String.fromCharCode(code);
            }
            return { kind: "random-bytes", header: text };
          },
        ],
        [
          "random-base64",
          1500,
          () => {
            const bytes = Buffer.from(Array.from({ length: int(1600) }, () => int(256)));
            let text = bytes.toString("base64");
            if (int(3) === 0) text = text.replace(/=+$/, "");
            return { kind: "random-base64", header: text };
          },
        ],
        [
          "truncated",
          600,
          () => {
            const full = int(2) ? V0_HEADER : voucherHeader(BigInt(int(1e6)), signVoucher(CH, 7n));
            return { kind: "truncated", header: full.slice(0, int(full.length)) };
          },
        ],
        [
          "oversized",
          400,
          () => {
            const r = int(3);
            if (r === 0) {
              const length = MAX_PAYMENT_HEADER_BYTES + 1 + int(6000);
              return { kind: "oversized", header: V0_HEADER + "A".repeat(length - V0_HEADER.length) };
            }
            if (r === 1) {
              const body = validBody(V0, V0_SIG);
              body.pad = "x".repeat(6200 + int(3000));
              return { kind: "oversized", header: encodeHeader(body) };
            }
            return { kind: "oversized", header: "=".repeat(MAX_PAYMENT_HEADER_BYTES + 4 * (1 + int(10))) };
          },
        ],
        [
          "json-mutation",
          2600,
          () => {
            const body = validBody(V0, V0_SIG);
            for (let i = 0, n = 1 + int(3); i < n; i++) setPath(body, pick(paths), int(3) === 0);
            return { kind: "json-mutation", header: encodeHeader(body) };
          },
        ],
        [
          "json-text-mutation",
          600,
          () => {
            let text = JSON.stringify(validBody(V0, V0_SIG));
            const r = int(4);
            if (r === 0)
              text = text.replace(
                `"amount":"${V0}"`,
                `"amount":${pick(["1e400", "-1000", "1000", "0x3e8", "1000.0"])}`,
              );
            else if (r === 1) text = text.replace(/"signature":"0x[0-9a-f]+"/, `"signature":"0x${randomHex(130)}"`);
            else if (r === 2) {
              const at = int(text.length);
              text =
                text.slice(0, at) + pick(['"', "{", "}", ",", ":", "\\", "\\u0000", " "]) + text.slice(at + int(2));
            } else text = `${text}${pick(["", " ", "x", "}", "\n"])}`;
            return { kind: "json-text-mutation", header: Buffer.from(text, "utf8").toString("base64") };
          },
        ],
        [
          "json-bitflip",
          1000,
          () => {
            const bytes = Buffer.from(JSON.stringify(validBody(V0, V0_SIG)), "utf8");
            for (let i = 0, n = 1 + int(3); i < n; i++) bytes[int(bytes.length)] ^= 1 << int(8);
            return { kind: "json-bitflip", header: bytes.toString("base64") };
          },
        ],
        [
          "base64-bitflip",
          1000,
          () => {
            const chars = V0_HEADER.split("");
            for (let i = 0, n = 1 + int(3); i < n;) {
              const at = int(chars.length);
              const flipped = chars[at].charCodeAt(0) ^ (1 << int(8));
              if (!isHeaderChar(flipped)) continue;
              chars[at] = String.fromCharCode(flipped);
              i++;
            }
            return { kind: "base64-bitflip", header: chars.join("") };
          },
        ],
        [
          "random-signature",
          1000,
          () => {
            const amount = pick([BigInt(int(5000)), BigInt(int(2 ** 30)), 10n ** 12n, V0, PRICE * BigInt(int(300))]);
            const r = int(4);
            let sig: string;
            if (r === 0) sig = `0x${randomHex(128)}`;
            else if (r === 1) sig = `0x${randomHex(128)}${pick(["1b", "1c", "00", "01", "1d", "ff"])}`;
            else if (r === 2) sig = signVoucher(CH, amount, { key: PAYEE_KEY });
            else sig = signVoucher(CH, amount, { highS: true });
            return { kind: "random-signature", header: voucherHeader(amount, sig) };
          },
        ],
        [
          "hex-case",
          200,
          () => {
            const body = validBody(V0, V0_SIG);
            const payload = body.payload as Record<string, string>;
            const r = int(4);
            if (r === 0) payload.signature = `0x${V0_SIG.slice(2).toUpperCase()}`;
            else if (r === 1) payload.channelId = `0x${CH.toString(16).toUpperCase()}`;
            else if (r === 2) payload.channelId = `0x00${CH.toString(16)}`;
            else payload.channelId = `0X${CH.toString(16)}`;
            return { kind: "hex-case", header: encodeHeader(body) };
          },
        ],
        [
          "unknown-channel",
          200,
          () => {
            const id = int(4) === 0 ? CH2 : BigInt(`0x${randomHex(int(46) + 1)}`);
            return { kind: "unknown-channel", header: voucherHeader(PRICE, `0x${word(1n)}${word(1n)}1b`, id) };
          },
        ],
        ["retry", 200, () => ({ kind: "retry", header: V0_HEADER, path: "/paid" })],
        [
          "fresh",
          100,
          () => {
            const amount = fresh();
            return { kind: "fresh", header: voucherHeader(amount, valid.get(amount)!) };
          },
        ],
        [
          "fresh-failing",
          30,
          () => {
            const amount = fresh();
            failing.add(amount);
            return { kind: "fresh-failing", header: voucherHeader(amount, valid.get(amount)!) };
          },
        ],
        [
          "boundary",
          4,
          () => {
            // A valid voucher padded to exactly the cap is accepted; one base64 quantum more is not.
            const amount = fresh();
            const body = validBody(amount);
            body.pad = "";
            const base = encodeHeader(body).length;
            body.pad = "x".repeat(((MAX_PAYMENT_HEADER_BYTES - base) / 4) * 3);
            const header = encodeHeader(body);
            expect(header.length).to.equal(MAX_PAYMENT_HEADER_BYTES);
            return { kind: "boundary", header };
          },
        ],
      ];
      const cases: Case[] = [];
      for (const [, count, make] of generators) for (let i = 0; i < count; i++) cases.push(make());
      shuffle(cases);
      expect(cases.length).to.be.at.least(10_000);

      const byKind = new Map<Kind, Map<number, number>>();
      const failures: string[] = [];
      const paidReplies: SettleResponse[] = [];
      let freshPaid = 0;
      const check = (c: Case, reply: Reply): void => {
        const statuses = byKind.get(c.kind) ?? new Map<number, number>();
        statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
        byKind.set(c.kind, statuses);
        const sent = c.header?.replace(/^[ \t]+|[ \t]+$/g, "");
        const local = sent === undefined || sent === "" ? undefined : decodePaymentSignature(sent);
        const fail = (why: string): void =>
          void failures.push(`${c.kind} ${reply.status} ${why} :: ${JSON.stringify(c.header)}`);
        if (reply.status === 200) {
          const header = reply.headers["payment-response"];
          if (typeof header !== "string") return fail("200 without PAYMENT-RESPONSE");
          const response = decodeHeader<SettleResponse>(header);
          paidReplies.push(response);
          if (!local?.ok) return fail("200 for a header that does not decode");
          const v = local.voucher;
          if (v.channelId !== CH || valid.get(v.amount) !== v.signature.toLowerCase()) {
            return fail("200 for a voucher that is not validly signed");
          }
          if (response.extra.voucherAmount !== v.amount.toString())
            return fail("PAYMENT-RESPONSE names another amount");
          if (c.kind === "fresh" || c.kind === "boundary") freshPaid++;
          return;
        }
        if (![402, 503].includes(reply.status)) return fail("unexpected status");
        let body: PaymentRequired;
        try {
          body = JSON.parse(reply.body) as PaymentRequired;
        } catch {
          return fail("body is not JSON");
        }
        const required = reply.headers["payment-required"];
        if (typeof required !== "string") return fail("no PAYMENT-REQUIRED header");
        if (JSON.stringify(decodeHeader(required)) !== JSON.stringify(body)) return fail("header and body differ");
        const reason = body.error ?? "payment_required";
        if (!isReasonCode(reason)) return fail(`undocumented reason ${String(reason)}`);
        if (REASONS[reason] !== reply.status) return fail(`status does not match ${reason}`);
        if (local === undefined) {
          if (reason !== "payment_required") return fail(`expected payment_required, got ${reason}`);
        } else if (!local.ok) {
          if (reason !== local.reason) return fail(`expected ${local.reason}, got ${reason}`);
        } else if (DECODE_REASONS.has(reason) || reason === "payment_required") {
          return fail(`a decodable header refused as ${reason}`);
        }
        if (c.kind === "fresh" || c.kind === "boundary") return fail("a fresh valid voucher was refused");
        if (c.kind === "fresh-failing" && reason !== "store_unavailable") return fail("expected store_unavailable");
      };

      const started = Date.now();
      let index = 0;
      const worker = async () => {
        while (index < cases.length) {
          const c = cases[index++];
          check(c, await send(c));
        }
      };
      await Promise.all(Array.from({ length: 16 }, worker));
      const elapsed = Date.now() - started;

      if (process.env.FUZZ_REPORT)
        console.log(`${elapsed} ms`, JSON.stringify([...byKind].map(([k, m]) => [k, [...m]])));
      expect(failures.slice(0, 10), `${failures.length} failures`).to.deep.equal([]);

      // Every class reached the gate and got answers; the failing-store class got 503s.
      for (const [kind] of generators) expect(byKind.has(kind), kind).to.equal(true);
      expect(byKind.get("fresh-failing")?.get(503)).to.equal(30);
      expect(byKind.get("retry")?.get(200)).to.equal(200);
      expect(byKind.get("oversized")?.get(402)).to.equal(400);
      expect(freshPaid).to.equal(104);

      // The vouchers refused with 503 were released: sent again with a healthy store, they pay.
      failing.clear();
      const released = [...valid.keys()].filter((a) => h.store.findVoucher(CH, a) === undefined);
      expect(released).to.have.length(30);
      for (const amount of released) {
        const reply = await send({ kind: "fresh", header: voucherHeader(amount, valid.get(amount)!) });
        expect(reply.status).to.equal(200);
      }

      // No unpaid 200: the handler ran exactly once per 200, and the channel was charged exactly
      // once per distinct validly signed voucher, each made durable.
      const paid200s = paidReplies.length + 1 + released.length;
      expect(served).to.equal(paid200s);
      const distinct = h.store.loadVoucherAmounts(CH);
      expect(distinct).to.have.length(valid.size);
      expect(h.engine.channelView(CH)?.chargedTotal).to.equal((BigInt(valid.size) * PRICE).toString());
      for (const response of paidReplies.slice(0, 40)) {
        expect(await verifyReceipt(response.extra.receipt, RECEIPT_SIGNER, CHAIN_ID, CONTRACT)).to.equal(true);
      }
    } finally {
      agent.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
