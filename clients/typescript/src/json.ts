// Plain JSON data, the only kind of user data Tarry carries (google.protobuf.Value / Struct on
// the wire), and the check that refuses anything else before it is sent.

/** A JSON value: what `JSON.parse` returns. */
export type Json = null | boolean | number | string | Json[] | JsonObject;

/** A JSON object. */
export interface JsonObject {
  [key: string]: Json;
}

/**
 * Throws a TypeError, naming the path at fault, unless `value` is plain JSON data.
 *
 * The protobuf runtime would otherwise send such values silently changed: `undefined` inside
 * an array as an unset Value, NaN as a number no JSON holds, a Date or a class instance as an
 * object of its own enumerable fields, and a cycle would never end. Refusing them before the
 * call means nothing half-meant ever reaches the server.
 */
export function checkJson(value: unknown, path: string): asserts value is Json {
  visit(value, path, new Set<object>());
}

function visit(value: unknown, path: string, open: Set<object>): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) {
        throw new TypeError(`${path}: JSON has no ${value}`);
      }
      return;
    case "undefined":
      throw new TypeError(`${path}: undefined is not JSON (use null)`);
    case "bigint":
      throw new TypeError(`${path}: a bigint is not JSON (convert it to a number or a string)`);
    case "symbol":
    case "function":
      throw new TypeError(`${path}: a ${typeof value} is not JSON`);
  }
  if (value === null) {
    return;
  }
  const object = value as object;
  if (open.has(object)) {
    throw new TypeError(`${path}: a cycle is not JSON`);
  }
  open.add(object);
  try {
    if (Array.isArray(object)) {
      visitArray(object, path, open);
    } else {
      visitObject(object, path, open);
    }
  } finally {
    // Only the objects on the current path: the same object twice in a tree is fine.
    open.delete(object);
  }
}

function visitArray(array: unknown[], path: string, open: Set<object>): void {
  if (Object.getPrototypeOf(array) !== Array.prototype) {
    throw new TypeError(`${path}: ${describe(array)} is not JSON (use a plain array)`);
  }
  // An index loop, not for-of over keys: a hole in a sparse array must be seen as undefined.
  for (let i = 0; i < array.length; i++) {
    visit(array[i], `${path}[${i}]`, open);
  }
}

function visitObject(object: object, path: string, open: Set<object>): void {
  if (object instanceof Date) {
    throw new TypeError(`${path}: a Date is not JSON (send it as a string, e.g. toISOString())`);
  }
  const proto: unknown = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError(`${path}: ${describe(object)} is not JSON (use a plain object)`);
  }
  if (Object.getOwnPropertySymbols(object).length > 0) {
    throw new TypeError(`${path}: an object with symbol keys is not JSON`);
  }
  for (const [key, item] of Object.entries(object)) {
    if (key === "__proto__") {
      // The generated Struct code stores fields by assignment, which turns this key into a
      // prototype change instead of a field: it would vanish on the way.
      throw new TypeError(`${path}: the key "__proto__" cannot be sent`);
    }
    visit(item, `${path}.${key}`, open);
  }
}

function describe(object: object): string {
  const name = (object.constructor as { name?: unknown } | undefined)?.name;
  return typeof name === "string" && name !== "" ? `a ${name}` : "an object with a prototype";
}
