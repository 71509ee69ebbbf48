// What the client sends as user data: plain JSON goes through, the rest is refused first.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { checkJson } from "../src/index";
import { Value } from "../src/gen/google/protobuf/struct";

// What the server would decode: the Value the generated code encodes, read back.
function roundTrip(value: unknown): unknown {
  return Value.unwrap(Value.decode(Value.encode(Value.wrap(value)).finish()));
}

describe("plain JSON", () => {
  const accepted: [string, unknown][] = [
    ["null", null],
    ["booleans", [true, false]],
    ["numbers", [0, -0.5, 1500, 2 ** 53, -1e300]],
    ["strings", ["", "héllo", "{uid}"]],
    ["nested", { request: { user: "Alice", amount: 1500 }, tags: ["a", ["b", {}]], empty: [] }],
    ["a null-prototype object", Object.assign(Object.create(null) as object, { a: 1 })],
  ];
  for (const [what, value] of accepted) {
    test(`accepts ${what}`, () => {
      assert.doesNotThrow(() => checkJson(value, "input"));
      assert.deepEqual(roundTrip(value), JSON.parse(JSON.stringify(value)));
    });
  }

  test("accepts the same object twice (a shared subtree is no cycle)", () => {
    const shared = { x: 1 };
    assert.doesNotThrow(() => checkJson({ a: shared, b: [shared, shared] }, "input"));
  });
});

describe("refusals", () => {
  class Money {
    constructor(readonly cents: number) {}
  }
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic["self"] = cyclic;
  const cyclicArray: unknown[] = [];
  cyclicArray.push([cyclicArray]);

  const refused: [string, unknown, RegExp][] = [
    ["undefined in an object", { a: undefined }, /^input\.a: undefined is not JSON/],
    ["undefined in an array", [1, undefined], /^input\[1\]: undefined is not JSON/],
    // eslint-disable-next-line no-sparse-arrays
    ["a hole in a sparse array", [1, , 3], /^input\[1\]: undefined/],
    ["NaN", { n: NaN }, /^input\.n: JSON has no NaN/],
    ["Infinity", [Infinity], /JSON has no Infinity/],
    ["-Infinity", { deep: { er: [-Infinity] } }, /^input\.deep\.er\[0\]: JSON has no -Infinity/],
    ["a function", { f: () => 1 }, /^input\.f: a function is not JSON/],
    ["a bigint", { big: 10n }, /^input\.big: a bigint is not JSON/],
    ["a symbol", [Symbol("s")], /a symbol is not JSON/],
    ["a Date", { when: new Date(0) }, /^input\.when: a Date is not JSON/],
    ["a Map", { m: new Map([["a", 1]]) }, /a Map is not JSON/],
    ["a Set", new Set([1]), /^input: a Set is not JSON/],
    ["a class instance", { price: new Money(5) }, /^input\.price: a Money is not JSON/],
    ["a boxed number", [new Number(1)], /a Number is not JSON/],
    ["a typed array", { bytes: new Uint8Array(2) }, /a Uint8Array is not JSON/],
    ["a cycle through an object", cyclic, /^input\.self: a cycle is not JSON/],
    ["a cycle through arrays", cyclicArray, /^input\[0\]\[0\]: a cycle is not JSON/],
    ["symbol keys", { [Symbol("k")]: 1 }, /symbol keys/],
    ["a __proto__ key", JSON.parse('{"__proto__": {"x": 1}}'), /__proto__/],
  ];
  for (const [what, value, message] of refused) {
    test(`refuses ${what}`, () => {
      assert.throws(() => checkJson(value, "input"), (error: unknown) => {
        assert.ok(error instanceof TypeError, `a TypeError, not ${String(error)}`);
        assert.match(error.message, message);
        return true;
      });
    });
  }

  test("refuses top-level undefined where a value is required", () => {
    assert.throws(() => checkJson(undefined, "data"), TypeError);
  });
});
