// The TypeScript runner of the conformance suite (tests/conformance/README.md): every
// scenario through the client's public API against TARRY_ADDRESS, one JSON line each on
// stdout. Exits 0 once it ran them all, whatever their outcome; non-zero when it cannot run.
//
//   TARRY_ADDRESS=127.0.0.1:50051 TARRY_SCENARIOS=tests/conformance/scenarios \
//     node clients/typescript/dist/conformance/main.js

import { resolve } from "node:path";

import { Client } from "../src/index";
import { load, newUid, substitute } from "./scenarios";
import type { Saved, Scenario } from "./scenarios";
import { DEFAULT_TIMEOUT_S, operation, runStep } from "./steps";

// dist/conformance/main.js -> the repository's tests/conformance/scenarios.
const SCENARIOS = resolve(__dirname, "..", "..", "..", "..", "tests", "conformance", "scenarios");

/** Runs one scenario: undefined when it passed, else what differed and at which step. */
export async function runScenario(client: Client, scenario: Scenario): Promise<string | undefined> {
  const saved = new Map<string, Saved>();
  const uid = newUid();
  for (const [index, raw] of scenario.steps.entries()) {
    let op = "?";
    try {
      op = operation(raw);
      const step = substitute(raw, uid, saved) as typeof raw;
      await runStep(client, step, saved);
    } catch (error) {
      return `step ${index} (${op}): ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  return undefined;
}

async function main(): Promise<number> {
  const address = process.env["TARRY_ADDRESS"] || "127.0.0.1:50051";
  const directory = process.env["TARRY_SCENARIOS"] || SCENARIOS;
  const only = process.env["TARRY_ONLY"] || undefined;
  let scenarios: Scenario[];
  try {
    scenarios = load(directory);
  } catch (error) {
    process.stderr.write(`conformance: cannot read the scenarios in ${directory}: ` +
                         `${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  }
  if (only !== undefined && !scenarios.some((s) => s.name === only)) {
    process.stderr.write(`conformance: no scenario is called ${JSON.stringify(only)}\n`);
  }
  const client = new Client(address, { timeoutMs: DEFAULT_TIMEOUT_S * 1000 });
  try {
    for (const scenario of scenarios) {
      if (only !== undefined && scenario.name !== only) {
        continue;
      }
      const error = await runScenario(client, scenario);
      const line = error === undefined
        ? { scenario: scenario.name, ok: true }
        : { scenario: scenario.name, ok: false, error };
      process.stdout.write(`${JSON.stringify(line)}\n`);
    }
  } finally {
    client.close();
  }
  return 0;
}

if (require.main === module) {
  main().then(
    (code) => { process.exitCode = code; },
    (error: unknown) => {
      process.stderr.write(`conformance: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 2;
    },
  );
}
