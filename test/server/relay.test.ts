import { expect } from "chai";
import { randomBytes } from "node:crypto";
import {
  createPublicClient,
  createWalletClient,
  encodeErrorResult,
  http as httpTransport,
  parseAbi,
  parseSignature,
  toHex,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { usdcAbi } from "../../src/chain/abi";
import { createChainClient } from "../../src/chain/client";
import { TransactionSender } from "../../src/chain/sender";
import { openAuthorizationNonce, receiveWithAuthorizationTypedData } from "../../src/protocol/authorization";
import { RELAY_ERRORS, type RelayErrorCode } from "../../src/protocol/relayErrors";
import { GaslessRelay, RelayError } from "../../src/server/relay";
import { jsonRpcError, startHardhatNode, startRpcProxy, type HardhatNode, type RpcProxy } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

/**
 * The gasless relay turns a simulated open that reverts into a documented code with a fix
 * (insufficient balance, expired or used authorization, Circle's FiatToken revert strings), and
 * an RPC outage into 502 chain_unavailable with the cause. A real `hardhat node` answers; a
 * fault-injecting proxy in front of it plays the nodes and providers that answer differently
 * (a geth-style `execution reverted` with an `Error(string)`, a dropped connection).
 */

const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE: Address = privateKeyToAccount(HARDHAT_KEYS[2]).address;
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const DELAY = 3600;
const AMOUNT = 2_000_000n;

describe("gasless relay: reverts decoded into codes with a fix (hardhat node)", function () {
  this.timeout(120_000);

  let node: HardhatNode;
  let proxy: RpcProxy;
  let publicClient: PublicClient;
  let usdc: Address;
  let contract: Address;

  /** A relay whose RPC goes through the proxy; `nowSec` lets a test move the relay's clock. */
  const relayWith = (nowSec?: () => number) => {
    const client = createChainClient({ url: proxy.url, chain: hardhat, retryCount: 0 });
    const account = privateKeyToAccount(RELAYER_KEY);
    return new GaslessRelay({
      path: "/paychan/relay",
      publicClient: client,
      sender: new TransactionSender({
        publicClient: client,
        walletClient: createWalletClient({ account, chain: hardhat, transport: httpTransport(proxy.url) }),
        account,
        chain: hardhat,
        confirmations: 0,
        pollIntervalMs: 100,
      }),
      chainId: 31337,
      contract,
      payee: PAYEE,
      tokens: [{ address: usdc, name: "USD Coin", version: "2" }],
      minDeposit: 1_000_000n,
      minWithdrawDelay: DELAY,
      ...(nowSec ? { nowSec } : {}),
    });
  };

  /** An /open body signed by `payer`, valid until `validBefore`. */
  const openBody = async (payer: PrivateKeyAccount, validBefore: bigint, salt: Hex = toHex(randomBytes(32))) => {
    const signer = privateKeyToAccount(generatePrivateKey()).address;
    const nonce = openAuthorizationNonce({ payee: PAYEE, signer, withdrawDelay: DELAY, salt });
    const signature = await payer.signTypedData(
      receiveWithAuthorizationTypedData(
        { name: "USD Coin", version: "2", chainId: 31337, verifyingContract: usdc },
        { from: payer.address, to: contract, value: AMOUNT, validAfter: 0n, validBefore, nonce },
      ),
    );
    const { r, s, v } = parseSignature(signature);
    return {
      payer: payer.address,
      signer,
      withdrawDelay: DELAY,
      amount: AMOUNT.toString(),
      authorization: { validAfter: "0", validBefore: validBefore.toString(), salt, v: Number(v), r, s },
    };
  };

  const refusal = async (work: Promise<unknown>): Promise<RelayError> => {
    const error = await work.then(
      () => expect.fail("the relay accepted"),
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(RelayError);
    return error as RelayError;
  };

  const expectCode = (error: RelayError, code: RelayErrorCode) => {
    expect(error.code, error.message).to.equal(code);
    expect(error.status).to.equal(RELAY_ERRORS[code].status);
  };

  const funded = async (amount: bigint) => {
    const payer = privateKeyToAccount(generatePrivateKey());
    if (amount > 0n) {
      const minter = createWalletClient({
        account: privateKeyToAccount(MINTER_KEY),
        chain: hardhat,
        transport: httpTransport(node.url),
      });
      const hash = await minter.writeContract({
        address: usdc,
        abi: usdcAbi,
        functionName: "mint",
        args: [payer.address, amount],
      });
      await publicClient.waitForTransactionReceipt({ hash });
    }
    return payer;
  };

  const inAnHour = () => BigInt(Math.floor(Date.now() / 1000) + 3600);

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    contract = node.deployments!.PaymentChannels;
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    proxy = await startRpcProxy(node.url);
  });

  afterEach(() => proxy.setFault(() => "pass"));

  after(async () => {
    await proxy?.stop();
    await node?.stop();
  });

  it("insufficient balance (ERC20InsufficientBalance, wrapped by Hardhat in an 'internal error'): 422 insufficient_balance", async () => {
    const broke = await funded(500_000n);
    const error = await refusal(relayWith().open(await openBody(broke, inAnHour())));
    expectCode(error, "insufficient_balance");
    expect(error.message).to.equal(
      `the payer ${broke.address} holds 500000 of the 2000000 atomic units the open needs`,
    );
  });

  it("an authorization expired on-chain (the relay's clock behind): 422 authorization_expired", async () => {
    const payer = await funded(AMOUNT);
    // Valid for the relay's clock, two hours late, but expired for the chain.
    const lateClock = () => Math.floor(Date.now() / 1000) - 7200;
    const validBefore = BigInt(Math.floor(Date.now() / 1000) - 3600);
    const error = await refusal(relayWith(lateClock).open(await openBody(payer, validBefore)));
    expectCode(error, "authorization_expired");
    expect(error.message).to.equal(`the open would revert: MockUSDCAuthorizationExpired(${validBefore})`);
  });

  it("an authorization used twice: the first opens, the second is 422 authorization_used", async () => {
    const payer = await funded(2n * AMOUNT);
    const body = await openBody(payer, inAnHour());
    const relay = relayWith();
    const opened = await relay.open(body);
    expect(opened.deposit).to.equal(AMOUNT.toString());
    expectCode(await refusal(relay.open(body)), "authorization_used");
  });

  it("Circle's FiatToken revert strings, as a geth-style node returns them (code 3, Error(string) data)", async () => {
    const payer = await funded(AMOUNT);
    const cases: [string, RelayErrorCode][] = [
      ["FiatTokenV2: authorization is expired", "authorization_expired"],
      ["FiatTokenV2: authorization is not yet valid", "authorization_not_yet_valid"],
      ["FiatTokenV2: authorization is used or canceled", "authorization_used"],
      ["FiatTokenV2: invalid signature", "invalid_authorization"],
      ["ERC20: transfer amount exceeds balance", "insufficient_balance"],
      ["Blacklistable: account is blacklisted", "account_blocked"],
      ["Pausable: paused", "token_paused"],
    ];
    for (const [reason, code] of cases) {
      const data = encodeErrorResult({ abi: parseAbi(["error Error(string)"]), errorName: "Error", args: [reason] });
      proxy.setFault((call) =>
        call.method === "eth_call"
          ? {
              status: 200,
              body: { jsonrpc: "2.0", id: call.id, error: { code: 3, message: `execution reverted: ${reason}`, data } },
            }
          : "pass",
      );
      const error = await refusal(relayWith().open(await openBody(payer, inAnHour())));
      expectCode(error, code);
      expect(error.message).to.equal(`the open would revert: the token says "${reason}"`);
    }
  });

  it("an RPC outage while simulating stays 502 chain_unavailable, with the cause in words", async () => {
    const payer = await funded(AMOUNT);
    proxy.setFault((call) => (call.method === "eth_call" ? "drop" : "pass"));
    const dropped = await refusal(relayWith().open(await openBody(payer, inAnHour())));
    expectCode(dropped, "chain_unavailable");
    expect(dropped.message).to.match(/^cannot simulate the open: the (connection was (reset|closed)|request failed)/);
    proxy.setFault((call) => (call.method === "eth_call" ? jsonRpcError(call, -32005, "rate limited") : "pass"));
    const limited = await refusal(relayWith().open(await openBody(payer, inAnHour())));
    expectCode(limited, "chain_unavailable");
    expect(limited.message).to.include("rate limited");
  });

  it("answers over HTTP with the code, the message and the fix", async () => {
    const broke = await funded(0n);
    const relay = relayWith();
    const http = await import("node:http");
    const server = http.createServer((req, res) => void relay.handle("open", req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as { port: number };
      const response = await fetch(`http://127.0.0.1:${port}/paychan/relay/open`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(await openBody(broke, inAnHour())),
      });
      expect(response.status).to.equal(422);
      expect(await response.json()).to.deep.equal({
        error: "insufficient_balance",
        message: `the payer ${broke.address} holds 0 of the 2000000 atomic units the open needs`,
        fix: RELAY_ERRORS.insufficient_balance.fix,
      });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
