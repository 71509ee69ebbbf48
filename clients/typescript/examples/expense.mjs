// The expense approval from the README's tour: node clients/typescript/examples/expense.mjs
// (after `make clients`; a project of your own imports "@tarry/client" instead).
import { Client, WrongState, waitingNodeIds } from "../dist/src/index.js";

const tarry = new Client(process.env.TARRY_TARGET ?? "localhost:50051");
try {
  // waitUntilSettled: answer once the execution is no longer RUNNING.
  let ex = await tarry.run("expense-approval", undefined, { waitUntilSettled: true });
  console.log(ex.status, waitingNodeIds(ex), ex.state);

  ex = await tarry.resume(ex.id, { approved: true, reviewer: "Bob" }, { waitUntilSettled: true });
  console.log(ex.status, ex.result);

  try {
    await tarry.resume(ex.id, { approved: true }); // it is COMPLETED now
  } catch (err) {
    if (!(err instanceof WrongState)) throw err;
    console.log(err.codeName, err.reason, err.metadata.status);
  }
} finally {
  tarry.close();
}
