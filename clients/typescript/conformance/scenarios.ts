// Reading the scenario files, and the substitutions made in each step before it runs
// (tests/conformance/README.md, "Substitutions").

import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

import type { BulkStart, Execution, ExecutionPage, Json, JsonObject } from "../src/index";

/**
 * What a step's `"save"` keeps: an execution, or (on a `list` step) a page, or (on a `bulk`
 * step) the start of a batch.
 */
export type Saved =
  | { kind: "execution"; execution: Execution }
  | { kind: "page"; page: ExecutionPage }
  | { kind: "bulk"; start: BulkStart };

export interface Scenario {
  name: string;
  steps: JsonObject[];
}

/** A scenario file or step that breaks the format: the scenario's fault, not the client's. */
export class ScenarioError extends Error {}

/** Every scenario of every *.json file of `directory`, in file order; names are unique. */
export function load(directory: string): Scenario[] {
  const scenarios: Scenario[] = [];
  for (const file of readdirSync(directory).filter((f) => f.endsWith(".json")).sort()) {
    const parsed: unknown = JSON.parse(readFileSync(join(directory, file), "utf8"));
    if (!Array.isArray(parsed)) {
      throw new ScenarioError(`${file}: not a JSON array`);
    }
    for (const entry of parsed as unknown[]) {
      scenarios.push(scenario(entry, file));
    }
  }
  const seen = new Set<string>();
  const twice = new Set<string>();
  for (const { name } of scenarios) {
    (seen.has(name) ? twice : seen).add(name);
  }
  if (twice.size > 0) {
    throw new ScenarioError(`scenario names used twice: ${JSON.stringify([...twice].sort())}`);
  }
  return scenarios;
}

function scenario(entry: unknown, file: string): Scenario {
  if (!isObject(entry) || typeof entry["name"] !== "string" || !Array.isArray(entry["steps"]) ||
      !entry["steps"].every(isObject)) {
    throw new ScenarioError(`${file}: a scenario needs a "name" and a list of "steps" objects`);
  }
  return { name: entry["name"], steps: entry["steps"] as JsonObject[] };
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A token unique to one run of one scenario: lowercase letters and digits, 16 of them. */
export function newUid(): string {
  return randomBytes(8).toString("hex");
}

/**
 * `value` with every string rewritten: `{uid}` becomes the scenario's token, and a string
 * starting with `$` names a saved execution: `$name` its id, `$name.sequence` its
 * lastSequence (a number); or a saved page: `$name.next` its nextPageToken (null on the
 * last page, which leaves the field unset), `$name.cursor` its watchCursor; or a saved
 * batch: `$name` its id.
 */
export function substitute(value: Json, uid: string, saved: ReadonlyMap<string, Saved>): Json {
  if (Array.isArray(value)) {
    return value.map((item) => substitute(item, uid, saved));
  }
  if (isObject(value)) {
    const out: JsonObject = {};
    for (const [key, item] of Object.entries(value)) {
      out[key] = substitute(item, uid, saved);
    }
    return out;
  }
  if (typeof value !== "string") {
    return value;
  }
  if (!value.startsWith("$")) {
    return value.split("{uid}").join(uid);
  }
  const [name = "", field, ...more] = value.slice(1).split(".");
  const found = saved.get(name);
  if (found === undefined) {
    throw new ScenarioError(`${value}: nothing saved as ${JSON.stringify(name)}`);
  }
  if (found.kind === "page") {
    if (field === "next" && more.length === 0) {
      return found.page.nextPageToken ?? null;
    }
    if (field === "cursor" && more.length === 0) {
      return found.page.watchCursor ?? null;
    }
    throw new ScenarioError(`${value}: only .next or .cursor may follow a saved page`);
  }
  if (found.kind === "bulk") {
    if (field !== undefined) {
      throw new ScenarioError(`${value}: nothing may follow a saved batch`);
    }
    if (found.start.bulk === undefined) {
      throw new ScenarioError(`${value}: the step saved as ${JSON.stringify(name)} ` +
                              "started no batch (a dry run)");
    }
    return found.start.bulk.id;
  }
  if (field === undefined) {
    return found.execution.id;
  }
  if (field === "sequence" && more.length === 0) {
    return found.execution.lastSequence;
  }
  throw new ScenarioError(`${value}: only .sequence may follow a saved execution`);
}
