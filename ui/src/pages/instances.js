// The instance list: state, addresses, location, live CPU and memory; start/stop/delete.
import { useEffect, useRef } from "preact/hooks";
import { followEvents, run } from "../api.js";
import { html } from "../html.js";
import { ActionButton, ErrorBox, Page, Status, Table, bytes, useResource } from "../components/common.js";

const POLL_MS = 5000;
const RENDERED = "stapes:instances-rendered";

export function addresses(state, family = "inet") {
  const found = [];
  for (const [device, net] of Object.entries(state?.network || {})) {
    if (device === "lo") continue;
    for (const a of net.addresses || []) {
      if (a.family === family && a.scope === "global") found.push(`${a.address} (${device})`);
    }
  }
  return found;
}

/** CPU use in percent of one CPU between two samples of the same instance, per name. */
function useCpuShares(instances) {
  const last = useRef(new Map());
  const shares = new Map();
  const now = performance.now();
  for (const instance of instances || []) {
    const usage = instance.state?.cpu?.usage;
    if (usage === undefined) continue;
    const before = last.current.get(instance.name);
    if (before && now > before.at && usage >= before.usage) {
      shares.set(instance.name, (100 * (usage - before.usage)) / 1e9 / ((now - before.at) / 1000));
    } else if (before) {
      shares.set(instance.name, before.share);
    }
    last.current.set(instance.name, { usage, at: now, share: shares.get(instance.name) });
  }
  return shares;
}

export function instanceAction(name, action) {
  const path = `/1.0/instances/${encodeURIComponent(name)}`;
  if (action === "delete") return run("DELETE", path);
  return run("PUT", `${path}/state`, { action, timeout: 30, force: action !== "start" });
}

export function Instances() {
  const { data, error, reload } = useResource("/1.0/instances?recursion=2", { every: POLL_MS });
  useEffect(() => followEvents(["lifecycle"], (event) => {
    if (String(event.metadata?.action || "").startsWith("instance-")) reload();
  }), [reload]);
  const shares = useCpuShares(data);
  useEffect(() => {
    // when the list is first on screen (bench/ui.py measures the page load up to here)
    if (data && !performance.getEntriesByName(RENDERED).length) performance.mark(RENDERED);
  }, [data]);
  const clustered = (data || []).some((i) => i.location && i.location !== "none");
  const act = (name, action) => () => instanceAction(name, action);
  const columns = [
    ["Name", (i) => html`<a href=${"#/instances/" + encodeURIComponent(i.name)}>${i.name}</a>`],
    ["Type", (i) => i.type],
    ["Status", (i) => html`<${Status} status=${i.status} />`],
    ["IPv4", (i) => addresses(i.state).map((a) => html`<div>${a}</div>`)],
    ...(clustered ? [["Location", (i) => i.location]] : []),
    ["CPU", (i) => (shares.has(i.name) && shares.get(i.name) !== undefined ? `${shares.get(i.name).toFixed(1)} %` : "")],
    ["Memory", (i) => (i.status === "Running" ? bytes(i.state?.memory?.usage) : "")],
    ["", (i) => html`<div class="row-actions">
      ${i.status === "Running"
        ? html`<${ActionButton} label="Stop" action=${act(i.name, "stop")} onDone=${reload} />`
        : html`<${ActionButton} label="Start" action=${act(i.name, "start")} onDone=${reload} />`}
      <${ActionButton} label="Delete" kind="danger" disabled=${i.status === "Running"}
        title=${i.status === "Running" ? "Stop it first" : ""}
        action=${() => (confirm(`Delete ${i.name}?`) ? instanceAction(i.name, "delete") : Promise.resolve())}
        onDone=${reload} /></div>`],
  ];
  return html`<${Page} title="Instances" actions=${html`<a class="button primary" href="#/instances/new">Create instance</a>`}>
    <${ErrorBox} error=${error} />
    <${Table} columns=${columns} rows=${data} empty="No instances in this project." />
  </${Page}>`;
}
