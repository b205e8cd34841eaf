import fs from "node:fs";
import os from "node:os";
import secp256k1 from "secp256k1";
import { getAddress, keccak256, toHex, verifyTypedData, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { computeChannelId, signVoucher } from "@x402/evm/batch-settlement/client";
import { BatchSettlementEvmScheme, InMemoryChannelStorage } from "@x402/evm/batch-settlement/server";
import type { ChannelConfig } from "@x402/evm";
import type { PaymentPayload, PaymentRequirements } from "@x402/core/types";
import {
  createSignerRecoverer,
  createVoucherHasher,
  createVoucherSignatureVerifier,
  isNativeSecp256k1Available,
  verifyVoucherSignature,
  type SignerRecoverer,
} from "../src/protocol/fastVerify";
import { ReceiptSigner, requestHash } from "../src/protocol/receipt";
import { channelIdFor, voucherDomain, voucherTypedData } from "../src/protocol/voucher";
import { VerificationEngine } from "../src/server/engine";
import type { ChannelRecord } from "../src/protocol/channel";

/**
 * Voucher verification throughput on one core (Node runs all of this on its main thread), over
 * the same pre-generated distinct signed vouchers for every contender:
 *
 * - engineVerifiesPerSec: the server's full path, VerificationEngine.check (src/server/engine.ts)
 *   with the fast verifier: channel lookup and rules, hex decode, digest (two keccaks), parse,
 *   libsecp256k1 recovery, address keccak, signer check, state update. Every call is accepted.
 * - nativeRecoverPerSec: secp256k1.ecdsaRecover alone on precomputed digests, the floor.
 * - (table only) secp256k1.ecdsaVerify against a cached public key, the alternative to recovery
 *   the server does not take (it cannot check the recovery id the contract needs).
 * - viemVerifyTypedDataPerSec: viem's verifyTypedData, the straightforward alternative.
 * - x402BatchSettlementVerifiesPerSec: the peer, x402's batch-settlement scheme
 *   (BatchSettlementEvmScheme of @x402/evm, server side, its InMemoryChannelStorage) accepting a
 *   voucher the way x402ResourceServer drives it with local verification: onBeforeVerify (channel
 *   lookup, config binding, signature check; it skips the facilitator), onAfterVerify (reserves
 *   the channel), onBeforeSettle (commits the charge; it skips the facilitator too). Its vouchers
 *   are the same ones (same keys, channels, cumulative amounts, order), signed before the run
 *   under x402's Voucher type and domain, so their signatures differ.
 *
 * Each is run for a fixed time after a warm-up, three times interleaved; the median is reported.
 * Prints a table, then one JSON line as the last line of stdout.
 *
 *   npm run bench:verify
 *
 * BENCH_SECONDS (default 2) sets the length of each measured run.
 */

const CHANNELS = 100;
const VOUCHERS_PER_CHANNEL = 20; // 2,000 distinct vouchers in all
const PRICE = 1_000n; // $0.001 in 6-decimal USDC: each voucher pays exactly one request
const CHAIN_ID = 8453;
const CONTRACT: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const PAYEE: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const TOKEN: Address = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const SECONDS = Number(process.env.BENCH_SECONDS ?? "2");
const WARMUP_SECONDS = 0.5;
const REPEATS = 3;

interface Voucher {
  readonly channelId: bigint;
  readonly amount: bigint;
  /** 65-byte r ‖ s ‖ v as 0x-hex, as it arrives in a request header. */
  readonly signature: Hex;
  readonly signer: Address;
  // For the native-recovery floor: the same voucher, already hashed and decoded.
  readonly digest: Uint8Array;
  readonly sig64: Uint8Array;
  readonly recid: number;
}

/** The same voucher as x402's batch-settlement scheme carries it: a PaymentPayload, pre-signed. */
interface PeerVoucher {
  readonly payload: PaymentPayload;
}

const PEER_NETWORK = `eip155:${CHAIN_ID}` as const;
const PEER_WITHDRAW_DELAY = 86_400;
// The receiver-authorizer address is only compared, never used to sign during verification.
const PEER_RECEIVER_AUTHORIZER: Address = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";

/** Deterministic private keys, so every run measures the same inputs. */
function privateKey(index: number): Uint8Array {
  return Uint8Array.from(Buffer.from(keccak256(toHex(`paychan bench-verify key ${index}`)).slice(2), "hex"));
}

function addressOf(key: Uint8Array): Address {
  return getAddress(`0x${keccak256(secp256k1.publicKeyCreate(key, false).subarray(1)).slice(-40)}`);
}

/**
 * Vouchers in serving order: the k-th voucher of every channel before any (k+1)-th, so that with
 * amounts k * PRICE each one is accepted by the engine paying exactly one request.
 */
function makeVouchers(): Voucher[] {
  const hasher = createVoucherHasher(CHAIN_ID, CONTRACT);
  const channels = Array.from({ length: CHANNELS }, (_, i) => {
    const key = privateKey(i >> 1); // two channels per signer
    const signer = addressOf(key);
    return { key, signer, channelId: channelIdFor(signer, BigInt(i & 1)) };
  });
  const vouchers: Voucher[] = [];
  for (let k = 1; k <= VOUCHERS_PER_CHANNEL; k++) {
    for (const { key, signer, channelId } of channels) {
      const amount = BigInt(k) * PRICE;
      const digest = hasher.digest(channelId, amount);
      const { signature: sig64, recid } = secp256k1.ecdsaSign(digest, key);
      const signature = `${toHex(sig64)}${(27 + recid).toString(16)}` as Hex;
      vouchers.push({ channelId, amount, signature, signer, digest, sig64, recid });
    }
  }
  return vouchers;
}

/** x402 batch-settlement requirements for the same price, payee and token. */
function peerRequirements(): PaymentRequirements {
  return {
    scheme: "batch-settlement",
    network: PEER_NETWORK,
    asset: TOKEN,
    amount: PRICE.toString(),
    payTo: PAYEE,
    maxTimeoutSeconds: 60,
    extra: {
      name: "USD Coin",
      version: "2",
      receiverAuthorizer: PEER_RECEIVER_AUTHORIZER,
      withdrawDelay: PEER_WITHDRAW_DELAY,
    },
  };
}

/**
 * The vouchers of {@link makeVouchers} (same key, channel index, cumulative amount and order) as
 * x402 batch-settlement payloads, signed with @x402/evm's own signVoucher.
 */
async function makePeerVouchers(vouchers: readonly Voucher[]): Promise<PeerVoucher[]> {
  const accepted = peerRequirements();
  const configs = await Promise.all(
    Array.from({ length: CHANNELS }, async (_, i) => {
      const account = privateKeyToAccount(toHex(privateKey(i >> 1)));
      const channelConfig: ChannelConfig = {
        payer: account.address,
        payerAuthorizer: account.address,
        receiver: PAYEE,
        receiverAuthorizer: PEER_RECEIVER_AUTHORIZER,
        token: TOKEN,
        withdrawDelay: PEER_WITHDRAW_DELAY,
        salt: toHex(i & 1, { size: 32 }),
      };
      return { account, channelConfig, channelId: computeChannelId(channelConfig, PEER_NETWORK) };
    }),
  );
  const byPaychanId = new Map(vouchers.slice(0, CHANNELS).map((v, i) => [v.channelId, configs[i]]));
  return Promise.all(
    vouchers.map(async (v) => {
      const peer = byPaychanId.get(v.channelId);
      if (!peer || peer.account.address !== v.signer)
        throw new Error("voucher order: the first pass must hold every channel once");
      const voucher = await signVoucher(peer.account, peer.channelId, v.amount.toString(), PEER_NETWORK);
      return {
        payload: {
          x402Version: 2,
          accepted,
          payload: { type: "voucher", channelConfig: peer.channelConfig, voucher },
        },
      };
    }),
  );
}

function channelRecords(vouchers: readonly Voucher[]): ChannelRecord[] {
  const seen = new Map<bigint, ChannelRecord>();
  for (const v of vouchers) {
    if (seen.has(v.channelId)) continue;
    seen.set(v.channelId, {
      channelId: v.channelId,
      payer: v.signer,
      payee: PAYEE,
      token: TOKEN,
      signer: v.signer,
      deposit: 1_000_000_000n,
      claimedOnChain: 0n,
      withdrawDelay: 86_400,
      withdrawReadyAt: 0,
      status: "open",
      openedAtBlock: 1n,
      updatedAtBlock: 1n,
    });
  }
  return [...seen.values()];
}

/** Calls per second of wall-clock time, and per second of the main thread's CPU time. */
interface Rate {
  readonly wall: number;
  readonly cpu: number;
}

const MAIN_THREAD_STAT = `/proc/self/task/${process.pid}/stat`;
const CLOCK_TICK_MS = 10; // USER_HZ is 100 on every Linux ABI Node supports

/**
 * CPU milliseconds used so far by the main thread (where all the measured work runs), excluding
 * GC helper threads; from /proc on Linux (10 ms ticks: 0.5% over a 2 s run), else the whole
 * process. On a shared machine this, unlike wall time, does not count time spent descheduled.
 */
function mainThreadCpuMs(): number {
  try {
    const stat = fs.readFileSync(MAIN_THREAD_STAT, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // after "pid (comm) "
    return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MS; // utime, stime
  } catch {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1000;
  }
}

/** Runs `step(i)` for i = 0, 1, 2, ... until `seconds` pass. */
function runFor(seconds: number, step: (i: number) => void): Rate {
  const cpuStart = mainThreadCpuMs();
  const start = performance.now();
  const end = start + seconds * 1000;
  let calls = 0;
  let now = start;
  do {
    // Read the clock every 64 calls: its cost stays out of the measurement.
    for (let j = 0; j < 64; j++) step(calls++);
    now = performance.now();
  } while (now < end);
  return rate(calls, now - start, mainThreadCpuMs() - cpuStart);
}

async function runForAsync(seconds: number, step: (i: number) => Promise<void>): Promise<Rate> {
  const cpuStart = mainThreadCpuMs();
  const start = performance.now();
  const end = start + seconds * 1000;
  let calls = 0;
  let now = start;
  do {
    for (let j = 0; j < 8; j++) await step(calls++);
    now = performance.now();
  } while (now < end);
  return rate(calls, now - start, mainThreadCpuMs() - cpuStart);
}

function rate(calls: number, wallMs: number, cpuMs: number): Rate {
  return { wall: (calls * 1000) / wallMs, cpu: (calls * 1000) / Math.max(cpuMs, CLOCK_TICK_MS) };
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1];

type Contender = { name: string; run: (seconds: number) => Promise<Rate> };

function engineContender(vouchers: readonly Voucher[], recoverer: SignerRecoverer): Contender {
  const records = channelRecords(vouchers);
  const verifySignature = createVoucherSignatureVerifier(createVoucherHasher(CHAIN_ID, CONTRACT), recoverer);
  let engine: VerificationEngine;
  const fresh = () => {
    engine = new VerificationEngine({
      payee: PAYEE,
      tokens: [TOKEN],
      verifySignature,
      withdrawSafetyMarginSec: 3600,
      loadUsedAmounts: () => [],
    });
    for (const record of records) engine.applyChannel(record);
  };
  fresh();
  return {
    name: `engine (VerificationEngine.check, ${recoverer.backend})`,
    run: async (seconds) =>
      runFor(seconds, (i) => {
        const index = i % vouchers.length;
        // A voucher can be accepted once; after each pass the channels start over, so every
        // measured call does the full verification (the reset is timed too, ~1 µs per voucher).
        if (index === 0) fresh();
        const v = vouchers[index];
        const result = engine.check(v.channelId, v.amount, v.signature, PRICE);
        if (result.kind !== "accepted") throw new Error(`voucher ${index} not accepted: ${JSON.stringify(result)}`);
      }),
  };
}

/** The path without the engine: verification plus a minimal highest-amount map update. */
function minimalContender(vouchers: readonly Voucher[], recoverer: SignerRecoverer): Contender {
  const hasher = createVoucherHasher(CHAIN_ID, CONTRACT);
  const highest = new Map<bigint, bigint>();
  return {
    name: `verifyVoucherSignature + Map update (${recoverer.backend})`,
    run: async (seconds) =>
      runFor(seconds, (i) => {
        const v = vouchers[i % vouchers.length];
        const result = verifyVoucherSignature(hasher, recoverer, v.channelId, v.amount, v.signature);
        if (!result.ok) throw new Error(`voucher ${i % vouchers.length} rejected: ${result.reason}`);
        if ((highest.get(v.channelId) ?? 0n) < v.amount) highest.set(v.channelId, v.amount);
      }),
  };
}

function nativeRecoverContender(vouchers: readonly Voucher[]): Contender {
  const output = new Uint8Array(65); // the same call, with the same reused output, as the native backend
  return {
    name: "secp256k1.ecdsaRecover only",
    run: async (seconds) =>
      runFor(seconds, (i) => {
        const v = vouchers[i % vouchers.length];
        secp256k1.ecdsaRecover(v.sig64, v.recid, v.digest, false, output);
      }),
  };
}

/**
 * The alternative to recovery: libsecp256k1's ecdsaVerify against the signer's public key, as a
 * server caching each channel's key (recovered once) would run it. Not what the server does: a
 * verify cannot tell whether the voucher's recovery id is the one the contract's ecrecover needs,
 * so a voucher it accepts might not be claimable. Measured for the comparison only.
 */
function nativeVerifyContender(vouchers: readonly Voucher[]): Contender {
  const keys = vouchers.map((v) => secp256k1.ecdsaRecover(v.sig64, v.recid, v.digest, false));
  return {
    name: "secp256k1.ecdsaVerify, cached public key (not used)",
    run: async (seconds) =>
      runFor(seconds, (i) => {
        const v = vouchers[i % vouchers.length];
        if (!secp256k1.ecdsaVerify(v.sig64, v.digest, keys[i % vouchers.length])) throw new Error("verify failed");
      }),
  };
}

/** What the server does per paid request besides verifying: hash and sign the receipt. */
function receiptContender(vouchers: readonly Voucher[]): Contender {
  const signer = new ReceiptSigner(`0x${"11".repeat(32)}`, CHAIN_ID, CONTRACT);
  const request = requestHash("GET", "/weather?city=Lisbon");
  return {
    name: "ReceiptSigner.sign (receipt digest + libsecp256k1 sign)",
    run: async (seconds) =>
      runFor(seconds, (i) => {
        const v = vouchers[i % vouchers.length];
        signer.sign({
          channelId: v.channelId,
          voucherAmount: v.amount,
          charge: PRICE,
          chargedTotal: v.amount,
          request,
          issuedAt: i,
        });
      }),
  };
}

/**
 * x402's batch-settlement server scheme accepting each voucher through its three request hooks,
 * with its in-memory storage holding every channel as recently synced from the chain (so it
 * verifies locally, as paychan's engine does).
 */
function x402BatchSettlementContender(vouchers: readonly PeerVoucher[]): Contender {
  const requirements = peerRequirements();
  let scheme: BatchSettlementEvmScheme;
  const fresh = async () => {
    const storage = new InMemoryChannelStorage();
    scheme = new BatchSettlementEvmScheme(PAYEE, { storage, withdrawDelay: PEER_WITHDRAW_DELAY });
    const now = Date.now();
    for (const { payload } of vouchers.slice(0, CHANNELS)) {
      const { channelConfig, voucher } = payload.payload as {
        channelConfig: ChannelConfig;
        voucher: { channelId: string };
      };
      await storage.updateChannel(voucher.channelId, () => ({
        channelId: voucher.channelId,
        channelConfig,
        chargedCumulativeAmount: "0",
        signedMaxClaimable: "0",
        signature: "0x",
        balance: "1000000000",
        totalClaimed: "0",
        withdrawRequestedAt: 0,
        refundNonce: 0,
        onchainSyncedAt: now,
        lastRequestTimestamp: now,
      }));
    }
  };
  const declaredExtensions = {};
  return {
    name: "x402 batch-settlement (BatchSettlementEvmScheme hooks, in-memory storage)",
    run: async (seconds) => {
      await fresh();
      return runForAsync(seconds, async (i) => {
        const index = i % vouchers.length;
        if (index === 0 && i > 0) await fresh(); // as for the engine: each voucher is accepted once
        const { payload } = vouchers[index];
        const hooks = scheme.schemeHooks;
        const verified = await hooks.onBeforeVerify!({ paymentPayload: payload, requirements, declaredExtensions });
        if (!verified || !("skip" in verified) || !verified.result.isValid) {
          throw new Error(`x402 voucher ${index} not verified locally: ${JSON.stringify(verified)}`);
        }
        const reserved = await hooks.onAfterVerify!({
          paymentPayload: payload,
          requirements,
          declaredExtensions,
          result: verified.result,
        });
        if (reserved) throw new Error(`x402 voucher ${index} not reserved: ${JSON.stringify(reserved)}`);
        const settled = await hooks.onBeforeSettle!({
          paymentPayload: payload,
          requirements,
          declaredExtensions,
          phase: "after-handler",
        });
        if (!settled || !("skip" in settled) || !settled.result.success) {
          throw new Error(`x402 voucher ${index} not committed: ${JSON.stringify(settled)}`);
        }
      });
    },
  };
}

function viemContender(vouchers: readonly Voucher[]): Contender {
  const domain = voucherDomain(CHAIN_ID, CONTRACT);
  return {
    name: "viem verifyTypedData",
    run: (seconds) =>
      runForAsync(seconds, async (i) => {
        const v = vouchers[i % vouchers.length];
        const typed = voucherTypedData(domain, { channelId: v.channelId, cumulativeAmount: v.amount });
        if (!(await verifyTypedData({ ...typed, address: v.signer, signature: v.signature }))) {
          throw new Error(`viem rejected voucher ${i % vouchers.length}`);
        }
      }),
  };
}

async function main(): Promise<void> {
  if (!isNativeSecp256k1Available()) throw new Error("the libsecp256k1 binding does not load: nothing to compare");
  const native = createSignerRecoverer({ backend: "native" });
  const js = createSignerRecoverer({ backend: "js" });
  const vouchers = makeVouchers();
  const peerVouchers = await makePeerVouchers(vouchers);

  const contenders = {
    engine: engineContender(vouchers, native),
    minimal: minimalContender(vouchers, native),
    nativeRecover: nativeRecoverContender(vouchers),
    nativeVerify: nativeVerifyContender(vouchers),
    viem: viemContender(vouchers),
    x402BatchSettlement: x402BatchSettlementContender(peerVouchers),
    receipt: receiptContender(vouchers),
    minimalJs: minimalContender(vouchers, js),
  };
  type Key = keyof typeof contenders;
  const keys = Object.keys(contenders) as Key[];
  const samples = Object.fromEntries(keys.map((k) => [k, [] as Rate[]])) as Record<Key, Rate[]>;
  const loadBefore = os.loadavg()[0];
  for (const key of keys) await contenders[key].run(WARMUP_SECONDS);
  // Interleaved repeats: a slow patch on a shared machine hits every contender alike.
  for (let r = 0; r < REPEATS; r++) for (const key of keys) samples[key].push(await contenders[key].run(SECONDS));
  const wall = (key: Key) => Math.round(median(samples[key].map((s) => s.wall)));
  const cpu = (key: Key) => Math.round(median(samples[key].map((s) => s.cpu)));
  const n = (x: number) => Math.round(x).toLocaleString("en-US");

  console.log(
    `voucher verification: ${vouchers.length} distinct vouchers on ${CHANNELS} channels, ` +
      `${REPEATS} x ${SECONDS}s per contender (interleaved, after a ${WARMUP_SECONDS}s warm-up), median shown`,
  );
  console.log(
    `node ${process.version}, ${os.cpus()[0]?.model ?? "unknown cpu"} x${os.cpus().length}, one thread; ` +
      `load average ${loadBefore.toFixed(2)} before, ${os.loadavg()[0].toFixed(2)} after`,
  );
  // Descheduled time shows as wall time without CPU time: the honest signal of a shared machine.
  if (keys.some((key) => wall(key) < 0.9 * cpu(key))) {
    console.log("NOTE: the machine was busy; wall-clock rates are low, the CPU-time column is the steadier one");
  }
  console.log("");
  const header = ["contender", "per sec", "µs/op", "wall runs (per sec)", "per CPU-sec"];
  const rows = keys.map((key) => [
    contenders[key].name,
    n(wall(key)),
    (1e6 / wall(key)).toFixed(1),
    samples[key].map((s) => n(s.wall)).join(" / "),
    n(cpu(key)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows) console.log(line(row));
  console.log("");
  const ratio = (a: Key, b: Key, digits: number) =>
    `${(wall(a) / wall(b)).toFixed(digits)} (CPU time: ${(cpu(a) / cpu(b)).toFixed(digits)})`;
  console.log(`engine / native recover = ${ratio("engine", "nativeRecover", 3)}, target >= 0.75`);
  console.log(`engine / viem           = ${ratio("engine", "viem", 1)}, target >= 20`);
  console.log(`engine / x402 batch-settlement = ${ratio("engine", "x402BatchSettlement", 1)}`);
  console.log(`engine per sec          = ${n(wall("engine"))} (CPU time: ${n(cpu("engine"))}), target >= 15,000`);
  console.log(
    JSON.stringify({
      engineVerifiesPerSec: wall("engine"),
      nativeRecoverPerSec: wall("nativeRecover"),
      viemVerifyTypedDataPerSec: wall("viem"),
      x402BatchSettlementVerifiesPerSec: wall("x402BatchSettlement"),
      engineOverX402BatchSettlement: Math.round((wall("engine") / wall("x402BatchSettlement")) * 10) / 10,
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
