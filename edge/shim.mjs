// The Worker's entry module (wrangler.toml `main`): the wasm-bindgen output of scripts/build-edge.sh, with
// the recovery workers-rs' own shim has — a trap (a Rust panic) marks the instance broken, and the next
// event starts a fresh one (the model is then read from R2 again).
import { WorkerEntrypoint } from "cloudflare:workers";
import * as wasm from "./build/index.js";

const initState = wasm.__worker_init_state();

function reinitializeIfBroken() {
  if (initState.criticalError) {
    console.log("lens-edge: starting a fresh wasm instance after a trap");
    wasm.__wbg_reset_state();
    initState.criticalError = false;
    initState.instanceId++;
  }
}

function noteTrap(e) {
  if (e instanceof WebAssembly.RuntimeError) {
    console.error("lens-edge: the wasm instance trapped", e);
    initState.criticalError = true;
  }
}

addEventListener("error", (e) => noteTrap(e.error));

async function run(call) {
  reinitializeIfBroken();
  try {
    return await call();
  } catch (e) {
    noteTrap(e);
    throw e;
  }
}

export default class LensEdge extends WorkerEntrypoint {
  fetch(request) {
    return run(() => wasm.fetch(request, this.env, this.ctx));
  }

  scheduled(event) {
    return run(() => wasm.scheduled(event, this.env, this.ctx));
  }
}
