/**
 * The `paychan` command line: a small dispatcher from a command name to a lazily loaded module,
 * so `paychan --help` does not load viem and one command's dependencies never slow another.
 *
 * Adding a command: write `src/cli/<name>.ts` exporting `command: Command`, and add one line to
 * {@link COMMANDS}.
 */

/** One `paychan <name>` command. */
export interface Command {
  /** One line for `paychan --help`. */
  readonly summary: string;
  /** Full usage text for `paychan <name> --help`. */
  readonly usage: string;
  /** Runs the command with the arguments after its name; resolves with the exit code. */
  run(args: readonly string[]): Promise<number>;
}

/** The commands, loaded on use. Keep summaries here so `--help` loads nothing. */
export const COMMANDS: Readonly<Record<string, { readonly summary: string; load(): Promise<Command> }>> = {
  server: {
    summary: "run the paying reverse proxy (paychan server --config paychan.config.json)",
    load: async () => (await import("./server")).command,
  },
  pay: { summary: "send a request, paying a 402 via a channel", load: async () => (await import("./pay")).command },
  open: { summary: "open a channel to a server (gasless)", load: async () => (await import("./open")).command },
  status: { summary: "show the client's channels", load: async () => (await import("./status")).command },
  topup: { summary: "add to a channel's deposit", load: async () => (await import("./topup")).command },
  withdraw: {
    summary: "request (or --finalize, or --cancel) the payer's withdrawal",
    load: async () => (await import("./withdraw")).command,
  },
  deploy: { summary: "deploy the PaymentChannels contract", load: async () => (await import("./deploy")).command },
  settle: { summary: "claim accepted vouchers in batches", load: async () => (await import("./settle")).command },
  faucet: {
    summary: "local only: mint mock USDC (and send ETH) on a Hardhat node",
    load: async () => (await import("./faucet")).command,
  },
};

/** Where command output goes (injectable for tests). */
export interface CliIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `Usage: paychan <command> [options]\n\nCommands:\n${lines.join("\n")}\n\nRun "paychan <command> --help" for a command's options.\n`;
}

/** Runs `paychan <argv...>`; resolves with the exit code (2 for usage errors). */
export async function run(argv: readonly string[], io: CliIo = process): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    const topic = name === "help" ? rest[0] : undefined;
    if (topic !== undefined && Object.prototype.hasOwnProperty.call(COMMANDS, topic)) {
      io.stdout.write((await COMMANDS[topic].load()).usage);
      return 0;
    }
    (name === undefined ? io.stderr : io.stdout).write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "-v" || name === "--version") {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    io.stdout.write(`${(require("../../package.json") as { version: string }).version}\n`);
    return 0;
  }
  if (!Object.prototype.hasOwnProperty.call(COMMANDS, name)) {
    io.stderr.write(`paychan: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return (await COMMANDS[name].load()).run(rest);
}

/** The bin/paychan.js entry: runs and exits with the command's code. */
export function main(argv: readonly string[]): void {
  run(argv).then(
    (code) => exit(code),
    async (error: unknown) => {
      // A command that let an error through still gets one line, not a stack (PAYCHAN_DEBUG=1
      // shows it). Loaded here only, so that --help loads no chain code.
      const { formatFailure } = await import("../shared/failure");
      process.stderr.write(formatFailure(`paychan${argv[0] ? ` ${argv[0]}` : ""}`, error));
      exit(1);
    },
  );
}

function exit(code: number): void {
  process.exitCode = code;
  // Idle keep-alive sockets (RPC clients) may hold the event loop open for a few seconds after
  // a command is done; give pending output a moment to flush, then leave.
  setTimeout(() => process.exit(code), 1_000).unref();
}
