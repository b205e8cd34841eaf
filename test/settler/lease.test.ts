import { expect } from "chai";
import { DutyLease } from "../../src/settler/lease";
import { openPgStore, type PgStore } from "../../src/store/postgres";
import { requirePg, testSchema, type TestSchema } from "../helpers/pgSchema";

/** The settler duty's lease on a real PostgreSQL: one holder at a time, a bounded takeover. */

const TTL_MS = 1_000;

function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (check()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 20);
    };
    poll();
  });
}

describe("DutyLease (PostgreSQL)", function () {
  this.timeout(20_000);
  let schema: TestSchema;
  const stores: PgStore[] = [];
  const leases: DutyLease[] = [];

  beforeEach(function () {
    schema = testSchema(requirePg(this, "the settler lease tests"));
  });
  afterEach(async () => {
    for (const lease of leases.splice(0)) await lease.stop();
    for (const store of stores.splice(0)) await store.close();
    await schema?.drop();
  });

  /** A competitor with its own store (connections), recording when it holds the duty. */
  async function competitor(holder: string, events: string[]) {
    const store = await openPgStore({ url: schema.url });
    stores.push(store);
    const lease = new DutyLease({
      store,
      name: "settler:test",
      holder,
      ttlMs: TTL_MS,
      onAcquired: () => void events.push(`${holder}+`),
      onLost: () => void events.push(`${holder}-`),
    });
    leases.push(lease);
    return { store, lease };
  }

  it("gives the duty to one competitor, and to another within the lease once the holder cannot renew", async () => {
    const events: string[] = [];
    const a = await competitor("a", events);
    a.lease.start();
    await until("a holds the duty", () => a.lease.holding);
    const b = await competitor("b", events);
    b.lease.start();
    await new Promise((resolve) => setTimeout(resolve, TTL_MS));
    expect(b.lease.holding, "b waits while a renews").to.equal(false);

    // a loses the database: its renewals fail, so it must give the duty up before b can get it.
    const cutAt = Date.now();
    await a.store.close();
    await until("b takes over", () => b.lease.holding);
    expect(Date.now() - cutAt).to.be.below(TTL_MS + TTL_MS / 3 + 500);
    expect(events, "a stepped down before b took over").to.deep.equal(["a+", "a-", "b+"]);
  });

  it("hands the duty over at once when the holder stops, and the holder gives it up when it is taken", async () => {
    const events: string[] = [];
    const a = await competitor("a", events);
    a.lease.start();
    await until("a holds the duty", () => a.lease.holding);
    const b = await competitor("b", events);
    b.lease.start();
    await a.lease.stop();
    await until("b takes over", () => b.lease.holding, TTL_MS);

    // Someone else takes the row (as after an expiry a's clock missed): b notices and steps down.
    await b.store.releaseLease("settler:test", "b");
    expect(await a.store.acquireLease("settler:test", "intruder", 60_000)).to.equal(true);
    await until("b steps down", () => !b.lease.holding, TTL_MS);
    expect(events).to.deep.equal(["a+", "a-", "b+", "b-"]);
  });
});
